//! Unit tests: one per rule, asserting the exact messages users see.

use std::time::Duration;

use meta_config::{Destination, DiscoveryType, FilterConfig, LbPolicy, MatchSpec, StringMatchKind};

use super::*;

const LP: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

/// A bootstrap with `proxy` spliced in as the MetaProtocolProxy body (YAML, 10-space indent)
/// and `cluster_extra` into the cluster (4-space indent).
fn doc(proxy: &str, cluster_extra: &str) -> String {
    let proxy = indent(proxy, 10);
    let cluster_extra = indent(cluster_extra, 4);
    format!(
        r"
admin:
  access_log_path: /dev/null
  address:
    socket_address: {{address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: l1
    address:
      socket_address: {{address: 0.0.0.0, port_value: 9090}}
    filter_chains:
    - filters:
      - name: any-name
        typed_config:
          '@type': type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy
{proxy}
  clusters:
  - name: c1
    connect_timeout: 1s
{cluster_extra}
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: 9091}}
"
    )
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

const PROXY: &str = "
stat_prefix: sp
protocol: {name: dubbo, codec: {name: aeraki.meta_protocol.codec.dubbo}}
route_config:
  name: rc
  routes:
  - name: r1
    match:
      metadata:
      - {name: method, exact_match: sayHello}
    route: {cluster: c1}
";

fn load(proxy: &str, cluster_extra: &str) -> Result<meta_config::Bootstrap, ConfigError> {
    parse_bootstrap(&doc(proxy, cluster_extra), Format::Yaml)
}

fn err(proxy: &str, cluster_extra: &str) -> String {
    match load(proxy, cluster_extra) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn with_action(extra: &str) -> String {
    PROXY.replace(
        "route: {cluster: c1}",
        &format!("route: {{cluster: c1, {extra}}}"),
    )
}

#[test]
fn minimal_loads_with_defaults() {
    let b = load(PROXY, "").unwrap();
    let admin = b.admin.unwrap();
    assert_eq!(admin.address.to_string(), "127.0.0.1:15000");
    assert_eq!(admin.access_log_path.as_deref(), Some("/dev/null"));
    let l = &b.listeners[0];
    assert_eq!(l.name, "l1");
    assert_eq!(l.address.port(), 9090);
    let p = &l.proxy;
    assert_eq!(
        (p.protocol.as_str(), p.codec.as_str()),
        ("dubbo", "aeraki.meta_protocol.codec.dubbo")
    );
    assert_eq!(p.max_message_size, 8 * 1024 * 1024);
    assert!(matches!(p.filters.as_slice(), [FilterConfig::Router]));
    assert_eq!(p.idle_timeout, None);
    let r = &p.route_config.routes[0];
    assert_eq!(r.timeout, Some(Duration::from_secs(15)));
    assert!(matches!(&r.destination, Destination::Cluster(c) if c == "c1"));
    let c = &b.clusters[0];
    assert_eq!(c.discovery, DiscoveryType::Static);
    assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(c.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.dns_refresh_rate, Duration::from_secs(5));
    assert_eq!((c.endpoints[0].port, c.endpoints[0].weight), (9091, 1));
}

#[test]
fn json_and_camel_case() {
    let text = r#"{"staticResources": {"listeners": [{"name": "l", "address": {"socketAddress":
      {"address": "::1", "portValue": 1}}, "filterChains": [{"filters": [{"name": "x",
      "typedConfig": {"@type": "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
      "statPrefix": "s", "applicationProtocol": "thrift", "codec": {"name": "aeraki.meta_protocol.codec.thrift"},
      "idleTimeout": "2.5s", "maxMessageSize": 1024,
      "routeConfig": {"routes": [{"route": {"cluster": "c", "timeout": "0s"}}]}}}]}]}]}}"#;
    let b = parse_bootstrap(text, Format::Json).unwrap();
    let p = &b.listeners[0].proxy;
    assert_eq!(p.protocol, "thrift");
    assert_eq!(p.idle_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(p.max_message_size, 1024);
    assert_eq!(p.route_config.routes[0].timeout, None);
}

