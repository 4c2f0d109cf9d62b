//! Hand-built mesh views shared by the integration tests (the YAML side is another crate).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use aeraki_model::*;

pub const DUBBO_HOST: &str = "org.apache.dubbo.samples.basic.api.demoservice";
pub const THRIFT_HOST: &str = "thrift-sample-server.meta-thrift.svc.cluster.local";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn endpoint(address: &str, port: u16, version: &str, locality: &str) -> EndpointView {
    EndpointView {
        address: address.into(),
        port,
        labels: labels(&[("version", version)]),
        weight: 1,
        locality: locality.into(),
    }
}

pub fn subset(name: &str, policy: Option<TrafficPolicy>) -> SubsetView {
    SubsetView {
        name: name.into(),
        labels: labels(&[("version", name)]),
        traffic_policy: policy,
    }
}

pub fn exact(attribute: &str, v: &str) -> AttributeMatch {
    AttributeMatch {
        attribute: attribute.into(),
        kind: StringMatchKind::Exact(v.into()),
    }
}

pub fn matching(attribute: &str, kind: StringMatchKind) -> AttributeMatch {
    AttributeMatch {
        attribute: attribute.into(),
        kind,
    }
}

pub fn dest(host: &str, subset: Option<&str>, weight: u32) -> DestinationView {
    DestinationView {
        host: host.into(),
        subset: subset.map(Into::into),
        port: None,
        weight,
    }
}

pub fn route(
    name: &str,
    matches: Vec<AttributeMatch>,
    destinations: Vec<DestinationView>,
) -> RouteView {
    RouteView {
        name: name.into(),
        matches,
        destinations,
        mirror: None,
        request_mutation: Vec::new(),
        response_mutation: Vec::new(),
        timeout: None,
        retries: None,
        fault: None,
    }
}

pub fn router(routes: Vec<RouteView>) -> RouterView {
    RouterView {
        source: "meta-dubbo/test-metaprotocol-route".into(),
        routes,
        local_rate_limit: None,
        global_rate_limit: None,
    }
}

pub fn meta(app: &str) -> Protocol {
    Protocol::MetaProtocol {
        application: app.into(),
        codec: format!("aeraki.meta_protocol.codec.{app}"),
    }
}

/// A static MetaProtocol service with endpoints labelled v1 and v2 and subsets v1, v2.
pub fn service(host: &str, port: u16, app: &str, address: &str) -> ServiceView {
    ServiceView {
        host: host.into(),
        namespace: "meta".into(),
        source: format!("meta/{host}"),
        port,
        port_name: format!("tcp-metaprotocol-{app}"),
        protocol: meta(app),
        addresses: vec![address.into()],
        resolution: Resolution::Static,
        endpoints: vec![
            endpoint("10.0.0.1", port, "v1", "region1/zone1/sub1"),
            endpoint("10.0.0.2", port, "v2", "region1/zone2"),
        ],
        traffic_policy: None,
        subsets: vec![subset("v1", None), subset("v2", None)],
        router: None,
    }
}

pub fn view(services: Vec<ServiceView>) -> MeshView {
    MeshView {
        services,
        mesh: MeshSettings::default(),
    }
}

/// Dubbo with a MetaRouter: v1/v2 weights 20/80, request and response mutation, 50 % mirror
/// to v1; then a catch-all to v1.
pub fn dubbo_weighted() -> MeshView {
    let mut svc = service(DUBBO_HOST, 20880, "dubbo", "240.240.0.1");
    let mut split = route(
        "v1-v2",
        vec![
            exact(
                "interface",
                "org.apache.dubbo.samples.basic.api.DemoService",
            ),
            exact("method", "sayHello"),
        ],
        vec![
            dest(DUBBO_HOST, Some("v1"), 20),
            dest(DUBBO_HOST, Some("v2"), 80),
        ],
    );
    split.request_mutation = vec![("foo".into(), "bar".into())];
    split.response_mutation = vec![("served-by".into(), "aeraki".into())];
    split.mirror = Some(MirrorView {
        destination: dest(DUBBO_HOST, Some("v1"), 100),
        percentage: 50.5,
    });
    let rest = route("", vec![], vec![dest(DUBBO_HOST, Some("v1"), 100)]);
    svc.router = Some(router(vec![split, rest]));
    view(vec![svc])
}

