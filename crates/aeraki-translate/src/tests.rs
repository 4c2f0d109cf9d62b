//! Unit tests: names, matcher and policy details, and the exact warning texts.

use std::time::Duration;

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER, ROUTE};
use aeraki_model::*;
use serde_json::{Value, json};

use crate::common::{dest_cluster, mirror_fraction, route_id, route_name};
use crate::{to_json, translate};

pub(crate) const H: &str = "svc.ns.svc.cluster.local";
pub(crate) const PREFIX: &str = "service svc.ns.svc.cluster.local:20880 (tcp-metaprotocol-dubbo)";

pub(crate) fn svc(app: &str) -> ServiceView {
    ServiceView {
        host: H.into(),
        namespace: "ns".into(),
        source: "ns/svc".into(),
        port: 20880,
        port_name: format!("tcp-metaprotocol-{app}"),
        protocol: Protocol::MetaProtocol {
            application: app.into(),
            codec: format!("aeraki.meta_protocol.codec.{app}"),
        },
        addresses: vec!["240.240.0.1".into()],
        resolution: Resolution::Static,
        endpoints: vec![EndpointView {
            address: "10.0.0.1".into(),
            port: 20880,
            labels: [("version".to_owned(), "v1".to_owned())].into(),
            weight: 3,
            locality: "r/z".into(),
        }],
        traffic_policy: None,
        subsets: Vec::new(),
        router: None,
    }
}

fn dest(host: &str, subset: Option<&str>, port: Option<u16>) -> DestinationView {
    DestinationView {
        host: host.into(),
        subset: subset.map(Into::into),
        port,
        weight: 100,
    }
}

fn route(name: &str, matches: Vec<AttributeMatch>) -> RouteView {
    RouteView {
        name: name.into(),
        matches,
        destinations: vec![dest(H, None, None)],
        mirror: None,
        request_mutation: Vec::new(),
        response_mutation: Vec::new(),
        timeout: None,
        retries: None,
        fault: None,
    }
}

fn m(attribute: &str, kind: StringMatchKind) -> AttributeMatch {
    AttributeMatch {
        attribute: attribute.into(),
        kind,
    }
}

fn with_routes(mut s: ServiceView, routes: Vec<RouteView>) -> ServiceView {
    s.router = Some(RouterView {
        source: "ns/mr".into(),
        routes,
        local_rate_limit: None,
        global_rate_limit: None,
    });
    s
}

pub(crate) fn view(services: Vec<ServiceView>) -> MeshView {
    MeshView {
        services,
        mesh: MeshSettings::default(),
    }
}

pub(crate) fn run(v: &MeshView, flavor: Flavor) -> (Value, Vec<String>) {
    let t = translate(v, flavor);
    (to_json(&t.resources), t.warnings)
}

fn typed_config(out: &Value, listener: &str) -> Value {
    out[LISTENER][listener]["filter_chains"][0]["filters"][0]["typed_config"].clone()
}

#[test]
fn names() {
    let s = svc("dubbo");
    assert_eq!(
        dest_cluster(&s, &dest(H, Some("v1"), None)),
        format!("outbound|20880|v1|{H}")
    );
    assert_eq!(
        dest_cluster(&s, &dest("other.x", None, Some(9))),
        "outbound|9||other.x"
    );
    let r = route("", vec![]);
    assert_eq!(route_name(3, &r), "route-3");
    assert_eq!(route_name(3, &route("named", vec![])), "named");
    let router = RouterView {
        source: "ns/mr".into(),
        routes: vec![],
        local_rate_limit: None,
        global_rate_limit: None,
    };
    assert_eq!(route_id(&router, 3, &r), "MetaRouter ns/mr route #3");
    assert_eq!(
        route_id(&router, 0, &route("a", vec![])),
        "MetaRouter ns/mr route \"a\""
    );
    let (out, _) = run(&view(vec![s]), Flavor::MetaProxy);
    assert!(out[LISTENER]["240.240.0.1_20880"].is_object());
    assert!(out[ROUTE][format!("{H}_20880")].is_object());
}

#[test]
fn mirror_fraction_is_per_million_rounded() {
    let n = |p: f64| {
        mirror_fraction(p)
            .default_value
            .map(|f| (f.numerator, f.denominator))
    };
    assert_eq!(n(100.0), Some((1_000_000, 2)));
    assert_eq!(n(33.33335), Some((333_334, 2)));
    assert_eq!(n(0.00004), Some((0, 2)));
}

#[test]
fn endpoints_carry_weight_and_locality() {
    let (out, w) = run(&view(vec![svc("dubbo")]), Flavor::MetaProxy);
    assert!(w.is_empty(), "{w:?}");
    let cla = &out[ENDPOINT][format!("outbound|20880||{H}")]["endpoints"][0];
    assert_eq!(cla["locality"], json!({"region": "r", "zone": "z"}));
    assert_eq!(cla["lb_endpoints"][0]["load_balancing_weight"], 3);
}

