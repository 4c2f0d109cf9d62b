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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecError, Correlation, ErrorKind, Frame, LocalReply, MessageKind, Mutation,
};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};

use crate::health::ConnSlot;
use crate::io::write_pump;
use crate::metrics::{ClusterMetrics, ListenerMetrics};
use crate::readbuf::ReadBuf;

/// Sweeps (one a second) without traffic after which an upstream connection is closed.
const IDLE_SWEEPS: u32 = 60;

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

#[derive(Default)]
struct Table {
    closed: bool,
    /// Requests forwarded so far (wrapping), to detect idleness.
    forwarded: u64,
    /// `forwarded` at the last sweep and how many sweeps saw no traffic and nothing in flight.
    last_forwarded: u64,
    idle_sweeps: u32,
    next_id: u64,
    by_id: HashMap<u64, Waiter>,
    fifo: VecDeque<Waiter>,
}

impl Table {
    fn in_flight(&self) -> usize {
        self.by_id.len() + self.fifo.len()
    }

    /// Closes the table and answers every waiter with `reply`.
    fn fail_all(&mut self, reply: &LocalReply) {
        self.closed = true;
        for (_, w) in self.by_id.drain() {
            let _ = w.tx.send(Err(reply.clone()));
        }
        for w in self.fifo.drain(..) {
            let _ = w.tx.send(Err(reply.clone()));
        }
    }

    /// Drops waiters whose caller went away (timed out, downstream closed); returns true (and
    /// closes the table) when the connection has been idle for [`IDLE_SWEEPS`] sweeps.
    fn sweep(&mut self) -> bool {
        self.by_id.retain(|_, w| !w.tx.is_closed());
        // FIFO entries keep their place (a late response must still pop them).
        if self.forwarded == self.last_forwarded && self.in_flight() == 0 {
            self.idle_sweeps += 1;
        } else {
            self.idle_sweeps = 0;
        }
        self.last_forwarded = self.forwarded;
        if self.idle_sweeps >= IDLE_SWEEPS {
            self.closed = true;
        }
        self.closed
    }
}

struct Shared {
    tx: mpsc::UnboundedSender<BytesMut>,
    table: Mutex<Table>,
    correlation: Correlation,
    max_id: u64,
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
}

impl UpstreamConn {
    /// Creates the connection handle and spawns its task (connect, then read and write).
    /// Requests may be forwarded at once: they queue until the connection is up.
    pub fn spawn(spec: UpstreamSpec) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            table: Mutex::new(Table::default()),
            correlation: spec.correlation,
            max_id: spec.codec.max_request_id().max(1),
        });
        tokio::spawn(run(Arc::downgrade(&shared), rx, spec));
        Self { shared }
    }

    /// Whether the connection is gone (new requests must use another one).
    pub fn is_closed(&self) -> bool {
        self.shared.table().closed
    }

    /// Requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.shared.table().in_flight()
    }

    /// Sends `frame` upstream. With a waiter, allocates a fresh id, rewrites it with `set_id`
    /// (the codec that decoded the frame) and registers the waiter; without (one-way), just
    /// sends.
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
        table.forwarded = table.forwarded.wrapping_add(1);
        let mut registered = None;
        if let Some(w) = waiter {
            match s.correlation {
                Correlation::RequestId => {
                    if table.by_id.len() as u64 >= s.max_id {
                        return Err(ForwardError::Exhausted);
                    }
                    let id = allocate(&mut table, s.max_id);
                    set_id(&mut frame, id).map_err(ForwardError::SetId)?;
                    table.by_id.insert(id, w);
                    registered = Some(Some(id));
                }
                Correlation::InOrder => {
                    table.fifo.push_back(w);
                    registered = Some(None);
                }
            }
        }
        if s.tx.send(frame.bytes).is_err() {
            match registered {
                Some(Some(id)) => drop(table.by_id.remove(&id)),
                Some(None) => drop(table.fifo.pop_back()),
                None => {}
            }
            table.closed = true;
            return Err(ForwardError::Lost);
        }
        Ok(())
    }
}

/// Next id in `1..=max` not in flight (the caller checked that one is free).
fn allocate(table: &mut Table, max: u64) -> u64 {
    loop {
        table.next_id = if table.next_id >= max {
            1
        } else {
            table.next_id + 1
        };
        if !table.by_id.contains_key(&table.next_id) {
            return table.next_id;
        }
    }
}

