//! Engine lifecycle: validation, live config swaps, connection pools, cleanup, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use custom_codec_example::request;
use meta_config::{DiscoveryType, MirrorPolicy, RouteConfig};
use meta_proxy_engine::{Engine, EngineError, UpstreamLimits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_codec_names_the_listener() {
    let mut p = proxy(vec![]);
    p.codec = "no.such.codec".into();
    let err = Engine::start(bootstrap(p, vec![]), codecs())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::UnknownCodec { .. }));
    assert!(err.to_string().contains("listener 'l'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_clusters_swap_live() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let mut dns = cluster("dns", &[b]);
        dns.discovery = DiscoveryType::StrictDns;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("a"))]),
            vec![cluster("a", &[a]), dns],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        let routes = RouteConfig {
            name: "rc2".into(),
            routes: vec![route("moved", vec![], to("dns"))],
        };
        assert!(engine.update_routes("l", routes));
        assert!(!engine.update_routes("nope", RouteConfig::default()));
        assert_eq!(c.call(2, 1, b"y").await, (false, "b:y".into()));
        assert_eq!(
            engine.config_dump()["listeners"][0]["proxy"]["route_config"]["name"],
            "rc2"
        );
        // Clusters: "dns" now points at a.
        engine
            .update_clusters(vec![cluster("a", &[a]), cluster("dns", &[a])])
            .await
            .unwrap();
        assert_eq!(c.call(3, 1, b"z").await, (false, "a:z".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_endpoints_get_more_connections() {
    bounded(async {
        let (a, seen) = backend("a", 5).await;
        let limits = UpstreamLimits {
            max_connections: 4,
            busy_threshold: 20,
            ..UpstreamLimits::default()
        };
        // 2000 requests at once: above Envoy's default circuit breakers (1024).
        let mut c = cluster("a", &[a]);
        c.circuit_breakers.max_requests = 4096;
        c.circuit_breakers.max_pending_requests = 4096;
        let config = bootstrap(proxy(vec![route("all", vec![], to("a"))]), vec![c]);
        let engine = Engine::start_with(config, codecs(), limits).await.unwrap();
        let addr = engine.listener_addrs()[0].1;
        let mut tasks = Vec::new();
        for c in 0..20u32 {
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut wire = Vec::new();
                for r in 1..=100u32 {
                    wire.extend_from_slice(&request(r, 1, format!("{c}/{r}").as_bytes()));
                }
                client.send(&wire).await;
                let mut ids = HashSet::new();
                for _ in 0..100 {
                    let f = client.recv().await.unwrap();
                    let id = f.meta.request_id as u32;
                    assert_eq!(&f.bytes[16..], format!("a:{c}/{id}").as_bytes());
                    ids.insert(id);
                }
                ids.len()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 100);
        }
        let n = seen.connections.load(Ordering::SeqCst);
        assert!((2..=4).contains(&n), "{n} upstream connections");
    })
    .await;
}

/// With the default limits, small requests share one upstream connection however many are in
/// flight, while large ones (128 KiB in flight makes a connection busy) spread over up to four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_spread_over_connections_small_ones_share_one() {
    bounded(async {
        for (size, expected) in [(16usize, 1..=1), (100 * 1024, 2..=4)] {
            let (a, seen) = backend("a", 20).await;
            let config = bootstrap(
                proxy(vec![route("all", vec![], to("a"))]),
                vec![cluster("a", &[a])],
            );
            let engine = Engine::start_with(config, codecs(), UpstreamLimits::default())
                .await
                .unwrap();
            let addr = engine.listener_addrs()[0].1;
            let mut tasks = Vec::new();
            for c in 0..8u32 {
                tasks.push(tokio::spawn(async move {
                    let mut client = Client::connect(addr).await;
                    let body = vec![b'a' + c as u8; size];
                    let mut wire = Vec::new();
                    for r in 1..=4u32 {
                        wire.extend_from_slice(&request(r, 1, &body));
                    }
                    client.send(&wire).await;
                    for _ in 0..4 {
                        let f = client.recv().await.unwrap();
                        assert_eq!(f.bytes.len(), 16 + 2 + size, "a:<body>");
                        assert_eq!(f.bytes[18], b'a' + c as u8, "its own answer");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let n = seen.connections.load(Ordering::SeqCst);
            assert!(
                expected.contains(&n),
                "{size}-byte requests: {n} upstream connections"
            );
            engine.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_mutation_is_counted_and_request_forwarded() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut r = route("all", vec![], to("a"));
        r.request_mutation = vec![("k".into(), "v".into())];
        r.response_mutation = vec![("k".into(), "v".into())];
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        let text = engine.metrics_text();
        for dir in ["request", "response"] {
            let line = format!(
                r#"meta_protocol_mutation_failures_total{{listener="l",direction="{dir}"}} 1"#
            );
            assert!(text.contains(&line), "{line}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_are_cleaned_up() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut r = route("all", vec![], to("a"));
        r.timeout = None;
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        for id in 1..=10 {
            c.send(&request(id, CMD_NEVER, b"")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let active = r#"meta_protocol_requests_active{listener="l"}"#;
        assert_eq!(metric(&engine, active), 10.0);
        drop(c);
        let mut left = 10.0;
        for _ in 0..100 {
            left = metric(&engine, active);
            if left == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0.0);
        // The upstream connection still works for others.
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    bounded(async {
        let (a, _) = backend("a", 300).await;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        assert!(!c.call(1, 1, b"x").await.0);
        c.send(&request(2, 1, b"late")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let e = engine.clone();
        let stopping = tokio::spawn(async move { e.shutdown().await });
        let f = c.recv().await.expect("in-flight answered");
        assert_eq!(&f.bytes[16..], b"a:late");
        assert!(c.recv().await.is_none(), "then closed");
        stopping.await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_a_copy_and_their_answers_are_discarded() {
    bounded(async {
        let (a, seen_a) = backend("a", 0).await;
        let (m, seen_m) = backend("m", 2).await;
        let mut r = route("all", vec![], to("a"));
        r.mirrors = vec![MirrorPolicy {
            cluster: "m".into(),
            fraction_per_million: 1_000_000,
        }];
        let (engine, addr) = start(bootstrap(
            proxy(vec![r]),
            vec![cluster("a", &[a]), cluster("m", &[m])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        for id in 1..=20 {
            assert_eq!(c.call(id, 1, b"x").await, (false, "a:x".into()));
        }
        c.send(&one_way(21, 1, b"fire")).await;
        assert_eq!(c.call(22, 1, b"y").await, (false, "a:y".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(seen_a.requests.load(Ordering::SeqCst), 21);
        assert_eq!(seen_m.requests.load(Ordering::SeqCst), 21);
        assert_eq!(seen_m.one_way.load(Ordering::SeqCst), 1);
        let line =
            r#"meta_protocol_responses_total{listener="l",route="all",cluster="m",status="ok"}"#;
        assert_eq!(metric(&engine, line), 21.0);
    })
    .await;
}

struct DenyCmd9(std::sync::atomic::AtomicUsize);

impl meta_proxy_engine::filter::Filter for DenyCmd9 {
    fn name(&self) -> &'static str {
        "test.deny"
    }

    fn on_request(
        &self,
        ctx: &mut meta_proxy_engine::filter::RequestContext<'_>,
    ) -> meta_proxy_engine::filter::FilterStatus {
        if ctx.meta.get("cmd") == Some("9") {
            let r = meta_protocol::LocalReply::new(meta_protocol::ErrorKind::OverLimit, "denied");
            return meta_proxy_engine::filter::FilterStatus::LocalReply(r);
        }
        meta_proxy_engine::filter::FilterStatus::Continue
    }

    fn on_response(&self, _req: &meta_protocol::Metadata, resp: Option<&meta_protocol::Metadata>) {
        if resp.is_some() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_answer_locally_and_see_responses() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        let filter = std::sync::Arc::new(DenyCmd9(Default::default()));
        assert!(engine.set_filters("l", vec![filter.clone()]));
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 9, b"").await, (true, "denied".into()));
        assert_eq!(c.call(2, 1, b"x").await, (false, "a:x".into()));
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
        assert_eq!(filter.0.load(Ordering::SeqCst), 1);
        let reason = r#"meta_protocol_local_replies_total{listener="l",reason="over_limit"}"#;
        assert_eq!(metric(&engine, reason), 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pipelines_pause_reading_but_complete() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let mut r = route("all", vec![], to("a"));
        r.timeout = Some(Duration::from_millis(300));
        let (_engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let c = Client::connect(addr).await;
        let n = 5000u32;
        let mut wire = Vec::new();
        for id in 1..=n {
            wire.extend_from_slice(&request(id, CMD_NEVER, b""));
        }
        let (mut rd, mut wr) = c.stream.into_split();
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut wr, &wire)
                .await
                .unwrap();
            wr
        });
        let mut buf = bytes::BytesMut::new();
        let mut codec = meta_protocol::CodecFactory::new_codec(
            &custom_codec_example::CustomCodecFactory,
            meta_protocol::Side::Upstream,
            meta_protocol::CodecOptions::default(),
        );
        let mut ids = HashSet::new();
        while ids.len() < n as usize {
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                assert_eq!(f.meta.status, meta_protocol::ResponseStatus::Error);
                ids.insert(f.meta.request_id);
            }
            if ids.len() < n as usize {
                assert!(
                    tokio::io::AsyncReadExt::read_buf(&mut rd, &mut buf)
                        .await
                        .unwrap()
                        > 0
                );
            }
        }
        drop(writer.await.unwrap());
    })
    .await;
}

/// The custom protocol, declared as having no usable id: responses are matched in order.
struct InOrderCustom;

impl meta_protocol::CodecFactory for InOrderCustom {
    fn name(&self) -> &'static str {
        "test.inorder"
    }

    fn protocol(&self) -> &'static str {
        "inorder"
    }

    fn correlation(&self) -> meta_protocol::Correlation {
        meta_protocol::Correlation::InOrder
    }

    fn new_codec(
        &self,
        side: meta_protocol::Side,
        options: meta_protocol::CodecOptions,
    ) -> Box<dyn meta_protocol::Codec> {
        custom_codec_example::CustomCodecFactory.new_codec(side, options)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_protocols_share_a_fifo_connection() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let mut p = proxy(vec![route("all", vec![], to("a"))]);
        p.codec = "test.inorder".into();
        let mut registry = codecs();
        registry.register(std::sync::Arc::new(InOrderCustom));
        let engine = Engine::start(bootstrap(p, vec![cluster("a", &[a])]), registry)
            .await
            .unwrap();
        let addr = engine.listener_addrs()[0].1;
        let mut warm = Client::connect(addr).await;
        assert_eq!(warm.call(1, 1, b"w").await, (false, "a:w".into()));
        let mut tasks = Vec::new();
        for c in 0..10u32 {
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                for r in 1..=50u32 {
                    let body = format!("{c}/{r}");
                    assert_eq!(
                        client.call(r, 1, body.as_bytes()).await,
                        (false, format!("a:{body}"))
                    );
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    })
    .await;
}

/// Waits `cmd * 100 ms` for commands 7 and 8, then lets 7 through and denies 8; other commands
/// pass at once.
struct SlowCheck;

impl meta_proxy_engine::filter::Filter for SlowCheck {
    fn name(&self) -> &'static str {
        "test.slow_check"
    }

    fn on_request(
        &self,
        ctx: &mut meta_proxy_engine::filter::RequestContext<'_>,
    ) -> meta_proxy_engine::filter::FilterStatus {
        use meta_proxy_engine::filter::FilterStatus;
        let cmd: u64 = ctx
            .meta
            .get("cmd")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if cmd != 7 && cmd != 8 {
            return FilterStatus::Continue;
        }
        FilterStatus::Wait(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(cmd * 100)).await;
            if cmd == 8 {
                let r =
                    meta_protocol::LocalReply::new(meta_protocol::ErrorKind::OverLimit, "later");
                return FilterStatus::LocalReply(r);
            }
            FilterStatus::Continue
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_filters_do_not_block_the_connection() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        // The waiting filter first, then one that denies cmd 9: the chain resumes after a wait.
        let deny = std::sync::Arc::new(DenyCmd9(Default::default()));
        assert!(engine.set_filters("l", vec![std::sync::Arc::new(SlowCheck), deny]));
        let mut c = Client::connect(addr).await;
        c.send(&request(1, 8, b"")).await;
        c.send(&request(2, 7, b"w")).await;
        c.send(&request(3, 1, b"x")).await;
        let mut order = Vec::new();
        for _ in 0..3 {
            let f = c.recv().await.expect("an answer");
            let err = f.meta.status == meta_protocol::ResponseStatus::Error;
            order.push((
                f.meta.request_id,
                err,
                String::from_utf8_lossy(&f.bytes[16..]).into_owned(),
            ));
        }
        // The request that did not wait is answered first; 7 (700 ms) then 8 (800 ms) follow.
        assert_eq!(order[0], (3, false, "a:x".into()));
        assert_eq!(order[1], (2, false, "a:w".into()));
        assert_eq!(order[2], (1, true, "later".into()));
        assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
        let reason = r#"meta_protocol_local_replies_total{listener="l",reason="over_limit"}"#;
        assert_eq!(metric(&engine, reason), 1.0);
    })
    .await;
}
