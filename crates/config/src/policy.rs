//! Per-route resilience policies: retries and fault injection.

use std::time::Duration;

use serde::Serialize;

/// Default `host_selection_retry_max_attempts` (Aeraki's translation always sends 5).
pub const DEFAULT_HOST_SELECTION_MAX_ATTEMPTS: u32 = 5;

/// Parts per million meaning "always".
pub const PER_MILLION: u32 = 1_000_000;

/// How a route retries failed attempts (Envoy `RetryPolicy`, restricted to what we honour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub num_retries: u32,
    /// Time allowed for each attempt; `None`: only the route timeout bounds attempts.
    pub per_try_timeout: Option<Duration>,
    /// Which attempt outcomes are retried.
    pub retry_on: RetryOn,
    /// Picks tried to find a host not tried yet before settling for any host.
    pub host_selection_max_attempts: u32,
}

/// The outcome classes a retry policy retries (tokens of `retry_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// Connecting to the host failed or timed out.
    pub connect_failure: bool,
    /// The host refused the request without processing it.
    pub refused: bool,
    /// The connection closed or reset before the answer.
    pub reset: bool,
    /// The per-try timeout expired.
    pub timeout: bool,
    /// A response with an error status (Dubbo non-OK/exception, Thrift exception).
    pub error_response: bool,
    /// Codec status values (`status:<V>`), compared with the response's
    /// `x-meta-protocol-status` (ASCII case-insensitively).
    pub statuses: Vec<String>,
}

impl RetryOn {
    /// Parses a comma-separated `retry_on` list: `connect-failure`, `refused-stream`, `reset`,
    /// `gateway-error`, `5xx`, `error-response`, `status:<VALUE>`. Blanks around tokens are
    /// ignored; an unknown or empty token is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut on = Self::default();
        for token in list.split(',').map(str::trim) {
            match token {
                "connect-failure" => on.connect_failure = true,
                "refused-stream" => on.refused = true,
                "reset" => on.reset = true,
                "gateway-error" => on.gateway(),
                "5xx" => {
                    on.gateway();
                    on.error_response = true;
                }
                "error-response" => on.error_response = true,
                t => match t.strip_prefix("status:") {
                    Some(v) if !v.is_empty() => on.statuses.push(v.to_owned()),
                    _ if t.is_empty() => return Err("empty retry_on token".to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown retry_on token '{t}' (connect-failure, refused-stream, \
                             reset, gateway-error, 5xx, error-response, status:<VALUE>)"
                        ));
                    }
                },
            }
        }
        Ok(on)
    }

    fn gateway(&mut self) {
        self.connect_failure = true;
        self.refused = true;
        self.reset = true;
        self.timeout = true;
    }

    /// Whether a response whose `x-meta-protocol-status` is `status` is retried by a
    /// `status:<V>` token.
    pub fn matches_status(&self, status: &str) -> bool {
        self.statuses.iter().any(|s| s.eq_ignore_ascii_case(status))
    }
}

/// Fault injection on a route: delay and/or abort, each with its probability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultPolicy {
    /// A fixed delay before forwarding.
    pub delay: Option<FaultDelay>,
    /// A local error reply instead of forwarding.
    pub abort: Option<FaultAbort>,
}

/// A fault delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultDelay {
    /// How long the request waits.
    pub delay: Duration,
    /// Share of requests delayed, parts per million.
    pub per_million: u32,
}

/// A fault abort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultAbort {
    /// The protocol-native error the client gets.
    pub error: FaultError,
    /// Share of requests aborted, parts per million.
    pub per_million: u32,
}

/// The error kinds a fault abort can answer with (the engine maps them to its local replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FaultError {
    /// Unspecified error (HTTP status 503 in the tunnelled form).
    Unspecified,
    /// Over limit (429).
    OverLimit,
    /// Timeout (504).
    Timeout,
    /// Upstream reset (502).
    UpstreamReset,
    /// Route not found (404).
    RouteNotFound,
    /// Bad request (400).
    BadRequest,
}

impl FaultError {
    /// The error kind carried by `abort.http_status` in the tunnelled RDS form.
    pub fn from_http_status(code: u32) -> Option<Self> {
        Some(match code {
            503 => Self::Unspecified,
            429 => Self::OverLimit,
            504 => Self::Timeout,
            502 => Self::UpstreamReset,
            404 => Self::RouteNotFound,
            400 => Self::BadRequest,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_tokens() {
        let on = RetryOn::parse("connect-failure, reset").unwrap();
        assert!(on.connect_failure && on.reset && !on.refused && !on.timeout);
        let gw = RetryOn::parse("gateway-error").unwrap();
        assert!(gw.connect_failure && gw.refused && gw.reset && gw.timeout);
        assert!(!gw.error_response);
        let all = RetryOn::parse("5xx").unwrap();
        assert!(all.timeout && all.error_response);
        let st = RetryOn::parse("status:SERVER_TIMEOUT,refused-stream").unwrap();
        assert!(st.refused && st.matches_status("server_timeout"));
        assert!(!st.matches_status("SERVICE_ERROR"));
        assert!(
            RetryOn::parse("retriable-4xx")
                .unwrap_err()
                .contains("'retriable-4xx'")
        );
        assert!(RetryOn::parse("status:").is_err());
        assert!(RetryOn::parse("reset,,").is_err());
    }

    #[test]
    fn abort_codes() {
        assert_eq!(
            FaultError::from_http_status(429),
            Some(FaultError::OverLimit)
        );
        assert_eq!(
            FaultError::from_http_status(503),
            Some(FaultError::Unspecified)
        );
        assert_eq!(FaultError::from_http_status(500), None);
    }
}
