//! The control plane's xDS server: Envoy v3 ADS (state-of-the-world and delta), Aeraki's plain
//! RDS service, per-node versions, ACK/NACK tracking and status.
//!
//! The caller (the `aeraki` binary) translates the mesh into one
//! [`ResourceSet`] per [`Flavor`] and hands them to [`XdsServer::publish`]. Every connected
//! stream is woken and pushes what changed for its node: a node whose
//! `user_agent_name` is `"envoy"` gets the `Envoy` set, any other node the `MetaProxy` set.
//! [`XdsServer::status`] reports what each stream was sent, ACKed and NACKed.
//! [`Debouncer`] coalesces bursts of change triggers before a publish.
//!
//! Protocol details (versions, nonces, wildcards, ordering, limits) are in `docs/xds.md`.

mod debounce;
mod delta;
mod encoded;
mod grpc;
mod service;
mod snapshot;
mod sotw;
mod status;
mod stream;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aeraki_model::resources::{Flavor, ResourceSet};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use debounce::Debouncer;
pub use status::{Nack, ProxyStatus, StreamKind, TypeStatus};

use snapshot::Snapshot;
use status::Registry;

/// Largest message accepted from a proxy (requests are small; NACK details can be long).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The xDS server. Cheap to clone: all clones share the same snapshots and streams.
#[derive(Debug, Clone)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// Serialises publishers so that versions are stored in counter order.
    publish_lock: Mutex<u64>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    registry: Registry,
    /// Subscription sets shared between SotW streams.
    interner: status::Interner,
    next_stream: AtomicU64,
    next_nonce: AtomicU64,
}

impl Shared {
    pub(crate) fn next_nonce(&self) -> String {
        (self.next_nonce.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }
}

impl Default for XdsServer {
    fn default() -> Self {
        Self::new()
    }
}

impl XdsServer {
    /// A server with nothing published: streams may connect, but get no response until the
    /// first [`publish`](Self::publish).
    pub fn new() -> Self {
        let (snapshot, _) = watch::channel(Arc::new(Snapshot::default()));
        XdsServer {
            shared: Arc::new(Shared {
                publish_lock: Mutex::new(0),
                snapshot,
                registry: Registry::default(),
                interner: Default::default(),
                next_stream: AtomicU64::new(0),
                next_nonce: AtomicU64::new(0),
            }),
        }
    }

    /// Stores the resources of every flavour under a new version and wakes every stream.
    /// Returns the version (`"1"`, `"2"`, …; never reused within the process). A flavour
    /// missing from `snapshots` is served as empty.
    pub fn publish(&self, snapshots: BTreeMap<Flavor, ResourceSet>) -> String {
        let mut counter = self
            .shared
            .publish_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *counter += 1;
        let prev = self.shared.snapshot.borrow().clone();
        let snapshot = Arc::new(Snapshot::new(*counter, snapshots, Some(&prev)));
        let version = snapshot.version_string();
        let old = self.shared.snapshot.send_replace(snapshot);
        drop(counter);
        // Freeing a large snapshot (10,000 services: ~0.5 s) must not delay the push: whatever
        // the streams no longer hold is freed off the publishing thread.
        // (If no thread can be started, the closure and the snapshot are dropped right here.)
        let spawned = std::thread::Builder::new()
            .name("xds-free".into())
            .spawn(move || drop((old, prev)));
        if let Err(e) = spawned {
            tracing::debug!("old snapshot freed inline: {e}");
        }
        tracing::debug!(version, "published xDS snapshot");
        version
    }

    /// The last published version (`None` before the first publish).
    pub fn version(&self) -> Option<String> {
        let snapshot = self.shared.snapshot.borrow();
        (snapshot.version > 0).then(|| snapshot.version_string())
    }

    /// Every live stream: its node, flavour and per-type exchange state.
    pub fn status(&self) -> Vec<ProxyStatus> {
        self.shared.registry.all()
    }

    /// How many live streams last ACKed `version` of `type_url` (what polling
    /// [`status`](Self::status) for it would count, without copying every stream's status).
    pub fn acked_count(&self, type_url: &str, version: &str) -> usize {
        self.shared.registry.count_acked(type_url, version)
    }

    /// The ADS gRPC service, for embedding in a caller's tonic router.
    pub fn ads_service(&self) -> AggregatedDiscoveryServiceServer<service::Ads> {
        AggregatedDiscoveryServiceServer::new(service::Ads(self.shared.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Aeraki's RDS gRPC service (the MetaProxy flavour's routes), for embedding.
    pub fn rds_service(&self) -> RouteDiscoveryServiceServer<service::Rds> {
        RouteDiscoveryServiceServer::new(service::Rds(self.shared.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Serves ADS and RDS on `listener` until `shutdown` completes.
    pub fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        let ads = grpc::SotwFast {
            inner: self.ads_service(),
            shared: self.shared.clone(),
            kind: StreamKind::AdsSotw,
            method: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        };
        let rds = grpc::SotwFast {
            inner: self.rds_service(),
            shared: self.shared.clone(),
            kind: StreamKind::RdsSotw,
            method: "/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes",
        };
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            // A proxy busy applying a full state of the world (the first sync of a large mesh,
            // with many proxies syncing at once) may answer a ping late: with tonic's default
            // 20 s, a simulated proxy lost its connection 50 s into the 10,000-service x
            // 1,000-proxy benchmark (docs/benchmarks.md).
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(90)))
            .add_service(ads)
            .add_service(rds);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming_shutdown(incoming, shutdown)
    }

    /// Serves ADS and RDS on `listener` forever.
    pub fn serve(
        &self,
        listener: TcpListener,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        self.serve_with_shutdown(listener, std::future::pending())
    }

    /// Binds `addr` and serves ADS and RDS on it forever.
    pub async fn serve_addr(&self, addr: SocketAddr) -> Result<(), ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(self.serve(listener).await?)
    }
}

/// Why [`XdsServer::serve_addr`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind xDS address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}