#[test]
fn single_object_where_list_expected() {
    let text = doc(PROXY, "").replace("  - name: c1", "    name: c1");
    let b = parse_bootstrap(&text, Format::Yaml).unwrap();
    assert_eq!(b.clusters[0].name, "c1");
}

#[test]
fn typed_struct_is_unwrapped() {
    for ts in ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"] {
        let text = doc(&indent(PROXY, 2), "").replace(
            "'@type': type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy\n",
            &format!(
                "'@type': type.googleapis.com/{ts}\n          type_url: \
                 type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy\n          value:\n"
            ),
        );
        let b = parse_bootstrap(&text, Format::Yaml).unwrap();
        assert_eq!(b.listeners[0].proxy.stat_prefix, "sp");
    }
}

#[test]
fn unsupported_fields_name_their_path() {
    let e = err(&format!("{PROXY}tracing: {{verbose: true}}"), "");
    assert_eq!(e, format!("{LP}.tracing: not supported"));
    let e = err(&format!("{PROXY}access_log: {{name: x}}"), "");
    assert_eq!(e, format!("{LP}.access_log: not supported"));
    let e = err(PROXY, "per_connection_buffer_limit_bytes: 10");
    assert_eq!(
        e,
        "static_resources.clusters[0].per_connection_buffer_limit_bytes: not supported"
    );
    let text = doc(PROXY, "").replace(
        "static_resources:",
        "stats_flush_on_admin: true\nstatic_resources:",
    );
    let e = parse_bootstrap(&text, Format::Yaml)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "stats_flush_on_admin: not supported");
}

#[test]
fn unknown_fields_and_types() {
    let e = err(&format!("{PROXY}bogus: 1"), "");
    assert_eq!(e, format!("{LP}.bogus: unknown field"));
    let text = doc(PROXY, "").replace("MetaProtocolProxy", "Nope");
    let e = parse_bootstrap(&text, Format::Yaml)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{LP}.@type: unknown type 'type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.Nope'"
        )
    );
    let e = err(PROXY, "dns_refresh_rate: soon");
    assert!(
        e.starts_with("static_resources.clusters[0].dns_refresh_rate: "),
        "{e}"
    );
}

