//! Routing, local replies and metrics, end to end over real TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use meta_config::{Destination, WeightedCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_match_and_metadata_routing() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let routes = vec![
            route("one", vec![cmd_is("1")], to("a")),
            route("also-one", vec![cmd_is("1")], to("b")),
            route("rest", vec![], to("b")),
        ];
        let (engine, addr) = start(bootstrap(
            proxy(routes),
            vec![cluster("a", &[a]), cluster("b", &[b])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        assert_eq!(c.call(2, 7, b"y").await, (false, "b:y".into()));
        let text = engine.metrics_text();
        assert!(
            text.contains(
                r#"meta_protocol_upstream_requests_total{listener="l",route="one",cluster="a"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"meta_protocol_responses_total{listener="l",route="rest",cluster="b",status="ok"} 1"#
        ));
        assert!(text.contains(
            r#"meta_protocol_downstream_requests_total{listener="l",protocol="custom",kind="request"} 2"#
        ));
        assert!(text.contains(r#"meta_protocol_request_duration_seconds_count{listener="l",route="one",cluster="a"} 1"#));
        assert_eq!(engine.config_dump()["listeners"][0]["name"], "l");
        assert!(engine.is_ready());
        engine.shutdown().await;
        assert!(!engine.is_ready());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_within_tolerance() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let split = Destination::WeightedClusters(vec![
            WeightedCluster {
                name: "a".into(),
                weight: 80,
            },
            WeightedCluster {
                name: "b".into(),
                weight: 20,
            },
        ]);
        let (_engine, addr) = start(bootstrap(
            proxy(vec![route("split", vec![], split)]),
            vec![cluster("a", &[a]), cluster("b", &[b])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        let mut to_a = 0;
        for i in 0..1000 {
            if c.call(i, 1, b"").await.1.starts_with("a:") {
                to_a += 1;
            }
        }
        assert!((720..=880).contains(&to_a), "{to_a} of 1000 to a");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_keep_the_connection_open() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let routes = vec![
            route("ok", vec![cmd_is("1")], to("a")),
            route("unknown", vec![cmd_is("10")], to("nope")),
            route("empty", vec![cmd_is("11")], to("empty")),
            route("refused", vec![cmd_is("12")], to("closed")),
        ];
        let (engine, addr) = start(bootstrap(
            proxy(routes),
            vec![
                cluster("a", &[a]),
                cluster("empty", &[]),
                cluster("closed", &[closed_port]),
            ],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        let (err, msg) = c.call(5, 99, b"").await;
        assert!(err);
        assert_eq!(
            msg,
            "meta protocol router: no matched route for request '5'"
        );
        assert_eq!(
            c.call(6, 10, b"").await,
            (true, "unknown cluster 'nope'".into())
        );
        let (err, msg) = c.call(7, 11, b"").await;
        assert!(err && msg.contains("no healthy upstream"), "{msg}");
        let (err, msg) = c.call(8, 12, b"").await;
        assert!(err, "{msg}");
        assert!(
            msg.starts_with(&format!("upstream connect error to {closed_port}")),
            "{msg}"
        );
        assert_eq!(c.call(9, 1, b"still").await, (false, "a:still".into()));
        let text = engine.metrics_text();
        for reason in [
            "no_route",
            "unknown_cluster",
            "no_healthy_upstream",
            "connect_failure",
        ] {
            let line =
                format!(r#"meta_protocol_local_replies_total{{listener="l",reason="{reason}"}} 1"#);
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains(r#"meta_protocol_upstream_connect_failures_total{cluster="closed"} 1"#)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_local_replies() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let mut r = route("all", vec![], to("a"));
        r.timeout = Some(Duration::from_millis(200));
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        // Timeout; a late answer would be dropped.
        let (err, msg) = c.call(1, CMD_NEVER, b"").await;
        assert!(err && msg.contains("timed out"), "{msg}");
        // Upstream closes with a request in flight.
        let (err, msg) = c.call(2, CMD_CLOSE, b"").await;
        assert!(err && msg.contains("reset"), "{msg}");
        // A new upstream connection is opened for the next request.
        assert_eq!(c.call(3, 1, b"x").await, (false, "a:x".into()));
        // Undecodable response.
        let (err, msg) = c.call(4, CMD_GARBAGE, b"").await;
        assert!(err && msg.contains("bad response"), "{msg}");
        assert_eq!(c.call(5, 1, b"y").await, (false, "a:y".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
        let text = engine.metrics_text();
        for reason in ["timeout", "upstream_reset", "bad_response"] {
            let line =
                format!(r#"meta_protocol_local_replies_total{{listener="l",reason="{reason}"}} 1"#);
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains(r#"meta_protocol_decode_errors_total{listener="l",side="upstream"} 1"#)
        );
        assert!(text.contains(r#"meta_protocol_upstream_connections_total{cluster="a"} 3"#));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_answered_then_closed() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut p = proxy(vec![route("all", vec![], to("a"))]);
        p.max_message_size = 64;
        let (engine, addr) = start(bootstrap(p, vec![cluster("a", &[a])])).await;
        let mut other = Client::connect(addr).await;
        let mut c = Client::connect(addr).await;
        c.send(&custom_codec_example::request(3, 1, &[7; 100]))
            .await;
        let f = c.recv().await.expect("an error reply");
        assert_eq!(f.meta.request_id, 3);
        assert_eq!(f.meta.status, meta_protocol::ResponseStatus::Error);
        assert!(c.recv().await.is_none(), "closed after the error");
        assert_eq!(other.call(1, 1, b"fine").await, (false, "a:fine".into()));
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_decode_errors_total{listener="l",side="downstream"}"#
            ),
            1.0
        );
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_local_replies_total{listener="l",reason="bad_request"}"#
            ),
            1.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut p = proxy(vec![route("all", vec![], to("a"))]);
        p.idle_timeout = Some(Duration::from_millis(200));
        let (engine, addr) = start(bootstrap(p, vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        let t = std::time::Instant::now();
        assert!(c.recv().await.is_none());
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_idle_timeouts_total{listener="l"}"#
            ),
            1.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            metric(
                &engine,
                r#"meta_protocol_downstream_connections_active{listener="l"}"#
            ),
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_and_heartbeats() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        // One-way: forwarded, never answered; the next answer is for the next request.
        c.send(&one_way(1, 1, b"fire")).await;
        // Heartbeat: answered by the proxy itself.
        c.send(&heartbeat(77)).await;
        let pong = c.recv().await.unwrap();
        assert_eq!(pong.meta.kind, meta_protocol::MessageKind::Heartbeat);
        assert_eq!(pong.meta.request_id, 77);
        assert_eq!(c.call(2, 1, b"x").await, (false, "a:x".into()));
        assert_eq!(seen.one_way.load(Ordering::SeqCst), 1);
        assert_eq!(
            seen.requests.load(Ordering::SeqCst),
            1,
            "heartbeat not forwarded"
        );
        // A server heartbeat on the upstream connection is answered by the proxy.
        assert_eq!(c.call(3, CMD_PING_FIRST, b"p").await, (false, "a:p".into()));
        assert_eq!(seen.heartbeat_replies.load(Ordering::SeqCst), 1);
        let text = engine.metrics_text();
        assert!(text.contains(r#"kind="oneway"} 1"#) && text.contains(r#"kind="heartbeat"} 1"#));
    })
    .await;
}
