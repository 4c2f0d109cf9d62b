//! Test helpers: the in-test ADS server, resource builders, a proxy wired to it, and the
//! engine tests' backend and client (custom example protocol).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod ads;
#[path = "../../../proxy/tests/common/mod.rs"]
pub mod engine;
pub mod resources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meta_config::{Bootstrap, DiscoveryType, XdsConfig};
use meta_proxy_engine::Engine;
use meta_xds_client::XdsClient;

/// A free port on 127.0.0.1 (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The bootstrap of a proxy whose control plane is at `server`.
pub fn bootstrap(server: SocketAddr) -> Bootstrap {
    let mut xds_cluster = engine::cluster("xds", &[server]);
    xds_cluster.discovery = DiscoveryType::Static;
    Bootstrap {
        node_id: Some("sidecar~127.0.0.1~test.default~default.svc.cluster.local".into()),
        node_locality: None,
        admin: None,
        listeners: vec![],
        clusters: vec![xds_cluster],
        xds: Some(XdsConfig {
            node_id: "sidecar~127.0.0.1~test.default~default.svc.cluster.local".into(),
            node_cluster: "test".into(),
            node_metadata: None,
            node_locality: None,
            server_cluster: "xds".into(),
            lds: true,
            cds: true,
        }),
    }
}

/// Starts an engine and its xDS client for `b`.
pub async fn start_proxy(b: &Bootstrap) -> (Arc<Engine>, XdsClient) {
    let engine = Engine::start(meta_xds_client::engine_bootstrap(b), engine::codecs())
        .await
        .unwrap();
    let client = XdsClient::spawn(engine.clone(), b).expect("xds configured");
    (engine, client)
}

/// Polls `cond` every 10 ms for at most 10 s.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The bound address of listener `name`, if running.
pub fn listener_addr(e: &Engine, name: &str) -> Option<SocketAddr> {
    e.listener_addrs()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
}