#[test]
fn rds_needs_ads() {
    let p = PROXY.replace(
        "route_config:\n  name: rc",
        "rds: {route_config_name: x}\nx:",
    );
    let p: String = p
        .lines()
        .take_while(|l| !l.starts_with("x:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        err(&p, ""),
        format!(
            "{LP}.rds: needs dynamic_resources.ads_config in the bootstrap (or use route_config)"
        )
    );
}

#[test]
fn filter_chain_rules() {
    let f = |list: &str| err(&format!("{PROXY}meta_protocol_filters: {list}"), "");
    assert_eq!(
        f("[{name: foo}]"),
        format!("{LP}.meta_protocol_filters[0].name: unknown filter 'foo'")
    );
    assert_eq!(
        f(
            "[{name: aeraki.meta_protocol.filters.router}, {name: aeraki.meta_protocol.filters.router}]"
        ),
        format!(
            "{LP}.meta_protocol_filters[0]: aeraki.meta_protocol.filters.router must be the last filter"
        )
    );
    assert_eq!(
        f(
            "[{name: aeraki.meta_protocol.filters.metadata_exchange}, {name: aeraki.meta_protocol.filters.router}]"
        ),
        format!(
            "{LP}.meta_protocol_filters[0]: filter 'aeraki.meta_protocol.filters.metadata_exchange' is not supported yet"
        )
    );
    let ok = load(
        &format!("{PROXY}meta_protocol_filters: [{{name: aeraki.meta_protocol.filters.router}}]"),
        "",
    );
    assert!(ok.is_ok());
}

#[test]
fn protocol_precedence_and_required() {
    let p = PROXY.replace(
        "protocol: {name: dubbo, codec: {name: aeraki.meta_protocol.codec.dubbo}}",
        "application_protocol: thrift\ncodec: {name: old}\nprotocol: {name: dubbo, multiplexing: true}",
    );
    let b = load(&p, "").unwrap();
    assert_eq!(b.listeners[0].proxy.protocol, "dubbo");
    assert_eq!(b.listeners[0].proxy.codec, "old");
    let p = PROXY.replace(
        "protocol: {name: dubbo, codec: {name: aeraki.meta_protocol.codec.dubbo}}",
        "",
    );
    assert_eq!(
        err(&p, ""),
        format!("{LP}.protocol.name: required (or the deprecated application_protocol)")
    );
    let p = PROXY.replace("stat_prefix: sp", "");
    assert_eq!(err(&p, ""), format!("{LP}.stat_prefix: required"));
}

#[test]
fn header_matchers() {
    let m = |spec: &str| {
        let p = PROXY.replace("{name: method, exact_match: sayHello}", spec);
        load(&p, "").map(|b| b.listeners[0].proxy.route_config.routes[0].matchers[0].clone())
    };
    let x = m("{name: a, safe_regex_match: {regex: 'say.*'}, invert_match: true}").unwrap();
    assert!(
        x.invert
            && matches!(&x.spec, MatchSpec::String(s) if matches!(&s.kind, StringMatchKind::Regex(_)))
    );
    let x = m("{name: a, range_match: {start: 1, end: 5}}").unwrap();
    assert!(matches!(x.spec, MatchSpec::Range { start: 1, end: 5 }));
    let x = m("{name: a, present_match: false}").unwrap();
    assert!(matches!(x.spec, MatchSpec::Present(false)));
    let x = m("{name: a}").unwrap();
    assert!(matches!(x.spec, MatchSpec::Present(true)));
    let x = m("{name: a, string_match: {prefix: Say, ignore_case: true}, treat_missing_header_as_empty: true}")
        .unwrap();
    assert!(x.treat_missing_as_empty && x.matches(Some("sayHi")));
    for (spec, hit) in [
        ("prefix_match: say", "sayX"),
        ("suffix_match: lo", "hello"),
        ("contains_match: ll", "hello"),
    ] {
        let x = m(&format!("{{name: a, {spec}}}")).unwrap();
        assert!(x.matches(Some(hit)), "{spec}");
    }
    let e = m("{name: a, safe_regex_match: {regex: '('}}")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{LP}.route_config.routes[0].match.metadata[0].safe_regex_match.regex: invalid regex '('"
        )),
        "{e}"
    );
}

#[test]
fn route_actions() {
    let b = load(&with_action("timeout: 3s, hash_policy: [a, b]"), "").unwrap();
    let r = &b.listeners[0].proxy.route_config.routes[0];
    assert_eq!(r.timeout, Some(Duration::from_secs(3)));
    assert_eq!(r.hash_policy, ["a", "b"]);
    let p = PROXY.replace(
        "route: {cluster: c1}",
        "route: {weighted_clusters: {clusters: [{name: a, weight: 1}, {name: b, weight: 3}]},
      request_mirror_policies: [{cluster: m, runtime_fraction: {default_value: {numerator: 50}}},
        {cluster: n, runtime_fraction: {default_value: {numerator: 5, denominator: TEN_THOUSAND}}}, {cluster: o}]}
    request_mutation: [{key: foo, value: bar}]
    response_mutation: {key: k, value: v}",
    );
    let b = load(&p, "").unwrap();
    let r = &b.listeners[0].proxy.route_config.routes[0];
    assert!(
        matches!(&r.destination, Destination::WeightedClusters(w) if w.len() == 2 && w[1].weight == 3)
    );
    let ppm: Vec<u32> = r.mirrors.iter().map(|m| m.fraction_per_million).collect();
    assert_eq!(ppm, [500_000, 500, 1_000_000]);
    assert_eq!(r.request_mutation, [("foo".to_owned(), "bar".to_owned())]);
    assert_eq!(r.response_mutation, [("k".to_owned(), "v".to_owned())]);
    let p = PROXY.replace(
        "route: {cluster: c1}",
        "route: {weighted_clusters: {clusters: [{name: a, weight: 0}]}}",
    );
    assert_eq!(
        err(&p, ""),
        format!(
            "{LP}.route_config.routes[0].route.weighted_clusters.clusters[0].weight: must be > 0"
        )
    );
    let p = PROXY.replace("route: {cluster: c1}", "route: {}");
    assert_eq!(
        err(&p, ""),
        format!("{LP}.route_config.routes[0].route: cluster or weighted_clusters required")
    );
}

