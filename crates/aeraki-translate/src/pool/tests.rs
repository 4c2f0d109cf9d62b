//! `connectionPool` lifetime settings per flavour and protocol: the exact protocol options
//! written, and the warnings for what a flavour cannot express.

use std::time::Duration;

use aeraki_model::resources::{CLUSTER, Flavor};
use aeraki_model::*;
use serde_json::{Value, json};

use crate::tests::{H, PREFIX, run, svc, view};

fn pooled(mut s: ServiceView, pool: ConnectionPool) -> ServiceView {
    s.traffic_policy = Some(TrafficPolicy {
        locality: None,
        load_balancer: None,
        connection_pool: Some(pool),
        outlier_detection: None,
    });
    s
}

fn options(out: &Value, host: &str) -> Value {
    out[CLUSTER][format!("outbound|20880||{host}")]["typed_extension_protocol_options"].clone()
}

const HTTP: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TCP: &str = "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions";

fn both() -> ConnectionPool {
    ConnectionPool {
        max_requests_per_connection: Some(2),
        idle_timeout: Some(Duration::from_millis(1500)),
        ..Default::default()
    }
}

#[test]
fn meta_proxy_clusters_get_the_http_common_options() {
    let (out, warnings) = run(&view(vec![pooled(svc("dubbo"), both())]), Flavor::MetaProxy);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        options(&out, H),
        json!({HTTP: {
            "@type": format!("type.googleapis.com/{HTTP}"),
            "common_http_protocol_options": {
                "idle_timeout": "1.500s",
                "max_requests_per_connection": 2
            }
        }})
    );
    // Istio's 0 = no limit: nothing written; no setting at all: no options.
    let zero = ConnectionPool {
        max_requests_per_connection: Some(0),
        ..Default::default()
    };
    let (out, warnings) = run(&view(vec![pooled(svc("dubbo"), zero)]), Flavor::MetaProxy);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(options(&out, H), Value::Null);
}

#[test]
fn envoy_clusters_get_the_tcp_idle_timeout_and_a_warning_for_the_request_budget() {
    let (out, warnings) = run(&view(vec![pooled(svc("dubbo"), both())]), Flavor::Envoy);
    assert_eq!(
        options(&out, H),
        json!({TCP: {
            "@type": format!("type.googleapis.com/{TCP}"),
            "idle_timeout": "1.500s"
        }})
    );
    assert_eq!(
        warnings,
        [format!(
            "{PREFIX}: cluster outbound|20880||{H}: connectionPool.http.maxRequestsPerConnection \
             has no equivalent in Envoy's TCP connection pool (dubbo_proxy/thrift_proxy); not \
             applied"
        )]
    );
}

#[test]
fn grpc_clusters_http2_for_envoy_and_a_warning_for_meta_proxy() {
    let mut rls = svc("dubbo");
    rls.host = "rls.x".into();
    rls.port_name = "grpc-rls".into();
    rls.protocol = Protocol::Grpc;
    let rls = pooled(rls, both());
    let (out, warnings) = run(&view(vec![rls.clone()]), Flavor::Envoy);
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(
        options(&out, "rls.x")[HTTP],
        json!({
            "@type": format!("type.googleapis.com/{HTTP}"),
            "common_http_protocol_options": {
                "idle_timeout": "1.500s",
                "max_requests_per_connection": 2
            },
            "explicit_http_config": {"http2_protocol_options": {}}
        })
    );
    let (out, warnings) = run(&view(vec![rls]), Flavor::MetaProxy);
    assert_eq!(options(&out, "rls.x"), Value::Null);
    assert_eq!(
        warnings,
        [
            "service rls.x:20880 (grpc-rls): cluster outbound|20880||rls.x: connectionPool \
          maxRequestsPerConnection/idleTimeout apply to meta-protocol upstream connections; \
          meta-proxy's rate-limit client keeps its own channel; not applied"
        ]
    );
}

#[test]
fn meta_proxy_reads_back_what_the_meta_proxy_flavour_writes() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;

    let t = crate::translate(&view(vec![pooled(svc("dubbo"), both())]), Flavor::MetaProxy);
    let name = format!("outbound|20880||{H}");
    let any = &t.resources.by_type[CLUSTER][&name];
    let cluster = Cluster::decode(any.value.as_slice()).unwrap();
    let model = meta_api::cluster_from_proto(&cluster, "cds").unwrap();
    assert_eq!(model.max_requests_per_connection, Some(2));
    assert_eq!(model.idle_timeout, Some(Duration::from_millis(1500)));
}
