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

use meta_config::{FaultError, RetryOn, RetryPolicy};
use meta_protocol::{Codec, ErrorKind, Frame, LocalReply, Metadata, ResponseStatus, keys};
use rand::Rng;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cluster::{ClusterState, Picked};
use crate::conn::{Conn, InFlight};
use crate::health::{Admission, HostResult};
use crate::lb::LbContext;
use crate::listener::{ListenerRt, RouteRt, Target};
use crate::upstream::{ForwardError, Outcome, Waiter};

/// Dubbo's "thread pool exhausted" status: the upstream refused without processing.
const REFUSED_STATUS: &str = "SERVER_THREADPOOL_EXHAUSTED";

/// The message of a fault abort's local reply.
pub(crate) const ABORT_MESSAGE: &str = "fault injected: abort";

/// Whether an event with probability `per_million` / 1e6 happens this time.
pub(crate) fn roll(per_million: u32) -> bool {
    per_million >= 1_000_000
        || (per_million > 0 && rand::rng().random_range(0..1_000_000) < per_million)
}

/// The local-reply kind of a fault abort.
pub(crate) fn abort_kind(e: FaultError) -> ErrorKind {
    match e {
        FaultError::Unspecified => ErrorKind::Unspecified,
        FaultError::OverLimit => ErrorKind::OverLimit,
        FaultError::Timeout => ErrorKind::Timeout,
        FaultError::UpstreamReset => ErrorKind::UpstreamReset,
        FaultError::RouteNotFound => ErrorKind::RouteNotFound,
        FaultError::BadRequest => ErrorKind::BadRequest,
    }
}

/// The outcome class of one attempt (contract §3).
pub(crate) fn classify(outcome: &Outcome) -> HostResult {
    match outcome {
        Ok(f) => match f.meta.status {
            ResponseStatus::Ok => HostResult::Success,
            ResponseStatus::Error if f.meta.get(keys::PROTOCOL_STATUS) == Some(REFUSED_STATUS) => {
                HostResult::Refused
            }
            ResponseStatus::Error => HostResult::ErrorResponse,
        },
        Err(r) => match r.kind {
            ErrorKind::ConnectFailure => HostResult::ConnectFailure,
            ErrorKind::Timeout => HostResult::Timeout,
            // Request ids exhausted on the upstream connection.
            ErrorKind::OverLimit => HostResult::Refused,
            _ => HostResult::Reset,
        },
    }
}

