//! The meta-proxy engine: protocol-agnostic listeners, connection manager, filter chain, router,
//! multiplexed upstream connections, load balancing and metrics.
//!
//! It owns everything between a listening socket and an upstream socket, for any protocol that
//! implements [`meta_protocol::Codec`]. It runs on a [`meta_config::Bootstrap`] (never protobuf)
//! kept behind `ArcSwap`s so routes and clusters can be replaced live: in-flight requests finish
//! on the configuration they started with. Listeners are added, changed in place, or removed
//! with a drain at runtime (`dynamic`, driven by the xDS client). It must not depend on protobuf, xDS or the admin
//! HTTP server (which renders [`Engine::metrics_text`] and [`Engine::config_dump`]).
//!
//! Request path: accept → per connection a task decodes frames (pipelined) → heartbeat answered
//! locally, requests run the [`filter`] chain then the router (`router`: first matching route,
//! fault delay/abort, weighted cluster split, circuit-breaker admission, load balancer over the
//! endpoints outlier detection has not ejected, by priority level (`health`; in locality-aware
//! clusters the levels come from the proxy's `node.locality`, `locality`), attempts with
//! per-try timeouts and retries on other hosts within the route timeout) → a shared upstream connection per (cluster, endpoint, protocol
//! variant) rewrites request ids so that many clients multiplex on it → the response gets its
//! original id back and is written by the connection's single writer. Every failure is answered
//! in the client's protocol ([`meta_protocol::Codec::on_error`]) without closing the connection.
//! The built-in filters (local and global rate limits) and the factory that builds a listener's
//! chain from its config are in [`filters`]; services they need from outside the engine (the
//! RLS gRPC client) come in [`Extensions`]. Each listener derives from its routes and filters
//! the metadata keys it reads and hands them to its codecs (`read_keys`), so a codec may skip
//! decoding the rest.
//!
//! Not yet: streaming frames after `StreamInit` (dropped).

mod cluster;
mod conn;
mod dynamic;
pub mod filter;
pub mod filters;
mod health;
mod io;
pub mod lb;
mod listener;
mod locality;
pub mod metrics;
mod read_keys;
mod readbuf;
mod router;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use meta_config::Bootstrap;
use meta_protocol::CodecFactory;
use tokio::sync::watch;