#[test]
fn cluster_rules() {
    assert_eq!(
        err(PROXY, "lb_policy: CLUSTER_PROVIDED"),
        "static_resources.clusters[0].lb_policy: CLUSTER_PROVIDED not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)"
    );
    assert_eq!(
        err(
            PROXY,
            "lb_policy: RING_HASH\nring_hash_lb_config: {hash_function: MURMUR_HASH_2}"
        ),
        "static_resources.clusters[0].ring_hash_lb_config.hash_function: MURMUR_HASH_2 not supported (XX_HASH only)"
    );
    let b = load(
        PROXY,
        "lb_policy: MAGLEV\nmaglev_lb_config: {table_size: 251}",
    )
    .unwrap();
    assert_eq!(
        b.clusters[0].lb_policy,
        LbPolicy::Maglev { table_size: 251 }
    );
    assert_eq!(
        err(PROXY, "type: EDS"),
        "static_resources.clusters[0].type: EDS needs dynamic_resources.ads_config in the bootstrap"
    );
    let b = load(
        PROXY,
        "type: STRICT_DNS\nlb_policy: RANDOM\ndns_refresh_rate: 30s",
    )
    .unwrap();
    assert_eq!(b.clusters[0].discovery, DiscoveryType::StrictDns);
    assert_eq!(b.clusters[0].lb_policy, LbPolicy::Random);
    assert_eq!(b.clusters[0].dns_refresh_rate, Duration::from_secs(30));
    let text = doc(PROXY, "").replace(
        "address: 127.0.0.1, port_value: 9091",
        "address: backend, port_value: 9091",
    );
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.\
         socket_address.address: 'backend' is not an IP address (STATIC cluster; use STRICT_DNS for names)"
    );
    let text = doc(PROXY, "").replace("port_value: 9091", "port_value: 70000");
    assert!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string()
            .ends_with("port_value: must be <= 65535")
    );
    let text = doc(PROXY, "").replace("  clusters:\n", "  clusters:\n  - name: c1\n");
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        "static_resources.clusters[1].name: duplicate cluster name 'c1'"
    );
}

#[test]
fn listener_rules() {
    let text = doc(PROXY, "").replace(
        "    filter_chains:\n",
        "    filter_chains:\n    - filters: []\n",
    );
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        "static_resources.listeners[0].filter_chains: exactly one filter chain is supported (got 2)"
    );
    let text = doc(PROXY, "").replace(
        "    - filters:\n",
        "    - filter_chain_match: {destination_port: 1}\n      filters:\n",
    );
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        "static_resources.listeners[0].filter_chains[0].filter_chain_match: not supported"
    );
}

#[test]
fn proto_entry_points_and_file_errors() {
    let proto = parse_bootstrap_proto(&doc(PROXY, ""), Format::Yaml).unwrap();
    let sr = proto.static_resources.unwrap();
    let l = listener_from_proto(&sr.listeners[0], "lds[0]").unwrap();
    assert_eq!(l.proxy.stat_prefix, "sp");
    let mut c = sr.clusters[0].clone();
    assert_eq!(cluster_from_proto(&c, "cds[0]").unwrap().name, "c1");
    c.lb_policy = 6;
    assert_eq!(
        cluster_from_proto(&c, "cds[0]").unwrap_err().to_string(),
        "cds[0].lb_policy: CLUSTER_PROVIDED not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)"
    );
    let e = load_bootstrap(Path::new("/nonexistent.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent.yaml: cannot read"), "{e}");
    let e = parse_bootstrap("a: [", Format::Yaml)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid YAML"), "{e}");
}

