//! Codecs decode only the metadata keys a listener reads, and learn when that changes: real
//! Dubbo traffic (meta-bench's client and sample servers, through the project's Dubbo codec)
//! routed and rate limited on attachments, and upstream connections renewed when the response
//! keys change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use codec_dubbo::DubboCodecFactory;
use common::*;
use meta_bench::{CallError, Client as DubboClient, Protocol, ServerOptions, serve};
use meta_config::{
    FilterConfig, LocalRateLimit, LocalRateLimitCondition, MetadataMatcher, RouteConfig,
    TokenBucket,
};
use meta_protocol::ReadKeys;
use meta_proxy_engine::filter::Filter;
use meta_proxy_engine::{CodecRegistry, Engine};
use tokio::net::TcpListener;

fn exact(name: &str, value: &str) -> MetadataMatcher {
    MetadataMatcher::exact(name, value)
}

/// A meta-bench Dubbo server answering `hello <name> from <server>`.
async fn dubbo_server(server: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let opts = ServerOptions {
        name: server.into(),
        ..ServerOptions::default()
    };
    tokio::spawn(serve(Protocol::Dubbo, l, opts));
    addr
}

/// An engine with one Dubbo listener `l` (routes, then `filters` and the router) over clusters
/// `a` and `b`.
async fn dubbo_engine(
    routes: Vec<meta_config::Route>,
    filters: Vec<FilterConfig>,
) -> (Arc<Engine>, SocketAddr) {
    let (a, b) = (dubbo_server("a").await, dubbo_server("b").await);
    let mut p = proxy(routes);
    p.codec = DubboCodecFactory::NAME.into();
    p.protocol = "dubbo".into();
    p.filters = filters;
    p.filters.push(FilterConfig::Router);
    let cfg = bootstrap(p, vec![cluster("a", &[a]), cluster("b", &[b])]);
    let mut codecs = CodecRegistry::new();
    codecs.register(Arc::new(DubboCodecFactory));
    let engine = Engine::start(cfg, codecs).await.unwrap();
    let addr = engine.listener_addrs()[0].1;
    (engine, addr)
}

/// The server that answered a call with attachment `user`.
async fn served_by(c: &mut DubboClient, user: &str) -> String {
    let reply = c.call("world", &[("user", user)]).await.unwrap();
    reply.server().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_connection_follows_routes_that_start_reading_attachments() {
    bounded(async {
        let by_method = route("by-method", vec![exact("method", "sayHello")], to("a"));
        let (engine, addr) = dubbo_engine(vec![by_method.clone()], vec![]).await;
        let mut c = DubboClient::connect(Protocol::Dubbo, addr).await.unwrap();
        // Routes read only `method`: the attachments are not decoded.
        assert_eq!(served_by(&mut c, "bob").await, "a");

        // RDS-style swap to a route on the `user` attachment; same connection.
        let by_user = route("by-user", vec![exact("user", "bob")], to("b"));
        let routes = RouteConfig {
            name: "rc".into(),
            routes: vec![by_user, by_method.clone()],
        };
        assert!(engine.update_routes("l", routes));
        assert_eq!(served_by(&mut c, "bob").await, "b");
        assert_eq!(served_by(&mut c, "alice").await, "a");

        // And back to `method` only: still routed, attachments ignored again.
        let routes = RouteConfig {
            name: "rc".into(),
            routes: vec![by_method],
        };
        assert!(engine.update_routes("l", routes));
        assert_eq!(served_by(&mut c, "bob").await, "a");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_on_an_attachment_with_method_only_routes() {
    bounded(async {
        let one_per_hour = TokenBucket {
            max_tokens: 1,
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(3600),
        };
        let limit = FilterConfig::LocalRateLimit(LocalRateLimit {
            stat_prefix: "rl".into(),
            token_bucket: None,
            conditions: vec![LocalRateLimitCondition {
                matchers: vec![exact("user", "bob")],
                token_bucket: one_per_hour,
            }],
        });
        let by_method = route("by-method", vec![exact("method", "sayHello")], to("a"));
        let (_engine, addr) = dubbo_engine(vec![by_method], vec![limit]).await;
        let mut c = DubboClient::connect(Protocol::Dubbo, addr).await.unwrap();
        assert_eq!(served_by(&mut c, "bob").await, "a");
        match c.call("world", &[("user", "bob")]).await {
            // SERVER_THREADPOOL_EXHAUSTED: the native over-limit answer.
            Err(CallError::DubboStatus { status: 100, .. }) => {}
            other => panic!("bob's second call should be rate limited: {other:?}"),
        }
        for _ in 0..3 {
            assert_eq!(served_by(&mut c, "alice").await, "a");
        }
    })
    .await;
}

/// A filter that reads one response key.
struct ReadsResponse(&'static str);

impl Filter for ReadsResponse {
    fn name(&self) -> &'static str {
        "test.reads_response"
    }

    fn request_keys(&self) -> ReadKeys {
        ReadKeys::none()
    }

    fn response_keys(&self) -> ReadKeys {
        ReadKeys::only([self.0])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_response_keys_renews_upstream_connections() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let (engine, addr) = start(bootstrap(
            proxy(vec![route("r", vec![], to("a"))]),
            vec![cluster("a", &[a])],
        ))
        .await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

        // New routes, same keys: the upstream connection stays.
        let routes = RouteConfig {
            name: "rc".into(),
            routes: vec![
                route("r2", vec![cmd_is("1")], to("a")),
                route("rest", vec![], to("a")),
            ],
        };
        assert!(engine.update_routes("l", routes));
        assert_eq!(c.call(2, 1, b"y").await, (false, "a:y".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

        // A filter reading a response key: upstream codecs must be created for it, so the
        // connection drains (its request in flight still gets its answer, then it closes) and
        // the next request opens a new one.
        c.send(&custom_codec_example::request(3, CMD_HOLD, b"held"))
            .await;
        until(|| seen.requests.load(Ordering::SeqCst) >= 3).await;
        assert!(engine.set_filters("l", vec![Arc::new(ReadsResponse("x-cost"))]));
        seen.release.notify_one();
        let held = c.recv().await.unwrap();
        assert_eq!(held.meta.request_id, 3);
        assert_eq!(held.meta.status, meta_protocol::ResponseStatus::Ok);
        assert_eq!(&held.bytes[16..], b"a:held");
        assert_eq!(c.call(4, 1, b"z").await, (false, "a:z".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        until(|| seen.eofs.load(Ordering::SeqCst) >= 1).await;

        // The same keys again: nothing to renew.
        assert!(engine.set_filters("l", vec![Arc::new(ReadsResponse("X-Cost"))]));
        assert_eq!(c.call(5, 1, b"w").await, (false, "a:w".into()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        assert_eq!(seen.eofs.load(Ordering::SeqCst), 1);
    })
    .await;
}