/// Thrift with attribute exact / prefix / regex / present matches.
pub fn thrift_attributes() -> MeshView {
    let mut svc = service(THRIFT_HOST, 9090, "thrift", "240.240.0.2");
    svc.router = Some(router(vec![
        route(
            "exact",
            vec![exact("method", "sayHello")],
            vec![dest(THRIFT_HOST, Some("v1"), 100)],
        ),
        route(
            "prefix",
            vec![matching("method", StringMatchKind::Prefix("say".into()))],
            vec![dest(THRIFT_HOST, Some("v2"), 100)],
        ),
        route(
            "regex",
            vec![
                matching("x-trace", StringMatchKind::Present),
                matching("x-user", StringMatchKind::Regex("^a.*$".into())),
            ],
            vec![dest(THRIFT_HOST, None, 100)],
        ),
        route(
            "service",
            vec![exact("method", "ping"), exact("service", "Hello")],
            vec![dest(THRIFT_HOST, Some("v1"), 100)],
        ),
    ]));
    view(vec![svc])
}

/// Dubbo without a MetaRouter: the default route.
pub fn default_route() -> MeshView {
    view(vec![service(DUBBO_HOST, 20880, "dubbo", "240.240.0.1")])
}

/// Consistent hash (ring hash on `method`) on subset v1 only; v2 has least-request; the
/// top level has a connection pool and outlier detection.
pub fn consistent_hash_subset() -> MeshView {
    let mut svc = service(DUBBO_HOST, 20880, "dubbo", "240.240.0.1");
    let top = TrafficPolicy {
        locality: None,
        load_balancer: Some(LoadBalancer::Simple(SimpleLb::Random)),
        connection_pool: Some(ConnectionPool {
            max_connections: Some(100),
            connect_timeout: Some(Duration::from_millis(2500)),
            max_pending_requests: Some(10),
            max_requests: Some(1000),
            max_requests_per_connection: Some(100),
            max_retries: Some(3),
            idle_timeout: Some(Duration::from_secs(300)),
        }),
        outlier_detection: Some(OutlierDetection {
            consecutive_errors: Some(5),
            consecutive_gateway_errors: Some(3),
            consecutive_local_origin_failures: Some(2),
            interval: Some(Duration::from_secs(10)),
            base_ejection_time: Some(Duration::from_secs(30)),
            max_ejection_percent: Some(50),
            min_health_percent: Some(20),
        }),
    };
    let mut hashed = top.clone();
    hashed.load_balancer = Some(LoadBalancer::ConsistentHash {
        key: "method".into(),
        algorithm: HashAlgorithm::RingHash {
            minimum_ring_size: 1024,
        },
    });
    let mut least = top.clone();
    least.load_balancer = Some(LoadBalancer::Simple(SimpleLb::LeastRequest));
    svc.traffic_policy = Some(top);
    svc.subsets = vec![subset("v1", Some(hashed)), subset("v2", Some(least))];
    svc.router = Some(router(vec![
        route(
            "hashed",
            vec![exact("method", "sayHello")],
            vec![dest(DUBBO_HOST, Some("v1"), 100)],
        ),
        route("plain", vec![], vec![dest(DUBBO_HOST, Some("v2"), 100)]),
    ]));
    view(vec![svc])
}

/// DNS resolution (thrift), maglev at the top level, no router.
pub fn dns() -> MeshView {
    let mut svc = service(THRIFT_HOST, 9090, "thrift", "240.240.0.3");
    svc.resolution = Resolution::Dns;
    svc.endpoints = vec![
        endpoint("thrift-a.example.com", 9091, "v1", ""),
        endpoint("thrift-b.example.com", 9091, "v2", ""),
    ];
    svc.traffic_policy = Some(TrafficPolicy {
        load_balancer: Some(LoadBalancer::ConsistentHash {
            key: "x-user".into(),
            algorithm: HashAlgorithm::Maglev { table_size: 65537 },
        }),
        ..Default::default()
    });
    view(vec![svc])
}

/// One service with two VIPs.
pub fn two_addresses() -> MeshView {
    let mut svc = service(DUBBO_HOST, 20880, "dubbo", "240.240.0.1");
    svc.addresses.push("240.240.0.9".into());
    view(vec![svc])
}

pub const RLS_HOST: &str = "rls.meta.svc.cluster.local";

