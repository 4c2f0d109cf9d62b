//! The meta-proxy engine: protocol-agnostic listeners, connection manager, filter chain, router,
//! multiplexed upstream connections, load balancing and metrics.
//!
//! It owns everything between a listening socket and an upstream socket, for any protocol that
//! implements [`meta_protocol::Codec`]. It runs on a [`meta_config::Bootstrap`] (never protobuf)
//! kept behind `ArcSwap`s so routes and clusters can be replaced live: in-flight requests finish
//! on the configuration they started with. It must not depend on protobuf, xDS or the admin
//! HTTP server (which renders [`Engine::metrics_text`] and [`Engine::config_dump`]).
//!
//! Request path: accept → per connection a task decodes frames (pipelined) → heartbeat answered
//! locally, requests run the [`filter`] chain then the router (first matching route, weighted
//! cluster split, load balancer) → a shared upstream connection per (cluster, endpoint, protocol
//! variant) rewrites request ids so that many clients multiplex on it → the response gets its
//! original id back and is written by the connection's single writer. Every failure is answered
//! in the client's protocol ([`meta_protocol::Codec::on_error`]) without closing the connection.
//!
//! Not yet: streaming frames after `StreamInit` (dropped), hash-policy load balancing, retries.

mod cluster;
mod conn;
pub mod filter;
mod io;
pub mod lb;
mod listener;
pub mod metrics;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use meta_config::Bootstrap;
use meta_protocol::CodecFactory;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::{ClusterMap, ClusterState};
pub use crate::listener::UpstreamLimits;
use crate::listener::{ListenerRt, ListenerShared};
use crate::metrics::Metrics;

/// How long [`Engine::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Codec factories by codec name (e.g. `aeraki.meta_protocol.codec.dubbo`).
#[derive(Default, Clone)]
pub struct CodecRegistry {
    by_name: HashMap<String, Arc<dyn CodecFactory>>,
}