use crate::cluster::{ClusterMap, ClusterState};
pub use crate::dynamic::ListenerChange;
pub use crate::filters::{
    Extensions, RateLimitClient, RateLimitDecision, RateLimitDescriptor, RateLimitError,
    RateLimitFuture, RateLimitRequest,
};
pub use crate::listener::UpstreamLimits;
use crate::listener::{ListenerRt, ListenerShared};
use crate::metrics::Metrics;
pub use crate::upstream::Load;

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
    /// The engine is shutting down: no listener may be added.
    #[error("listener '{listener}': the engine is shutting down")]
    ShuttingDown {
        /// Listener name.
        listener: String,
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

/// A running listener: its runtime, where it is bound, and how to stop it.
pub(crate) struct ListenerEntry {
    pub(crate) shared: Arc<ListenerShared>,
    /// Bound address (the actual port when the config asked for port 0).
    pub(crate) bound: SocketAddr,
    /// Stops this listener (accept loop and, after draining, its connections).
    pub(crate) stop: watch::Sender<bool>,
    /// The accept loop; it owns the listening socket.
    pub(crate) accept: tokio::task::JoinHandle<()>,
}

/// A running proxy: listeners accepting, clusters resolved, metrics collecting.
pub struct Engine {
    metrics: Arc<Metrics>,
    config: ArcSwap<Bootstrap>,
    listeners: Mutex<Vec<ListenerEntry>>,
    /// Removed listeners whose connections may still be draining (for [`Engine::shutdown`]).
    draining: Mutex<Vec<Arc<ListenerShared>>>,
    /// Serialises listener and cluster updates (xDS applies them one at a time anyway).
    update: tokio::sync::Mutex<()>,
    clusters: Arc<ArcSwap<ClusterMap>>,
    codecs: CodecRegistry,
    limits: UpstreamLimits,
    extensions: filters::Extensions,
    ready: AtomicBool,
    shutting_down: AtomicBool,
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
        Self::start_with_extensions(config, codecs, limits, filters::Extensions::default()).await
    }

    /// [`Engine::start_with`] plus the services filters use (e.g. the global rate-limit
    /// client).
    pub async fn start_with_extensions(
        config: Bootstrap,
        codecs: CodecRegistry,
        limits: UpstreamLimits,
        extensions: filters::Extensions,
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
        let mut config = config;
        locality::assign_all(config.node_locality.as_ref(), &mut config.clusters);
        let metrics = Arc::new(Metrics::new());
        let clusters = Arc::new(ArcSwap::from_pointee(build_clusters(
            &config.clusters,
            &HashMap::new(),
            &metrics,
        )?));
        for c in clusters.load().values() {
            c.resolve().await;
            c.spawn_refresh();
        }
        let engine = Arc::new(Engine {
            metrics,
            config: ArcSwap::from_pointee(config.clone()),
            listeners: Mutex::new(Vec::new()),
            draining: Mutex::new(Vec::new()),
            update: tokio::sync::Mutex::new(()),
            clusters,
            codecs,
            limits,
            extensions,
            ready: AtomicBool::new(true),
            shutting_down: AtomicBool::new(false),
        });
        // Bind everything first: a listener that cannot bind fails the start before any serves.
        let mut bound = Vec::new();
        for (l, factory) in config.listeners.iter().zip(factories) {
            bound.push(engine.bind(l, factory).await?);
        }
        for b in bound {
            engine.spawn_listener(b);
        }
        Ok(engine)
    }

    fn listeners(&self) -> MutexGuard<'_, Vec<ListenerEntry>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find_listener(&self, name: &str) -> Option<Arc<ListenerShared>> {
        self.listeners()
            .iter()
            .find(|e| e.shared.name == name)
            .map(|e| e.shared.clone())
    }

    /// Actual bound address of every listener, by name.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners()
            .iter()
            .map(|e| (e.shared.name.clone(), e.bound))
            .collect()
    }

    /// Metric handles for an xDS client feeding this engine.
    pub fn xds_metrics(&self) -> metrics::XdsMetrics {
        self.metrics.xds()
    }

    /// Prometheus/OpenMetrics text of every metric.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// JSON of the effective configuration.
    pub fn config_dump(&self) -> serde_json::Value {
        serde_json::to_value(&**self.config.load()).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the engine serves traffic: false once shutdown started, or while
    /// [`Engine::set_ready`] says it waits for its first dynamic configuration.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks the engine ready or not (an xDS client clears it until the first LDS+CDS round
    /// was applied).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Replaces every cluster (xDS CDS/EDS). Requests in flight keep the cluster they picked;
    /// upstream connections of a removed cluster close when their last request is done.
    /// A cluster whose configuration is unchanged, or changed only in its STATIC/EDS
    /// endpoints, is kept (with its balancer state and upstream connections).
    pub async fn update_clusters(
        &self,
        mut clusters: Vec<meta_config::Cluster>,
    ) -> Result<(), EngineError> {
        let _guard = self.update.lock().await;
        locality::assign_all(self.config.load().node_locality.as_ref(), &mut clusters);
        let current = self.clusters.load_full();
        let map = build_clusters(&clusters, &current, &self.metrics)?;
        for (name, c) in &map {
            if !current.get(name).is_some_and(|old| Arc::ptr_eq(old, c)) {
                c.resolve().await;
                c.spawn_refresh();
            }
        }
        self.clusters.store(Arc::new(map));
        let mut cfg = (**self.config.load()).clone();
        cfg.clusters = clusters;
        self.config.store(Arc::new(cfg));
        Ok(())
    }

    /// Replaces the routes of listener `name` (xDS RDS); returns false if there is no such
    /// listener. New requests use the new routes at once; requests in flight finish on theirs.
    pub fn update_routes(&self, name: &str, routes: meta_config::RouteConfig) -> bool {
        let Some(l) = self.find_listener(name) else {
            return false;
        };
        let current = l.rt();
        let mut proxy = current.proxy.clone();
        proxy.route_config = routes;
        let filters = current.filters.clone();
        let rt = ListenerRt::build(name, proxy.clone(), filters, &self.metrics, &l.metrics);
        l.set_rt(rt);
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
        let Some(l) = self.find_listener(name) else {
            return false;
        };
        let proxy = l.rt().proxy.clone();
        l.set_rt(ListenerRt::build(
            name,
            proxy,
            filters,
            &self.metrics,
            &l.metrics,
        ));
        true
    }

    /// Stops accepting, lets open connections finish their in-flight requests (at most
    /// 5 s), then returns.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let mut all: Vec<Arc<ListenerShared>> = Vec::new();
        for e in self.listeners().iter() {
            let _ = e.stop.send(true);
            all.push(e.shared.clone());
        }
        all.extend(
            self.draining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            let open: i64 = all.iter().map(|l| l.metrics.cx_active.get()).sum();
            if open <= 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Builds the cluster map, reusing a current cluster whose configuration is the same except,
/// for STATIC and EDS clusters, its endpoints (those are replaced in place).
fn build_clusters(
    clusters: &[meta_config::Cluster],
    current: &ClusterMap,
    metrics: &Metrics,
) -> Result<ClusterMap, EngineError> {
    let mut map = ClusterMap::new();
    for c in clusters {
        if let Some(old) = current.get(&c.name)
            && same_but_endpoints(&old.config, c)
        {
            if c.discovery != meta_config::DiscoveryType::StrictDns {
                old.set_static_endpoints(&c.endpoints)?;
                map.insert(c.name.clone(), old.clone());
                continue;
            }
            if old.config.endpoints == c.endpoints {
                map.insert(c.name.clone(), old.clone());
                continue;
            }
        }
        map.insert(
            c.name.clone(),
            Arc::new(ClusterState::new(c.clone(), metrics)?),
        );
    }
    Ok(map)
}

fn same_but_endpoints(a: &meta_config::Cluster, b: &meta_config::Cluster) -> bool {
    let strip = |c: &meta_config::Cluster| {
        let mut c = c.clone();
        c.endpoints.clear();
        serde_json::to_value(c).ok()
    };
    strip(a).is_some() && strip(a) == strip(b)
}
