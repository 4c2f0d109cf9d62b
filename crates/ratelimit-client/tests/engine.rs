//! The engine's global rate-limit filter with this client against our RLS service
//! (aeraki-ratelimit, in memory) on real TCP: limits, failure modes, a cluster that arrives
//! later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aeraki_ratelimit::{Config, Service};
use custom_codec_example::{CustomCodecFactory, FLAG_ERROR, HEADER_LEN, request, response};
use meta_config::{
    Bootstrap, Cluster, Destination, Endpoint, FilterConfig, GlobalRateLimit, Listener,
    MetaProtocolProxy, RateLimitDescriptor, Route, RouteConfig,
};
use meta_proxy_engine::{CodecRegistry, Engine, Extensions, UpstreamLimits};
use meta_ratelimit_client::GrpcRateLimitClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const RLS_CONFIG: &str = r#"
domain: production
descriptors:
  - key: cmd
    value: "10"
    rate_limit: {unit: hour, requests_per_unit: 3}
"#;

/// The RLS on a free port; stops when the sender is dropped.
async fn rls() -> (SocketAddr, oneshot::Sender<()>) {
    let config = Config::from_yaml("rls.yaml", RLS_CONFIG).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(aeraki_ratelimit::serve_with_shutdown(
        listener,
        Service::new(config),
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

/// An upstream of the custom protocol answering "ok" to every request.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; HEADER_LEN];
                while s.read_exact(&mut head).await.is_ok() {
                    let id = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
                    let cmd = u16::from_be_bytes([head[8], head[9]]);
                    let len = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
                    let mut body = vec![0u8; len as usize];
                    if s.read_exact(&mut body).await.is_err()
                        || s.write_all(&response(id, cmd, b"ok")).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends one request; returns Ok(body) or Err(error body).
async fn call(s: &mut TcpStream, id: u32, cmd: u16) -> Result<String, String> {
    s.write_all(&request(id, cmd, b"x")).await.unwrap();
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await.unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    if head[3] & FLAG_ERROR != 0 {
        Err(body)
    } else {
        Ok(body)
    }
}

fn cluster(name: &str, addr: SocketAddr) -> Cluster {
    Cluster::fixed(name, [Endpoint::at(addr)])
}

fn config(deny: bool, clusters: Vec<Cluster>) -> Bootstrap {
    let limit = GlobalRateLimit {
        matchers: vec![],
        domain: "production".into(),
        // Generous: the first call also connects, on a busy 2-core machine.
        timeout: Duration::from_secs(2),
        failure_mode_deny: deny,
        cluster: "rls".into(),
        descriptors: vec![RateLimitDescriptor {
            property: "cmd".into(),
            descriptor_key: "cmd".into(),
        }],
    };
    let proxy = MetaProtocolProxy {
        stat_prefix: "t".into(),
        protocol: "custom".into(),
        codec: "example.codec.custom".into(),
        route_config: RouteConfig {
            name: "rc".into(),
            routes: vec![Route {
                name: "all".into(),
                matchers: vec![],
                destination: Destination::Cluster("up".into()),
                request_mutation: vec![],
                response_mutation: vec![],
                timeout: Some(Duration::from_secs(5)),
                hash_policy: vec![],
                mirrors: vec![],
                retry: None,
                fault: None,
            }],
        },
        rds: None,
        filters: vec![FilterConfig::RateLimit(limit), FilterConfig::Router],
        idle_timeout: None,
        max_message_size: 1 << 20,
    };
    Bootstrap {
        node_locality: None,
        node_id: None,
        admin: None,
        listeners: vec![Listener {
            name: "l".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            proxy,
        }],
        clusters,
        xds: None,
    }
}

async fn start(config: Bootstrap) -> (Arc<Engine>, TcpStream) {
    let mut codecs = CodecRegistry::new();
    codecs.register(Arc::new(CustomCodecFactory));
    let ext = Extensions {
        rate_limit_client: Some(Arc::new(GrpcRateLimitClient::new())),
    };
    let engine = Engine::start_with_extensions(config, codecs, UpstreamLimits::default(), ext)
        .await
        .unwrap();
    let addr = engine.listener_addrs()[0].1;
    (engine, TcpStream::connect(addr).await.unwrap())
}

fn metric(engine: &Engine, result: &str) -> f64 {
    let needle = format!(
        "meta_protocol_global_rate_limit_total{{listener=\"l\",domain=\"production\",result=\"{result}\"}} "
    );
    engine
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(|v| v.parse().unwrap()))
        .unwrap_or(0.0)
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_allowed_number_pass() {
    bounded(async {
        let (rls, _stop) = rls().await;
        let up = upstream().await;
        let (engine, mut c) =
            start(config(true, vec![cluster("up", up), cluster("rls", rls)])).await;
        let mut ok = 0;
        for id in 0..8 {
            match call(&mut c, id, 10).await {
                Ok(body) => {
                    assert_eq!(body, "ok");
                    ok += 1;
                }
                Err(body) => assert_eq!(
                    body,
                    format!("meta protocol global ratelimit: request '{id}' has been rate limited")
                ),
            }
        }
        assert_eq!(ok, 3);
        // No limit configured for cmd 11: the service answers OK.
        for id in 100..105 {
            assert_eq!(call(&mut c, id, 11).await.unwrap(), "ok");
        }
        assert_eq!(metric(&engine, "ok"), 8.0);
        assert_eq!(metric(&engine, "over_limit"), 5.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_service_follows_the_failure_mode() {
    bounded(async {
        let up = upstream().await;
        // A port nothing listens on.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let clusters = vec![cluster("up", up), cluster("rls", dead)];
        let (engine, mut c) = start(config(true, clusters.clone())).await;
        for id in 0..3 {
            let body = call(&mut c, id, 10).await.unwrap_err();
            assert!(
                body.starts_with(&format!(
                    "meta protocol global ratelimit: request '{id}' denied: rate-limit service failed"
                )),
                "{body}"
            );
        }
        assert_eq!(metric(&engine, "error"), 3.0);
        let (engine, mut c) = start(config(false, clusters)).await;
        for id in 0..3 {
            assert_eq!(call(&mut c, id, 10).await.unwrap(), "ok");
        }
        assert_eq!(metric(&engine, "failure_mode_allowed"), 3.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rls_cluster_may_arrive_later() {
    bounded(async {
        let (rls, _stop) = rls().await;
        let up = upstream().await;
        let (engine, mut c) = start(config(true, vec![cluster("up", up)])).await;
        let body = call(&mut c, 1, 10).await.unwrap_err();
        assert!(body.contains("unknown rate-limit cluster 'rls'"), "{body}");
        engine
            .update_clusters(vec![cluster("up", up), cluster("rls", rls)])
            .await
            .unwrap();
        let results: Vec<bool> = {
            let mut v = Vec::new();
            for id in 2..7 {
                v.push(call(&mut c, id, 10).await.is_ok());
            }
            v
        };
        assert_eq!(results, [true, true, true, false, false]);
    })
    .await;
}
