//! Live listener and endpoint changes, as xDS applies them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use meta_config::{DiscoveryType, Endpoint, Listener};
use meta_proxy_engine::{Engine, ListenerChange};
use tokio::net::TcpStream;

fn listener(name: &str, routes: Vec<meta_config::Route>) -> Listener {
    Listener {
        name: name.into(),
        address: "127.0.0.1:0".parse().unwrap(),
        proxy: proxy(routes),
    }
}

fn addr_of(engine: &Engine, name: &str) -> std::net::SocketAddr {
    engine
        .listener_addrs()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
        .expect("listener bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_updated_in_place_and_removed_with_drain() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 300).await;
        let mut cfg = bootstrap(proxy(vec![]), vec![cluster("a", &[a]), cluster("b", &[b])]);
        cfg.listeners.clear();
        let engine = Engine::start(cfg, codecs()).await.unwrap();
        assert!(engine.listener_addrs().is_empty());

        let added = engine
            .apply_listener(listener("dyn", vec![route("r", vec![], to("a"))]))
            .await
            .unwrap();
        assert_eq!(added, ListenerChange::Added);
        let addr = addr_of(&engine, "dyn");
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));

        // Same address and codec, new routes: the open connection follows them at once.
        let mut changed = listener("dyn", vec![route("r2", vec![], to("b"))]);
        changed.address = "127.0.0.1:0".parse().unwrap();
        assert_eq!(
            engine.apply_listener(changed.clone()).await.unwrap(),
            ListenerChange::UpdatedInPlace
        );
        assert_eq!(
            engine.apply_listener(changed).await.unwrap(),
            ListenerChange::Unchanged
        );
        assert_eq!(addr_of(&engine, "dyn"), addr, "not rebound");
        assert_eq!(c.call(2, 1, b"y").await, (false, "b:y".into()));
        assert_eq!(
            engine.config_dump()["listeners"][0]["proxy"]["route_config"]["routes"][0]["name"],
            "r2"
        );

        // Removal while a request is in flight (backend b answers within 300 ms): the port
        // closes at once, the request still gets its answer, then the connection closes.
        c.send(&custom_codec_example::request(3, 1, b"z")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(engine.remove_listener("dyn").await);
        assert!(!engine.remove_listener("dyn").await);
        assert!(TcpStream::connect(addr).await.is_err(), "port closed");
        let f = c.recv().await.expect("in-flight answer");
        assert_eq!(f.meta.request_id, 3);
        assert_eq!(String::from_utf8_lossy(&f.bytes[16..]), "b:z");
        assert!(c.recv().await.is_none(), "connection closed after drain");
        assert!(engine.listener_addrs().is_empty());
        assert_eq!(engine.config_dump()["listeners"], serde_json::json!([]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_address_changes_is_rebound() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (engine, old) = start(bootstrap(
            proxy(vec![route("r", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let new_addr = free.local_addr().unwrap();
        drop(free);
        let mut moved = listener("l", vec![route("r", vec![], to("a"))]);
        moved.address = new_addr;
        assert_eq!(
            engine.apply_listener(moved).await.unwrap(),
            ListenerChange::Replaced
        );
        assert!(TcpStream::connect(old).await.is_err(), "old port closed");
        let mut c = Client::connect(new_addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        let mut bad = listener("other", vec![]);
        bad.proxy.codec = "no.such".into();
        assert!(engine.apply_listener(bad).await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_endpoints_replace_in_place_and_keep_upstream_connections() {
    bounded(async {
        let (a, seen_a) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let mut eds = cluster("eds", &[]);
        eds.discovery = DiscoveryType::Eds;
        eds.eds_service_name = Some("eds".into());
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("eds"))]),
            vec![eds.clone()],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        // No endpoints yet: a native error, not a hang.
        assert!(c.call(1, 1, b"x").await.0);
        let ep = |s: std::net::SocketAddr| Endpoint {
            locality: None,
            host: s.ip().to_string(),
            port: s.port(),
            weight: 1,
            priority: 0,
        };
        assert!(engine.update_endpoints("eds", vec![ep(a)]).await.unwrap());
        assert!(!engine.update_endpoints("none", vec![]).await.unwrap());
        assert_eq!(c.call(2, 1, b"x").await, (false, "a:x".into()));
        // Same cluster config re-applied (a CDS push): the upstream connection stays.
        let mut same = eds.clone();
        same.endpoints = vec![ep(a)];
        engine.update_clusters(vec![same]).await.unwrap();
        assert_eq!(c.call(3, 1, b"x").await, (false, "a:x".into()));
        assert_eq!(seen_a.connections.load(Ordering::SeqCst), 1);
        assert!(engine.update_endpoints("eds", vec![ep(b)]).await.unwrap());
        assert_eq!(c.call(4, 1, b"x").await, (false, "b:x".into()));
        assert_eq!(
            engine.config_dump()["clusters"][0]["endpoints"][0]["port"],
            b.port()
        );
        // Readiness is settable (xDS clears it until the first LDS+CDS round).
        engine.set_ready(false);
        assert!(!engine.is_ready());
        engine.set_ready(true);
        assert!(engine.is_ready());
    })
    .await;
}
