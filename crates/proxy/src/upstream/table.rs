//! The state of one upstream connection behind its lock: the requests waiting for a response
//! (by upstream id, or FIFO), the hand-off to the writer, the request budget
//! (`max_requests_per_connection`) and idleness.
//!
//! Lifecycle: *open* (takes requests) → *draining* (its budget is used up, or its cluster was
//! replaced by a config update: takes no new request, still delivers the responses owed) → *closing* (the writer's sender is dropped: the writer
//! flushes what is queued, shuts the write side and ends the connection). An idle connection
//! goes straight to closing. Any failure ends it at once ([`Table::fail_all`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::LocalReply;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Shared, Waiter};

/// How long a closing connection may take to flush its last bytes before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a connection closed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// It carried `max_requests_per_connection` requests (drains).
    MaxRequests,
    /// Its cluster was replaced by a config update (drains).
    Replaced,
    /// Nothing in flight and no traffic for the idle timeout.
    Idle,
}

pub(super) struct Table {
    /// Hand-off to the writer; `None` once closing (then `closed` is set too).
    pub(super) tx: Option<mpsc::UnboundedSender<BytesMut>>,
    /// Takes no new request: draining, closing or failed.
    pub(super) closed: bool,
    /// Set when the connection ends by itself (draining or idle), not by a failure.
    pub(super) ending: Option<Ending>,
    /// Requests it may still take (`u64::MAX`: no limit).
    budget: u64,
    /// While draining, the connection keeps itself alive until its task ends (the pool has
    /// dropped it and the callers hold no handle).
    pub(super) keep: Option<Arc<Shared>>,
    /// Requests forwarded so far, to detect idleness.
    forwarded: u64,
    /// `forwarded` at the last sweep, and since when the connection has been idle.
    last_forwarded: u64,
    idle_since: Option<Instant>,
    closing_since: Option<Instant>,
    pub(super) next_id: u64,
    by_id: HashMap<u64, Pending>,
    fifo: VecDeque<Pending>,
    /// Bytes of the requests in `by_id` and `fifo` (what makes a connection busy with large
    /// messages, see [`super::Load`]).
    bytes: usize,
}

/// A request waiting for its response, and its size on the wire.
pub(super) struct Pending {
    pub(super) waiter: Waiter,
    bytes: usize,
}

