//! The downstream connection manager: decode, filter, route, forward, answer.
//!
//! One task per connection reads and decodes; requests are forwarded at once (pipelining) and a
//! small task per two-way request (or per delayed request) waits for its outcome (response,
//! local reply, timeout; retries in `router`) and queues the bytes to the connection's single
//! writer, in completion order.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use meta_protocol::{
    Codec, ErrorKind, Frame, LocalReply, MessageKind, Metadata, Mutation, ReadKeys, ResponseStatus,
    Side, keys,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::filter::{self, ChainStatus, RequestContext};
use crate::io::{Backlog, write_pump};
use crate::lb::LbContext;
use crate::listener::{ListenerRt, ListenerShared, RouteRt, shutdown_signal};
use crate::readbuf::ReadBuf;
use crate::router::{self, Exchange};
use crate::upstream::Waiter;

/// Time allowed to flush pending writes once the connection is closing.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight on one connection above which reading pauses.
const MAX_IN_FLIGHT: usize = 4096;

/// Unwritten response bytes on one connection above which reading pauses.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// How long a mirrored request's answer is awaited when its route has no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// State shared by the reader and the per-request tasks of one connection.
pub(crate) struct Conn {
    pub(crate) l: Arc<ListenerShared>,
    codec: Mutex<Box<dyn Codec>>,
    wtx: mpsc::UnboundedSender<BytesMut>,
    backlog: Arc<Backlog>,
    in_flight: AtomicUsize,
}

/// Decrements the in-flight counters when a request ends, however it ends.
pub(crate) struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: &Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.l.metrics.requests_active.inc();
        Self(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.l.metrics.requests_active.dec();
        self.0.backlog.drained.notify_one();
    }
}

/// Why the read loop stopped.
enum Stop {
    /// Engine shutdown: let in-flight requests complete (bounded), then close.
    Drain,
    /// Close now (peer closed, idle timeout, decode error, read error): in-flight requests are
    /// cancelled, what is already queued is flushed.
    Abort,
}

impl Conn {
    pub(crate) fn codec(&self) -> MutexGuard<'_, Box<dyn Codec>> {
        self.codec.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self, bytes: BytesMut) {
        let n = bytes.len();
        if self.wtx.send(bytes).is_ok() {
            self.backlog.add(n);
        }
    }

    /// Whether reading must pause: too many requests in flight or too many bytes unwritten.
    fn saturated(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT
            || self.backlog.queued() >= MAX_QUEUED_BYTES
    }

    /// Answers `request` locally in its protocol when it is two-way; a one-way request has no
    /// answer, so the reply is only counted.
    pub(crate) fn reject(
        &self,
        codec: &mut dyn Codec,
        request: &Metadata,
        two_way: bool,
        reply: &LocalReply,
    ) {
        if two_way {
            self.local_reply(codec, request, reply);
        } else {
            self.l.metrics.count_local_reply(reply.kind);
            tracing::debug!(listener = %self.l.name, "one-way request dropped: {reply}");
        }
    }

    /// Writes a protocol-native error reply for `request` and counts it.
    pub(crate) fn local_reply(
        &self,
        codec: &mut dyn Codec,
        request: &Metadata,
        reply: &LocalReply,
    ) {
        tracing::debug!(listener = %self.l.name, id = request.request_id, "local reply: {reply}");
        self.l.metrics.count_local_reply(reply.kind);
        let mut out = BytesMut::new();
        codec.on_error(request, reply, &mut out);
        self.write(out);
    }
}

