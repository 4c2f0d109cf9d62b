//! What SotW and delta streams share: node identification, type checks, status recording and
//! the snapshot subscription.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use aeraki_model::resources::{Flavor, ROUTE};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::Shared;
use crate::snapshot::{Snapshot, flavor_of, push_rank};
use crate::status::{Nack, ProxyStatus, StreamGuard, StreamKind, TypeStatus};

/// One gRPC stream's identity and its link to the server.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stream_id: u64,
    kind: StreamKind,
    peer: Option<SocketAddr>,
    /// For the RDS service: the only type served (and the flavour is always MetaProxy).
    only_routes: bool,
    flavor: Option<Flavor>,
    node_id: String,
    guard: Option<StreamGuard>,
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, kind: StreamKind, peer: Option<SocketAddr>) -> Self {
        let stream_id = shared
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let only_routes = matches!(kind, StreamKind::RdsSotw | StreamKind::RdsDelta);
        Conn {
            shared,
            stream_id,
            kind,
            peer,
            only_routes,
            flavor: None,
            node_id: String::new(),
            guard: None,
        }
    }

    /// The latest snapshot, marking it seen.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>> {
        self.shared.snapshot.subscribe()
    }

    /// Identifies the node from the first request (which must carry it); later requests may
    /// omit it. Registers the stream in the status table.
    pub(crate) fn identify(&mut self, node: Option<&Node>) -> Result<Flavor, Status> {
        if let Some(flavor) = self.flavor {
            return Ok(flavor);
        }
        let Some(node) = node else {
            return Err(Status::invalid_argument(
                "the first request of a stream must carry `node` (node.id, node.user_agent_name)",
            ));
        };
        let flavor = if self.only_routes {
            Flavor::MetaProxy
        } else {
            flavor_of(&node.user_agent_name)
        };
        self.flavor = Some(flavor);
        self.node_id = node.id.clone();
        self.shared.registry.insert(ProxyStatus {
            stream_id: self.stream_id,
            kind: self.kind,
            node_id: node.id.clone(),
            cluster: node.cluster.clone(),
            user_agent: node.user_agent_name.clone(),
            flavor,
            peer: self.peer,
            connected_since: SystemTime::now(),
            types: Default::default(),
        });
        self.guard = Some(StreamGuard {
            registry: self.shared.registry.clone(),
            stream_id: self.stream_id,
        });
        tracing::info!(node = %node.id, user_agent = %node.user_agent_name, ?flavor, kind = ?self.kind, peer = ?self.peer, "xDS stream opened");
        Ok(flavor)
    }

    /// The type URL a request is about: ADS requires one; the RDS service serves only routes
    /// (an empty type URL means routes).
    pub(crate) fn type_url(&self, type_url: &str) -> Result<String, Status> {
        if self.only_routes {
            if type_url.is_empty() || type_url == ROUTE {
                return Ok(ROUTE.to_owned());
            }
            return Err(Status::invalid_argument(format!(
                "type_url: the route discovery service serves only {ROUTE}, not {type_url}"
            )));
        }
        if type_url.is_empty() {
            return Err(Status::invalid_argument(
                "type_url: an aggregated discovery request must name its resource type",
            ));
        }
        Ok(type_url.to_owned())
    }

    pub(crate) fn record(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        self.shared
            .registry
            .update_type(self.stream_id, type_url, f);
    }

    pub(crate) fn record_sent(&self, type_url: &str, version: &str, nonce: &str) {
        self.record(type_url, |t| {
            t.last_sent_version = Some(version.to_owned());
            t.last_sent_nonce = Some(nonce.to_owned());
        });
    }

    pub(crate) fn record_ack(&self, type_url: &str, version: &str) {
        tracing::debug!(node = %self.node_id, type_url, version, "xDS ACK");
        self.record(type_url, |t| {
            t.last_acked_version = Some(version.to_owned())
        });
    }

    pub(crate) fn record_nack(&self, type_url: &str, version: &str, detail: &RpcStatus) {
        tracing::warn!(
            node = %self.node_id,
            type_url,
            version,
            code = detail.code,
            error = %detail.message,
            "xDS NACK: the proxy rejected a response"
        );
        let nack = Nack {
            version: version.to_owned(),
            message: detail.message.clone(),
            at: SystemTime::now(),
        };
        self.record(type_url, |t| t.last_nack = Some(nack));
    }

    /// Records the subscription; `names` is the stream's (interned) set, shared, not copied.
    pub(crate) fn record_subscription(
        &self,
        type_url: &str,
        wildcard: bool,
        names: Arc<std::collections::BTreeSet<String>>,
    ) {
        self.shared
            .registry
            .set_subscription(self.stream_id, type_url, wildcard, names);
    }

    /// The node's flavour, once identified.
    pub(crate) fn flavor(&self) -> Option<Flavor> {
        self.flavor
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.flavor.is_some() {
            tracing::info!(node = %self.node_id, kind = ?self.kind, "xDS stream closed");
        }
    }
}

/// What distinguishes a SotW stream from a delta stream; [`run`] is the loop they share.
pub(crate) trait Exchange {
    /// A request off the stream.
    type Request: Send + 'static;
    /// A response onto it.
    type Response: Send + 'static;
    /// What the stream keeps per type URL.
    type State: Default + Send;
    /// Names the stream kind in logs.
    const NAME: &'static str;

    /// Applies one request (ACK/NACK bookkeeping, subscription changes). Returns the type URL
    /// when a response may be due; an error refuses the request and ends the stream.
    fn on_request(
        conn: &mut Conn,
        types: &mut BTreeMap<String, Self::State>,
        request: Self::Request,
    ) -> Result<Option<String>, Status>;

    /// Sends the type's response from `snapshot` if one is due. Returns false when the client
    /// has gone.
    fn respond<'a>(
        conn: &'a Conn,
        types: &'a mut BTreeMap<String, Self::State>,
        type_url: &'a str,
        snapshot: &'a Arc<Snapshot>,
        tx: &'a mpsc::Sender<Result<Self::Response, Status>>,
    ) -> impl Future<Output = bool> + Send + 'a;
}

/// Runs one stream until the client goes away or a request is refused: answers requests, and
/// pushes every subscribed type (in push order) when a new snapshot is published.
pub(crate) async fn run<E: Exchange>(
    mut conn: Conn,
    mut requests: Streaming<E::Request>,
    tx: mpsc::Sender<Result<E::Response, Status>>,
) {
    let mut snapshots = conn.subscribe();
    let mut types: BTreeMap<String, E::State> = BTreeMap::new();
    loop {
        tokio::select! {
            message = requests.message() => match message {
                Ok(Some(request)) => {
                    // Not `borrow_and_update`: a newer snapshot seen here must still wake the
                    // push branch, or types this request does not answer would miss it.
                    let snapshot = snapshots.borrow().clone();
                    match E::on_request(&mut conn, &mut types, request) {
                        Ok(Some(type_url)) => {
                            if !E::respond(&conn, &mut types, &type_url, &snapshot, &tx).await {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(status) => {
                            tracing::warn!(node = %conn.node_id(), %status, "refusing {} request", E::NAME);
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(node = %conn.node_id(), %status, "{} stream ended with an error", E::NAME);
                    return;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                let mut order: Vec<String> = types.keys().cloned().collect();
                order.sort_by_key(|t| push_rank(t));
                for type_url in order {
                    if !E::respond(&conn, &mut types, &type_url, &snapshot, &tx).await {
                        return;
                    }
                }
            }
        }
    }
}