#[test]
fn subset_endpoints_need_every_label() {
    let mut s = svc("dubbo");
    s.subsets = vec![SubsetView {
        name: "v2".into(),
        labels: [("version".to_owned(), "v2".to_owned())].into(),
        traffic_policy: None,
    }];
    let (out, _) = run(&view(vec![s]), Flavor::MetaProxy);
    let cla = &out[ENDPOINT][format!("outbound|20880|v2|{H}")];
    assert_eq!(cla["cluster_name"], format!("outbound|20880|v2|{H}"));
    assert!(cla.get("endpoints").is_none(), "{cla}");
}

#[test]
fn dns_without_endpoints_resolves_the_host() {
    let mut s = svc("dubbo");
    s.resolution = Resolution::Dns;
    s.endpoints.clear();
    let (out, _) = run(&view(vec![s]), Flavor::MetaProxy);
    let c = &out[CLUSTER][format!("outbound|20880||{H}")];
    assert_eq!(c["type"], "STRICT_DNS");
    let sa = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
    assert_eq!(
        sa["socket_address"],
        json!({"address": H, "port_value": 20880})
    );
    assert!(out.get(ENDPOINT).is_none());
}

#[test]
fn header_matchers_per_kind() {
    let s = with_routes(
        svc("dubbo"),
        vec![route(
            "r",
            vec![
                m("a", StringMatchKind::Exact("1".into())),
                m("b", StringMatchKind::Prefix("2".into())),
                m("c", StringMatchKind::Regex("3+".into())),
                m("d", StringMatchKind::Present),
            ],
        )],
    );
    let (out, _) = run(&view(vec![s]), Flavor::MetaProxy);
    let headers =
        &out[ROUTE][format!("{H}_20880")]["virtual_hosts"][0]["routes"][0]["match"]["headers"];
    assert_eq!(
        *headers,
        json!([
            {"name": "a", "string_match": {"exact": "1"}},
            {"name": "b", "string_match": {"prefix": "2"}},
            {"name": "c", "string_match": {"safe_regex": {"google_re2": {}, "regex": "3+"}}},
            {"name": "d", "present_match": true},
        ])
    );
}

#[test]
fn hash_policy_follows_the_destination_service() {
    // The route of `H` sends to another host whose DestinationRule hashes on `user`.
    let mut other = svc("dubbo");
    other.host = "other.ns.svc.cluster.local".into();
    other.addresses.clear();
    other.traffic_policy = Some(TrafficPolicy {
        load_balancer: Some(LoadBalancer::ConsistentHash {
            key: "user".into(),
            algorithm: HashAlgorithm::Maglev { table_size: 0 },
        }),
        ..Default::default()
    });
    let mut r = route("r", vec![]);
    r.destinations = vec![dest(&other.host, None, None)];
    let s = with_routes(svc("dubbo"), vec![r]);
    let (out, _) = run(&view(vec![other, s]), Flavor::MetaProxy);
    let action = &out[ROUTE][format!("{H}_20880")]["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(
        action["hash_policy"],
        json!([{"header": {"header_name": "user"}}])
    );
    // A zero table size is left to Envoy's default.
    let c = &out[CLUSTER]["outbound|20880||other.ns.svc.cluster.local"];
    assert_eq!(c["lb_policy"], "MAGLEV");
    assert_eq!(c["maglev_lb_config"], json!({}));
}

#[test]
fn empty_router_means_default_route() {
    let s = with_routes(svc("dubbo"), vec![]);
    let (out, _) = run(&view(vec![s]), Flavor::MetaProxy);
    let routes = &out[ROUTE][format!("{H}_20880")]["virtual_hosts"][0]["routes"];
    assert_eq!(
        *routes,
        json!([{"name": "default", "match": {"prefix": "/"},
                "route": {"cluster": format!("outbound|20880||{H}")}}])
    );
}

