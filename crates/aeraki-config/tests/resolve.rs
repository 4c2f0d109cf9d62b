//! Resolution into the mesh view: endpoints, ports, DestinationRule merges, WorkloadEntry
//! selectors, Kubernetes Services, MetaRouter attachment, addresses.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::collections::BTreeMap;
use std::time::Duration;

use aeraki_config::load_str;
use aeraki_model::{
    ConnectionPool, HashAlgorithm, LoadBalancer, OutlierDetection, Protocol, Resolution,
    ServiceView, SimpleLb, StringMatchKind, TrafficPolicy,
};

fn view(yaml: &str) -> Vec<ServiceView> {
    match load_str("t.yaml", yaml) {
        Ok(l) => l.view.services,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn eps(s: &ServiceView) -> Vec<(String, u16)> {
    s.endpoints
        .iter()
        .map(|e| (e.address.clone(), e.port))
        .collect()
}

#[test]
fn endpoint_ports_overrides_and_target_port() {
    let s = view(
        r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: se, namespace: ns}
spec:
  hosts: [a.demo, b.demo]
  addresses: [127.0.10.1]
  ports:
  - {number: 20880, name: tcp-metaprotocol-dubbo}
  - {number: 9090, name: tcp-metaprotocol-thrift-x, targetPort: 9999}
  - {number: 8080, name: http-web}
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, ports: {tcp-metaprotocol-dubbo: "20881"}, labels: {version: v1}, weight: 3, locality: r/z}
  - {address: 10.0.0.2}
"#,
    );
    let keys: Vec<(&str, u16, &[String])> = s
        .iter()
        .map(|s| (s.host.as_str(), s.port, s.addresses.as_slice()))
        .collect();
    let vip = ["127.0.10.1".to_string()];
    assert_eq!(
        keys,
        [
            ("a.demo", 9090, &vip[..]),
            ("a.demo", 20880, &vip[..]),
            ("b.demo", 9090, &[][..]),
            ("b.demo", 20880, &[][..]),
        ]
    );
    assert_eq!(
        eps(&s[1]),
        [("10.0.0.1".into(), 20881), ("10.0.0.2".into(), 20880)]
    );
    assert_eq!(
        eps(&s[0]),
        [("10.0.0.1".into(), 9999), ("10.0.0.2".into(), 9999)]
    );
    assert_eq!(s[1].endpoints[0].weight, 3);
    assert_eq!(s[1].endpoints[0].locality, "r/z");
    assert_eq!(s[1].endpoints[1].weight, 1);
    assert_eq!(s[1].endpoints[0].labels, labels(&[("version", "v1")]));
    assert_eq!(s[1].source, "ns/se");
    assert_eq!(s[1].port_name, "tcp-metaprotocol-dubbo");
    assert_eq!(
        s[0].protocol,
        Protocol::MetaProtocol {
            application: "thrift".into(),
            codec: "aeraki.meta_protocol.codec.thrift".into()
        }
    );
}

#[test]
fn dns_without_endpoints_uses_the_host_and_no_address_means_no_listener() {
    let s = view(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [thrift.example.com]
  ports: [{number: 9090, name: tcp-thrift}]
  resolution: DNS
"#,
    );
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].protocol, Protocol::Thrift);
    assert_eq!(s[0].resolution, Resolution::Dns);
    assert!(s[0].addresses.is_empty());
    assert_eq!(eps(&s[0]), [("thrift.example.com".into(), 9090)]);
    assert_eq!(s[0].namespace, "default");
}

const DUBBO_SE: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dubbo, namespace: meta}
spec:
  hosts: [org.apache.dubbo.demo]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  workloadSelector: {labels: {app: provider}}
"#;

fn we(name: &str, ns: &str, ip: &str, version: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{address: {ip}, labels: {{app: provider, version: {version}}}, ports: {{tcp-metaprotocol-dubbo: 20001}}}}\n"
    )
}

#[test]
fn workload_selector_resolves_through_workload_entries_of_the_namespace() {
    let yaml = format!(
        "{DUBBO_SE}{}{}{}",
        we("b", "meta", "10.0.0.2", "v2"),
        we("a", "meta", "10.0.0.1", "v1"),
        we("c", "other", "10.0.0.3", "v1"),
    );
    let s = view(&yaml);
    assert_eq!(
        eps(&s[0]),
        [("10.0.0.1".into(), 20001), ("10.0.0.2".into(), 20001)]
    );
    assert_eq!(
        s[0].endpoints[1].labels,
        labels(&[("app", "provider"), ("version", "v2")])
    );
}