/// Serves one downstream connection until it closes.
pub async fn serve(l: Arc<ListenerShared>, stream: TcpStream) {
    l.metrics.cx_total.inc();
    l.metrics.cx_active.inc();
    let rt = l.rt();
    let idle = rt.proxy.idle_timeout.filter(|d| !d.is_zero());
    let mut codec = l.factory.new_codec(Side::Downstream, rt.codec_options());
    // The request keys the codec was last given (held, so the pointer comparison is sound).
    let mut read_keys = rt.read_keys.clone();
    codec.set_read_keys(&read_keys);
    drop(rt);
    let (mut rd, wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let b = backlog.clone();
    let mut writer = tokio::spawn(async move { write_pump(wr, &mut wrx, Some(&b)).await });
    let conn = Arc::new(Conn {
        l: l.clone(),
        codec: Mutex::new(codec),
        wtx,
        backlog,
        in_flight: AtomicUsize::new(0),
    });
    let mut tasks = JoinSet::new();
    let mut rb = ReadBuf::new();
    let mut shutdown = l.shutdown.clone();
    let stop = loop {
        while tasks.try_join_next().is_some() {}
        if conn.saturated() {
            // Backpressure: stop reading until answers drain (re-checked every 100 ms).
            if writer.is_finished() {
                break Stop::Abort;
            }
            let drained = conn.backlog.drained.notified();
            let _ = tokio::time::timeout(Duration::from_millis(100), drained).await;
            continue;
        }
        let read = async {
            match idle {
                Some(d) => tokio::time::timeout(d, rb.read(&mut rd)).await.ok(),
                None => Some(rb.read(&mut rd).await),
            }
        };
        let read = tokio::select! {
            r = read => r,
            _ = shutdown_signal(&mut shutdown) => break Stop::Drain,
        };
        match read {
            None if conn.in_flight.load(Ordering::Relaxed) == 0 => {
                l.metrics.idle_timeouts.inc();
                tracing::debug!(listener = %l.name, "idle timeout");
                break Stop::Abort;
            }
            None => continue,
            // The client is gone (Aeraki resets everything on end of stream too); a client that
            // only half-closed loses its in-flight answers.
            Some(Ok(0)) => break Stop::Abort,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(listener = %l.name, "downstream read error: {e}");
                break Stop::Abort;
            }
        }
        if let Err(stop) = process(&conn, &mut rb, &mut read_keys, &mut tasks) {
            break stop;
        }
    };
    if let Stop::Drain = stop {
        // Let in-flight requests finish unless the client stops reading (writer failed).
        let all_done = async { while tasks.join_next().await.is_some() {} };
        let writer_failed = async {
            while !writer.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(FLUSH_TIMEOUT, all_done) => {}
            _ = writer_failed => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(conn);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await;
    writer.abort();
    l.metrics.cx_active.dec();
}

/// Decodes and handles every whole frame in `rb` with the listener's current routes and
/// filters; first gives the codec their request keys if they changed since `read_keys`. A
/// decode error answers the offending request if the codec identified it, and stops the
/// connection.
fn process(
    conn: &Arc<Conn>,
    rb: &mut ReadBuf,
    read_keys: &mut Arc<ReadKeys>,
    tasks: &mut JoinSet<()>,
) -> Result<(), Stop> {
    let rt = conn.l.rt();
    let mut codec = conn.codec();
    if !Arc::ptr_eq(read_keys, &rt.read_keys) {
        codec.set_read_keys(&rt.read_keys);
        *read_keys = rt.read_keys.clone();
    }
    loop {
        let frame = match rb.decode(codec.as_mut()) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => {
                conn.l.metrics.decode_errors_downstream.inc();
                tracing::debug!(listener = %conn.l.name, "downstream decode error: {e}");
                if let Some(request) = &e.request {
                    let reply = LocalReply::new(ErrorKind::BadRequest, e.detail.clone());
                    conn.local_reply(codec.as_mut(), request, &reply);
                }
                return Err(Stop::Abort);
            }
        };
        let kind = frame.meta.kind;
        conn.l.metrics.count_kind(kind);
        match kind {
            MessageKind::Heartbeat => {
                let mut out = BytesMut::new();
                if codec.heartbeat_reply(&frame, &mut out) {
                    conn.write(out);
                }
            }
            MessageKind::Request | MessageKind::OneWay | MessageKind::StreamInit => {
                on_request(conn, &rt, codec.as_mut(), frame, tasks);
            }
            other => {
                tracing::debug!(listener = %conn.l.name, kind = other.as_str(), "unexpected downstream message dropped");
            }
        }
    }
}

/// A decoded request on its way through the filters and the router.
struct Request {
    frame: Frame,
    /// Key/values the filters add; the route's request mutation is applied over them.
    mutation: Mutation,
    start: Instant,
    /// Held by two-way requests until their outcome; `None` for one-way requests.
    guard: Option<InFlight>,
}

impl Request {
    /// Answers the request locally in its protocol (a one-way request is only counted).
    fn fail(&self, conn: &Conn, codec: &mut dyn Codec, kind: ErrorKind, msg: String) {
        let reply = LocalReply::new(kind, msg);
        conn.reject(codec, &self.frame.meta, self.guard.is_some(), &reply);
    }

    /// Runs the filter chain from position `from`.
    fn run_filters(&mut self, rt: &ListenerRt, listener: &str, from: usize) -> ChainStatus {
        let mut ctx = RequestContext {
            listener,
            meta: &mut self.frame.meta,
            mutation: &mut self.mutation,
        };
        filter::run_request(&rt.filters, from, &mut ctx)
    }
}

/// Filters, routes and forwards one request; answers locally on any failure. A filter that
/// waits moves the rest of the request into a task of the connection ([`resume`]).
fn on_request(
    conn: &Arc<Conn>,
    rt: &Arc<ListenerRt>,
    codec: &mut dyn Codec,
    mut frame: Frame,
    tasks: &mut JoinSet<()>,
) {
    let start = Instant::now();
    let two_way = frame.meta.kind != MessageKind::OneWay;
    let guard = two_way.then(|| InFlight::new(conn));
    frame
        .meta
        .set(keys::APPLICATION_PROTOCOL, conn.l.factory.protocol());
    let mut req = Request {
        frame,
        mutation: Mutation::new(),
        start,
        guard,
    };
    if !rt.filters.is_empty() {
        match req.run_filters(rt, &conn.l.name, 0) {
            ChainStatus::Continue => {}
            ChainStatus::LocalReply(r) => return req.fail(conn, codec, r.kind, r.message),
            ChainStatus::Wait { index, future } => {
                tasks.spawn(resume(conn.clone(), rt.clone(), req, index, future));
                return;
            }
        }
    }
    if let Some(wait) = dispatch(conn, rt, codec, req) {
        tasks.spawn(wait);
    }
}

/// Finishes a request whose filter `index` had to wait: awaits it, runs the rest of the chain
/// (waiting again if needed), then routes and forwards.
async fn resume(
    conn: Arc<Conn>,
    rt: Arc<ListenerRt>,
    mut req: Request,
    mut index: usize,
    mut future: filter::FilterFuture,
) {
    loop {
        if let Err(r) = filter::settle(future).await {
            req.fail(&conn, conn.codec().as_mut(), r.kind, r.message);
            return;
        }
        match req.run_filters(&rt, &conn.l.name, index + 1) {
            ChainStatus::Continue => break,
            ChainStatus::LocalReply(r) => {
                req.fail(&conn, conn.codec().as_mut(), r.kind, r.message);
                return;
            }
            ChainStatus::Wait {
                index: i,
                future: f,
            } => (index, future) = (i, f),
        }
    }
    let wait = dispatch(&conn, &rt, conn.codec().as_mut(), req);
    if let Some(wait) = wait {
        wait.await;
    }
}

/// Routes, picks an endpoint and forwards the request. Returns what must be awaited for a
/// two-way request's outcome (the caller spawns or awaits it); `None` when the request is done
/// (one-way, or answered locally).
fn dispatch(
    conn: &Arc<Conn>,
    rt: &Arc<ListenerRt>,
    codec: &mut dyn Codec,
    req: Request,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let l = &conn.l;
    let meta = &req.frame.meta;
    let Some(route) = rt.routes.iter().find(|r| r.matches(meta)) else {
        let msg = format!(
            "meta protocol router: no matched route for request '{}'",
            meta.request_id
        );
        req.fail(conn, codec, ErrorKind::RouteNotFound, msg);
        return None;
    };
    let Some(target) = route.pick() else {
        let msg = format!("route '{}' has no cluster", route.route.name);
        req.fail(conn, codec, ErrorKind::ClusterNotFound, msg);
        return None;
    };
    let clusters = l.clusters.load();
    let Some(cluster) = clusters.get(&target.cluster) else {
        let msg = format!("unknown cluster '{}'", target.cluster);
        req.fail(conn, codec, ErrorKind::ClusterNotFound, msg);
        return None;
    };
    // Envoy's order: the delay first, then the abort (decided now, applied after the delay).
    let fault = route.route.fault.as_ref();
    let delay = fault
        .and_then(|f| f.delay.as_ref())
        .filter(|d| router::roll(d.per_million))
        .map(|d| d.delay);
    if delay.is_some() {
        route.faults.delay.inc();
    }
    let abort = fault
        .and_then(|f| f.abort.as_ref())
        .filter(|a| router::roll(a.per_million))
        .map(|a| router::abort_kind(a.error));
    if let Some(kind) = abort {
        route.faults.abort.inc();
        if delay.is_none() {
            req.fail(conn, codec, kind, router::ABORT_MESSAGE.to_owned());
            return None;
        }
    }
    let hash = crate::lb::hash_keys(&route.route.hash_policy, meta);
    let Request {
        mut frame,
        mut mutation,
        start,
        guard,
    } = req;
    mutation.extend_from(&route.request_mutation);
    if !mutation.is_empty()
        && let Err(e) = codec.encode(&mut frame, &mutation)
    {
        l.metrics.mutation_failures_request.inc();
        tracing::debug!(listener = %l.name, "request mutation not applied: {e}");
    }
    if !route.mirrors.is_empty() {
        mirror(conn, rt, route, codec, &frame);
    }
    let exchange = Exchange {
        conn: conn.clone(),
        rt: rt.clone(),
        route_ix: route_index(rt, route),
        target_ix: route
            .targets
            .iter()
            .position(|t| std::ptr::eq(t, target))
            .unwrap_or(0),
        cluster: cluster.clone(),
        meta: if guard.is_some() {
            frame.meta.clone()
        } else {
            Metadata::default()
        },
        frame: Some(frame),
        hash,
        variant: codec.connection_variant(),
        start,
        guard,
        admission: None,
        abort,
        tried: Vec::new(),
    };
    exchange.start(codec, delay)
}

/// Sends a copy of `frame` to each mirror cluster of `route` that takes it; answers are
/// discarded and failures ignored (counted only as upstream metrics).
fn mirror(
    conn: &Arc<Conn>,
    rt: &ListenerRt,
    route: &RouteRt,
    codec: &mut dyn Codec,
    frame: &Frame,
) {
    let l = &conn.l;
    let clusters = l.clusters.load();
    let two_way = frame.meta.kind != MessageKind::OneWay;
    for target in route.mirrors_to_use() {
        let Some(cluster) = clusters.get(&target.cluster) else {
            tracing::debug!(cluster = %target.cluster, "mirror cluster unknown");
            continue;
        };
        let ctx = LbContext {
            hash: crate::lb::hash_keys(&route.route.hash_policy, &frame.meta),
        };
        let Some(picked) = cluster.pick(&ctx) else {
            continue;
        };
        let addr = picked.addr;
        let Ok(up) = l.upstream(
            cluster,
            addr,
            codec.connection_variant(),
            rt.codec_options(),
        ) else {
            continue;
        };
        target.metrics.upstream_requests.inc();
        let copy = frame.clone();
        if !two_way {
            let _ = up.forward(copy, None, &mut |_, _| Ok(()));
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            original_id: frame.meta.request_id,
            tx,
            response_mutation: None,
        };
        if up
            .forward(copy, Some(waiter), &mut |f, id| codec.set_request_id(f, id))
            .is_ok()
        {
            // Keep the waiter alive until the answer (or a bound), then discard it.
            let bound = route.route.timeout.unwrap_or(MIRROR_TIMEOUT);
            let metrics = target.metrics.clone();
            tokio::spawn(async move {
                let _picked = picked;
                if let Ok(Ok(Ok(f))) = tokio::time::timeout(bound, rx).await {
                    match f.meta.status {
                        ResponseStatus::Ok => metrics.responses_ok.inc(),
                        ResponseStatus::Error => metrics.responses_error.inc(),
                    };
                }
            });
        }
    }
}

fn route_index(rt: &ListenerRt, route: &RouteRt) -> usize {
    rt.routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .unwrap_or(0)
}