impl Table {
    /// An open connection's table; `max_requests` `None`: no limit.
    pub(super) fn new(tx: mpsc::UnboundedSender<BytesMut>, max_requests: Option<u32>) -> Self {
        Self {
            tx: Some(tx),
            closed: false,
            ending: None,
            budget: max_requests.map_or(u64::MAX, |n| u64::from(n.max(1))),
            keep: None,
            forwarded: 0,
            last_forwarded: 0,
            idle_since: None,
            closing_since: None,
            next_id: 0,
            by_id: HashMap::new(),
            fifo: VecDeque::new(),
            bytes: 0,
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.by_id.len() + self.fifo.len()
    }

    /// Bytes of the requests waiting for a response.
    pub(super) fn in_flight_bytes(&self) -> usize {
        self.bytes
    }

    /// Registers a request of `bytes` bytes: under upstream id `id`, or last in the FIFO.
    pub(super) fn register(&mut self, id: Option<u64>, waiter: Waiter, bytes: usize) {
        let p = Pending { waiter, bytes };
        self.bytes += bytes;
        match id {
            Some(id) => {
                if let Some(old) = self.by_id.insert(id, p) {
                    self.bytes -= old.bytes;
                }
            }
            None => self.fifo.push_back(p),
        }
    }

    /// Removes the waiter of upstream id `id`, or (`None`) the oldest in the FIFO.
    pub(super) fn take(&mut self, id: Option<u64>) -> Option<Waiter> {
        let p = match id {
            Some(id) => self.by_id.remove(&id),
            None => self.fifo.pop_front(),
        }?;
        self.bytes -= p.bytes;
        Some(p.waiter)
    }

    /// Undoes the [`Table::register`] of a request that never reached the writer.
    pub(super) fn unregister(&mut self, id: Option<u64>) {
        let p = match id {
            Some(id) => self.by_id.remove(&id),
            None => self.fifo.pop_back(),
        };
        if let Some(p) = p {
            self.bytes -= p.bytes;
        }
    }

    /// Counts one request handed to the writer; `true` when it used up the budget (the
    /// connection is now draining).
    pub(super) fn count_request(&mut self) -> bool {
        self.forwarded = self.forwarded.wrapping_add(1);
        if self.budget == u64::MAX {
            return false;
        }
        self.budget -= 1;
        if self.budget > 0 {
            return false;
        }
        self.closed = true;
        self.ending = Some(Ending::MaxRequests);
        true
    }

    /// Whether a caller still waits for a response.
    fn awaited(&self) -> bool {
        self.by_id.values().any(|p| !p.waiter.tx.is_closed())
            || self.fifo.iter().any(|p| !p.waiter.tx.is_closed())
    }

    /// Whether the connection takes no new request but still delivers the responses it owes.
    fn draining(&self) -> bool {
        matches!(self.ending, Some(Ending::MaxRequests | Ending::Replaced)) && self.tx.is_some()
    }

    /// Starts draining (cluster replaced); `false` if the connection already stopped taking
    /// requests.
    pub(super) fn drain(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        self.ending = Some(Ending::Replaced);
        true
    }

    /// A draining connection whose responses are all delivered (or no longer awaited) starts
    /// closing.
    pub(super) fn finish_if_drained(&mut self) {
        if self.draining() && !self.awaited() {
            self.close(Instant::now());
        }
    }

    /// Stops taking requests and drops the writer's sender: the writer flushes and ends.
    fn close(&mut self, now: Instant) {
        self.closed = true;
        self.tx = None;
        self.closing_since = Some(now);
    }

    /// Closes the table and answers every waiter with `reply`; returns the self-reference of
    /// a draining connection, to be dropped outside the lock.
    pub(super) fn fail_all(&mut self, reply: &LocalReply) -> Option<Arc<Shared>> {
        self.closed = true;
        self.tx = None;
        self.bytes = 0;
        for (_, p) in self.by_id.drain() {
            let _ = p.waiter.tx.send(Err(reply.clone()));
        }
        for p in self.fifo.drain(..) {
            let _ = p.waiter.tx.send(Err(reply.clone()));
        }
        self.keep.take()
    }

    /// Drops waiters whose caller went away (timed out, downstream closed), finishes a
    /// drained connection, and starts closing one idle for `idle_timeout` (`None`: never).
    /// `Err`: the connection must end now (failed, or its close did not complete).
    pub(super) fn sweep(
        &mut self,
        now: Instant,
        idle_timeout: Option<Duration>,
    ) -> Result<(), &'static str> {
        let mut gone = 0;
        self.by_id.retain(|_, p| {
            let keep = !p.waiter.tx.is_closed();
            if !keep {
                gone += p.bytes;
            }
            keep
        });
        self.bytes -= gone;
        // FIFO entries keep their place (a late response must still pop them).
        if let Some(since) = self.closing_since {
            return if now.duration_since(since) > CLOSE_GRACE {
                Err("close did not complete")
            } else {
                Ok(())
            };
        }
        if self.draining() {
            self.finish_if_drained();
            return Ok(());
        }
        if self.closed {
            return Err("closed");
        }
        if self.forwarded == self.last_forwarded && self.in_flight() == 0 {
            let since = *self.idle_since.get_or_insert(now);
            if idle_timeout.is_some_and(|t| now.duration_since(since) >= t) {
                self.ending = Some(Ending::Idle);
                self.close(now);
            }
        } else {
            self.idle_since = None;
        }
        self.last_forwarded = self.forwarded;
        Ok(())
    }

    /// Next id in `1..=max` not in flight (the caller checked that one is free).
    pub(super) fn allocate(&mut self, max: u64) -> u64 {
        loop {
            self.next_id = if self.next_id >= max {
                1
            } else {
                self.next_id + 1
            };
            if !self.by_id.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn waiter() -> (Waiter, oneshot::Receiver<super::super::Outcome>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            original_id: 9,
            tx,
            response_mutation: None,
        };
        (w, rx)
    }

    fn table(max_requests: Option<u32>) -> (Table, mpsc::UnboundedReceiver<BytesMut>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Table::new(tx, max_requests), rx)
    }

    #[test]
    fn ids_wrap_and_skip_in_flight() {
        let (mut t, _rx) = table(None);
        t.register(Some(2), waiter().0, 10);
        assert_eq!(t.allocate(3), 1);
        assert_eq!(t.allocate(3), 3, "2 is in flight");
        assert_eq!(t.allocate(3), 1, "wraps");
    }

