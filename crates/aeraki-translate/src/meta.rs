//! The MetaProxy flavour: one MetaProtocol listener per service address, routes over RDS in
//! Aeraki's tunnelled form (a MetaProtocol route table inside an HTTP RouteConfiguration).

use aeraki_model::resources::{LISTENER, ROUTE};
use aeraki_model::{Protocol, RouteView, ServiceView, outbound_cluster_name, route_config_name};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{
    Header, PolicySpecifier,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HashPolicy, RequestMirrorPolicy,
};
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use meta_api::pb::aeraki::meta_protocol_proxy::filters::router::v1alpha::Router;
use meta_api::pb::aeraki::meta_protocol_proxy::v1alpha::{
    Codec, MetaProtocolFilter, MetaProtocolProxy, Rds, meta_protocol_proxy::RouteSpecifier,
};

use crate::cluster::{ads, socket_address};
use crate::common::{
    any_with, dest_cluster, hash_keys, header_matcher, mirror_fraction, route_name, u32v,
};
use crate::{Cx, policy, svc_id};

pub(crate) const FILTER_NAME: &str = "envoy.filters.network.meta_protocol_proxy";
pub(crate) const PROXY_TYPE: &str =
    "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy";
pub(crate) const ROUTER_NAME: &str = "aeraki.meta_protocol.filters.router";
const ROUTER_TYPE: &str =
    "type.googleapis.com/aeraki.meta_protocol_proxy.filters.router.v1alpha.Router";

/// Listeners and the route table of one service for meta-proxy.
pub(crate) fn service(cx: &mut Cx<'_>, svc: &ServiceView) {
    let Protocol::MetaProtocol { application, codec } = &svc.protocol else {
        cx.warn(format!(
            "{}: native {} ports are translated for stock Envoy only; no meta-proxy listener",
            svc_id(svc),
            match svc.protocol {
                Protocol::Dubbo => "dubbo",
                _ => "thrift",
            }
        ));
        return;
    };
    let rds_name = route_config_name(&svc.host, svc.port);
    let mut filters = match &svc.router {
        Some(router) => policy::rate_limit_filters(cx, svc, router),
        None => Vec::new(),
    };
    filters.push(MetaProtocolFilter {
        name: ROUTER_NAME.to_owned(),
        config: Some(any_with(ROUTER_TYPE, &Router {})),
    });
    let proxy = MetaProtocolProxy {
        stat_prefix: outbound_cluster_name(svc.port, None, &svc.host),
        application_protocol: application.clone(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: rds_name.clone(),
        })),
        codec: Some(Codec {
            name: codec.clone(),
            config: None,
        }),
        meta_protocol_filters: filters,
        ..Default::default()
    };
    for address in &svc.addresses {
        cx.insert(
            LISTENER,
            listener_name(address, svc.port),
            &listener(address, svc.port, FILTER_NAME, any_with(PROXY_TYPE, &proxy)),
        );
    }
    let routes = route_table(cx, svc);
    cx.insert(ROUTE, rds_name.clone(), &tunnel(rds_name, routes));
}

/// `<address>_<port>`, Istio's outbound listener name.
pub(crate) fn listener_name(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

/// A listener with one filter chain holding one network filter.
pub(crate) fn listener(
    address: &str,
    port: u16,
    filter_name: &str,
    typed_config: envoy_types::pb::google::protobuf::Any,
) -> Listener {
    Listener {
        name: listener_name(address, port),
        address: Some(socket_address(address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: filter_name.to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(typed_config)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Wraps MetaProtocol routes in Aeraki's single-virtual-host HTTP RouteConfiguration.
fn tunnel(name: String, routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name,
        virtual_hosts: vec![VirtualHost {
            name: "dummy".to_owned(),
            domains: vec!["*".to_owned()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn route_table(cx: &mut Cx<'_>, svc: &ServiceView) -> Vec<Route> {
    let router = svc.router.as_ref().filter(|r| !r.routes.is_empty());
    let Some(router) = router else {
        let cluster = outbound_cluster_name(svc.port, None, &svc.host);
        let default = aeraki_model::DestinationView {
            host: svc.host.clone(),
            subset: None,
            port: None,
            weight: 100,
        };
        let action = RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
            hash_policy: hash_policies(hash_keys(cx, svc, &[&default])),
            ..Default::default()
        };
        return vec![Route {
            name: "default".to_owned(),
            r#match: Some(prefix_match(Vec::new())),
            action: Some(Action::Route(action)),
            ..Default::default()
        }];
    };
    router
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(cx, svc, i, r))
        .collect()
}

fn route(cx: &mut Cx<'_>, svc: &ServiceView, index: usize, r: &RouteView) -> Route {
    let dests: Vec<_> = r.destinations.iter().collect();
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier(svc, r)),
        hash_policy: hash_policies(hash_keys(cx, svc, &dests)),
        ..Default::default()
    };
    if let Some(m) = &r.mirror {
        action.request_mirror_policies = vec![RequestMirrorPolicy {
            cluster: dest_cluster(svc, &m.destination),
            runtime_fraction: Some(mirror_fraction(m.percentage)),
            ..Default::default()
        }];
    }
    let mut route = Route {
        name: route_name(index, r),
        r#match: Some(prefix_match(
            r.matches.iter().map(|m| header_matcher(m, true)).collect(),
        )),
        action: Some(Action::Route(action)),
        request_headers_to_add: headers_to_add(&r.request_mutation),
        response_headers_to_add: headers_to_add(&r.response_mutation),
        ..Default::default()
    };
    policy::apply(&mut route, r);
    route
}

fn cluster_specifier(svc: &ServiceView, r: &RouteView) -> ClusterSpecifier {
    match r.destinations.as_slice() {
        [one] => ClusterSpecifier::Cluster(dest_cluster(svc, one)),
        _ => ClusterSpecifier::WeightedClusters(weighted_clusters(svc, r)),
    }
}

/// `weighted_clusters{clusters[{name, weight}]}`, total_weight omitted.
pub(crate) fn weighted_clusters(svc: &ServiceView, r: &RouteView) -> WeightedCluster {
    WeightedCluster {
        clusters: r
            .destinations
            .iter()
            .map(|d| ClusterWeight {
                name: dest_cluster(svc, d),
                weight: Some(u32v(d.weight)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn prefix_match(
    headers: Vec<envoy_types::pb::envoy::config::route::v3::HeaderMatcher>,
) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_owned())),
        headers,
        ..Default::default()
    }
}

fn hash_policies(keys: Vec<String>) -> Vec<HashPolicy> {
    keys.into_iter()
        .map(|header_name| HashPolicy {
            policy_specifier: Some(PolicySpecifier::Header(Header {
                header_name,
                regex_rewrite: None,
            })),
            terminal: false,
        })
        .collect()
}

fn headers_to_add(kvs: &[(String, String)]) -> Vec<HeaderValueOption> {
    kvs.iter()
        .map(|(key, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}
