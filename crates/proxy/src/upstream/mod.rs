//! Multiplexed upstream connections.
//!
//! One [`UpstreamConn`] is shared by every downstream connection of a listener that goes to the
//! same (cluster, endpoint, protocol variant). Each request gets a fresh request id on that
//! connection (skipping ids still in flight); the table maps it back to the original id and the
//! waiting caller. For protocols without ids ([`Correlation::InOrder`]) the table is a FIFO.
//!
//! Registration and the hand-off of the bytes to the writer happen under the table lock, so the
//! table always knows a request before its bytes can reach the server, and FIFO order equals
//! wire order.
//!
//! A connection carries at most the cluster's `max_requests_per_connection` requests: after the
//! last one it is *draining* (see [`table`]): the pool no longer hands it out, a forward that
//! races gets its request back ([`ForwardError::Closed`]), and it closes gracefully once every
//! response owed is delivered, freeing its place under `max_connections`. A connection with
//! nothing in flight and no traffic for the cluster's idle timeout closes the same way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{Codec, CodecError, Correlation, ErrorKind, Frame, LocalReply, Mutation};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::health::ConnSlot;
use crate::io::write_pump;
use crate::metrics::{ClusterMetrics, ListenerMetrics};

mod reader;
mod table;

use reader::{Sweeps, read_loop};
use table::{Ending, Table};

/// Longest time between two sweeps (callers gone, drain finished, idleness).
const MAX_SWEEP: Duration = Duration::from_secs(1);
/// Shortest time between two sweeps (for very short idle timeouts).
const MIN_SWEEP: Duration = Duration::from_millis(10);

/// What a caller receives: the upstream response (original id restored) or a local reply.
pub type Outcome = Result<Frame, LocalReply>;

/// A response mutation and the counter of its failures.
pub struct ResponseMutation {
    /// Key/values written into the response.
    pub mutation: Mutation,
    /// `mutation_failures_total{direction="response"}`.
    pub failures: Counter,
}

/// A request waiting for its response.
pub struct Waiter {
    /// The downstream request id, restored on the response.
    pub original_id: u64,
    /// Where the outcome goes; a dropped receiver means the caller gave up.
    pub tx: oneshot::Sender<Outcome>,
    /// Applied to the response before delivery.
    pub response_mutation: Option<Arc<ResponseMutation>>,
}

/// How much a connection carries: the requests waiting for a response and their size on the
/// wire. The pool opens another connection when the least loaded one is busy by either
/// measure ([`crate::listener::UpstreamLimits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Load {
    /// Bytes of the requests waiting for a response (first: it orders loads).
    pub bytes: usize,
    /// Requests waiting for a response.
    pub requests: usize,
}

/// Why a request could not be handed to the connection.
pub enum ForwardError {
    /// The connection is closed: the request is handed back, to be sent on another one.
    Closed(Box<(Frame, Option<Waiter>)>),
    /// The connection closed while the request was being handed over; it is lost.
    Lost,
    /// Every request id the protocol can carry is in flight on this connection.
    Exhausted,
    /// The codec could not rewrite the request id.
    SetId(CodecError),
}