/// Route policies and rate limits: a Dubbo router with a retried route (timeout 2s, 2 retries,
/// per-try 500ms, codec status token) and a fault route (timeout disabled, 50 % 1s delay, 10 %
/// OVER_LIMIT abort), a local rate limit (5/60s, method=sayHello 2/60s) and a global one on the
/// gRPC rate-limit service `outbound|8081||rls…` (in the view: clusters only); a Thrift router
/// with only a global rate limit on a cluster the mesh does not declare (a warning).
pub fn traffic_policies() -> MeshView {
    let mut dubbo = service(DUBBO_HOST, 20880, "dubbo", "240.240.0.1");
    let mut retried = route(
        "retried",
        vec![exact("method", "sayHello")],
        vec![dest(DUBBO_HOST, Some("v1"), 100)],
    );
    retried.timeout = Some(Duration::from_secs(2));
    retried.retries = Some(RetryPolicy {
        attempts: 2,
        per_try_timeout: Some(Duration::from_millis(500)),
        retry_on: "connect-failure,refused-stream,reset,gateway-error,status:SERVER_TIMEOUT".into(),
    });
    let mut faulty = route(
        "faulty",
        Vec::new(),
        vec![dest(DUBBO_HOST, Some("v2"), 100)],
    );
    faulty.timeout = Some(Duration::ZERO);
    faulty.fault = Some(Fault {
        delay: Some(FaultDelay {
            fixed_delay: Duration::from_secs(1),
            percentage: 50.0,
        }),
        abort: Some(FaultAbort {
            percentage: 10.0,
            error_code: AbortCode::OverLimit,
        }),
    });
    let bucket = |max_tokens, secs| TokenBucket {
        max_tokens,
        tokens_per_fill: max_tokens,
        fill_interval: Duration::from_secs(secs),
    };
    let mut r = router(vec![retried, faulty]);
    r.local_rate_limit = Some(LocalRateLimit {
        token_bucket: Some(bucket(5, 60)),
        conditions: vec![RateLimitCondition {
            matches: vec![exact("method", "sayHello")],
            token_bucket: bucket(2, 60),
        }],
    });
    r.global_rate_limit = Some(GlobalRateLimit {
        matches: vec![exact("method", "sayHello")],
        domain: "production".into(),
        request_timeout: Some(Duration::from_millis(100)),
        deny_on_fail: true,
        rate_limit_service: outbound_cluster_name(8081, None, RLS_HOST),
        descriptors: vec![("method".into(), "method".into())],
    });
    dubbo.router = Some(r);

    let mut rls = service(RLS_HOST, 8081, "dubbo", "240.240.0.2");
    rls.port_name = "grpc-rls".into();
    rls.protocol = Protocol::Grpc;
    rls.addresses = Vec::new();
    rls.subsets = Vec::new();
    rls.endpoints = vec![endpoint("10.0.0.9", 8081, "v1", "")];

    let mut thrift = service(THRIFT_HOST, 9090, "thrift", "240.240.0.3");
    let mut only_global = router(Vec::new());
    only_global.global_rate_limit = Some(GlobalRateLimit {
        matches: Vec::new(),
        domain: "thrift".into(),
        request_timeout: None,
        deny_on_fail: false,
        rate_limit_service: "rate_limit_cluster".into(),
        descriptors: vec![("method".into(), "method".into())],
    });
    thrift.router = Some(only_global);
    view(vec![dubbo, rls, thrift])
}

/// Every scenario above in one mesh (hosts made distinct), for the Envoy validation test.
pub fn everything() -> MeshView {
    let mut services = Vec::new();
    let scenarios: [(&str, MeshView); 7] = [
        ("weighted", dubbo_weighted()),
        ("attrs", thrift_attributes()),
        ("default", default_route()),
        ("hash", consistent_hash_subset()),
        ("dns", dns()),
        ("two", two_addresses()),
        ("policy", traffic_policies()),
    ];
    for (i, (tag, v)) in scenarios.into_iter().enumerate() {
        for mut s in v.services {
            let old = s.host.clone();
            s.host = format!("{tag}.{old}");
            let port = s.port + i as u16;
            s.port = port;
            for e in &mut s.endpoints {
                e.port = port;
            }
            s.addresses = s
                .addresses
                .iter()
                .enumerate()
                .map(|(j, _)| format!("240.240.{i}.{}", j + 1))
                .collect();
            if let Some(r) = &mut s.router {
                if let Some(g) = &mut r.global_rate_limit
                    && let Some((p, _, h)) = parse_outbound_cluster_name(&g.rate_limit_service)
                {
                    g.rate_limit_service =
                        outbound_cluster_name(p + i as u16, None, &format!("{tag}.{h}"));
                }
                for route in &mut r.routes {
                    for d in route
                        .destinations
                        .iter_mut()
                        .chain(route.mirror.as_mut().map(|m| &mut m.destination))
                    {
                        d.host = format!("{tag}.{}", d.host);
                    }
                }
            }
            services.push(s);
        }
    }
    services.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    view(services)
}
