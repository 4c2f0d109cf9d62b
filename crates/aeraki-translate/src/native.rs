//! The Envoy flavour: stock Envoy's native `dubbo_proxy` and `thrift_proxy` network filters
//! with inline route tables, as Aeraki's native plugins generate them. MetaRouter features the
//! native filters cannot express are skipped with a warning naming service, route and field.

use aeraki_model::resources::LISTENER;
use aeraki_model::{
    AttributeMatch, DestinationView, Protocol, RouteView, RouterView, ServiceView, StringMatchKind,
    outbound_cluster_name, route_config_name,
};
use envoy_types::pb::envoy::config::route::v3::HeaderMatcher;
use envoy_types::pb::envoy::extensions::filters::network::dubbo_proxy::router::v3::Router as DubboRouter;
use envoy_types::pb::envoy::extensions::filters::network::dubbo_proxy::v3 as dubbo;
use envoy_types::pb::envoy::extensions::filters::network::thrift_proxy::router::v3::Router as ThriftRouter;
use envoy_types::pb::envoy::extensions::filters::network::thrift_proxy::v3 as thrift;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use crate::common::{
    any, dest_cluster, hash_keys, header_matcher, mirror_fraction, regex, route_id, string_matcher,
    u32v,
};
use crate::meta::{listener, weighted_clusters};
use crate::{Cx, svc_id};

pub(crate) const DUBBO_FILTER: &str = "envoy.filters.network.dubbo_proxy";
pub(crate) const DUBBO_ROUTER: &str = "envoy.filters.dubbo.router";
pub(crate) const THRIFT_FILTER: &str = "envoy.filters.network.thrift_proxy";
pub(crate) const THRIFT_ROUTER: &str = "envoy.filters.thrift.router";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Native {
    Dubbo,
    Thrift,
}

impl Native {
    fn filter(self) -> &'static str {
        match self {
            Native::Dubbo => "Envoy dubbo_proxy",
            Native::Thrift => "Envoy thrift_proxy",
        }
    }
}

/// Listeners of one service for stock Envoy.
pub(crate) fn service(cx: &mut Cx<'_>, svc: &ServiceView) {
    let kind = match &svc.protocol {
        Protocol::Dubbo => Native::Dubbo,
        Protocol::Thrift => Native::Thrift,
        Protocol::MetaProtocol { application, .. } if application == "dubbo" => Native::Dubbo,
        Protocol::MetaProtocol { application, .. } if application == "thrift" => Native::Thrift,
        Protocol::MetaProtocol { application, .. } => {
            cx.warn(format!(
                "{}: application protocol {application:?} has no native Envoy filter; \
                 no listener for stock Envoy",
                svc_id(svc)
            ));
            return;
        }
        Protocol::Redis | Protocol::Tcp | Protocol::Grpc => return,
    };
    if let Some(router) = &svc.router {
        // Envoy 1.40 has no per-request local rate limit for either filter; dubbo_proxy has no
        // rate-limit filter at all; thrift_proxy's rate_limit filter is not mapped (yet).
        for (field, set) in [
            ("localRateLimit", router.local_rate_limit.is_some()),
            ("globalRateLimit", router.global_rate_limit.is_some()),
        ] {
            if set {
                cx.warn(format!(
                    "{}: MetaRouter {}: {field} cannot be expressed by {}; skipped",
                    svc_id(svc),
                    router.source,
                    kind.filter()
                ));
            }
        }
    }
    let router = svc.router.as_ref().filter(|r| !r.routes.is_empty());
    let typed_config = match kind {
        Native::Dubbo => any(&dubbo_proxy(cx, svc, router)),
        Native::Thrift => any(&thrift_proxy(cx, svc, router)),
    };
    let filter_name = match kind {
        Native::Dubbo => DUBBO_FILTER,
        Native::Thrift => THRIFT_FILTER,
    };
    for address in &svc.addresses {
        let l = listener(address, svc.port, filter_name, typed_config.clone());
        cx.insert(LISTENER, l.name.clone(), &l);
    }
}

