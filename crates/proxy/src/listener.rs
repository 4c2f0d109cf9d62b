//! A listener at runtime: its swappable route table, its upstream pool and the accept loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use meta_config::{Destination, MetaProtocolProxy, Route};
use meta_protocol::{CodecFactory, CodecOptions, Metadata, Mutation, ReadKeys, Side};
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::{ClusterMap, ClusterState};
use crate::filter::Filter;
use crate::health::Overflow;
use crate::metrics::{FaultMetrics, ListenerMetrics, Metrics, RouteMetrics};
use crate::read_keys::{self, ListenerCodecs};
use crate::upstream::{Load, ResponseMutation, UpstreamConn, UpstreamSpec};

/// One cluster a route may send to.
pub struct Target {
    /// Cluster name.
    pub cluster: String,
    /// Relative weight.
    pub weight: u32,
    /// Metric handles for this route × cluster.
    pub metrics: RouteMetrics,
}

/// A route ready to run: matchers, precomputed mutations and targets with metric handles.
pub struct RouteRt {
    /// The route as configured.
    pub route: Route,
    /// Route `request_mutation` as a [`Mutation`].
    pub request_mutation: Mutation,
    /// Route `response_mutation`, `None` when empty.
    pub response_mutation: Option<Arc<ResponseMutation>>,
    /// Destination clusters.
    pub targets: Vec<Target>,
    /// Mirror clusters, with the share of requests copied (parts per million).
    pub mirrors: Vec<(Target, u32)>,
    /// `faults_total` handles of this route.
    pub faults: FaultMetrics,
    total_weight: u64,
}

impl RouteRt {
    /// Whether every matcher holds for `meta`.
    pub fn matches(&self, meta: &Metadata) -> bool {
        self.route
            .matchers
            .iter()
            .all(|m| m.matches(meta.get(&m.name)))
    }

    /// The mirror targets that take a copy of this request.
    pub fn mirrors_to_use(&self) -> impl Iterator<Item = &Target> {
        self.mirrors.iter().filter_map(|(t, ppm)| {
            let take = *ppm >= 1_000_000 || rand::rng().random_range(0..1_000_000) < *ppm;
            take.then_some(t)
        })
    }

    /// The target cluster for one request (weighted random for a split).
    pub fn pick(&self) -> Option<&Target> {
        if self.targets.len() <= 1 || self.total_weight == 0 {
            return self.targets.first();
        }
        let mut r = rand::rng().random_range(0..self.total_weight);
        for t in &self.targets {
            if r < u64::from(t.weight) {
                return Some(t);
            }
            r -= u64::from(t.weight);
        }
        self.targets.last()
    }
}

/// The swappable part of a listener: proxy config, routes, filters, and the metadata keys they
/// read.
pub struct ListenerRt {
    /// The proxy configuration.
    pub proxy: MetaProtocolProxy,
    /// Routes in order.
    pub routes: Vec<RouteRt>,
    /// Filters before the router.
    pub filters: Vec<Arc<dyn Filter>>,
    /// Request metadata keys the routes and filters read (given to downstream codecs).
    pub request_keys: Arc<ReadKeys>,
    /// Response metadata keys the core and filters read (given to upstream codecs).
    pub response_keys: Arc<ReadKeys>,
}

impl ListenerRt {
    /// Builds the runtime form of `proxy` for listener `name`, with `filters` before the router.
    pub fn build(
        name: &str,
        proxy: MetaProtocolProxy,
        filters: Vec<Arc<dyn Filter>>,
        metrics: &Metrics,
        lm: &ListenerMetrics,
    ) -> Self {
        let routes = proxy
            .route_config
            .routes
            .iter()
            .map(|r| {
                let targets: Vec<Target> = match &r.destination {
                    Destination::Cluster(c) => vec![(c.clone(), 1)],
                    Destination::WeightedClusters(w) => {
                        w.iter().map(|w| (w.name.clone(), w.weight)).collect()
                    }
                }
                .into_iter()
                .map(|(cluster, weight)| Target {
                    metrics: metrics.route(name, &r.name, &cluster),
                    cluster,
                    weight,
                })
                .collect();
                let response_mutation = (!r.response_mutation.is_empty()).then(|| {
                    Arc::new(ResponseMutation {
                        mutation: r.response_mutation.iter().map(|(k, v)| (k, v)).collect(),
                        failures: lm.mutation_failures_response.clone(),
                    })
                });
                let mirrors = r
                    .mirrors
                    .iter()
                    .map(|m| {
                        let target = Target {
                            metrics: metrics.route(name, &r.name, &m.cluster),
                            cluster: m.cluster.clone(),
                            weight: 1,
                        };
                        (target, m.fraction_per_million)
                    })
                    .collect();
                RouteRt {
                    mirrors,
                    faults: metrics.faults(name, &r.name),
                    request_mutation: r.request_mutation.iter().map(|(k, v)| (k, v)).collect(),
                    response_mutation,
                    total_weight: targets.iter().map(|t| u64::from(t.weight)).sum(),
                    targets,
                    route: r.clone(),
                }
            })
            .collect();
        let request_keys = read_keys::request_keys(&proxy.route_config.routes, &filters);
        let response_keys = read_keys::response_keys(&filters);
        Self {
            proxy,
            routes,
            filters,
            request_keys: Arc::new(request_keys),
            response_keys: Arc::new(response_keys),
        }
    }

