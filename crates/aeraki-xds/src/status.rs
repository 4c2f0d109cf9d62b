//! What every connected proxy has been sent, ACKed and NACKed: the registry behind
//! [`XdsServer::status`](crate::XdsServer::status).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use aeraki_model::resources::Flavor;

/// Which RPC a proxy is connected with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// ADS `StreamAggregatedResources` (state of the world).
    AdsSotw,
    /// ADS `DeltaAggregatedResources`.
    AdsDelta,
    /// RDS `StreamRoutes` (state of the world).
    RdsSotw,
    /// RDS `DeltaRoutes`.
    RdsDelta,
}

/// One connected stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyStatus {
    /// Server-local stream id (unique for the process lifetime).
    pub stream_id: u64,
    pub kind: StreamKind,
    /// `node.id`.
    pub node_id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `node.user_agent_name`.
    pub user_agent: String,
    /// The resource set this node is served.
    pub flavor: Flavor,
    /// Remote address of the connection, when the transport knows it.
    pub peer: Option<SocketAddr>,
    /// When the first request (the one carrying the node) arrived.
    pub connected_since: SystemTime,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// The exchange for one type URL on one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeStatus {
    /// Resource names subscribed to (empty with `wildcard`: everything).
    pub wildcard: bool,
    pub subscribed: Vec<String>,
    /// Version of the last response sent (SotW `version_info`, delta `system_version_info`).
    pub last_sent_version: Option<String>,
    /// Nonce of the last response sent.
    pub last_sent_nonce: Option<String>,
    /// Version the proxy last ACKed.
    pub last_acked_version: Option<String>,
    /// The last NACK, if any (kept after later ACKs, for diagnosis).
    pub last_nack: Option<Nack>,
}

/// A rejected response.
#[derive(Debug, Clone, PartialEq)]
pub struct Nack {
    /// The version that was rejected (the one we sent with the NACKed nonce).
    pub version: String,
    /// `error_detail.message` from the proxy.
    pub message: String,
    pub at: SystemTime,
}

/// Shared table of live streams.
#[derive(Debug, Default, Clone)]
pub(crate) struct Registry {
    streams: Arc<Mutex<HashMap<u64, ProxyStatus>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, ProxyStatus>> {
        // A panic while holding the lock cannot leave the table inconsistent (every update
        // is a single field write), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, status: ProxyStatus) {
        self.lock().insert(status.stream_id, status);
    }

    pub(crate) fn remove(&self, stream_id: u64) {
        self.lock().remove(&stream_id);
    }

    /// Applies `f` to one type's status of one stream (no-op once the stream is gone).
    pub(crate) fn update_type(
        &self,
        stream_id: u64,
        type_url: &str,
        f: impl FnOnce(&mut TypeStatus),
    ) {
        if let Some(status) = self.lock().get_mut(&stream_id) {
            f(status.types.entry(type_url.to_owned()).or_default());
        }
    }

    /// Snapshot of all streams, sorted by node id then stream id.
    pub(crate) fn all(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
        all
    }
}

/// Removes a stream's status when its task ends, however it ends.
pub(crate) struct StreamGuard {
    pub(crate) registry: Registry,
    pub(crate) stream_id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.registry.remove(self.stream_id);
    }
}