/// Warns about the parts of a route (or of the default route) neither native filter can carry.
fn unsupported(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    kind: Native,
    what: &str,
    route: Option<&RouteView>,
    dests: &[&DestinationView],
) {
    let filter = kind.filter();
    if let Some(r) = route {
        for (field, kvs) in [
            ("requestMutation", &r.request_mutation),
            ("responseMutation", &r.response_mutation),
        ] {
            if !kvs.is_empty() {
                cx.warn(format!(
                    "{}: {what}: {field} cannot be expressed by {filter}; skipped",
                    svc_id(svc)
                ));
            }
        }
        // Neither native route has a timeout, a retry policy or a fault filter.
        for (field, set) in [
            ("timeout", r.timeout.is_some()),
            ("retries", r.retries.is_some()),
            ("fault", r.fault.is_some()),
        ] {
            if set {
                cx.warn(format!(
                    "{}: {what}: {field} cannot be expressed by {filter}; skipped",
                    svc_id(svc)
                ));
            }
        }
        if kind == Native::Dubbo && r.mirror.is_some() {
            cx.warn(format!(
                "{}: {what}: mirror cannot be expressed by {filter}; skipped",
                svc_id(svc)
            ));
        }
    }
    for key in hash_keys(cx, svc, dests) {
        cx.warn(format!(
            "{}: {what}: consistentHash key {key:?} cannot be expressed by {filter} routes \
             (no hash policy); skipped",
            svc_id(svc)
        ));
    }
}

fn main_dest(svc: &ServiceView) -> DestinationView {
    DestinationView {
        host: svc.host.clone(),
        subset: None,
        port: None,
        weight: 100,
    }
}

// ---- Dubbo ----

fn dubbo_proxy(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    router: Option<&RouterView>,
) -> dubbo::DubboProxy {
    let table = route_config_name(&svc.host, svc.port);
    let mut configs: Vec<dubbo::RouteConfiguration> = Vec::new();
    match router {
        None => {
            unsupported(
                cx,
                svc,
                Native::Dubbo,
                "default route",
                None,
                &[&main_dest(svc)],
            );
            let route = dubbo::Route {
                r#match: Some(dubbo::RouteMatch {
                    method: Some(any_method()),
                    headers: Vec::new(),
                }),
                route: Some(dubbo::RouteAction {
                    cluster_specifier: Some(dubbo::route_action::ClusterSpecifier::Cluster(
                        outbound_cluster_name(svc.port, None, &svc.host),
                    )),
                    metadata_match: None,
                }),
            };
            push_dubbo(&mut configs, &table, DubboKey::catch_all(), route);
        }
        Some(router) => {
            for (i, r) in router.routes.iter().enumerate() {
                let what = route_id(router, i, r);
                let dests: Vec<_> = r.destinations.iter().collect();
                unsupported(cx, svc, Native::Dubbo, &what, Some(r), &dests);
                if let Some((key, route)) = dubbo_route(cx, svc, &what, r) {
                    push_dubbo(&mut configs, &table, key, route);
                }
            }
        }
    }
    dubbo::DubboProxy {
        stat_prefix: outbound_cluster_name(svc.port, None, &svc.host),
        protocol_type: dubbo::ProtocolType::Dubbo as i32,
        serialization_type: dubbo::SerializationType::Hessian2 as i32,
        route_specifier: Some(dubbo::dubbo_proxy::RouteSpecifier::MultipleRouteConfig(
            dubbo::MultipleRouteConfiguration {
                name: table,
                route_config: configs,
            },
        )),
        dubbo_filters: vec![dubbo::DubboFilter {
            name: DUBBO_ROUTER.to_owned(),
            config: Some(any(&DubboRouter {})),
        }],
        ..Default::default()
    }
}

/// What selects a Dubbo route configuration: interface (`*` for any), group and version.
#[derive(Clone, PartialEq, Eq)]
struct DubboKey {
    interface: String,
    group: String,
    version: String,
}