    /// Codec options from the proxy config.
    pub fn codec_options(&self) -> CodecOptions {
        CodecOptions {
            max_message_size: self.proxy.max_message_size,
        }
    }
}

type PoolKey = (SocketAddr, u32);

/// How many upstream connections a listener opens per (cluster, endpoint, variant).
///
/// Requests share one connection until it is *busy*: then another is opened, up to
/// `max_connections` (and the cluster's circuit-breaker `max_connections`), and each request
/// goes to the least loaded one. Small messages multiplex onto one connection (fewest sockets
/// and syscalls for the server); large ones spread out, because a single TCP connection
/// serialises them: the server decodes one connection's bytes in order, so a request queued
/// behind another's 100 KB waits for it (measured in docs/benchmarks.md: Dubbo 120 KB closed
/// loop 12-14 k/s on one connection, 19-21 k/s spread over up to four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// At most this many connections (at least 1).
    pub max_connections: usize,
    /// Busy: this many requests waiting for a response.
    pub busy_threshold: usize,
    /// Busy: requests of this many bytes in total waiting for a response.
    pub busy_bytes: usize,
}

impl UpstreamLimits {
    /// Whether a connection carrying `load` is busy.
    pub fn is_busy(&self, load: Load) -> bool {
        load.requests >= self.busy_threshold || load.bytes >= self.busy_bytes
    }
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        Self {
            max_connections: 4,
            busy_threshold: 512,
            busy_bytes: 128 * 1024,
        }
    }
}

/// A listener: fixed identity and codec, swappable routes, shared upstream pool.
pub struct ListenerShared {
    /// Listener name.
    pub name: String,
    /// The codec factory of its protocol (upstream codecs it creates get the listener's
    /// response keys, updated by [`ListenerShared::set_rt`]).
    pub(crate) factory: ListenerCodecs,
    /// Metric handles.
    pub metrics: ListenerMetrics,
    /// Routes and proxy config, swapped live ([`ListenerShared::set_rt`]).
    rt: ArcSwap<ListenerRt>,
    /// Every cluster of the engine.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// Flips to `true` when this listener stops (removed over xDS, or engine shutdown).
    pub shutdown: watch::Receiver<bool>,
    pool: Mutex<HashMap<String, HashMap<PoolKey, Vec<UpstreamConn>>>>,
    limits: UpstreamLimits,
}