#[test]
fn dubbo_route_configs_keep_first_match_order() {
    let iface = |v: &str| m("interface", StringMatchKind::Exact(v.into()));
    let s = with_routes(
        svc("dubbo"),
        vec![
            route(
                "a1",
                vec![
                    iface("A"),
                    m("method", StringMatchKind::Prefix("get".into())),
                ],
            ),
            route("any", vec![m("x", StringMatchKind::Present)]),
            route(
                "a2",
                vec![
                    iface("A"),
                    m("version", StringMatchKind::Exact("1.0".into())),
                ],
            ),
            route(
                "a3",
                vec![
                    iface("A"),
                    m("version", StringMatchKind::Exact("1.0".into())),
                ],
            ),
            route("a4", vec![iface("A")]),
        ],
    );
    let (out, w) = run(&view(vec![s]), Flavor::Envoy);
    assert!(w.is_empty(), "{w:?}");
    let configs = &typed_config(&out, "240.240.0.1_20880")["multiple_route_config"]["route_config"];
    let summary: Vec<(String, String, usize)> = configs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["version"].as_str().unwrap_or_default().to_owned(),
                        c["routes"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let t = format!("{H}_20880");
    assert_eq!(
        summary,
        vec![
            (format!("{t}/A"), String::new(), 1),
            (format!("{t}/*"), String::new(), 1),
            (format!("{t}/A/2"), "1.0".to_owned(), 2),
            (format!("{t}/A/3"), String::new(), 1),
        ]
    );
    assert_eq!(
        configs[0]["routes"][0]["match"]["method"]["name"],
        json!({"prefix": "get"})
    );
    assert_eq!(
        configs[1]["routes"][0]["match"]["headers"],
        json!([{"name": "x", "present_match": true}])
    );
}

#[test]
fn warning_texts() {
    let mut none = svc("dubbo");
    none.host = "none.x".into();
    none.resolution = Resolution::None;
    none.subsets = vec![SubsetView {
        name: "v1".into(),
        labels: Default::default(),
        traffic_policy: None,
    }];
    let mut redis = svc("dubbo");
    redis.host = "redis.x".into();
    redis.protocol = Protocol::Redis;
    redis.port_name = "tcp-redis".into();
    let mut brpc = svc("brpc");
    brpc.host = "brpc.x".into();
    let mut pooled = svc("dubbo");
    pooled.traffic_policy = Some(TrafficPolicy {
        locality: None,
        load_balancer: Some(LoadBalancer::Simple(SimpleLb::Passthrough)),
        connection_pool: Some(ConnectionPool {
            max_requests_per_connection: Some(1),
            idle_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        }),
        outlier_detection: None,
    });
    let mut rr = route(
        "",
        vec![m("interface", StringMatchKind::Regex("a.*".into()))],
    );
    rr.request_mutation = vec![("k".into(), "v".into())];
    let mut pooled = with_routes(pooled, vec![rr]);
    if let Some(router) = &mut pooled.router {
        router.local_rate_limit = Some(LocalRateLimit {
            token_bucket: None,
            conditions: Vec::new(),
        });
    }
    let mut native = svc("dubbo");
    native.host = "native.x".into();
    native.protocol = Protocol::Dubbo;
    native.port_name = "tcp-dubbo".into();
    let mut thrift = with_routes(
        svc("thrift"),
        vec![route("s", vec![m("service", StringMatchKind::Present)])],
    );
    thrift.host = "thrift.x".into();
    let mut v = view(vec![brpc, native, none, redis, pooled, thrift]);
    v.mesh.access_log_file = Some("/dev/stdout".into());

    let c = |h: &str| format!("outbound|20880||{h}");
    let common = |mut w: Vec<String>| {
        let mut all = vec![
            "mesh accessLogFile \"/dev/stdout\": access logs are not configured by translation \
             yet; ignored"
                .to_owned(),
        ];
        all.append(&mut w);
        all
    };
    let none_w = String::from(
        "service none.x:20880 (tcp-metaprotocol-dubbo): resolution NONE needs an \
         original-destination cluster, which is not supported yet; clusters not generated: \
         outbound|20880||none.x, outbound|20880|v1|none.x",
    );
    let redis_w = "service redis.x:20880 (tcp-redis): protocol redis is not translated yet; \
                   service skipped"
        .to_owned();
    let pool_w = vec![format!(
        "{PREFIX}: cluster {}: trafficPolicy.loadBalancer.simple PASSTHROUGH is not \
             supported; ROUND_ROBIN used",
        c(H)
    )];
    let envoy_pool_w = format!(
        "{PREFIX}: cluster {}: connectionPool.http.maxRequestsPerConnection has no equivalent in \
         Envoy's TCP connection pool (dubbo_proxy/thrift_proxy); not applied",
        c(H)
    );

    let (_, w) = run(&v, Flavor::MetaProxy);
    let mut expected = vec![
        "service native.x:20880 (tcp-dubbo): native dubbo ports are translated for stock Envoy \
         only; no meta-proxy listener"
            .to_owned(),
        none_w.clone(),
        redis_w.clone(),
    ];
    expected.extend(pool_w.clone());
    assert_eq!(w, common(expected));

    let (_, w) = run(&v, Flavor::Envoy);
    let mut expected = vec![
        "service brpc.x:20880 (tcp-metaprotocol-brpc): application protocol \"brpc\" has no \
         native Envoy filter; no listener for stock Envoy"
            .to_owned(),
        none_w,
        redis_w,
    ];
    expected.extend(pool_w);
    expected.push(envoy_pool_w);
    expected.extend([
        format!(
            "{PREFIX}: MetaRouter ns/mr: localRateLimit cannot be expressed by Envoy dubbo_proxy; \
             skipped"
        ),
        format!(
            "{PREFIX}: MetaRouter ns/mr route #0: requestMutation cannot be expressed by Envoy \
             dubbo_proxy; skipped"
        ),
        format!(
            "{PREFIX}: MetaRouter ns/mr route #0: match.attributes.interface: only exact matches \
             select an Envoy dubbo_proxy route configuration; route skipped"
        ),
        "service thrift.x:20880 (tcp-metaprotocol-thrift): MetaRouter ns/mr route \"s\": \
         match.attributes.service: Envoy thrift_proxy matches method and service names exactly \
         only (prefix, regex and service presence cannot be expressed); route skipped"
            .to_owned(),
    ]);
    assert_eq!(w, common(expected));
}

#[test]
fn unknown_type_renders_an_error_not_a_panic() {
    let mut set = aeraki_model::resources::ResourceSet::default();
    set.insert(
        "type.googleapis.com/no.such.Type",
        "x".into(),
        prost_types::Any {
            type_url: "type.googleapis.com/no.such.Type".into(),
            value: vec![1, 2, 3],
        },
    );
    set.insert(
        LISTENER,
        "bad".into(),
        prost_types::Any {
            type_url: LISTENER.into(),
            value: vec![0xff, 0xff],
        },
    );
    let out = to_json(&set);
    let e = out["type.googleapis.com/no.such.Type"]["x"]["@error"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(e, "message type no.such.Type is not in the descriptor pool");
    let e = out[LISTENER]["bad"]["@error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("cannot decode envoy.config.listener.v3.Listener"),
        "{e}"
    );
}

#[test]
fn outlier_detection_panic_threshold_defaults_to_istio_zero() {
    let mut s = svc("dubbo");
    s.traffic_policy = Some(TrafficPolicy {
        locality: None,
        load_balancer: None,
        connection_pool: None,
        outlier_detection: Some(aeraki_model::OutlierDetection {
            consecutive_gateway_errors: Some(2),
            ..Default::default()
        }),
    });
    let mut with_min = s.clone();
    with_min.host = "min.x".into();
    if let Some(od) = with_min
        .traffic_policy
        .as_mut()
        .and_then(|p| p.outlier_detection.as_mut())
    {
        od.min_health_percent = Some(30);
    }
    let (out, _) = run(&view(vec![s, with_min]), Flavor::MetaProxy);
    let thresholds: Vec<(String, Value)> = out[CLUSTER]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, c)| {
            // proto3 JSON omits a zero `value`: a present, empty Percent is 0 %.
            let p = &c["common_lb_config"]["healthy_panic_threshold"];
            let v = if p.is_object() {
                p["value"].as_f64().unwrap_or(0.0)
            } else {
                -1.0
            };
            (name.clone(), json!(v))
        })
        .collect();
    assert_eq!(thresholds.len(), 2, "{thresholds:?}");
    for (name, v) in thresholds {
        let want = if name.ends_with("|min.x") { 30.0 } else { 0.0 };
        assert_eq!(v, json!(want), "{name}");
    }
}