impl DubboKey {
    fn catch_all() -> Self {
        DubboKey {
            interface: "*".to_owned(),
            group: String::new(),
            version: String::new(),
        }
    }
}

/// Appends a route to the last configuration when it has the same key, else opens a new one:
/// consecutive runs keep the MetaRouter's first-match-wins order, because Envoy tries the
/// configurations in order.
fn push_dubbo(
    configs: &mut Vec<dubbo::RouteConfiguration>,
    table: &str,
    key: DubboKey,
    route: dubbo::Route,
) {
    if let Some(last) = configs.last_mut()
        && last.interface == key.interface
        && last.group == key.group
        && last.version == key.version
    {
        last.routes.push(route);
        return;
    }
    let mut name = format!("{table}/{}", key.interface);
    if configs.iter().any(|c| c.name == name) {
        name = format!("{name}/{}", configs.len());
    }
    configs.push(dubbo::RouteConfiguration {
        name,
        interface: key.interface,
        group: key.group,
        version: key.version,
        routes: vec![route],
    });
}

fn dubbo_route(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    what: &str,
    r: &RouteView,
) -> Option<(DubboKey, dubbo::Route)> {
    let mut key = DubboKey::catch_all();
    let mut method = any_method();
    let mut headers = Vec::new();
    for m in &r.matches {
        match (m.attribute.as_str(), &m.kind) {
            ("interface", StringMatchKind::Exact(v)) => key.interface = v.clone(),
            ("interface", StringMatchKind::Present) => {}
            ("interface", _) => {
                cx.warn(format!(
                    "{}: {what}: match.attributes.interface: only exact matches select an \
                     Envoy dubbo_proxy route configuration; route skipped",
                    svc_id(svc)
                ));
                return None;
            }
            ("method", StringMatchKind::Present) => {}
            ("method", kind) => {
                if let Some(sm) = string_matcher(kind, false) {
                    method.name = Some(sm);
                }
            }
            ("group", StringMatchKind::Exact(v)) => key.group = v.clone(),
            ("version", StringMatchKind::Exact(v)) => key.version = v.clone(),
            _ => headers.push(header_matcher(m, false)),
        }
    }
    let cluster_specifier = match r.destinations.as_slice() {
        [one] => dubbo::route_action::ClusterSpecifier::Cluster(dest_cluster(svc, one)),
        _ => dubbo::route_action::ClusterSpecifier::WeightedClusters(weighted_clusters(svc, r)),
    };
    let route = dubbo::Route {
        r#match: Some(dubbo::RouteMatch {
            method: Some(method),
            headers,
        }),
        route: Some(dubbo::RouteAction {
            cluster_specifier: Some(cluster_specifier),
            metadata_match: None,
        }),
    };
    Some((key, route))
}

/// Any method (regex `.*`, as Aeraki's default): Envoy needs a method matcher on every route.
fn any_method() -> dubbo::MethodMatch {
    dubbo::MethodMatch {
        name: Some(StringMatcher {
            match_pattern: Some(MatchPattern::SafeRegex(regex(".*", false))),
            ignore_case: false,
        }),
        params_match: Default::default(),
    }
}

// ---- Thrift ----

