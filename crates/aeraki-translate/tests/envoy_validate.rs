//! Validates the Envoy flavour with a real Envoy 1.40: the translated listeners and clusters
//! (EDS clusters inlined as STATIC, since a static bootstrap has no EDS) are written into a
//! bootstrap and checked with `envoy --mode validate`. Skipped, with a printed reason, when
//! neither `$ENVOY_BIN` nor the project venv's Envoy exists (see `envoy-harness`).

#![allow(clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER};
use aeraki_translate::{to_json, translate};
use serde_json::{Value, json};

/// A static bootstrap holding every listener and cluster of the rendered set, with each EDS
/// cluster turned into a STATIC one carrying its ClusterLoadAssignment inline.
fn bootstrap(rendered: &Value) -> Value {
    let listeners: Vec<Value> = rendered[LISTENER]
        .as_object()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let clusters: Vec<Value> = rendered[CLUSTER]
        .as_object()
        .map(|m| {
            m.values()
                .cloned()
                .map(|c| inline_eds(c, &rendered[ENDPOINT]))
                .collect()
        })
        .unwrap_or_default();
    assert!(!listeners.is_empty() && !clusters.is_empty());
    json!({
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

fn inline_eds(mut cluster: Value, endpoints: &Value) -> Value {
    if cluster["type"] == "EDS" {
        let name = cluster["name"].as_str().unwrap_or_default().to_owned();
        let obj = cluster.as_object_mut().expect("cluster object");
        obj.remove("eds_cluster_config");
        obj.insert("type".into(), json!("STATIC"));
        let cla = endpoints[&name].clone();
        assert!(cla.is_object(), "no ClusterLoadAssignment for {name}");
        obj.insert("load_assignment".into(), cla);
    }
    cluster
}

fn validate(envoy: &Path, config: &Value, tag: &str) -> (bool, String) {
    let text = serde_json::to_string_pretty(config).expect("json");
    envoy_harness::validate(envoy, &format!("aeraki-translate-{tag}"), &text)
}

#[test]
fn envoy_accepts_the_envoy_flavour() {
    let Some(envoy) = envoy_harness::binary("aeraki-translate envoy_validate") else {
        return;
    };
    let t = translate(&common::everything(), Flavor::Envoy);
    let rendered = to_json(&t.resources);
    let config = bootstrap(&rendered);
    // Both native filters are exercised.
    let text = config.to_string();
    assert!(text.contains("envoy.filters.network.dubbo_proxy"));
    assert!(text.contains("envoy.filters.network.thrift_proxy"));
    // DestinationRule idleTimeout on a TCP-pooled (dubbo_proxy) cluster.
    assert!(text.contains("\"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions\""));
    let (ok, output) = validate(&envoy, &config, "good");
    assert!(ok, "envoy rejected the translation:\n{output}");
    assert!(output.contains("OK"), "{output}");

    // The check is real: a config Envoy must refuse (empty thrift stat_prefix) fails.
    let broken = text.replace(
        "\"stat_prefix\":\"outbound|9091||attrs.thrift-sample-server.meta-thrift.svc.cluster.local\"",
        "\"stat_prefix\":\"\"",
    );
    assert_ne!(broken, text, "fixture changed: nothing to break");
    let broken: Value = serde_json::from_str(&broken).expect("json");
    let (ok, output) = validate(&envoy, &broken, "broken");
    assert!(!ok, "envoy accepted a broken config:\n{output}");
    assert!(output.contains("StatPrefix"), "{output}");
}

/// The MetaProxy flavour's tunnelled route tables are valid Envoy HTTP RouteConfigurations
/// (served to meta-proxy over RDS as such): Envoy accepts each one inside an HTTP connection
/// manager, next to the same clusters (so every referenced cluster exists).
#[test]
fn envoy_accepts_the_tunnelled_route_tables() {
    let Some(envoy) = envoy_harness::binary("aeraki-translate envoy_validate") else {
        return;
    };
    let t = translate(&common::everything(), Flavor::MetaProxy);
    let rendered = to_json(&t.resources);
    let mut config = bootstrap(&rendered);
    // meta-proxy reads HttpProtocolOptions.common_http_protocol_options (connection lifetime)
    // without an HTTP upstream protocol, which Envoy requires: left out of this check, which is
    // about the route tables.
    let mut stripped = 0;
    for c in config["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
    {
        if let Some(o) = c
            .get_mut("typed_extension_protocol_options")
            .and_then(Value::as_object_mut)
            && o.remove("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
                .is_some()
        {
            stripped += 1;
        }
    }
    assert!(
        stripped > 0,
        "fixture changed: no connection lifetime options"
    );
    let routes = rendered[aeraki_model::resources::ROUTE]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(routes.len(), 8);
    // Retry policies and fault configs are exercised (and need the fault filter below).
    let text = Value::Object(routes.clone()).to_string();
    assert!(text.contains("\"retry_policy\""), "{text}");
    assert!(
        text.contains("envoy.retry_host_predicates.previous_hosts"),
        "{text}"
    );
    assert!(text.contains("\"envoy.filters.http.fault\""), "{text}");
    let listeners: Vec<Value> = routes
        .values()
        .enumerate()
        .map(|(i, rc)| {
            json!({
                "name": format!("http_{i}"),
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000 + i}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("http_{i}"),
                        "route_config": rc,
                        "http_filters": [{
                            "name": "envoy.filters.http.fault",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}
                        }, {
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                        }]
                    }
                }]}]
            })
        })
        .collect();
    config["static_resources"]["listeners"] = Value::Array(listeners);
    let (ok, output) = validate(&envoy, &config, "rds");
    assert!(ok, "envoy rejected the tunnelled route tables:\n{output}");

    // The check is real: a fault percentage denominator Envoy does not know is refused.
    let broken =
        config
            .to_string()
            .replacen("\"denominator\":\"MILLION\"", "\"denominator\":\"EON\"", 1);
    assert_ne!(
        broken,
        config.to_string(),
        "fixture changed: nothing to break"
    );
    let broken: Value = serde_json::from_str(&broken).expect("json");
    let (ok, output) = validate(&envoy, &broken, "rds-broken");
    assert!(!ok, "envoy accepted a broken route table:\n{output}");
}
