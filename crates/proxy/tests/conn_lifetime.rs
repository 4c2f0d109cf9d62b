//! Upstream connection lifetime per cluster: `max_requests_per_connection` (a connection carries
//! at most N requests, then drains: it delivers what it owes and closes, and the next request
//! opens another connection under `max_connections`) and the idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use custom_codec_example::request;
use meta_protocol::ResponseStatus;
use meta_proxy_engine::Engine;

fn svc(addr: std::net::SocketAddr, max_requests: Option<u32>) -> meta_config::Cluster {
    let mut c = cluster("svc", &[addr]);
    c.max_requests_per_connection = max_requests;
    c
}

async fn engine_for(c: meta_config::Cluster) -> (std::sync::Arc<Engine>, std::net::SocketAddr) {
    start(bootstrap(
        proxy(vec![route("r", vec![], to("svc"))]),
        vec![c],
    ))
    .await
}

fn cluster_metric(engine: &Engine, family: &str) -> f64 {
    metric(
        engine,
        &format!(r#"meta_protocol_{family}{{cluster="svc"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sequential_calls_with_three_per_connection_use_four_connections() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = engine_for(svc(a, Some(3))).await;
        let mut client = Client::connect(addr).await;
        for id in 1..=10 {
            let body = format!("m{id}");
            let want = format!("a:{body}");
            assert_eq!(client.call(id, 1, body.as_bytes()).await, (false, want));
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 4, "ceil(10 / 3)");
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            3.0
        );
        assert_eq!(cluster_metric(&engine, "upstream_connections_total"), 4.0);
        // The three full connections close gracefully (EOF at the provider).
        until(|| seen.eofs.load(Ordering::SeqCst) == 3).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_across_the_boundary_all_get_their_own_answers() {
    bounded(async {
        // Answers come back out of order (random delays up to 5 ms).
        let (a, seen) = backend("a", 5).await;
        let (engine, addr) = engine_for(svc(a, Some(3))).await;
        let clients = (0..3u32).map(|k| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut wire = bytes::BytesMut::new();
                for id in 1..=10u32 {
                    wire.extend_from_slice(&request(id, 1, format!("c{k}-{id}").as_bytes()));
                }
                client.send(&wire).await;
                let mut answers = HashMap::new();
                for _ in 0..10 {
                    let f = client.recv().await.expect("an answer");
                    assert_eq!(f.meta.status, ResponseStatus::Ok);
                    let body = String::from_utf8_lossy(&f.bytes[16..]).into_owned();
                    assert!(answers.insert(f.meta.request_id, body).is_none());
                }
                for id in 1..=10u64 {
                    assert_eq!(answers[&id], format!("a:c{k}-{id}"), "client {k}");
                }
            })
        });
        for c in clients.collect::<Vec<_>>() {
            c.await.unwrap();
        }
        // Every connection carried exactly 3 of the 30 requests.
        assert_eq!(seen.requests.load(Ordering::SeqCst), 30);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 10);
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            10.0
        );
        until(|| seen.eofs.load(Ordering::SeqCst) == 10).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 0.0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_connection_still_delivers_its_slow_response() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = engine_for(svc(a, Some(1))).await;
        let mut client = Client::connect(addr).await;
        // Request 1 is held by the provider on connection A, which is now draining; request 2
        // goes to a new connection B and is answered first.
        let mut wire = request(1, CMD_HOLD, b"slow");
        wire.extend_from_slice(&request(2, 1, b"fast"));
        client.send(&wire).await;
        let f = client.recv().await.unwrap();
        assert_eq!(f.meta.request_id, 2);
        assert_eq!(&f.bytes[16..], b"a:fast");
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        // No handle to A is left in the pool or with the callers: it keeps itself alive.
        until(|| seen.eofs.load(Ordering::SeqCst) == 1).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 1.0).await;
        seen.release.notify_one();
        let f = client.recv().await.unwrap();
        assert_eq!(f.meta.request_id, 1);
        assert_eq!(f.meta.status, ResponseStatus::Ok);
        assert_eq!(&f.bytes[16..], b"a:slow");
        until(|| seen.eofs.load(Ordering::SeqCst) == 2).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 0.0).await;
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            2.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replacement_connection_obeys_max_connections() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let mut c = svc(a, Some(1));
        c.circuit_breakers.max_connections = 1;
        let (engine, addr) = engine_for(c).await;
        let mut client = Client::connect(addr).await;
        // The draining connection holds the only slot while its slow answer is owed.
        let mut wire = request(1, CMD_HOLD, b"slow");
        wire.extend_from_slice(&request(2, 1, b"x"));
        client.send(&wire).await;
        let f = client.recv().await.unwrap();
        assert_eq!(f.meta.request_id, 2);
        assert_eq!(f.meta.status, ResponseStatus::Error);
        let body = String::from_utf8_lossy(&f.bytes[16..]).into_owned();
        assert!(
            body.contains("upstream overflow: max_connections of cluster 'svc'"),
            "{body}"
        );
        assert_eq!(cluster_metric(&engine, "upstream_cx_overflow_total"), 1.0);
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_local_replies_total{listener="l",reason="over_limit"}"#
            ),
            1.0
        );
        seen.release.notify_one();
        let f = client.recv().await.unwrap();
        assert_eq!((f.meta.request_id, &f.bytes[16..]), (1, &b"a:slow"[..]));
        // Once it has closed, its slot is free for the next connection.
        let cx_open = r#"meta_protocol_circuit_breaker_open{cluster="svc",resource="cx"}"#;
        until(|| metric(&engine, cx_open) == 0.0).await;
        assert_eq!(client.call(3, 1, b"y").await, (false, "a:y".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_requests_count_and_the_last_is_flushed_before_the_close() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = engine_for(svc(a, Some(2))).await;
        let mut client = Client::connect(addr).await;
        // A one-way then a two-way request: connection 1 is full.
        client.send(&one_way(1, 1, b"ow1")).await;
        assert_eq!(client.call(2, 1, b"x").await, (false, "a:x".into()));
        // A two-way then a one-way one: the one-way request drains connection 2 with nothing
        // owed; it still reaches the provider before the connection closes.
        assert_eq!(client.call(3, 1, b"y").await, (false, "a:y".into()));
        client.send(&one_way(4, 1, b"ow2")).await;
        until(|| seen.eofs.load(Ordering::SeqCst) == 2).await;
        assert_eq!(seen.one_way.load(Ordering::SeqCst), 2);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            2.0
        );
        assert_eq!(client.call(5, 1, b"z").await, (false, "a:z".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_the_connection_and_counts_it() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let mut c = svc(a, None);
        c.idle_timeout = Some(Duration::from_millis(200));
        let (engine, addr) = engine_for(c).await;
        let mut client = Client::connect(addr).await;
        assert_eq!(client.call(1, 1, b"x").await, (false, "a:x".into()));
        until(|| cluster_metric(&engine, "upstream_cx_idle_timeout_total") == 1.0).await;
        until(|| seen.eofs.load(Ordering::SeqCst) == 1).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 0.0).await;
        // The downstream connection stays; the next call opens a new upstream connection.
        assert_eq!(client.call(2, 1, b"y").await, (false, "a:y".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_update_drains_connections_opened_under_the_old_config() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = engine_for(svc(a, None)).await;
        let mut client = Client::connect(addr).await;
        // Hold a request on the first connection across the update.
        client.send(&request(1, CMD_HOLD, b"held")).await;
        until(|| seen.requests.load(Ordering::SeqCst) == 1).await;
        engine.update_clusters(vec![svc(a, Some(5))]).await.unwrap();
        // New requests go to a new connection with the new budget: five fill it, and it
        // closes; the old one still owes the held answer and stays.
        for id in 2..=6 {
            assert_eq!(client.call(id, 1, b"n").await, (false, "a:n".into()));
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        until(|| seen.eofs.load(Ordering::SeqCst) == 1).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 1.0).await;
        seen.release.notify_one();
        let f = client.recv().await.unwrap();
        assert_eq!((f.meta.request_id, &f.bytes[16..]), (1, &b"a:held"[..]));
        // Then the old connection closes too.
        until(|| seen.eofs.load(Ordering::SeqCst) == 2).await;
        until(|| cluster_metric(&engine, "upstream_connections_active") == 0.0).await;
        assert_eq!(client.call(7, 1, b"m").await, (false, "a:m".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
        assert_eq!(
            cluster_metric(&engine, "upstream_cx_max_requests_total"),
            1.0
        );
    })
    .await;
}