#[test]
fn locality_failover_marks_meta_proxy_clusters_and_warns_for_envoy() {
    let mut s = svc("dubbo");
    s.traffic_policy = Some(TrafficPolicy {
        locality: Some(LocalityLb {
            failover: vec![("r1".into(), "r3".into())],
        }),
        load_balancer: None,
        connection_pool: None,
        outlier_detection: Some(aeraki_model::OutlierDetection {
            consecutive_gateway_errors: Some(1),
            ..Default::default()
        }),
    });
    let (out, warnings) = run(&view(vec![s.clone()]), Flavor::MetaProxy);
    assert_eq!(warnings, Vec::<String>::new());
    let c = &out[CLUSTER][format!("outbound|20880||{H}")];
    assert_eq!(c["common_lb_config"]["zone_aware_lb_config"], json!({}));
    assert_eq!(
        c["metadata"]["filter_metadata"]["aeraki.locality"],
        json!({"failover": [{"from": "r1", "to": "r3"}]})
    );
    let (out, warnings) = run(&view(vec![s]), Flavor::Envoy);
    let c = &out[CLUSTER][format!("outbound|20880||{H}")];
    assert!(c["common_lb_config"].get("zone_aware_lb_config").is_none());
    assert!(c.get("metadata").is_none());
    assert_eq!(
        warnings,
        [format!(
            "{PREFIX}: cluster outbound|20880||{H}: loadBalancer.localityLbSetting: locality \
             failover needs per-proxy priorities; not expressed for Envoy"
        )]
    );
}
