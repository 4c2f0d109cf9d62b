//! meta-proxy (engine + xDS client, in process) against an in-test ADS server: real gRPC, real
//! TCP traffic through the proxy to test backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::ads::Ads;
use common::engine::{Client, backend, bounded, metric};
use common::resources::*;
use common::*;
use envoy_types::pb::envoy::config::cluster::v3 as cl;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use meta_xds_client::{CDS, EDS, LDS, RDS};

fn acked(t: &'static str, v: &'static str) -> impl Fn(&DiscoveryRequest) -> bool {
    move |r| {
        r.type_url == t
            && r.version_info == v
            && !r.response_nonce.is_empty()
            && r.error_detail.is_none()
    }
}

fn nacked(t: &'static str) -> impl Fn(&DiscoveryRequest) -> bool {
    move |r| r.type_url == t && r.error_detail.is_some()
}

/// CDS (EDS cluster `a`, static cluster `b`), EDS for `a`, LDS (listener `dyn` on `laddr`
/// using RDS `rc`), RDS `rc` (everything → `a`), all version "1".
fn initial_snapshot(
    ads: &Ads,
    laddr: std::net::SocketAddr,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
) {
    ads.set(CDS, "1", vec![eds_cluster("a"), static_cluster("b", &[b])]);
    ads.set(EDS, "1", vec![cla("a", &[a])]);
    ads.set(LDS, "1", vec![listener("dyn", laddr, "rc")]);
    ads.set(RDS, "1", vec![route_config("rc", &[(None, "a")])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_config_routes_calls_and_route_changes_apply_live() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let ads = Ads::new();
        let server = ads.start("127.0.0.1:0".parse().unwrap());
        let laddr = free_addr();
        initial_snapshot(&ads, laddr, a, b);
        let (engine, client) = start_proxy(&bootstrap(server.addr)).await;

        for (t, what) in [(CDS, "cds"), (LDS, "lds"), (EDS, "eds"), (RDS, "rds")] {
            ads.wait_for(what, acked(t, "1")).await;
        }
        until("ready", || engine.is_ready()).await;
        assert_eq!(listener_addr(&engine, "dyn"), Some(laddr));
        let first = &ads.requests()[0];
        let node = first.node.as_ref().unwrap();
        assert_eq!(
            node.id,
            "sidecar~127.0.0.1~test.default~default.svc.cluster.local"
        );
        assert_eq!(node.user_agent_name, "meta-proxy");
        assert_eq!(
            node.user_agent_version_type,
            Some(UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").into()
            ))
        );
        assert!(
            ads.requests()
                .iter()
                .any(|r| r.type_url == RDS && r.resource_names == ["rc"])
        );
        assert!(
            ads.requests()
                .iter()
                .any(|r| r.type_url == EDS && r.resource_names == ["a"])
        );

        let mut c = Client::connect(laddr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));

        // New routes while the connection stays open: the next request follows them.
        ads.set(
            RDS,
            "2",
            vec![route_config("rc", &[(Some("7"), "a"), (None, "b")])],
        );
        ads.wait_for("rds v2 ack", acked(RDS, "2")).await;
        assert_eq!(c.call(2, 1, b"y").await, (false, "b:y".into()));
        assert_eq!(c.call(3, 7, b"z").await, (false, "a:z".into()));

        // EDS moves cluster a to backend b's address.
        ads.set(EDS, "2", vec![cla("a", &[b])]);
        ads.wait_for("eds v2 ack", acked(EDS, "2")).await;
        assert_eq!(c.call(4, 7, b"w").await, (false, "b:w".into()));

        let text = engine.metrics_text();
        assert!(text.contains("meta_protocol_xds_connected 1"), "{text}");
        assert!(
            metric(
                &engine,
                "meta_protocol_xds_updates_total{type=\"rds\",result=\"ack\"}"
            ) >= 2.0
        );
        let status = client.status();
        assert_eq!(status["connected"], true);
        assert_eq!(status["resources"]["rds"]["version"], "2");
        assert_eq!(status["resources"]["lds"]["version"], "1");
        assert_eq!(engine.config_dump()["listeners"][0]["proxy"]["rds"], "rc");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_nacked_with_their_path_and_old_config_serves() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let ads = Ads::new();
        let server = ads.start("127.0.0.1:0".parse().unwrap());
        let laddr = free_addr();
        initial_snapshot(&ads, laddr, a, b);
        let (engine, client) = start_proxy(&bootstrap(server.addr)).await;
        ads.wait_for("rds ack", acked(RDS, "1")).await;
        until("listener", || listener_addr(&engine, "dyn").is_some()).await;
        let mut c = Client::connect(laddr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));

        // RDS: a refused field → NACK naming it; the old routes keep serving.
        ads.set(RDS, "2", vec![bad_route_config("rc")]);
        let nack = ads.wait_for("rds nack", nacked(RDS)).await;
        assert_eq!(
            nack.version_info, "1",
            "a NACK carries the last good version"
        );
        assert_eq!(
            nack.error_detail.unwrap().message,
            "rds[rc].virtual_hosts[0].routes[0].route.retry_policy.retry_back_off: not supported"
        );
        assert_eq!(c.call(2, 1, b"y").await, (false, "a:y".into()));
        assert!(
            client.status()["resources"]["rds"]["last_nack"]
                .as_str()
                .unwrap()
                .contains("retry_policy")
        );

        // CDS: one new valid cluster and one refused → the valid one is applied (Envoy's
        // partial application), the NACK names the refused one.
        let mut lr = cl::Cluster {
            name: "lr".into(),
            lb_policy: cl::cluster::LbPolicy::ClusterProvided as i32,
            ..Default::default()
        };
        lr.cluster_discovery_type = Some(cl::cluster::ClusterDiscoveryType::Type(
            cl::cluster::DiscoveryType::Static as i32,
        ));
        ads.set(
            CDS,
            "2",
            vec![
                eds_cluster("a"),
                static_cluster("b", &[b]),
                static_cluster("c", &[b]),
                cluster_raw(&lr),
            ],
        );
        let nack = ads.wait_for("cds nack", nacked(CDS)).await;
        assert_eq!(
            nack.error_detail.unwrap().message,
            "cds[lr].lb_policy: CLUSTER_PROVIDED not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)"
        );
        let names: Vec<String> = engine.config_dump()["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            names.contains(&"c".to_owned()) && !names.contains(&"lr".to_owned()),
            "{names:?}"
        );

        // LDS: the listener changed to something refused → NACK, previous listener serves.
        let mut p = proxy("rc");
        p.tracing = Some(Default::default());
        ads.set(LDS, "2", vec![listener_with("dyn", laddr, &p)]);
        let nack = ads.wait_for("lds nack", nacked(LDS)).await;
        assert_eq!(
            nack.error_detail.unwrap().message,
            "lds[dyn].filter_chains[0].filters[0].typed_config.tracing: not supported"
        );
        assert_eq!(c.call(3, 1, b"z").await, (false, "a:z".into()));
        assert!(
            metric(
                &engine,
                "meta_protocol_xds_updates_total{type=\"lds\",result=\"nack\"}"
            ) >= 1.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_death_keeps_traffic_and_reconnect_resumes_versions() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let ads = Ads::new();
        let server = ads.start("127.0.0.1:0".parse().unwrap());
        let cp = server.addr;
        let laddr = free_addr();
        initial_snapshot(&ads, laddr, a, b);
        let (engine, client) = start_proxy(&bootstrap(cp)).await;
        ads.wait_for("rds ack", acked(RDS, "1")).await;
        until("listener", || listener_addr(&engine, "dyn").is_some()).await;
        let mut c = Client::connect(laddr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));

        server.kill();
        until("disconnected", || !client.is_connected()).await;
        assert!(
            engine
                .metrics_text()
                .contains("meta_protocol_xds_connected 0")
        );
        assert_eq!(c.call(2, 1, b"y").await, (false, "a:y".into()));
        let mut fresh = Client::connect(laddr).await;
        assert_eq!(fresh.call(1, 1, b"q").await, (false, "a:q".into()));

        // Back, with new routes: the client reconnects (backoff) and resumes.
        let before = ads.requests().len();
        ads.set(RDS, "2", vec![route_config("rc", &[(None, "b")])]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _server = ads.start(cp);
        ads.wait_for("rds v2 ack", acked(RDS, "2")).await;
        let resumed = ads.requests()[before..].to_vec();
        let lds = resumed.iter().find(|r| r.type_url == LDS).unwrap();
        assert_eq!(
            (lds.version_info.as_str(), lds.response_nonce.as_str()),
            ("1", "")
        );
        let rds = resumed.iter().find(|r| r.type_url == RDS).unwrap();
        assert_eq!(rds.resource_names, ["rc"], "subscriptions resent");
        assert_eq!(c.call(3, 1, b"z").await, (false, "b:z".into()));
        until("connected", || client.is_connected()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_started_after_the_proxy() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let cp = free_addr();
        let (engine, client) = start_proxy(&bootstrap(cp)).await;
        assert!(
            !engine.is_ready(),
            "not ready before the first LDS/CDS round"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!client.is_connected());
        assert!(
            client.status()["last_stream_error"]
                .as_str()
                .unwrap()
                .contains("connect")
        );

        let ads = Ads::new();
        let laddr = free_addr();
        initial_snapshot(&ads, laddr, a, a);
        let _server = ads.start(cp);
        until("ready", || engine.is_ready()).await;
        until("listener", || listener_addr(&engine, "dyn").is_some()).await;
        let mut c = Client::connect(laddr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_warm_until_routes_arrive_and_removal_drains() {
    bounded(async {
        let (slow, _) = backend("slow", 300).await;
        let ads = Ads::new();
        let server = ads.start("127.0.0.1:0".parse().unwrap());
        let laddr = free_addr();
        ads.set(CDS, "1", vec![static_cluster("a", &[slow])]);
        ads.set(LDS, "1", vec![listener("dyn", laddr, "rc")]);
        let (engine, client) = start_proxy(&bootstrap(server.addr)).await;
        ads.wait_for("lds ack", acked(LDS, "1")).await;
        ads.wait_for("rds subscription", |r| {
            r.type_url == RDS && r.resource_names == ["rc"]
        })
        .await;
        until("ready", || engine.is_ready()).await;
        assert_eq!(listener_addr(&engine, "dyn"), None, "warming: not bound");
        assert_eq!(
            client.status()["warming_listeners"],
            serde_json::json!(["dyn"])
        );

        ads.set(RDS, "1", vec![route_config("rc", &[(None, "a")])]);
        until("listener bound", || listener_addr(&engine, "dyn").is_some()).await;
        let mut c = Client::connect(laddr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "slow:x".into()));

        // Removed while a request is in flight: port closed, the request still answered.
        c.send(&custom_codec_example::request(2, 1, b"y")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        ads.set(LDS, "2", vec![]);
        ads.wait_for("lds v2 ack", acked(LDS, "2")).await;
        assert!(
            tokio::net::TcpStream::connect(laddr).await.is_err(),
            "port closed"
        );
        let f = c.recv().await.expect("in-flight answer");
        assert_eq!(String::from_utf8_lossy(&f.bytes[16..]), "slow:y");
        assert!(c.recv().await.is_none());
        assert_eq!(engine.config_dump()["listeners"], serde_json::json!([]));
    })
    .await;
}