impl ListenerShared {
    /// A listener runtime.
    pub fn new(
        name: String,
        factory: Arc<dyn CodecFactory>,
        metrics: ListenerMetrics,
        rt: ListenerRt,
        clusters: Arc<ArcSwap<ClusterMap>>,
        shutdown: watch::Receiver<bool>,
        limits: UpstreamLimits,
    ) -> Self {
        Self {
            name,
            factory: ListenerCodecs::new(factory, rt.response_keys.clone()),
            metrics,
            rt: ArcSwap::from_pointee(rt),
            clusters,
            shutdown,
            pool: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// A shared upstream connection to `addr` of `cluster` for downstream variant `variant`:
    /// the least busy open one; a new one if there is none, or if all are busy and the limit
    /// allows more. New connections count against the cluster's `max_connections`; at that
    /// limit an open connection to the endpoint is shared, and with none the request overflows.
    /// A draining connection (it reached `max_requests_per_connection`, or was opened under a
    /// previous config of the cluster) is never handed out: it leaves the pool but keeps its
    /// place under `max_connections` until it has closed.
    pub fn upstream(
        &self,
        cluster: &ClusterState,
        addr: SocketAddr,
        variant: u32,
        options: CodecOptions,
    ) -> Result<UpstreamConn, Overflow> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let name = &cluster.config.name;
        let mut best = None;
        if let Some(conns) = pool.get_mut(name).and_then(|m| m.get_mut(&(addr, variant))) {
            conns.retain(|c| {
                if c.generation() != cluster.generation {
                    // Opened under the cluster's previous config: finish, then close.
                    c.drain();
                    return false;
                }
                !c.is_closed()
            });
            best = conns
                .iter()
                .map(|c| (c.load(), c))
                .min_by_key(|(load, _)| *load)
                .map(|(load, c)| (load, c.clone()));
            if let Some((load, c)) = &best
                && (!self.limits.is_busy(*load) || conns.len() >= self.limits.max_connections)
            {
                return Ok(c.clone());
            }
        }
        // A new connection, if the cluster's max_connections allows; else share the least
        // busy one to this endpoint, if any.
        let Some(slot) = cluster.reserve_connection() else {
            return best.map(|(_, c)| c).ok_or(Overflow::MaxConnections);
        };
        let conn = UpstreamConn::spawn(UpstreamSpec {
            addr,
            connect_timeout: cluster.config.connect_timeout,
            codec: self.factory.new_codec(Side::Upstream, options),
            correlation: self.factory.correlation(),
            cluster: cluster.metrics.clone(),
            listener: self.metrics.clone(),
            slot,
            max_requests: cluster.config.max_requests_per_connection,
            idle_timeout: cluster.config.idle_timeout,
            generation: cluster.generation,
        });
        pool.entry(name.clone())
            .or_default()
            .entry((addr, variant))
            .or_default()
            .push(conn.clone());
        Ok(conn)
    }

    /// Accepts connections until shutdown.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tracing::debug!(listener = %self.name, %peer, "accepted");
                        tokio::spawn(crate::conn::serve(self.clone(), stream));
                    }
                    Err(e) => {
                        tracing::warn!(listener = %self.name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = shutdown_signal(&mut shutdown) => return,
            }
        }
    }

    /// The current routes, filters and proxy config.
    pub fn rt(&self) -> Arc<ListenerRt> {
        self.rt.load_full()
    }

    /// Installs new routes, filters or settings: the next request of every connection uses
    /// them; requests in flight finish on theirs. A key set equal to the current one keeps its
    /// `Arc`, so connections do not re-apply it. A change of the response keys drains the
    /// upstream connections (they finish what is in flight, then close), so that new requests
    /// get responses decoded for the new set; it happens only when the filters' declared
    /// response keys change (never with the built-in filters, which read none).
    pub fn set_rt(&self, mut rt: ListenerRt) {
        let current = self.rt.load_full();
        if rt.request_keys == current.request_keys {
            rt.request_keys = current.request_keys.clone();
        } else {
            tracing::debug!(listener = %self.name, keys = %rt.request_keys, "request keys read");
        }
        if rt.response_keys == current.response_keys {
            rt.response_keys = current.response_keys.clone();
            self.rt.store(Arc::new(rt));
            return;
        }
        tracing::debug!(listener = %self.name, keys = %rt.response_keys, "response keys read");
        // Under the pool lock: no connection is opened with the old keys once the new routes
        // are visible.
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        self.factory.set_response_keys(rt.response_keys.clone());
        self.rt.store(Arc::new(rt));
        for (_, endpoints) in pool.drain() {
            for conn in endpoints.into_values().flatten() {
                conn.drain();
            }
        }
    }
}

/// Resolves once shutdown was requested (never if the engine is dropped without it).
pub async fn shutdown_signal(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_by_requests_or_by_bytes() {
        let l = UpstreamLimits::default();
        let load = |requests, bytes| Load { bytes, requests };
        assert!(!l.is_busy(load(0, 0)));
        assert!(
            !l.is_busy(load(511, 1000)),
            "many small requests share a connection"
        );
        assert!(l.is_busy(load(512, 1000)));
        assert!(!l.is_busy(load(1, 120 * 1024)), "one 120 KB request");
        assert!(l.is_busy(load(2, 240 * 1024)), "two are busy");
        // The least loaded connection is the one with the fewest bytes waiting.
        assert!(load(9, 10) < load(1, 120 * 1024));
    }
}
