//! Test helpers: a scriptable backend speaking the example custom protocol, a client, config
//! builders. Everything on 127.0.0.1, port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use custom_codec_example::{
    CustomCodecFactory, FLAG_ERROR, FLAG_HEARTBEAT, FLAG_ONE_WAY, FLAG_RESPONSE, frame, request,
    response,
};
use meta_config::{
    Bootstrap, Cluster, Destination, Endpoint, FilterConfig, Listener, MetaProtocolProxy,
    MetadataMatcher, Route, RouteConfig,
};
use meta_protocol::{Codec, CodecFactory, CodecOptions, Frame, MessageKind, Side};
use meta_proxy_engine::{CodecRegistry, Engine, UpstreamLimits};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Backend commands.
pub const CMD_NEVER: u16 = 2;
pub const CMD_CLOSE: u16 = 3;
pub const CMD_GARBAGE: u16 = 4;
pub const CMD_PING_FIRST: u16 = 6;
/// Answers with an error response (`FLAG_ERROR`).
pub const CMD_ERROR: u16 = 8;
/// Holds the answer until the test calls `Seen::release.notify_one()`.
pub const CMD_HOLD: u16 = 999;

/// What a backend observed.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    pub one_way: AtomicUsize,
    pub heartbeat_replies: AtomicUsize,
    /// Connections the proxy closed gracefully (EOF read).
    pub eofs: AtomicUsize,
    /// Lets one `CMD_HOLD` answer go.
    pub release: tokio::sync::Notify,
}

/// A backend answering `<name>:<body>` to every request (after a random delay up to
/// `max_delay_ms`, so answers come back out of order), with special commands above.
pub async fn backend(name: &'static str, max_delay_ms: u64) -> (SocketAddr, Arc<Seen>) {
    backend_forced(name, max_delay_ms, None).await
}

/// A backend that handles every two-way request as command `force` when set (e.g. a host
/// that always resets, never answers or always errs).
pub async fn backend_forced(
    name: &'static str,
    max_delay_ms: u64,
    force: Option<u16>,
) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(backend_conn(name, max_delay_ms, force, stream, s.clone()));
        }
    });
    (addr, seen)
}

async fn backend_conn(
    name: &'static str,
    max_delay: u64,
    force: Option<u16>,
    stream: TcpStream,
    seen: Arc<Seen>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<BytesMut>();
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if b.is_empty() {
                return; // close request
            }
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut codec = CustomCodecFactory.new_codec(Side::Downstream, CodecOptions::default());
    let mut buf = BytesMut::new();
    let mut ping_waiters: Vec<(u32, u16, BytesMut)> = Vec::new();
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                seen.eofs.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            let id = f.meta.request_id as u32;
            let mut cmd: u16 = f.meta.get("cmd").unwrap().parse().unwrap();
            let body = f.bytes[16..].to_vec();
            match f.meta.kind {
                MessageKind::Heartbeat => {
                    seen.heartbeat_replies.fetch_add(1, Ordering::SeqCst);
                    for (id, cmd, b) in ping_waiters.drain(..) {
                        let _ = tx.send(response(id, cmd, &b));
                    }
                    continue;
                }
                MessageKind::OneWay => {
                    seen.one_way.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                _ => {}
            }
            seen.requests.fetch_add(1, Ordering::SeqCst);
            cmd = force.unwrap_or(cmd);
            let mut out = BytesMut::from(name.as_bytes());
            out.extend_from_slice(b":");
            out.extend_from_slice(&body);
            match cmd {
                CMD_NEVER => {}
                CMD_CLOSE => {
                    let _ = tx.send(BytesMut::new());
                    return;
                }
                CMD_ERROR => {
                    let _ = tx.send(frame(FLAG_RESPONSE | FLAG_ERROR, id, cmd, &out));
                }
                CMD_GARBAGE => {
                    let _ = tx.send(BytesMut::from(&b"\x00\x01garbage"[..]));
                }
                CMD_HOLD => {
                    let (tx, seen) = (tx.clone(), seen.clone());
                    tokio::spawn(async move {
                        seen.release.notified().await;
                        let _ = tx.send(response(id, cmd, &out));
                    });
                }
                CMD_PING_FIRST => {
                    ping_waiters.push((id, cmd, out));
                    let _ = tx.send(frame(FLAG_HEARTBEAT, 4242, 0, b""));
                }
                _ if max_delay == 0 => {
                    let _ = tx.send(response(id, cmd, &out));
                }
                _ => {
                    let delay = if max_delay > 0 {
                        rand::rng().random_range(0..=max_delay)
                    } else {
                        0
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let _ = tx.send(response(id, cmd, &out));
                    });
                }
            }
        }
    }
}

