//! The router's attempt loop: fault delay, circuit-breaker admission, per-try timeouts and
//! retries on other hosts, bounded by the route timeout (Envoy semantics: the route timeout
//! covers the whole request including retries).
//!
//! The first attempt is forwarded synchronously by the connection's reader (keeping wire order
//! for pipelined requests) unless a fault delay applies; later attempts run in the request's
//! task. Only a route with a retry policy keeps a copy of the request frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meta_config::RetryPolicy;
use meta_protocol::{Codec, ErrorKind, Frame, LocalReply, Metadata, ResponseStatus};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cluster::{ClusterState, Picked};
use crate::conn::{Conn, InFlight};
use crate::health::{Admission, HostResult};
use crate::lb::LbContext;
use crate::listener::{ListenerRt, RouteRt, Target};
use crate::upstream::{ForwardError, Outcome, Waiter};

mod hand_off;
mod outcome;

use hand_off::HandOff;

pub(crate) use outcome::{ABORT_MESSAGE, abort_kind, classify, retryable, roll};

/// How one attempt was handed over.
pub(crate) enum Sent {
    /// Forwarded; the outcome arrives on `rx`.
    Waiting {
        rx: oneshot::Receiver<Outcome>,
        picked: Picked,
    },
    /// A one-way request was forwarded (or dropped and counted).
    Done,
    /// Not forwarded: the host tried (if any), the attempt's class (`None`: not retryable) and
    /// the reply owed to the client.
    Failed {
        addr: Option<SocketAddr>,
        result: Option<HostResult>,
        reply: LocalReply,
    },
}

/// One routed request from its first attempt to its answer.
pub(crate) struct Exchange {
    pub(crate) conn: Arc<Conn>,
    pub(crate) rt: Arc<ListenerRt>,
    pub(crate) route_ix: usize,
    pub(crate) target_ix: usize,
    pub(crate) cluster: Arc<ClusterState>,
    /// The request; a retrying route forwards copies and keeps it, others move it.
    pub(crate) frame: Option<Frame>,
    /// The request metadata, for local replies and filters (two-way only).
    pub(crate) meta: Metadata,
    pub(crate) hash: Option<u64>,
    pub(crate) variant: u32,
    pub(crate) start: std::time::Instant,
    /// Held by two-way requests until their outcome; `None` for one-way requests.
    pub(crate) guard: Option<InFlight>,
    /// The circuit-breaker slot of the request, taken just before the first attempt.
    pub(crate) admission: Option<Admission>,
    /// A fault abort to answer once the fault delay has passed.
    pub(crate) abort: Option<ErrorKind>,
    /// Hosts tried so far (only recorded by retrying routes).
    pub(crate) tried: Vec<SocketAddr>,
}

impl Exchange {
    fn route(&self) -> &RouteRt {
        &self.rt.routes[self.route_ix]
    }

    fn target(&self) -> &Target {
        &self.route().targets[self.target_ix]
    }

    fn policy(&self) -> Option<&RetryPolicy> {
        self.route()
            .route
            .retry
            .as_ref()
            .filter(|_| self.guard.is_some())
    }

    /// Starts the request: after a fault `delay` in its task, else the first attempt now.
    /// Returns what must be awaited (`None`: done).
    pub(crate) fn start(
        mut self,
        codec: &mut dyn Codec,
        delay: Option<Duration>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let first = match delay {
            Some(_) => None,
            None => match self.admit() {
                Err(reply) => {
                    self.reject(codec, &reply);
                    return None;
                }
                Ok(()) => match self.attempt(codec) {
                    Sent::Done => return None,
                    sent => Some(sent),
                },
            },
        };
        Some(self.run(delay, first))
    }

    /// Takes the request's circuit-breaker slot (`admit_request`).
    fn admit(&mut self) -> Result<(), LocalReply> {
        match self.cluster.admit_request() {
            Ok(a) => {
                self.admission = Some(a);
                Ok(())
            }
            Err(o) => Err(o.reply(&self.cluster.config.name)),
        }
    }