#[test]
fn destination_rule_policies_merge_by_port_and_subset() {
    let dr = r#"
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr, namespace: meta}
spec:
  host: org.apache.dubbo.demo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: "10", connectTimeout: 500ms}}
    portLevelSettings:
    - port: {number: 20880}
      outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 1m}
    - port: {number: 1234}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: method, maglev: {tableSize: 101}}}
  - name: v2
    labels: {version: v2}
"#;
    let yaml = format!(
        "{DUBBO_SE}{}{}{dr}",
        we("a", "meta", "10.0.0.1", "v1"),
        we("b", "meta", "10.0.0.2", "v2")
    );
    let s = view(&yaml);
    let pool = ConnectionPool {
        max_connections: Some(10),
        connect_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let outlier = OutlierDetection {
        consecutive_errors: Some(5),
        interval: Some(Duration::from_secs(10)),
        base_ejection_time: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let top = TrafficPolicy {
        locality: None,
        load_balancer: Some(LoadBalancer::Simple(SimpleLb::RoundRobin)),
        connection_pool: Some(pool.clone()),
        outlier_detection: Some(outlier.clone()),
    };
    assert_eq!(s[0].traffic_policy, Some(top.clone()));
    assert_eq!(s[0].subsets.len(), 2);
    assert_eq!(s[0].subsets[0].name, "v1");
    assert_eq!(s[0].subsets[0].labels, labels(&[("version", "v1")]));
    assert_eq!(
        s[0].subsets[0].traffic_policy,
        Some(TrafficPolicy {
            locality: None,
            load_balancer: Some(LoadBalancer::ConsistentHash {
                key: "method".into(),
                algorithm: HashAlgorithm::Maglev { table_size: 101 },
            }),
            connection_pool: Some(pool),
            outlier_detection: Some(outlier),
        })
    );
    assert_eq!(s[0].subsets[1].traffic_policy, Some(top));
}

#[test]
fn connection_lifetime_settings_http_idle_timeout_wins() {
    let dr = |pool: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n\
             metadata: {{name: dr, namespace: meta}}\nspec:\n  host: org.apache.dubbo.demo\n  \
             trafficPolicy:\n    connectionPool: {pool}\n"
        )
    };
    let pool_of = |pool: &str| {
        let yaml = format!(
            "{DUBBO_SE}{}{}",
            we("a", "meta", "10.0.0.1", "v1"),
            dr(pool)
        );
        view(&yaml)[0]
            .traffic_policy
            .as_ref()
            .and_then(|p| p.connection_pool.clone())
            .unwrap()
    };
    let both =
        pool_of("{tcp: {idleTimeout: 30s}, http: {idleTimeout: 5s, maxRequestsPerConnection: 2}}");
    assert_eq!(both.idle_timeout, Some(Duration::from_secs(5)));
    assert_eq!(both.max_requests_per_connection, Some(2));
    let tcp = pool_of("{tcp: {idleTimeout: 30s}, http: {maxRequestsPerConnection: 1}}");
    assert_eq!(tcp.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(tcp.max_requests_per_connection, Some(1));
}

#[test]
fn short_and_wildcard_destination_rule_hosts() {
    let svc = r#"
apiVersion: v1
kind: Service
metadata: {name: thrift-sample-server, namespace: meta-thrift}
spec:
  clusterIP: 10.96.0.10
  selector: {app: thrift-sample-server}
  ports: [{name: tcp-metaprotocol-thrift-9090, port: 9090, targetPort: 9091}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: wild, namespace: meta-thrift}
spec:
  host: "*.svc.cluster.local"
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
"#;
    let s = view(svc);
    assert_eq!(
        s[0].host,
        "thrift-sample-server.meta-thrift.svc.cluster.local"
    );
    assert_eq!(
        s[0].traffic_policy.as_ref().unwrap().load_balancer,
        Some(LoadBalancer::Simple(SimpleLb::Random))
    );
    let short = format!(
        "{svc}---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {{name: short, namespace: meta-thrift}}\nspec: {{host: thrift-sample-server, trafficPolicy: {{loadBalancer: {{simple: LEAST_CONN}}}}}}\n"
    );
    let s = view(&short);
    assert_eq!(
        s[0].traffic_policy.as_ref().unwrap().load_balancer,
        Some(LoadBalancer::Simple(SimpleLb::LeastRequest)),
        "the exact (normalised) host wins over the wildcard"
    );
}