/// A client of the custom protocol.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    codec: Box<dyn Codec>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            codec: CustomCodecFactory.new_codec(Side::Upstream, CodecOptions::default()),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Next frame, `None` on EOF.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends a request and returns (is_error, body) of its answer.
    pub async fn call(&mut self, id: u32, cmd: u16, body: &[u8]) -> (bool, String) {
        self.send(&request(id, cmd, body)).await;
        let f = self.recv().await.expect("an answer");
        assert_eq!(f.meta.request_id, u64::from(id));
        assert_eq!(f.bytes[3] & FLAG_RESPONSE, FLAG_RESPONSE);
        let err = f.meta.status == meta_protocol::ResponseStatus::Error;
        (err, String::from_utf8_lossy(&f.bytes[16..]).into_owned())
    }
}

pub fn one_way(id: u32, cmd: u16, body: &[u8]) -> BytesMut {
    frame(FLAG_ONE_WAY, id, cmd, body)
}

pub fn heartbeat(id: u32) -> BytesMut {
    frame(FLAG_HEARTBEAT, id, 0, b"")
}

/// Matcher `cmd == value`.
pub fn cmd_is(value: &str) -> MetadataMatcher {
    MetadataMatcher::exact("cmd", value)
}

pub fn route(name: &str, matchers: Vec<MetadataMatcher>, destination: Destination) -> Route {
    Route {
        name: name.into(),
        matchers,
        destination,
        request_mutation: vec![],
        response_mutation: vec![],
        timeout: Some(Duration::from_secs(5)),
        hash_policy: vec![],
        mirrors: vec![],
        retry: None,
        fault: None,
    }
}

pub fn to(cluster: &str) -> Destination {
    Destination::Cluster(cluster.into())
}

pub fn cluster(name: &str, addrs: &[SocketAddr]) -> Cluster {
    Cluster::fixed(name, addrs.iter().copied().map(Endpoint::at))
}

pub fn proxy(routes: Vec<Route>) -> MetaProtocolProxy {
    MetaProtocolProxy {
        stat_prefix: "test".into(),
        protocol: "custom".into(),
        codec: "example.codec.custom".into(),
        route_config: RouteConfig {
            name: "rc".into(),
            routes,
        },
        rds: None,
        filters: vec![FilterConfig::Router],
        idle_timeout: None,
        max_message_size: 1024 * 1024,
    }
}

pub fn bootstrap(proxy: MetaProtocolProxy, clusters: Vec<Cluster>) -> Bootstrap {
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

pub fn codecs() -> CodecRegistry {
    let mut r = CodecRegistry::new();
    r.register(Arc::new(CustomCodecFactory));
    r
}

/// Starts an engine and returns it with the address of listener `l`.
pub async fn start(config: Bootstrap) -> (Arc<Engine>, SocketAddr) {
    start_limited(config, UpstreamLimits::default()).await
}

/// [`start`] with the listener's upstream connection limits.
pub async fn start_limited(config: Bootstrap, limits: UpstreamLimits) -> (Arc<Engine>, SocketAddr) {
    let engine = Engine::start_with(config, codecs(), limits).await.unwrap();
    let addr = engine.listener_addrs()[0].1;
    (engine, addr)
}

/// Limits that keep every request to an endpoint on one upstream connection.
pub fn one_connection() -> UpstreamLimits {
    UpstreamLimits {
        max_connections: 1,
        ..UpstreamLimits::default()
    }
}

/// Value of the first metric line starting with `prefix` (labels included), 0 if absent.
pub fn metric(engine: &Engine, prefix: &str) -> f64 {
    engine
        .metrics_text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A local address nothing listens on (connect is refused).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Runs `f` with a bound on time.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

/// Polls until `f` holds (inside [`bounded`], which limits the wait).
pub async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