/// Whether `retry_on` retries an attempt that ended in `result` with `outcome`.
pub(crate) fn retryable(on: &RetryOn, result: HostResult, outcome: &Outcome) -> bool {
    let class = match result {
        HostResult::Success => return false,
        HostResult::ConnectFailure => on.connect_failure,
        HostResult::Refused => on.refused,
        HostResult::Reset => on.reset,
        HostResult::Timeout => on.timeout,
        HostResult::ErrorResponse => on.error_response,
    };
    class
        || outcome
            .as_ref()
            .ok()
            .and_then(|f| f.meta.get(keys::PROTOCOL_STATUS))
            .is_some_and(|s| on.matches_status(s))
}

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
            Err(o) => {
                let msg = format!(
                    "upstream overflow: {} of cluster '{}'",
                    o.as_str(),
                    self.cluster.config.name
                );
                Err(LocalReply::new(ErrorKind::OverLimit, msg))
            }
        }
    }

    /// Answers a request that is not forwarded (a one-way request is only counted).
    fn reject(&self, codec: &mut dyn Codec, reply: &LocalReply) {
        if self.guard.is_some() {
            self.conn.local_reply(codec, &self.meta, reply);
        } else {
            self.conn.l.metrics.count_local_reply(reply.kind);
        }
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
        let l = &self.conn.l;
        let options = self.rt.codec_options();
        self.target().metrics.upstream_requests.inc();
        let up = l.upstream(&self.cluster, addr, self.variant, options);
        if self.guard.is_none() {
            if up.forward(frame, None, &mut |_, _| Ok(())).is_err() {
                l.metrics.count_local_reply(ErrorKind::UpstreamReset);
            }
            return Sent::Done;
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            original_id: self.meta.request_id,
            tx,
            response_mutation: self.route().response_mutation.clone(),
        };
        let mut sent = up.forward(frame, Some(waiter), &mut |f, id| {
            codec.set_request_id(f, id)
        });
        if let Err(ForwardError::Closed(back)) = sent {
            // The shared connection closed (idle, reset) just now: once more on a fresh one.
            let (frame, waiter) = *back;
            let up = l.upstream(&self.cluster, addr, self.variant, options);
            sent = up.forward(frame, waiter, &mut |f, id| codec.set_request_id(f, id));
        }
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
            let Some(slot) = self.cluster.admit_retry() else {
                self.target().metrics.retry_overflow.inc();
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

#[cfg(test)]
mod tests {
    use meta_protocol::{MessageKind, Metadata};

    use super::*;

    fn response(status: ResponseStatus, code: Option<&str>) -> Outcome {
        let mut meta = Metadata::of_kind(MessageKind::Response);
        meta.status = status;
        if let Some(c) = code {
            meta.set(keys::PROTOCOL_STATUS, c);
        }
        Ok(Frame::new(meta, bytes::BytesMut::new()))
    }

    fn local(kind: ErrorKind) -> Outcome {
        Err(LocalReply::new(kind, "x"))
    }

    #[test]
    fn outcomes_are_classified() {
        assert_eq!(
            classify(&response(ResponseStatus::Ok, None)),
            HostResult::Success
        );
        let exc = response(ResponseStatus::Error, Some("EXCEPTION"));
        assert_eq!(classify(&exc), HostResult::ErrorResponse);
        let busy = response(ResponseStatus::Error, Some(REFUSED_STATUS));
        assert_eq!(classify(&busy), HostResult::Refused);
        assert_eq!(
            classify(&local(ErrorKind::ConnectFailure)),
            HostResult::ConnectFailure
        );
        assert_eq!(
            classify(&local(ErrorKind::UpstreamReset)),
            HostResult::Reset
        );
        assert_eq!(classify(&local(ErrorKind::BadResponse)), HostResult::Reset);
        assert_eq!(classify(&local(ErrorKind::Timeout)), HostResult::Timeout);
        assert_eq!(classify(&local(ErrorKind::OverLimit)), HostResult::Refused);
    }

    #[test]
    fn retry_decision_follows_retry_on() {
        let on = RetryOn::parse("connect-failure,reset,status:SERVER_TIMEOUT").unwrap();
        let reset = local(ErrorKind::UpstreamReset);
        assert!(retryable(&on, HostResult::Reset, &reset));
        let cf = local(ErrorKind::ConnectFailure);
        assert!(retryable(&on, HostResult::ConnectFailure, &cf));
        let to = local(ErrorKind::Timeout);
        assert!(
            !retryable(&on, HostResult::Timeout, &to),
            "timeouts need gateway-error"
        );
        let st = response(ResponseStatus::Error, Some("server_timeout"));
        assert!(retryable(&on, HostResult::ErrorResponse, &st));
        let other = response(ResponseStatus::Error, Some("SERVICE_ERROR"));
        assert!(!retryable(&on, HostResult::ErrorResponse, &other));
        let ok = response(ResponseStatus::Ok, None);
        assert!(!retryable(&on, HostResult::Success, &ok));
        let gw = RetryOn::parse("gateway-error").unwrap();
        assert!(retryable(&gw, HostResult::Timeout, &to));
        assert!(!retryable(&gw, HostResult::ErrorResponse, &other));
        let five = RetryOn::parse("5xx").unwrap();
        assert!(retryable(&five, HostResult::ErrorResponse, &other));
    }

    #[test]
    fn rolls_follow_their_probability() {
        assert!((0..1000).all(|_| roll(1_000_000)));
        assert!((0..1000).all(|_| !roll(0)));
        let hits = (0..10_000).filter(|_| roll(500_000)).count();
        // Binomial(10000, 0.5): sd 50; 6 sd either side.
        assert!((4700..=5300).contains(&hits), "{hits}");
    }
}