struct Shared {
    table: Mutex<Table>,
    correlation: Correlation,
    max_id: u64,
    /// `upstream_cx_max_requests_total` of the cluster.
    max_requests_reached: Counter,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle to one shared upstream connection (cheap to clone).
#[derive(Clone)]
pub struct UpstreamConn {
    shared: Arc<Shared>,
    /// The [`crate::cluster::ClusterState`] generation it was opened for.
    generation: u64,
}

/// Everything a new upstream connection needs.
pub struct UpstreamSpec {
    /// Endpoint address.
    pub addr: SocketAddr,
    /// Cluster connect timeout.
    pub connect_timeout: Duration,
    /// A fresh upstream-side codec for this connection.
    pub codec: Box<dyn Codec>,
    /// How responses are correlated.
    pub correlation: Correlation,
    /// Cluster metric handles.
    pub cluster: ClusterMetrics,
    /// Listener metric handles (upstream decode errors).
    pub listener: ListenerMetrics,
    /// This connection's place under the cluster's `max_connections`, held until it closes.
    pub slot: ConnSlot,
    /// The generation of the cluster state it is opened for.
    pub generation: u64,
    /// Requests it carries before draining (`None`: no limit).
    pub max_requests: Option<u32>,
    /// Closed after this long with nothing in flight and no traffic (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl UpstreamConn {
    /// Creates the connection handle and spawns its task (connect, then read and write).
    /// Requests may be forwarded at once: they queue until the connection is up.
    pub fn spawn(spec: UpstreamSpec) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::new(tx, spec.max_requests)),
            correlation: spec.correlation,
            max_id: spec.codec.max_request_id().max(1),
            max_requests_reached: spec.cluster.cx_max_requests.clone(),
        });
        let generation = spec.generation;
        tokio::spawn(run(Arc::downgrade(&shared), rx, spec));
        Self { shared, generation }
    }

    /// The generation of the cluster state it was opened for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes no new request, delivers the responses owed, then closes (its cluster was
    /// replaced by a config update).
    pub fn drain(&self) {
        let mut table = self.shared.table();
        if table.drain() {
            table.keep = Some(self.shared.clone());
            table.finish_if_drained();
        }
    }

    /// Whether the connection takes no new request (draining, closing or gone): new requests
    /// must use another one.
    pub fn is_closed(&self) -> bool {
        self.shared.table().closed
    }

    /// Requests waiting for a response and their bytes.
    pub fn load(&self) -> Load {
        let t = self.shared.table();
        Load {
            requests: t.in_flight(),
            bytes: t.in_flight_bytes(),
        }
    }

    /// Sends `frame` upstream. With a waiter, allocates a fresh id, rewrites it with `set_id`
    /// (the codec that decoded the frame) and registers the waiter; without (one-way), just
    /// sends. The request that uses up the connection's budget makes it drain.
    pub fn forward(
        &self,
        mut frame: Frame,
        waiter: Option<Waiter>,
        set_id: &mut dyn FnMut(&mut Frame, u64) -> Result<(), CodecError>,
    ) -> Result<(), ForwardError> {
        let s = &self.shared;
        let mut table = s.table();
        if table.closed {
            return Err(ForwardError::Closed(Box::new((frame, waiter))));
        }
        let mut registered = None;
        if let Some(w) = waiter {
            let id = match s.correlation {
                Correlation::RequestId => {
                    if table.in_flight() as u64 >= s.max_id {
                        return Err(ForwardError::Exhausted);
                    }
                    let id = table.allocate(s.max_id);
                    set_id(&mut frame, id).map_err(ForwardError::SetId)?;
                    Some(id)
                }
                Correlation::InOrder => None,
            };
            table.register(id, w, frame.bytes.len());
            registered = Some(id);
        }
        let handed = table
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(frame.bytes).is_ok());
        if !handed {
            if let Some(id) = registered {
                table.unregister(id);
            }
            table.closed = true;
            return Err(ForwardError::Lost);
        }
        if table.count_request() {
            s.max_requests_reached.inc();
            table.keep = Some(self.shared.clone());
            table.finish_if_drained();
        }
        Ok(())
    }
}

/// Clears a draining connection's self-reference when its task ends, however it ends.
struct Release(Weak<Shared>);

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            let keep = s.table().keep.take();
            drop(keep);
        }
    }
}

async fn run(shared: Weak<Shared>, rx: mpsc::UnboundedReceiver<BytesMut>, mut spec: UpstreamSpec) {
    let _release = Release(shared.clone());
    let fail = |reply: LocalReply| {
        if let Some(s) = shared.upgrade() {
            let keep = s.table().fail_all(&reply);
            drop(keep);
        }
    };
    let addr = spec.addr;
    let connected = tokio::time::timeout(spec.connect_timeout, TcpStream::connect(addr)).await;
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return connect_failed(&spec, &fail, &e.to_string()),
        Err(_) => return connect_failed(&spec, &fail, "connect timeout"),
    };
    let _ = stream.set_nodelay(true);
    spec.slot.ready();
    spec.cluster.cx_total.inc();
    spec.cluster.cx_active.inc();
    tracing::debug!(%addr, "upstream connected");
    let (rd, wr) = stream.into_split();
    let mut rx = rx;
    let sweeps = Sweeps {
        shared: &shared,
        idle_timeout: spec.idle_timeout,
    };
    let reader = read_loop(sweeps, rd, spec.codec, &spec.cluster, &spec.listener);
    let reply = tokio::select! {
        r = reader => r,
        w = write_pump(wr, &mut rx, None) => {
            let detail = w.err().map_or_else(|| "closed".to_owned(), |e| e.to_string());
            LocalReply::new(ErrorKind::UpstreamReset, format!("upstream write to {addr} failed: {detail}"))
        }
    };
    let ending = shared.upgrade().and_then(|s| s.table().ending);
    match ending {
        Some(Ending::Idle) => {
            spec.cluster.cx_idle_timeout.inc();
            tracing::debug!(%addr, "upstream connection closed: idle");
        }
        Some(Ending::MaxRequests) => {
            tracing::debug!(%addr, "upstream connection closed: max requests per connection");
        }
        Some(Ending::Replaced) => {
            tracing::debug!(%addr, "upstream connection closed: cluster updated");
        }
        None => tracing::debug!(%addr, "upstream connection closed: {}", reply.message),
    }
    fail(reply);
    spec.cluster.cx_active.dec();
}

fn connect_failed(spec: &UpstreamSpec, fail: &dyn Fn(LocalReply), err: &str) {
    spec.cluster.connect_failures.inc();
    tracing::debug!(addr = %spec.addr, "upstream connect failed: {err}");
    let msg = format!("upstream connect error to {}: {err}", spec.addr);
    fail(LocalReply::new(ErrorKind::ConnectFailure, msg));
}

#[cfg(test)]
mod tests;
