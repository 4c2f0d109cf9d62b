//! Loads every bootstrap of Aeraki's meta-protocol-proxy test suite
//! (`shared/fixtures/aeraki-meta-protocol-proxy/`, beside the repository) and pins the outcome of
//! each: loads (a few converted values checked) or refused naming a field. A behaviour change, or
//! a fixture added without an entry here, fails this test. docs/configuration.md mirrors the table.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use meta_api::load_bootstrap;
use meta_config::{
    Bootstrap, Destination, DiscoveryType, FilterConfig, MatchSpec, StringMatchKind,
};

const PROXY: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

enum Expect {
    /// Loads; the function checks converted values.
    Loads(fn(&Bootstrap)),
    /// Refused: (field path, message).
    Refused(&'static str, &'static str),
    /// Not an Envoy bootstrap (a ratelimit-service config); refused at its first top-level key.
    NotBootstrap(&'static str),
}

fn table() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        ("brpc_test.yaml", Loads(check_brpc)),
        ("dubbo_test.yaml", Refused("tracing", "not supported")),
        (
            "global-ratelimit_config_config.yaml",
            NotBootstrap("descriptors"),
        ),
        (
            "global-ratelimit_ratelimit_server.yaml",
            NotBootstrap("services"),
        ),
        ("global-ratelimit_test.yaml", Loads(check_global_ratelimit)),
        ("hash_policy_test.yaml", Loads(check_hash_policy)),
        ("idle_timeout_test.yaml", Loads(check_idle_timeout)),
        (
            "local-ratelimit_test-full-match-condition.yaml",
            Loads(check_local_ratelimit),
        ),
        (
            "local-ratelimit_test-full-no-matched-condition.yaml",
            Loads(check_local_ratelimit),
        ),
        (
            "local-ratelimit_test-no-global-bucket-match-condition.yaml",
            Loads(check_local_ratelimit),
        ),
        (
            "local-ratelimit_test-no-global-bucket-no-matched-condition.yaml",
            Loads(check_local_ratelimit),
        ),
        (
            "local-ratelimit_test-only-global-token.yaml",
            Loads(check_local_ratelimit),
        ),
        (
            "rds_test.yaml",
            Refused(
                "rds",
                "needs dynamic_resources.ads_config in the bootstrap (or use route_config)",
            ),
        ),
        ("thrift_test.yaml", Loads(check_thrift)),
        (
            "trpc_test.yaml",
            Refused(
                "static_resources.listeners[0].traffic_direction",
                "not supported",
            ),
        ),
    ]
}

fn check_global_ratelimit(b: &Bootstrap) {
    let f = &b.listeners[0].proxy.filters;
    let [FilterConfig::RateLimit(g), FilterConfig::Router] = f.as_slice() else {
        panic!("unexpected chain {f:?}");
    };
    assert_eq!(
        (g.domain.as_str(), g.cluster.as_str()),
        ("production", "ratelimit")
    );
    assert!(g.failure_mode_deny);
    assert_eq!(g.timeout, Duration::from_millis(20));
    assert_eq!(g.matchers.len(), 1);
    assert_eq!(g.descriptors[0].descriptor_key, "method");
}

fn check_local_ratelimit(b: &Bootstrap) {
    let f = &b.listeners[0].proxy.filters;
    let [FilterConfig::LocalRateLimit(l), FilterConfig::Router] = f.as_slice() else {
        panic!("unexpected chain {f:?}");
    };
    assert!(
        l.stat_prefix.starts_with("outbound|9090||"),
        "{}",
        l.stat_prefix
    );
    assert!(l.token_bucket.is_some() || !l.conditions.is_empty());
    for c in &l.conditions {
        assert_eq!(c.matchers[0].name, "method");
    }
}