    /// Answers a request that is not forwarded (a one-way request is only counted).
    fn reject(&self, codec: &mut dyn Codec, reply: &LocalReply) {
        self.conn
            .reject(codec, &self.meta, self.guard.is_some(), reply);
    }

    /// Picks a host, preferring ones not tried yet (up to the policy's
    /// `host_selection_max_attempts` picks, then any host).
    fn pick(&self) -> Option<Picked> {
        let ctx = LbContext { hash: self.hash };
        let picks = self
            .policy()
            .map_or(1, |p| p.host_selection_max_attempts.max(1));
        let mut last = None;
        for _ in 0..picks {
            let p = self.cluster.pick(&ctx)?;
            if !self.tried.contains(&p.addr) {
                return Some(p);
            }
            last = Some(p);
        }
        last
    }

    /// Forwards one attempt with a fresh upstream request id.
    fn attempt(&mut self, codec: &mut dyn Codec) -> Sent {
        let Some(picked) = self.pick() else {
            let msg = format!(
                "no healthy upstream in cluster '{}'",
                self.cluster.config.name
            );
            return Sent::Failed {
                addr: None,
                result: None,
                reply: LocalReply::new(ErrorKind::NoHealthyUpstream, msg),
            };
        };
        let addr = picked.addr;
        let keep = self.policy().is_some();
        let frame = if keep {
            self.frame.clone()
        } else {
            self.frame.take()
        };
        let Some(frame) = frame else {
            let reply = LocalReply::new(ErrorKind::Unspecified, "request already forwarded");
            return Sent::Failed {
                addr: None,
                result: None,
                reply,
            };
        };
        if keep {
            self.tried.push(addr);
        }
        self.target().metrics.upstream_requests.inc();
        let (waiter, rx) = match self.guard {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                let waiter = Waiter {
                    original_id: self.meta.request_id,
                    tx,
                    response_mutation: self.route().response_mutation.clone(),
                };
                (Some(waiter), Some(rx))
            }
            None => (None, None),
        };
        let sent = match self.hand_off(addr, frame, waiter, codec) {
            Err(HandOff::Overflow(reply)) => {
                // The connection limit (max_connections) of the cluster: not the host's fault.
                if rx.is_none() {
                    self.conn.l.metrics.count_local_reply(reply.kind);
                    return Sent::Done;
                }
                return Sent::Failed {
                    addr: None,
                    result: None,
                    reply,
                };
            }
            Err(HandOff::Forward(e)) => Err(e),
            Ok(()) => Ok(()),
        };
        let Some(rx) = rx else {
            // One-way: written and forgotten.
            if sent.is_err() {
                self.conn
                    .l
                    .metrics
                    .count_local_reply(ErrorKind::UpstreamReset);
            }
            return Sent::Done;
        };
        let (result, kind, msg) = match sent {
            Ok(()) => return Sent::Waiting { rx, picked },
            Err(ForwardError::Closed(_) | ForwardError::Lost) => (
                Some(HostResult::Reset),
                ErrorKind::UpstreamReset,
                format!("upstream connection to {addr} closed"),
            ),
            Err(ForwardError::Exhausted) => (
                Some(HostResult::Refused),
                ErrorKind::OverLimit,
                "too many requests in flight on the upstream connection".to_owned(),
            ),
            Err(ForwardError::SetId(e)) => (
                None,
                ErrorKind::BadRequest,
                format!("cannot rewrite the request id: {}", e.detail),
            ),
        };
        Sent::Failed {
            addr: Some(addr),
            result,
            reply: LocalReply::new(kind, msg),
        }
    }

    /// Waits for attempts and retries until the final outcome, then answers.
    async fn run(mut self, delay: Option<Duration>, mut first: Option<Sent>) {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
            let refused = match self.abort {
                Some(kind) => Err(LocalReply::new(kind, ABORT_MESSAGE)),
                None => self.admit(),
            };
            if let Err(reply) = refused {
                let conn = self.conn.clone();
                let mut codec = conn.codec();
                return self.reject(codec.as_mut(), &reply);
            }
        }
        let deadline = self.route().route.timeout.map(|t| Instant::now() + t);
        let mut retries = 0u32;
        let mut _retry_slot: Option<Admission> = None;
        loop {
            let sent = match first.take() {
                Some(s) => s,
                None => {
                    let conn = self.conn.clone();
                    let mut codec = conn.codec();
                    self.attempt(codec.as_mut())
                }
            };
            let (addr, result, outcome, expired) = match sent {
                Sent::Done => return,
                Sent::Failed {
                    addr,
                    result,
                    reply,
                } => (addr, result, Err(reply), false),
                Sent::Waiting { rx, picked } => {
                    let addr = picked.addr;
                    let (outcome, expired) = self.wait(rx, deadline).await;
                    drop(picked);
                    let result = classify(&outcome);
                    (Some(addr), Some(result), outcome, expired)
                }
            };
            if let (Some(a), Some(r)) = (addr, result) {
                self.cluster.report(a, r);
            }
            let Some(result) = result else {
                return self.finish(outcome);
            };
            let again = !expired
                && deadline.is_none_or(|d| Instant::now() < d)
                && self.policy().is_some_and(|p| {
                    retries < p.num_retries && retryable(&p.retry_on, result, &outcome)
                });
            if !again {
                if retries > 0 && result == HostResult::Success {
                    self.target().metrics.retry_success.inc();
                }
                return self.finish(outcome);
            }
            // A refusal is counted by the cluster (`upstream_rq_retry_overflow_total`).
            let Some(slot) = self.cluster.admit_retry() else {
                return self.finish(outcome);
            };
            _retry_slot = Some(slot);
            retries += 1;
            self.target().metrics.retry.inc();
            tracing::debug!(
                listener = %self.conn.l.name,
                id = self.meta.request_id,
                ?result,
                retry = retries,
                "retrying request"
            );
        }
    }

    /// Waits for one attempt's outcome within its per-try timeout and the route deadline;
    /// `true` when the route deadline expired (no retry then).
    async fn wait(
        &self,
        rx: oneshot::Receiver<Outcome>,
        deadline: Option<Instant>,
    ) -> (Outcome, bool) {
        let per_try = self.policy().and_then(|p| p.per_try_timeout);
        let try_end = per_try.map(|p| Instant::now() + p);
        let (limit, is_route) = match (try_end, deadline) {
            (Some(t), Some(d)) if d <= t => (Some(d), true),
            (Some(t), _) => (Some(t), false),
            (None, d) => (d, true),
        };
        let received = match limit {
            Some(l) => tokio::time::timeout_at(l, rx).await.ok(),
            None => Some(rx.await),
        };
        let id = self.meta.request_id;
        match received {
            Some(r) => (
                r.unwrap_or_else(|_| {
                    Err(LocalReply::new(
                        ErrorKind::UpstreamReset,
                        "upstream connection dropped",
                    ))
                }),
                false,
            ),
            None if is_route => {
                let ms = self.route().route.timeout.unwrap_or_default().as_millis();
                let msg = format!("request '{id}' timed out after {ms} ms");
                (Err(LocalReply::new(ErrorKind::Timeout, msg)), true)
            }
            None => {
                self.target().metrics.per_try_timeout.inc();
                let ms = per_try.unwrap_or_default().as_millis();
                let msg = format!("request '{id}' timed out after {ms} ms (per-try timeout)");
                (Err(LocalReply::new(ErrorKind::Timeout, msg)), false)
            }
        }
    }

    /// Answers the client with the final outcome.
    fn finish(&self, outcome: Outcome) {
        let target = self.target();
        match outcome {
            Ok(frame) => {
                match frame.meta.status {
                    ResponseStatus::Ok => target.metrics.responses_ok.inc(),
                    ResponseStatus::Error => target.metrics.responses_error.inc(),
                };
                for f in &self.rt.filters {
                    f.on_response(&self.meta, Some(&frame.meta));
                }
                self.conn.write(frame.bytes);
            }
            Err(reply) => {
                for f in &self.rt.filters {
                    f.on_response(&self.meta, None);
                }
                let mut codec = self.conn.codec();
                self.conn.local_reply(codec.as_mut(), &self.meta, &reply);
            }
        }
        target
            .metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}
