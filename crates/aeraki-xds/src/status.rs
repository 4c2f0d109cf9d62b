//! What every connected proxy has been sent, ACKed and NACKed: the registry behind
//! [`XdsServer::status`](crate::XdsServer::status).

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    streams: Arc<Mutex<HashMap<u64, Stored>>>,
}

/// One stream's status; the subscribed names are kept as the stream's shared set (interned
/// across streams, see [`Interner`]) and copied into `TypeStatus::subscribed` only by `all`.
#[derive(Debug)]
struct Stored {
    status: ProxyStatus,
    subscribed: HashMap<String, Arc<BTreeSet<String>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Stored>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, status: ProxyStatus) {
        let stored = Stored {
            status,
            subscribed: HashMap::new(),
        };
        self.lock().insert(stored.status.stream_id, stored);
    }

    pub(crate) fn remove(&self, stream_id: u64) {
        self.lock().remove(&stream_id);
    }

    pub(crate) fn update_type(
        &self,
        stream_id: u64,
        type_url: &str,
        f: impl FnOnce(&mut TypeStatus),
    ) {
        if let Some(stored) = self.lock().get_mut(&stream_id) {
            f(stored.status.types.entry(type_url.to_owned()).or_default());
        }
    }

    pub(crate) fn set_subscription(
        &self,
        stream_id: u64,
        type_url: &str,
        wildcard: bool,
        names: Arc<BTreeSet<String>>,
    ) {
        if let Some(stored) = self.lock().get_mut(&stream_id) {
            stored
                .status
                .types
                .entry(type_url.to_owned())
                .or_default()
                .wildcard = wildcard;
            stored.subscribed.insert(type_url.to_owned(), names);
        }
    }

    pub(crate) fn all(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self
            .lock()
            .values()
            .map(|stored| {
                let mut status = stored.status.clone();
                for (type_url, names) in &stored.subscribed {
                    let t = status.types.entry(type_url.clone()).or_default();
                    t.subscribed = names.iter().cloned().collect();
                }
                status
            })
            .collect();
        all.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
        all
    }

    /// Streams whose last ACK of `type_url` is `version` (without copying any status).
    pub(crate) fn count_acked(&self, type_url: &str, version: &str) -> usize {
        self.lock()
            .values()
            .filter(|s| {
                s.status
                    .types
                    .get(type_url)
                    .and_then(|t| t.last_acked_version.as_deref())
                    == Some(version)
            })
            .count()
    }
}

/// Subscription sets shared between streams: streams that subscribe to the same names (1,000
/// proxies of one namespace naming the same 30,000 clusters) hold one set, not one each.
/// Held weakly; a set is freed with the last stream using it.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    sets: Mutex<HashMap<u64, Vec<std::sync::Weak<BTreeSet<String>>>>>,
}

impl Interner {
    pub(crate) fn intern(&self, names: BTreeSet<String>) -> Arc<BTreeSet<String>> {
        let mut hash = crate::snapshot::Fnv::new();
        for name in &names {
            hash.write(name.as_bytes());
            hash.write(&[0]);
        }
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = sets.entry(hash.finish()).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(same) = bucket
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|s| **s == names)
        {
            return same;
        }
        let set = Arc::new(names);
        bucket.push(Arc::downgrade(&set));
        if sets.len() > 4096 {
            sets.retain(|_, b| b.iter().any(|w| w.strong_count() > 0));
        }
        set
    }
}

pub(crate) struct StreamGuard {
    pub(crate) registry: Registry,
    pub(crate) stream_id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.registry.remove(self.stream_id);
    }
}
