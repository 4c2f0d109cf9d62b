//! Cluster health: circuit breakers (admission of requests, retries and upstream connections)
//! and outlier detection (ejection of endpoints from their outcomes, [`hosts`]). The router
//! asks before each attempt and reports the outcome of each; [`ClusterState::pick`] skips
//! ejected endpoints and honours priority levels and the panic threshold.
//!
//! Circuit breakers are per cluster and engine-wide (every listener shares them), counted
//! with atomics. A request is *pending* while the cluster has no upstream connection ready
//! (none connected yet); pending slots are released when a connection becomes ready or the
//! request ends.

pub(crate) mod hosts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use meta_config::CircuitBreakers;
use meta_protocol::{ErrorKind, LocalReply, ResponseStatus};

use crate::cluster::{ClusterState, Picked};
use crate::metrics::ClusterMetrics;
use crate::upstream::Outcome;

/// Response metadata key where codecs put the protocol status name of an error response.
const STATUS_KEY: &str = "x-meta-protocol-status";

/// How one upstream attempt ended, as the router saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostResult {
    /// A response with status OK.
    Success,
    /// A response with status Error (Dubbo non-OK status or exception; Thrift exception).
    ErrorResponse,
    /// The upstream refused the request without processing it (e.g. Dubbo thread pool exhausted).
    Refused,
    /// Connecting to the endpoint failed or timed out.
    ConnectFailure,
    /// The connection closed or reset before the answer.
    Reset,
    /// The per-try timeout expired.
    Timeout,
}

impl HostResult {
    /// The class of an attempt's outcome; `None` when it says nothing about the endpoint.
    pub fn of(outcome: &Outcome) -> Option<Self> {
        match outcome {
            Ok(f) => Some(match f.meta.status {
                ResponseStatus::Ok => Self::Success,
                ResponseStatus::Error
                    if f.meta.get(STATUS_KEY) == Some("SERVER_THREADPOOL_EXHAUSTED") =>
                {
                    Self::Refused
                }
                ResponseStatus::Error => Self::ErrorResponse,
            }),
            Err(reply) => Self::of_error(reply.kind),
        }
    }

    /// The class of a local reply owed to an attempt; `None` when not the endpoint's doing.
    pub fn of_error(kind: ErrorKind) -> Option<Self> {
        match kind {
            ErrorKind::ConnectFailure => Some(Self::ConnectFailure),
            ErrorKind::UpstreamReset | ErrorKind::BadResponse => Some(Self::Reset),
            ErrorKind::Timeout => Some(Self::Timeout),
            _ => None,
        }
    }
}

/// Which slot an [`Admission`] holds.
#[derive(Debug)]
enum Slot {
    /// A request; `pending`: the pending epoch it was counted in.
    Request {
        pending: Option<u64>,
    },
    Retry,
}

/// A circuit-breaker slot held by one request or retry; dropping it frees the slot.
#[derive(Debug)]
pub struct Admission {
    breakers: Arc<Breakers>,
    slot: Slot,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let b = &self.breakers;
        match self.slot {
            Slot::Request { pending } => {
                b.requests.fetch_sub(1, Ordering::Relaxed);
                if let Some(epoch) = pending {
                    b.release_pending(epoch);
                }
                b.update_gauges(b.request_gauges(pending.is_some()));
            }
            Slot::Retry => {
                b.retries.fetch_sub(1, Ordering::Relaxed);
                b.update_gauges(RQ_RETRY);
            }
        }
    }
}

/// A circuit breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // Named after Envoy's thresholds.
pub enum Overflow {
    /// `max_requests` active requests reached.
    MaxRequests,
    /// `max_pending_requests` reached while no upstream connection was ready.
    MaxPending,
    /// `max_connections` reached and no connection to the endpoint to share.
    MaxConnections,
}

impl Overflow {
    /// The threshold's name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::MaxRequests => "max_requests",
            Overflow::MaxPending => "max_pending_requests",
            Overflow::MaxConnections => "max_connections",
        }
    }

    /// The local reply the router answers with.
    pub fn reply(self, cluster: &str) -> LocalReply {
        LocalReply::new(
            ErrorKind::OverLimit,
            format!(
                "upstream overflow: {} of cluster '{cluster}'",
                self.as_str()
            ),
        )
    }
}

const CX: u8 = 1;
const RQ_PENDING: u8 = 2;
const RQ: u8 = 4;
const RQ_RETRY: u8 = 8;

/// A cluster's circuit-breaker counters.
#[derive(Debug)]
pub(crate) struct Breakers {
    limits: CircuitBreakers,
    requests: AtomicUsize,
    retries: AtomicUsize,
    pending: AtomicUsize,
    /// Bumped (and `pending` zeroed) when a connection becomes ready.
    pending_epoch: AtomicU64,
    connections: AtomicUsize,
    ready: AtomicUsize,
    metrics: BreakerGauges,
}

struct BreakerGauges(ClusterMetrics);

impl std::fmt::Debug for BreakerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerGauges")
    }
}

impl Breakers {
    pub(crate) fn new(limits: CircuitBreakers, metrics: ClusterMetrics) -> Self {
        Self {
            limits,
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            pending_epoch: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            metrics: BreakerGauges(metrics),
        }
    }