async fn run(
    shared: std::sync::Weak<Shared>,
    rx: mpsc::UnboundedReceiver<BytesMut>,
    mut spec: UpstreamSpec,
) {
    let fail = |reply: LocalReply| {
        if let Some(s) = shared.upgrade() {
            s.table().fail_all(&reply);
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
    let reader = read_loop(&shared, rd, spec.codec, &spec.cluster, &spec.listener);
    let reply = tokio::select! {
        r = reader => r,
        w = write_pump(wr, &mut rx, None) => {
            let detail = w.err().map_or_else(|| "closed".to_owned(), |e| e.to_string());
            LocalReply::new(ErrorKind::UpstreamReset, format!("upstream write to {addr} failed: {detail}"))
        }
    };
    tracing::debug!(%addr, "upstream connection closed: {}", reply.message);
    fail(reply);
    spec.cluster.cx_active.dec();
}

fn connect_failed(spec: &UpstreamSpec, fail: &dyn Fn(LocalReply), err: &str) {
    spec.cluster.connect_failures.inc();
    tracing::debug!(addr = %spec.addr, "upstream connect failed: {err}");
    let msg = format!("upstream connect error to {}: {err}", spec.addr);
    fail(LocalReply::new(ErrorKind::ConnectFailure, msg));
}

/// Reads and dispatches responses until the connection ends; returns the reply owed to the
/// requests still in flight.
async fn read_loop(
    shared: &std::sync::Weak<Shared>,
    mut rd: OwnedReadHalf,
    mut codec: Box<dyn Codec>,
    cluster: &ClusterMetrics,
    listener: &ListenerMetrics,
) -> LocalReply {
    let addr = rd
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let reset = |detail: &str| {
        LocalReply::new(
            ErrorKind::UpstreamReset,
            format!("upstream {addr} reset: {detail}"),
        )
    };
    let mut rb = ReadBuf::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = rb.read(&mut rd) => match r {
                Ok(0) => return reset("connection closed"),
                Ok(_) => {}
                Err(e) => return reset(&e.to_string()),
            },
            _ = sweep.tick() => {
                match shared.upgrade() {
                    Some(s) if s.table().sweep() => return reset("idle"),
                    Some(_) => {}
                    None => return reset("connection dropped"),
                }
                continue;
            }
        }
        loop {
            let frame = match codec.decode(rb.bytes()) {
                Ok(Some(f)) => {
                    rb.decoded(f.bytes.len());
                    f
                }
                Ok(None) => {
                    rb.reserve_frame(|b| codec.frame_len(b));
                    break;
                }
                Err(e) => {
                    listener.decode_errors_upstream.inc();
                    tracing::warn!(%addr, "bad upstream response: {e}");
                    let msg = format!("bad response from upstream {addr}: {}", e.detail);
                    return LocalReply::new(ErrorKind::BadResponse, msg);
                }
            };
            let Some(s) = shared.upgrade() else {
                return reset("connection dropped");
            };
            dispatch(&s, codec.as_mut(), frame, cluster);
        }
    }
}

fn dispatch(s: &Shared, codec: &mut dyn Codec, mut frame: Frame, cluster: &ClusterMetrics) {
    match frame.meta.kind {
        MessageKind::Response => {}
        MessageKind::Heartbeat => {
            let mut out = BytesMut::new();
            if codec.heartbeat_reply(&frame, &mut out) {
                let _ = s.tx.send(out);
            }
            return;
        }
        other => {
            // Never match a server-sent request to a caller by its id.
            tracing::debug!(kind = other.as_str(), "unexpected upstream message dropped");
            return;
        }
    }
    let waiter = {
        let mut table = s.table();
        match s.correlation {
            Correlation::RequestId => table.by_id.remove(&frame.meta.request_id),
            Correlation::InOrder => table.fifo.pop_front(),
        }
    };
    let Some(w) = waiter else {
        cluster.unknown_responses.inc();
        tracing::debug!(
            id = frame.meta.request_id,
            "response for no request in flight dropped"
        );
        return;
    };
    if w.tx.is_closed() {
        return;
    }
    if s.correlation == Correlation::RequestId
        && let Err(e) = codec.set_request_id(&mut frame, w.original_id)
    {
        let msg = format!(
            "cannot restore the request id of the response: {}",
            e.detail
        );
        let _ = w.tx.send(Err(LocalReply::new(ErrorKind::BadResponse, msg)));
        return;
    }
    if let Some(m) = &w.response_mutation
        && let Err(e) = codec.encode(&mut frame, &m.mutation)
    {
        m.failures.inc();
        tracing::debug!("response mutation not applied: {e}");
    }
    let _ = w.tx.send(Ok(frame));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wrap_and_skip_in_flight() {
        let mut t = Table::default();
        let (tx, _rx) = oneshot::channel();
        t.by_id.insert(
            2,
            Waiter {
                original_id: 9,
                tx,
                response_mutation: None,
            },
        );
        assert_eq!(allocate(&mut t, 3), 1);
        assert_eq!(allocate(&mut t, 3), 3, "2 is in flight");
        assert_eq!(allocate(&mut t, 3), 1, "wraps");
    }
}