impl CodecRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` under [`CodecFactory::name`] (replacing an earlier one of that name).
    pub fn register(&mut self, f: Arc<dyn CodecFactory>) {
        self.by_name.insert(f.name().to_owned(), f);
    }

    /// The factory registered as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn CodecFactory>> {
        self.by_name.get(name).cloned()
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A listener names a codec nobody registered.
    #[error("listener '{listener}': unknown codec '{codec}'")]
    UnknownCodec {
        /// Listener name.
        listener: String,
        /// The codec name it asks for.
        codec: String,
    },
    /// A listener's address could not be bound.
    #[error("listener '{listener}': cannot bind {address}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address asked for.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A STATIC cluster endpoint that is not an IP address.
    #[error("cluster '{cluster}': endpoint host '{host}' is not an IP address (use STRICT_DNS)")]
    BadEndpoint {
        /// Cluster name.
        cluster: String,
        /// The offending host.
        host: String,
    },
}

/// A running proxy: listeners accepting, clusters resolved, metrics collecting.
pub struct Engine {
    metrics: Arc<Metrics>,
    config: ArcSwap<Bootstrap>,
    listeners: Vec<(Arc<ListenerShared>, SocketAddr)>,
    clusters: Arc<ArcSwap<ClusterMap>>,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl Engine {
    /// Validates (unknown codec → error naming the listener), binds every listener (port 0
    /// allowed), resolves STRICT_DNS clusters and starts their refresh, spawns accept loops on
    /// the current tokio runtime.
    pub async fn start(
        config: Bootstrap,
        codecs: CodecRegistry,
    ) -> Result<Arc<Engine>, EngineError> {
        Self::start_with(config, codecs, UpstreamLimits::default()).await
    }

    /// [`Engine::start`] with explicit upstream connection limits.
    pub async fn start_with(
        config: Bootstrap,
        codecs: CodecRegistry,
        limits: UpstreamLimits,
    ) -> Result<Arc<Engine>, EngineError> {
        let limits = UpstreamLimits {
            max_connections: limits.max_connections.max(1),
            ..limits
        };
        let factories = config
            .listeners
            .iter()
            .map(|l| {
                codecs
                    .get(&l.proxy.codec)
                    .ok_or_else(|| EngineError::UnknownCodec {
                        listener: l.name.clone(),
                        codec: l.proxy.codec.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = Arc::new(Metrics::new());
        let clusters = Arc::new(ArcSwap::from_pointee(build_clusters(&config, &metrics)?));
        for c in clusters.load().values() {
            c.resolve().await;
            c.spawn_refresh();
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut bound = Vec::new();
        for (l, factory) in config.listeners.iter().zip(factories) {
            let socket =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| EngineError::Bind {
                        listener: l.name.clone(),
                        address: l.address,
                        source,
                    })?;
            let addr = socket.local_addr().unwrap_or(l.address);
            let lm = metrics.listener(&l.name, factory.protocol());
            let rt = ListenerRt::build(&l.name, l.proxy.clone(), &metrics, &lm);
            let shared = Arc::new(ListenerShared::new(
                l.name.clone(),
                factory,
                lm,
                rt,
                clusters.clone(),
                shutdown_rx.clone(),
                limits,
            ));
            bound.push((shared, addr, socket));
        }
        let mut listeners = Vec::new();
        for (shared, addr, socket) in bound {
            tracing::info!(listener = %shared.name, %addr, "listening");
            tokio::spawn(shared.clone().accept_loop(socket));
            listeners.push((shared, addr));
        }
        Ok(Arc::new(Engine {
            metrics,
            config: ArcSwap::from_pointee(config),
            listeners,
            clusters,
            ready: AtomicBool::new(true),
            shutdown,
        }))
    }

    /// Actual bound address of every listener, by name.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(l, a)| (l.name.clone(), *a))
            .collect()
    }

    /// Prometheus/OpenMetrics text of every metric.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// JSON of the effective configuration.
    pub fn config_dump(&self) -> serde_json::Value {
        serde_json::to_value(&**self.config.load()).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the engine serves traffic (false once shutdown started).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replaces every cluster (xDS CDS/EDS). Requests in flight keep the cluster they picked;
    /// upstream connections of a removed cluster close when their last request is done.
    pub async fn update_clusters(
        &self,
        clusters: Vec<meta_config::Cluster>,
    ) -> Result<(), EngineError> {
        let mut cfg = (**self.config.load()).clone();
        cfg.clusters = clusters;
        let map = build_clusters(&cfg, &self.metrics)?;
        for c in map.values() {
            c.resolve().await;
            c.spawn_refresh();
        }
        self.clusters.store(Arc::new(map));
        self.config.store(Arc::new(cfg));
        Ok(())
    }

    /// Replaces the routes of listener `name` (xDS RDS); returns false if there is no such
    /// listener. New requests use the new routes at once; requests in flight finish on theirs.
    pub fn update_routes(&self, name: &str, routes: meta_config::RouteConfig) -> bool {
        let Some((l, _)) = self.listeners.iter().find(|(l, _)| l.name == name) else {
            return false;
        };
        let current = l.rt.load_full();
        let mut proxy = current.proxy.clone();
        proxy.route_config = routes;
        let mut rt = ListenerRt::build(name, proxy.clone(), &self.metrics, &l.metrics);
        rt.filters = current.filters.clone();
        l.rt.store(Arc::new(rt));
        let mut cfg = (**self.config.load()).clone();
        if let Some(lc) = cfg.listeners.iter_mut().find(|lc| lc.name == name) {
            lc.proxy = proxy;
        }
        self.config.store(Arc::new(cfg));
        true
    }

    /// Replaces the filters that run before the router on listener `name` (the router stays
    /// last); returns false if there is no such listener. Requests in flight keep their chain.
    pub fn set_filters(&self, name: &str, filters: Vec<Arc<dyn filter::Filter>>) -> bool {
        let Some((l, _)) = self.listeners.iter().find(|(l, _)| l.name == name) else {
            return false;
        };
        let current = l.rt.load_full();
        let mut rt = ListenerRt::build(name, current.proxy.clone(), &self.metrics, &l.metrics);
        rt.filters = filters;
        l.rt.store(Arc::new(rt));
        true
    }

    /// Stops accepting, lets open connections finish their in-flight requests (at most
    /// 5 s), then returns.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            let open: i64 = self
                .listeners
                .iter()
                .map(|(l, _)| l.metrics.cx_active.get())
                .sum();
            if open <= 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn build_clusters(config: &Bootstrap, metrics: &Metrics) -> Result<ClusterMap, EngineError> {
    config
        .clusters
        .iter()
        .map(|c| {
            Ok((
                c.name.clone(),
                Arc::new(ClusterState::new(c.clone(), metrics)?),
            ))
        })
        .collect()
}
