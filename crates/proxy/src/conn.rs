//! The downstream connection manager: decode, filter, route, forward, answer.
//!
//! One task per connection reads and decodes; requests are forwarded at once (pipelining) and a
//! small task per two-way request (or per delayed request) waits for its outcome (response,
//! local reply, timeout; retries in `router`) and queues the bytes to the connection's single
//! writer, in completion order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecFactory, ErrorKind, LocalReply, MessageKind, Metadata, ReadKeys, Side,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::io::{Backlog, write_pump};
use crate::listener::{ListenerShared, shutdown_signal};
use crate::readbuf::ReadBuf;

mod request;

use request::on_request;

/// Time allowed to flush pending writes once the connection is closing.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight on one connection above which reading pauses.
const MAX_IN_FLIGHT: usize = 4096;

/// Unwritten response bytes on one connection above which reading pauses.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

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
    let mut read_keys = rt.request_keys.clone();
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
    if !Arc::ptr_eq(read_keys, &rt.request_keys) {
        codec.set_read_keys(&rt.request_keys);
        *read_keys = rt.request_keys.clone();
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
