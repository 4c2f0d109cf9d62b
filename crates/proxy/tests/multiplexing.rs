//! Many clients, one upstream connection, out-of-order answers: every response reaches its caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use custom_codec_example::request;

const CLIENTS: u32 = 50;
const REQUESTS: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_share_one_upstream_connection() {
    bounded(async {
        let (a, seen) = backend("a", 3).await;
        // 10000 requests in flight: above Envoy's default max_requests (1024).
        let mut c = cluster("a", &[a]);
        c.circuit_breakers.max_requests = 1 << 20;
        // 10000 requests would make the connection busy and open more (UpstreamLimits): keep
        // them on one, so that only id rewriting keeps 50 clients apart.
        let (engine, addr) = start_limited(
            bootstrap(proxy(vec![route("all", vec![], to("a"))]), vec![c]),
            one_connection(),
        )
        .await;
        // Open the upstream connection first so that all clients share it.
        let mut warm = Client::connect(addr).await;
        assert_eq!(warm.call(1, 1, b"warm").await, (false, "a:warm".into()));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            clients.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                // Every client uses the same ids 1..=200: only id rewriting keeps them apart.
                let mut wire = Vec::new();
                for r in 1..=REQUESTS {
                    wire.extend_from_slice(&request(r, 1, format!("c{c}-r{r}").as_bytes()));
                }
                // Pipelined, in a few writes.
                for chunk in wire.chunks(4096) {
                    client.send(chunk).await;
                }
                let mut got = HashSet::new();
                for _ in 0..REQUESTS {
                    let f = client.recv().await.expect("a response");
                    let id = f.meta.request_id as u32;
                    let body = String::from_utf8_lossy(&f.bytes[16..]).into_owned();
                    assert_eq!(body, format!("a:c{c}-r{id}"), "response for another caller");
                    assert!(got.insert(id), "duplicate response {id}");
                }
                got.len()
            }));
        }
        for c in clients {
            assert_eq!(c.await.unwrap(), REQUESTS as usize);
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one upstream connection");
        let total = CLIENTS * REQUESTS + 1;
        assert_eq!(seen.requests.load(Ordering::SeqCst), total as usize);
        let text = engine.metrics_text();
        assert!(text.contains(&format!(
            r#"meta_protocol_responses_total{{listener="l",route="all",cluster="a",status="ok"}} {total}"#
        )));
        assert!(text.contains(r#"meta_protocol_upstream_connections_total{cluster="a"} 1"#));
        // The gauge drops once the answer is queued to the client, which may be just after the
        // client read it: poll briefly rather than race it.
        let idle = r#"meta_protocol_requests_active{listener="l"} 0"#;
        let mut text = text;
        for _ in 0..100 {
            if text.contains(idle) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            text = engine.metrics_text();
        }
        assert!(text.contains(idle), "{text}");
    })
    .await;
}

/// Large requests and answers (100-350 KB: many read chunks each, larger than the first read's
/// room) pipelined by several clients over the one shared upstream connection, written in
/// pieces that cut frames anywhere: every byte reaches its caller intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_cross_the_shared_connection_intact() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (_engine, addr) = start_limited(
            bootstrap(
                proxy(vec![route("all", vec![], to("a"))]),
                vec![cluster("a", &[a])],
            ),
            one_connection(),
        )
        .await;
        let mut warm = Client::connect(addr).await;
        assert_eq!(warm.call(1, 1, b"warm").await, (false, "a:warm".into()));
        let mut clients = Vec::new();
        for c in 0..4_usize {
            clients.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let bodies: Vec<Vec<u8>> = (0..5_usize)
                    .map(|r| {
                        let len = 100_000 + r * 50_001 + c * 7;
                        (0..len).map(|i| (i * 31 + c * 7 + r) as u8).collect()
                    })
                    .collect();
                let mut wire = Vec::new();
                for (r, body) in bodies.iter().enumerate() {
                    wire.extend_from_slice(&request(r as u32 + 1, 1, body));
                }
                for chunk in wire.chunks(77_777) {
                    client.send(chunk).await;
                }
                for _ in 0..bodies.len() {
                    let f = client.recv().await.expect("a response");
                    let r = f.meta.request_id as usize - 1;
                    assert_eq!(&f.bytes[16..18], b"a:");
                    assert!(
                        f.bytes[18..] == bodies[r][..],
                        "client {c}: answer {r} differs"
                    );
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            1,
            "one upstream connection"
        );
    })
    .await;
}