fn thrift_proxy(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    router: Option<&RouterView>,
) -> thrift::ThriftProxy {
    let mut routes = Vec::new();
    match router {
        None => {
            unsupported(
                cx,
                svc,
                Native::Thrift,
                "default route",
                None,
                &[&main_dest(svc)],
            );
            routes.push(thrift::Route {
                r#match: Some(thrift::RouteMatch {
                    match_specifier: Some(thrift::route_match::MatchSpecifier::MethodName(
                        String::new(),
                    )),
                    ..Default::default()
                }),
                route: Some(thrift::RouteAction {
                    cluster_specifier: Some(thrift::route_action::ClusterSpecifier::Cluster(
                        outbound_cluster_name(svc.port, None, &svc.host),
                    )),
                    ..Default::default()
                }),
            });
        }
        Some(router) => {
            for (i, r) in router.routes.iter().enumerate() {
                let what = route_id(router, i, r);
                let dests: Vec<_> = r.destinations.iter().collect();
                unsupported(cx, svc, Native::Thrift, &what, Some(r), &dests);
                if let Some(route) = thrift_route(cx, svc, &what, r) {
                    routes.push(route);
                }
            }
        }
    }
    thrift::ThriftProxy {
        stat_prefix: outbound_cluster_name(svc.port, None, &svc.host),
        transport: thrift::TransportType::AutoTransport as i32,
        protocol: thrift::ProtocolType::AutoProtocol as i32,
        route_config: Some(thrift::RouteConfiguration {
            name: route_config_name(&svc.host, svc.port),
            routes,
            validate_clusters: None,
        }),
        thrift_filters: vec![thrift::ThriftFilter {
            name: THRIFT_ROUTER.to_owned(),
            config_type: Some(thrift::thrift_filter::ConfigType::TypedConfig(any(
                &ThriftRouter::default(),
            ))),
        }],
        ..Default::default()
    }
}

/// The exact value of a `method`/`service` match, `None` for a `method` presence match (every
/// call has a method); `Err` for what Envoy cannot express: prefix, regex, and `service`
/// presence (only multiplexed calls carry a service name).
fn exact_only(m: &AttributeMatch) -> Result<Option<&str>, ()> {
    match &m.kind {
        StringMatchKind::Exact(v) => Ok(Some(v)),
        StringMatchKind::Present if m.attribute == "method" => Ok(None),
        StringMatchKind::Present | StringMatchKind::Prefix(_) | StringMatchKind::Regex(_) => {
            Err(())
        }
    }
}

fn thrift_route(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    what: &str,
    r: &RouteView,
) -> Option<thrift::Route> {
    let mut method = None;
    let mut service = None;
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    for m in &r.matches {
        let slot = match m.attribute.as_str() {
            "method" => &mut method,
            "service" => &mut service,
            _ => {
                headers.push(header_matcher(m, false));
                continue;
            }
        };
        match exact_only(m) {
            Ok(v) => *slot = v,
            Err(()) => {
                cx.warn(format!(
                    "{}: {what}: match.attributes.{}: Envoy thrift_proxy matches method and \
                     service names exactly only (prefix, regex and service presence cannot be \
                     expressed); route skipped",
                    svc_id(svc),
                    m.attribute
                ));
                return None;
            }
        }
    }
    use thrift::route_match::MatchSpecifier;
    let spec = match (service, method) {
        // Envoy sees the multiplexed name `Service:method` as the method name.
        (Some(s), Some(m)) => MatchSpecifier::MethodName(format!("{s}:{m}")),
        (Some(s), None) => MatchSpecifier::ServiceName(s.to_owned()),
        (None, Some(m)) => MatchSpecifier::MethodName(m.to_owned()),
        (None, None) => MatchSpecifier::MethodName(String::new()),
    };
    let cluster_specifier = match r.destinations.as_slice() {
        [one] => thrift::route_action::ClusterSpecifier::Cluster(dest_cluster(svc, one)),
        many => thrift::route_action::ClusterSpecifier::WeightedClusters(thrift::WeightedCluster {
            clusters: many
                .iter()
                .map(|d| thrift::weighted_cluster::ClusterWeight {
                    name: dest_cluster(svc, d),
                    weight: Some(u32v(d.weight)),
                    metadata_match: None,
                })
                .collect(),
        }),
    };
    let mirrors = r
        .mirror
        .iter()
        .map(|m| thrift::route_action::RequestMirrorPolicy {
            cluster: dest_cluster(svc, &m.destination),
            runtime_fraction: Some(mirror_fraction(m.percentage)),
        })
        .collect();
    Some(thrift::Route {
        r#match: Some(thrift::RouteMatch {
            match_specifier: Some(spec),
            invert: false,
            headers,
        }),
        route: Some(thrift::RouteAction {
            cluster_specifier: Some(cluster_specifier),
            request_mirror_policies: mirrors,
            ..Default::default()
        }),
    })
}