    /// Takes one unit of `counter` if below `limit`.
    fn take(counter: &AtomicUsize, limit: usize) -> bool {
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release_pending(&self, epoch: u64) {
        if self.pending_epoch.load(Ordering::Relaxed) == epoch {
            let _ = self
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    fn retry_limit(&self) -> usize {
        match &self.limits.retry_budget {
            Some(b) => {
                let active = self.requests.load(Ordering::Relaxed) as f64;
                let budget = (b.budget_percent / 100.0 * active) as usize;
                budget.max(b.min_retry_concurrency as usize)
            }
            None => self.limits.max_retries as usize,
        }
    }

    /// Sets `circuit_breaker_open` gauges from the counters: [`CX`], [`RQ_PENDING`], [`RQ`],
    /// [`RQ_RETRY`] bits of `which` (indices of [`crate::metrics::BREAKER_RESOURCES`]).
    fn update_gauges(&self, which: u8) {
        let l = &self.limits;
        let at = |c: &AtomicUsize, limit: usize| i64::from(c.load(Ordering::Relaxed) >= limit);
        let g = &self.metrics.0.breaker_open;
        if which & CX != 0 {
            g[0].set(at(&self.connections, l.max_connections as usize));
        }
        if which & RQ_PENDING != 0 {
            g[1].set(at(&self.pending, l.max_pending_requests as usize));
        }
        if which & RQ != 0 {
            g[2].set(at(&self.requests, l.max_requests as usize));
        }
        if which & RQ_RETRY != 0 {
            g[3].set(at(&self.retries, self.retry_limit()));
        }
    }

    /// The gauges a request's admission or release can change.
    fn request_gauges(&self, pending: bool) -> u8 {
        let mut which = RQ;
        if pending {
            which |= RQ_PENDING;
        }
        if self.limits.retry_budget.is_some() {
            which |= RQ_RETRY;
        }
        which
    }

    /// One more upstream connection, if under `max_connections`.
    pub(crate) fn reserve_connection(self: &Arc<Self>) -> Option<ConnSlot> {
        let ok = Self::take(&self.connections, self.limits.max_connections as usize);
        self.update_gauges(CX);
        if !ok {
            self.metrics.0.cx_overflow.inc();
            return None;
        }
        Some(ConnSlot {
            breakers: self.clone(),
            ready: false,
        })
    }
}

/// One upstream connection counted against `max_connections`, released when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    breakers: Arc<Breakers>,
    ready: bool,
}

impl ConnSlot {
    /// The connection is established: requests are no longer pending.
    pub fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            let b = &self.breakers;
            b.ready.fetch_add(1, Ordering::Relaxed);
            b.pending.store(0, Ordering::Relaxed);
            b.pending_epoch.fetch_add(1, Ordering::Relaxed);
            b.update_gauges(RQ_PENDING);
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let b = &self.breakers;
        if self.ready {
            b.ready.fetch_sub(1, Ordering::Relaxed);
        }
        b.connections.fetch_sub(1, Ordering::Relaxed);
        b.update_gauges(CX);
    }
}

impl ClusterState {
    /// Admits one request under the cluster's circuit breakers (`max_requests`, and
    /// `max_pending_requests` while no upstream connection is ready); an overflow is counted
    /// in `upstream_rq_pending_overflow`.
    pub fn admit_request(&self) -> Result<Admission, Overflow> {
        let b = &self.breakers;
        if !Breakers::take(&b.requests, b.limits.max_requests as usize) {
            self.metrics.rq_pending_overflow.inc();
            b.update_gauges(RQ);
            return Err(Overflow::MaxRequests);
        }
        let mut pending = None;
        if b.ready.load(Ordering::Relaxed) == 0 {
            let epoch = b.pending_epoch.load(Ordering::Relaxed);
            if !Breakers::take(&b.pending, b.limits.max_pending_requests as usize) {
                b.requests.fetch_sub(1, Ordering::Relaxed);
                self.metrics.rq_pending_overflow.inc();
                b.update_gauges(b.request_gauges(true));
                return Err(Overflow::MaxPending);
            }
            pending = Some(epoch);
        }
        b.update_gauges(b.request_gauges(pending.is_some()));
        Ok(Admission {
            breakers: b.clone(),
            slot: Slot::Request { pending },
        })
    }

    /// Admits one retry (`max_retries` or the retry budget); `None` means no retry (counted
    /// in `upstream_rq_retry_overflow`).
    pub fn admit_retry(&self) -> Option<Admission> {
        let b = &self.breakers;
        let ok = Breakers::take(&b.retries, b.retry_limit());
        b.update_gauges(RQ_RETRY);
        if !ok {
            self.metrics.rq_retry_overflow.inc();
            return None;
        }
        Some(Admission {
            breakers: b.clone(),
            slot: Slot::Retry,
        })
    }

    /// Feeds outlier detection with the outcome of one attempt on `addr`.
    pub fn report(&self, addr: SocketAddr, result: HostResult) {
        self.hosts.report(addr, result);
    }

    /// One more upstream connection under `max_connections` (`None`: at the limit, counted
    /// in `upstream_cx_overflow`).
    pub fn reserve_connection(&self) -> Option<ConnSlot> {
        self.breakers.reserve_connection()
    }
}

impl Picked {
    /// Reports the outcome of the attempt on this endpoint to outlier detection.
    pub fn report(&self, outcome: &Outcome) {
        if let Some(r) = HostResult::of(outcome) {
            self.hosts.report(self.addr, r);
        }
    }

    /// Reports a local failure of the attempt on this endpoint (before any answer).
    pub fn report_error(&self, kind: ErrorKind) {
        if let Some(r) = HostResult::of_error(kind) {
            self.hosts.report(self.addr, r);
        }
    }
}

#[cfg(test)]
mod tests;