#[test]
fn kubernetes_service_with_endpoint_slices() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: thrift, namespace: meta}
spec:
  clusterIPs: [10.96.0.10]
  selector: {app: thrift}
  ports:
  - {name: tcp-metaprotocol-thrift, port: 9090, targetPort: 9091}
  - {name: http-metrics, port: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: thrift-v1
  namespace: meta
  labels: {kubernetes.io/service-name: thrift, endpointslice.kubernetes.io/managed-by: me, version: v1}
addressType: IPv4
ports: [{name: tcp-metaprotocol-thrift, port: 9091, protocol: TCP}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {ready: true}
- addresses: [10.1.0.2]
  conditions: {ready: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: thrift-v2
  namespace: meta
  labels: {kubernetes.io/service-name: thrift, version: v2}
ports: [{name: http-metrics, port: 8080}]
endpoints:
- addresses: [10.1.0.3]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: elsewhere
  namespace: other
  labels: {kubernetes.io/service-name: thrift}
ports: [{name: tcp-metaprotocol-thrift, port: 9091}]
endpoints:
- addresses: [10.9.9.9]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: meta}
spec: {address: 192.168.1.5, labels: {app: thrift, version: vm}}
"#;
    let s = view(yaml);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].host, "thrift.meta.svc.cluster.local");
    assert_eq!(s[0].addresses, ["10.96.0.10"]);
    assert_eq!(s[0].resolution, Resolution::Static);
    assert_eq!(
        eps(&s[0]),
        [("10.1.0.1".into(), 9091), ("192.168.1.5".into(), 9091)]
    );
    assert_eq!(s[0].endpoints[0].labels, labels(&[("version", "v1")]));
    assert_eq!(s[0].source, "meta/thrift");
}

#[test]
fn headless_and_external_name_services() {
    let s = view(
        "apiVersion: v1\nkind: Service\nmetadata: {name: r, namespace: x}\nspec:\n  clusterIP: None\n  ports: [{name: tcp-redis, port: 6379}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: x}\nspec:\n  type: ExternalName\n  externalName: redis.example.com\n  ports: [{name: tcp-redis, port: 6379}]\n",
    );
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].host, "ext.x.svc.cluster.local");
    assert_eq!(s[0].resolution, Resolution::Dns);
    assert_eq!(eps(&s[0]), [("redis.example.com".into(), 6379)]);
    assert_eq!(s[1].protocol, Protocol::Redis);
    assert!(s[1].addresses.is_empty());
}

fn metarouter(name: &str, ns: &str, subset: &str) -> String {
    format!(
        "---\napiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [org.apache.dubbo.demo]\n  routes:\n  - name: r\n    match: {{attributes: {{method: {{exact: sayHello}}, interface: {{regex: '*'}}, foo: {{exact: ''}}, bar: {{prefix: say}}, baz: {{regex: '^s.*o$'}}, qux: {{}}}}}}\n    route: [{{destination: {{host: org.apache.dubbo.demo, subset: {subset}, port: {{number: 20880}}}}, weight: 100}}]\n    mirror: {{host: org.apache.dubbo.demo, subset: v2}}\n    mirrorPercentage: {{value: 50}}\n    requestMutation: [{{key: foo, value: bar}}]\n"
    )
}