    #[test]
    fn in_flight_bytes_follow_every_way_a_request_leaves() {
        let (mut t, _rx) = table(None);
        let (a, _ca) = waiter();
        let (b, cb) = waiter();
        let (c, _cc) = waiter();
        t.register(Some(1), a, 100);
        t.register(Some(2), b, 20);
        t.register(Some(3), c, 3);
        assert_eq!((t.in_flight(), t.in_flight_bytes()), (3, 123));
        assert!(t.take(Some(1)).is_some(), "a response");
        assert!(t.take(Some(1)).is_none(), "no second response");
        assert_eq!(t.in_flight_bytes(), 23);
        t.unregister(Some(3));
        assert_eq!(t.in_flight_bytes(), 20, "never reached the writer");
        drop(cb);
        assert_eq!(t.sweep(Instant::now(), None), Ok(()));
        assert_eq!((t.in_flight(), t.in_flight_bytes()), (0, 0), "caller gone");
        // FIFO: responses pop the oldest; a failure clears everything.
        let (d, _cd) = waiter();
        let (e, _ce) = waiter();
        t.register(None, d, 7);
        t.register(None, e, 9);
        assert_eq!(t.take(None).map(|w| w.original_id), Some(9));
        assert_eq!(t.in_flight_bytes(), 9);
        let (f, _cf) = waiter();
        t.register(Some(5), f, 50);
        assert!(
            t.fail_all(&LocalReply::new(
                meta_protocol::ErrorKind::UpstreamReset,
                "x"
            ))
            .is_none()
        );
        assert_eq!((t.in_flight(), t.in_flight_bytes()), (0, 0));
    }

    #[test]
    fn the_last_request_of_the_budget_starts_draining() {
        let (mut t, _rx) = table(Some(3));
        assert!(!t.count_request());
        assert!(!t.count_request());
        assert!(!t.closed);
        assert!(t.count_request(), "the third request drains the connection");
        assert!(t.closed);
        assert_eq!(t.ending, Some(Ending::MaxRequests));
        let (mut unlimited, _rx) = table(None);
        for _ in 0..10_000 {
            assert!(!unlimited.count_request());
        }
        assert!(!unlimited.closed);
    }

    #[test]
    fn a_draining_connection_closes_once_nothing_is_awaited() {
        let (mut t, mut rx) = table(Some(1));
        let (w, caller) = waiter();
        t.register(Some(1), w, 10);
        assert!(t.count_request());
        t.finish_if_drained();
        assert!(t.tx.is_some(), "a response is still owed");
        assert_eq!(t.sweep(Instant::now(), None), Ok(()));
        assert!(
            t.tx.is_some(),
            "the sweep keeps a waiter whose caller waits"
        );
        drop(caller);
        assert_eq!(t.sweep(Instant::now(), None), Ok(()));
        assert!(t.tx.is_none(), "the caller gave up: the connection closes");
        assert!(
            matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)),
            "the writer sees its sender gone"
        );
    }

    #[test]
    fn a_replaced_connection_drains_once() {
        let (mut t, _rx) = table(None);
        let (w, caller) = waiter();
        t.register(Some(1), w, 10);
        assert!(t.drain());
        assert!(t.closed && t.tx.is_some(), "still owes a response");
        assert!(!t.drain(), "already draining");
        drop(caller);
        t.finish_if_drained();
        assert!(t.tx.is_none());
        assert_eq!(t.ending, Some(Ending::Replaced));
        let (mut idle, _rx) = table(None);
        let now = Instant::now();
        assert_eq!(idle.sweep(now, Some(Duration::ZERO)), Ok(()));
        assert!(
            !idle.drain(),
            "an idle-closed connection is not drained again"
        );
    }

    #[test]
    fn idle_for_the_timeout_closes() {
        let (mut t, _rx) = table(None);
        let start = Instant::now();
        let timeout = Some(Duration::from_secs(4));
        assert_eq!(t.sweep(start, timeout), Ok(()));
        assert_eq!(t.sweep(start + Duration::from_secs(3), timeout), Ok(()));
        assert!(!t.closed);
        // Traffic resets the clock.
        t.count_request();
        assert_eq!(t.sweep(start + Duration::from_secs(5), timeout), Ok(()));
        assert_eq!(t.sweep(start + Duration::from_secs(6), timeout), Ok(()));
        assert!(!t.closed, "idle only since 6 s");
        assert_eq!(t.sweep(start + Duration::from_secs(10), timeout), Ok(()));
        assert!(t.closed && t.tx.is_none());
        assert_eq!(t.ending, Some(Ending::Idle));
        // Without a timeout it never closes.
        let (mut t, _rx) = table(None);
        assert_eq!(t.sweep(start, None), Ok(()));
        assert_eq!(t.sweep(start + Duration::from_secs(86_400), None), Ok(()));
        assert!(!t.closed);
    }

    #[test]
    fn a_request_in_flight_is_not_idle() {
        let (mut t, _rx) = table(None);
        let (w, _caller) = waiter();
        t.register(Some(1), w, 10);
        let start = Instant::now();
        let timeout = Some(Duration::from_secs(1));
        for s in 0..5 {
            assert_eq!(t.sweep(start + Duration::from_secs(s), timeout), Ok(()));
        }
        assert!(!t.closed);
    }
}