#[test]
fn typed_struct_bytes_from_a_control_plane() {
    let proto = parse_bootstrap_proto(&doc(PROXY, ""), Format::Yaml).unwrap();
    let mut l = proto.static_resources.unwrap().listeners[0].clone();
    let desc = pb::pool()
        .get_message_by_name("xds.type.v3.TypedStruct")
        .unwrap();
    let ts = serde_json::json!({
        "type_url": META_PROTOCOL_PROXY_TYPE_URL,
        "value": {"statPrefix": "ts", "protocol": {"name": "thrift", "codec": {"name": "c"}},
                  "max_message_size": 2048, "routeConfig": {"routes": {"route": {"cluster": "x"}}}},
    });
    let ts = json::to_message(ts, &desc, "").unwrap();
    l.filter_chains[0].filters[0].config_type = Some(
        envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
            envoy_types::pb::google::protobuf::Any {
                type_url: "type.googleapis.com/xds.type.v3.TypedStruct".into(),
                value: ts.encode_to_vec(),
            },
        ),
    );
    let conv = listener_from_proto(&l, "lds[0]").unwrap();
    assert_eq!(conv.proxy.stat_prefix, "ts");
    assert_eq!(conv.proxy.max_message_size, 2048);
    assert_eq!(conv.proxy.route_config.routes.len(), 1);
}

#[test]
fn value_errors_name_their_path() {
    let e = err(PROXY, "lb_policy: FASTEST");
    assert!(
        e.starts_with("static_resources.clusters[0].lb_policy: "),
        "{e}"
    );
    let e = err(&PROXY.replace("stat_prefix: sp", "stat_prefix: [a]"), "");
    assert!(e.starts_with(&format!("{LP}.stat_prefix: ")), "{e}");
    let e = err(&format!("{PROXY}idle_timeout: 5"), "");
    assert!(e.starts_with(&format!("{LP}.idle_timeout: ")), "{e}");
    println!("{e}");
}

#[test]
fn load_bootstrap_picks_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("meta-api-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("b.json");
    std::fs::write(
        &json,
        r#"{"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}"#,
    )
    .unwrap();
    assert_eq!(
        load_bootstrap(&json).unwrap().admin.unwrap().address.port(),
        1
    );
    let yaml = dir.join("b.yml");
    std::fs::write(
        &yaml,
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\nbad: 1\n",
    )
    .unwrap();
    assert_eq!(
        load_bootstrap(&yaml).unwrap_err().to_string(),
        format!("{}: bad: unknown field", yaml.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn paths_use_proto_names_whatever_the_spelling() {
    let e = err(&format!("{PROXY}idleTimeout: 5"), "");
    assert!(e.starts_with(&format!("{LP}.idle_timeout: ")), "{e}");
    let e = err(&format!("{PROXY}statPrefix: other"), "");
    assert_eq!(
        e,
        format!("{LP}.stat_prefix: set twice (snake_case and lowerCamelCase)")
    );
}

#[test]
fn aeraki_prost_types_convert() {
    use pb::aeraki::meta_protocol_proxy::config::route::v1alpha as route;
    use pb::aeraki::meta_protocol_proxy::v1alpha as mpp;
    let p = mpp::MetaProtocolProxy {
        stat_prefix: "s".into(),
        protocol: Some(mpp::ApplicationProtocol {
            name: "dubbo".into(),
            codec: Some(mpp::Codec {
                name: "aeraki.meta_protocol.codec.dubbo".into(),
                config: None,
            }),
            multiplexing: true,
        }),
        route_specifier: Some(mpp::meta_protocol_proxy::RouteSpecifier::RouteConfig(
            route::RouteConfiguration {
                name: "rc".into(),
                routes: vec![route::Route {
                    name: "r".into(),
                    route: Some(route::RouteAction {
                        cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                            "c".into(),
                        )),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            },
        )),
        ..Default::default()
    };
    let conv = proxy_from_proto(&p, "x").unwrap();
    assert_eq!(
        (conv.protocol.as_str(), conv.route_config.routes.len()),
        ("dubbo", 1)
    );
    let mut p = p;
    p.tracing = Some(mpp::Tracing::default());
    assert_eq!(
        proxy_from_proto(&p, "x").unwrap_err().to_string(),
        "x.tracing: not supported"
    );
}