#[test]
fn metarouter_attaches_by_exact_host_first_by_namespace_and_name() {
    let dr = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: meta}\nspec:\n  host: org.apache.dubbo.demo\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n";
    let yaml = format!(
        "{DUBBO_SE}{dr}{}{}{}",
        metarouter("z", "a", "v2"),
        metarouter("b", "a", "v1"),
        metarouter("a", "z", "v2")
    );
    let loaded = load_str("t.yaml", &yaml).unwrap();
    let s = &loaded.view.services;
    let r = s[0].router.as_ref().unwrap();
    assert_eq!(r.source, "a/b");
    let route = &r.routes[0];
    let names: Vec<&str> = route.matches.iter().map(|m| m.attribute.as_str()).collect();
    assert_eq!(names, ["bar", "baz", "foo", "interface", "method", "qux"]);
    let kinds: Vec<&StringMatchKind> = route.matches.iter().map(|m| &m.kind).collect();
    assert_eq!(
        kinds,
        [
            &StringMatchKind::Prefix("say".into()),
            &StringMatchKind::Regex("^s.*o$".into()),
            &StringMatchKind::Present,
            &StringMatchKind::Present,
            &StringMatchKind::Exact("sayHello".into()),
            &StringMatchKind::Present,
        ]
    );
    assert_eq!(route.destinations[0].subset.as_deref(), Some("v1"));
    assert_eq!(route.destinations[0].port, Some(20880));
    assert_eq!(route.destinations[0].weight, 100);
    let m = route.mirror.as_ref().unwrap();
    assert_eq!(
        (m.destination.subset.as_deref(), m.percentage),
        (Some("v2"), 50.0)
    );
    assert_eq!(
        route.request_mutation,
        [("foo".to_string(), "bar".to_string())]
    );
    let ignored: Vec<&String> = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("ignored: "))
        .collect();
    assert_eq!(
        ignored,
        [
            "t.yaml: document 3 (MetaRouter a/z): spec.hosts[0]: ignored: MetaRouter a/b already routes org.apache.dubbo.demo (the first by namespace/name wins)",
            "t.yaml: document 5 (MetaRouter z/a): spec.hosts[0]: ignored: MetaRouter a/b already routes org.apache.dubbo.demo (the first by namespace/name wins)",
        ]
    );
}

#[test]
fn routes_to_unknown_subsets_warn() {
    let yaml = format!("{DUBBO_SE}{}", metarouter("r", "meta", "v9"));
    let w = load_str("t.yaml", &yaml).unwrap().warnings;
    assert!(w.contains(&"t.yaml: document 2 (MetaRouter meta/r): spec.routes[0].route[0].destination: host org.apache.dubbo.demo has no subset \"v9\" (no DestinationRule defines it)".to_string()), "{w:#?}");
}

#[test]
fn conflicts_between_objects_are_refused() {
    let other = DUBBO_SE.replace("name: dubbo,", "name: dubbo2,");
    let e = load_str("t.yaml", &format!("{DUBBO_SE}---\n{other}"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml: document 2 (ServiceEntry meta/dubbo2): spec.ports[0]: host org.apache.dubbo.demo port 20880 is already declared by ServiceEntry meta/dubbo"
    );
    let vip = DUBBO_SE
        .replace("name: dubbo,", "name: dubbo2,")
        .replace("org.apache.dubbo.demo", "org.apache.dubbo.other");
    let e = load_str("t.yaml", &format!("{DUBBO_SE}---\n{vip}"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.yaml: document 2 (ServiceEntry meta/dubbo2): spec.ports[0]: address 240.240.0.1 port 20880 is already the listener of org.apache.dubbo.demo (meta/dubbo)"
    );
}

/// A gRPC (or TCP) service named by `globalRateLimit.rateLimitService` enters the view (clusters
/// only: no address, no router); plain ports nobody names stay out.
#[test]
fn rate_limit_services_enter_the_view() {
    let yaml = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dubbo, namespace: meta}
spec:
  hosts: [org.apache.dubbo.demo]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: rls, namespace: meta}
spec:
  hosts: [rls.meta.svc.cluster.local]
  addresses: [240.240.0.2]
  ports:
  - {number: 8081, name: grpc-rls, protocol: GRPC}
  - {number: 6070, name: tcp-debug, protocol: TCP}
  - {number: 8080, name: http-json, protocol: HTTP}
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: other, namespace: meta}
spec:
  hosts: [other.meta.svc.cluster.local]
  ports: [{number: 9000, name: tcp-x, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.2}]
---
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {name: r, namespace: meta}
spec:
  hosts: [org.apache.dubbo.demo]
  globalRateLimit:
    domain: d
    rateLimitService: outbound|8081||rls.meta.svc.cluster.local
    descriptors: [{property: method, descriptorKey: method}]
"#;
    let l = aeraki_config::load_str("t.yaml", yaml).unwrap();
    let hosts: Vec<(&str, u16, &aeraki_model::Protocol)> = l
        .view
        .services
        .iter()
        .map(|s| (s.host.as_str(), s.port, &s.protocol))
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(
        hosts[1],
        (
            "rls.meta.svc.cluster.local",
            8081,
            &aeraki_model::Protocol::Grpc
        )
    );
    let rls = &l.view.services[1];
    assert!(rls.addresses.is_empty() && rls.router.is_none());
    assert_eq!(rls.endpoints.len(), 1);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}
