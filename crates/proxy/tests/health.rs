//! Cluster health end to end: a dead endpoint is ejected by outlier detection and every later
//! call lands on the live one; `max_requests` overflow answers a native error at once; with
//! priority levels traffic stays on level 0 and fails over when it is ejected; `max_connections`
//! shares open connections and overflows when the endpoint has none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use custom_codec_example::request;
use meta_config::OutlierDetection;
use tokio::net::TcpListener;

/// A local port nothing listens on (connects are refused).
async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn gateway_outlier(n: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_gateway_failure: n,
        enforcing_consecutive_gateway_failure: 100,
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_ejected_and_calls_succeed_on_the_other() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let dead = dead_port().await;
        let mut c = cluster("svc", &[a, dead]);
        c.outlier_detection = Some(gateway_outlier(2));
        let (engine, addr) = start(bootstrap(proxy(vec![route("r", vec![], to("svc"))]), vec![c]))
            .await;
        let mut client = Client::connect(addr).await;
        let mut failures = 0;
        for id in 1..=6 {
            let (err, body) = client.call(id, 1, b"x").await;
            if err {
                assert!(body.contains("connect"), "{body}");
                failures += 1;
            }
        }
        // Round robin alternates: the dead endpoint fails twice, then is ejected.
        assert_eq!(failures, 2);
        for id in 7..=30 {
            assert_eq!(client.call(id, 1, b"y").await, (false, "a:y".into()));
        }
        let detector = r#"meta_protocol_outlier_ejections_enforced_total{cluster="svc",detector="consecutive_gateway_failure"}"#;
        assert_eq!(metric(&engine, detector), 1.0);
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_outlier_ejections_active{cluster="svc"}"#
            ),
            1.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_overflow_is_a_native_error() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut c = cluster("svc", &[a]);
        c.circuit_breakers.max_requests = 1;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("svc"))]),
            vec![c],
        ))
        .await;
        let mut client = Client::connect(addr).await;
        // Request 1 never gets an answer (holds the only slot); 2 overflows.
        let mut wire = request(1, CMD_NEVER, b"hold");
        wire.extend_from_slice(&request(2, 1, b"x"));
        client.send(&wire).await;
        let f = client.recv().await.unwrap();
        assert_eq!(f.meta.request_id, 2);
        assert_eq!(f.meta.status, meta_protocol::ResponseStatus::Error);
        let body = String::from_utf8_lossy(&f.bytes[16..]).into_owned();
        assert!(
            body.contains("upstream overflow: max_requests of cluster 'svc'"),
            "{body}"
        );
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_upstream_rq_pending_overflow_total{cluster="svc"}"#
            ),
            1.0
        );
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_circuit_breaker_open{cluster="svc",resource="rq"}"#
            ),
            1.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_failover_to_level_one() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let dead = dead_port().await;
        let mut c = cluster("svc", &[dead, a, b]);
        // Level 0: the dead endpoint; level 1: a and b.
        c.endpoints[1].priority = 1;
        c.endpoints[2].priority = 1;
        c.outlier_detection = Some(gateway_outlier(1));
        let (_engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("svc"))]),
            vec![c],
        ))
        .await;
        let mut client = Client::connect(addr).await;
        let (err, body) = client.call(1, 1, b"x").await;
        assert!(err, "level 0 is tried first: {body}");
        let mut seen = std::collections::HashSet::new();
        for id in 2..=12 {
            let (err, body) = client.call(id, 1, b"x").await;
            assert!(!err, "{body}");
            seen.insert(body);
        }
        assert_eq!(seen.len(), 2, "both level-1 endpoints serve: {seen:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_endpoints_are_never_ejected_by_successes() {
    bounded(async {
        let (a, _) = backend("a", 2).await;
        let (b, _) = backend("b", 2).await;
        let mut c = cluster("svc", &[a, b]);
        c.outlier_detection = Some(gateway_outlier(1));
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("svc"))]),
            vec![c],
        ))
        .await;
        let mut client = Client::connect(addr).await;
        for id in 1..=20 {
            assert!(!client.call(id, 1, b"x").await.0);
        }
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_outlier_ejections_active{cluster="svc"}"#
            ),
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_shares_open_connections_and_overflows_without_one() {
    bounded(async {
        let (a, seen_a) = backend("a", 0).await;
        let (b, seen_b) = backend("b", 0).await;
        let mut c = cluster("svc", &[a, b]);
        c.circuit_breakers.max_connections = 1;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("svc"))]),
            vec![c],
        ))
        .await;
        let mut client = Client::connect(addr).await;
        // Round robin: a (opens the only connection), then b (none open, at the limit).
        assert_eq!(client.call(1, 1, b"x").await, (false, "a:x".into()));
        let (err, body) = client.call(2, 1, b"x").await;
        assert!(err, "{body}");
        assert!(
            body.contains("upstream overflow: max_connections of cluster 'svc'"),
            "{body}"
        );
        assert_eq!(client.call(3, 1, b"y").await, (false, "a:y".into()));
        assert_eq!(
            seen_a.connections.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert_eq!(
            seen_b.connections.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_upstream_cx_overflow_total{cluster="svc"}"#
            ),
            1.0
        );
    })
    .await;
}