fn check_brpc(b: &Bootstrap) {
    let admin = b.admin.as_ref().unwrap();
    assert_eq!(admin.address.to_string(), "127.0.0.1:15000");
    let l = &b.listeners[0];
    assert_eq!(l.address.to_string(), "0.0.0.0:20000");
    assert_eq!(
        (l.proxy.protocol.as_str(), l.proxy.codec.as_str()),
        ("brpc", "aeraki.meta_protocol.codec.brpc")
    );
    assert_eq!(l.proxy.stat_prefix, "outbound|20000||demo.brpc.server");
    let r = &l.proxy.route_config.routes[0];
    assert!(r.matchers.is_empty());
    assert!(
        matches!(&r.destination, Destination::Cluster(c) if c == "outbound|20000||demo.brpc.server")
    );
    let c = &b.clusters[0];
    assert_eq!(c.discovery, DiscoveryType::Static);
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        (c.endpoints[0].host.as_str(), c.endpoints[0].port),
        ("127.0.0.1", 20001)
    );
}

fn check_hash_policy(b: &Bootstrap) {
    assert_eq!(
        b.clusters[0].lb_policy,
        meta_config::LbPolicy::Maglev { table_size: 65537 }
    );
    assert_eq!(
        b.listeners[0].proxy.route_config.routes[0].hash_policy,
        ["method"]
    );
}

fn check_idle_timeout(b: &Bootstrap) {
    assert_eq!(
        b.listeners[0].proxy.idle_timeout,
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        b.admin.as_ref().unwrap().access_log_path.as_deref(),
        Some("./envoy_debug.log")
    );
}

fn check_thrift(b: &Bootstrap) {
    let p = &b.listeners[0].proxy;
    assert_eq!(
        (p.protocol.as_str(), p.codec.as_str()),
        ("thrift", "aeraki.meta_protocol.codec.thrift")
    );
    let r = &p.route_config.routes[0];
    assert_eq!(r.name, "default");
    let m = &r.matchers[0];
    assert_eq!(m.name, "method");
    assert!(
        matches!(&m.spec, MatchSpec::String(s) if matches!(&s.kind, StringMatchKind::Exact(v) if v == "sayHello"))
    );
    assert_eq!(
        r.request_mutation,
        [
            ("foo".to_owned(), "bar".to_owned()),
            ("foo1".to_owned(), "bar1".to_owned())
        ]
    );
    assert_eq!(r.timeout, Some(Duration::from_secs(15)));
    assert_eq!(b.clusters[0].endpoints[0].port, 9091);
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/aeraki-meta-protocol-proxy")
}

#[test]
fn every_fixture_has_a_pinned_outcome() {
    let dir = dir();
    // The fixtures live beside the repository (CI clones `shared/` there).
    assert!(
        dir.is_dir(),
        "fixture directory {} not found",
        dir.display()
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let table = table();
    let listed: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        files, listed,
        "fixture set changed: update the table and docs/configuration.md"
    );
    for (file, expect) in &table {
        let path = dir.join(file);
        let result = load_bootstrap(&path);
        match (expect, result) {
            (Expect::Loads(check), Ok(b)) => check(&b),
            (Expect::Refused(field, msg), Err(e)) => {
                let field = if field.starts_with("static_resources") || !is_proxy_field(field) {
                    (*field).to_owned()
                } else {
                    format!("{PROXY}.{field}")
                };
                assert_eq!(
                    (e.path.as_str(), e.message.as_str()),
                    (field.as_str(), *msg),
                    "{file}"
                );
                assert_eq!(e.to_string(), format!("{}: {field}: {msg}", path.display()));
            }
            (Expect::NotBootstrap(key), Err(e)) => {
                assert_eq!(
                    (e.path.as_str(), e.message.as_str()),
                    (*key, "unknown field"),
                    "{file}"
                );
            }
            (Expect::Loads(_), Err(e)) => panic!("{file}: expected to load, got: {e}"),
            (_, Ok(_)) => panic!("{file}: expected a refusal, but it loaded"),
        }
    }
}

/// Fields of the MetaProtocolProxy message (the table names them relative to it).
fn is_proxy_field(field: &str) -> bool {
    field.starts_with("meta_protocol_filters") || field == "rds"
}
