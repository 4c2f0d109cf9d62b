//! Outcome classes, the retry decision and fault rolls (pure functions of the router).

use meta_config::{FaultError, RetryOn};
use meta_protocol::{ErrorKind, ResponseStatus, keys};
use rand::Rng;

use crate::health::HostResult;
use crate::upstream::Outcome;

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

#[cfg(test)]
mod tests {
    use meta_protocol::{Frame, LocalReply, MessageKind, Metadata};

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
