//! The reading side of an upstream connection: decodes responses and hands each to its
//! waiting caller, answers upstream heartbeats, and sweeps the table periodically.

use std::sync::Weak;
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{Codec, Correlation, ErrorKind, Frame, LocalReply, MessageKind};
use tokio::net::tcp::OwnedReadHalf;

use super::{MAX_SWEEP, MIN_SWEEP, Shared};
use crate::metrics::{ClusterMetrics, ListenerMetrics};
use crate::readbuf::ReadBuf;

/// What the periodic sweep of a connection needs.
pub(super) struct Sweeps<'a> {
    pub(super) shared: &'a Weak<Shared>,
    pub(super) idle_timeout: Option<Duration>,
}

impl Sweeps<'_> {
    /// A quarter of the idle timeout, within [`MIN_SWEEP`]..=[`MAX_SWEEP`].
    fn period(&self) -> Duration {
        self.idle_timeout
            .map_or(MAX_SWEEP, |t| (t / 4).clamp(MIN_SWEEP, MAX_SWEEP))
    }
}

/// Reads and dispatches responses until the connection ends; returns the reply owed to the
/// requests still in flight.
pub(super) async fn read_loop(
    sweeps: Sweeps<'_>,
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
    let shared = sweeps.shared;
    let mut rb = ReadBuf::new();
    let mut sweep = tokio::time::interval(sweeps.period());
    loop {
        tokio::select! {
            r = rb.read(&mut rd) => match r {
                Ok(0) => return reset("connection closed"),
                Ok(_) => {}
                Err(e) => return reset(&e.to_string()),
            },
            now = sweep.tick() => {
                let Some(s) = shared.upgrade() else {
                    return reset("connection dropped");
                };
                if let Err(why) = s.table().sweep(now, sweeps.idle_timeout) {
                    return reset(why);
                }
                continue;
            }
        }
        loop {
            let frame = match rb.decode(codec.as_mut()) {
                Ok(Some(f)) => f,
                Ok(None) => break,
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
            if codec.heartbeat_reply(&frame, &mut out)
                && let Some(tx) = &s.table().tx
            {
                let _ = tx.send(out);
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
        let w = table.take(match s.correlation {
            Correlation::RequestId => Some(frame.meta.request_id),
            Correlation::InOrder => None,
        });
        // The last response owed by a draining connection: it closes after this delivery.
        table.finish_if_drained();
        w
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
