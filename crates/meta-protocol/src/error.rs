//! Errors the proxy answers locally, in the client's protocol.

use std::fmt;

/// Why the proxy answers a request itself instead of forwarding the upstream's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No route matched the request's metadata.
    RouteNotFound,
    /// The route names a cluster that does not exist.
    ClusterNotFound,
    /// The cluster has no endpoint that can take the request.
    NoHealthyUpstream,
    /// Connecting to the chosen upstream failed or timed out.
    ConnectFailure,
    /// The upstream closed or reset the connection before answering.
    UpstreamReset,
    /// The request timed out waiting for its response.
    Timeout,
    /// The upstream's response could not be decoded.
    BadResponse,
    /// A rate limit or circuit breaker refused the request.
    OverLimit,
    /// The request was refused as malformed or too large.
    BadRequest,
    /// Anything else.
    Unspecified,
}

impl ErrorKind {
    /// Stable snake-case name, used as the `reason` metric label and in access logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RouteNotFound => "no_route",
            ErrorKind::ClusterNotFound => "unknown_cluster",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::ConnectFailure => "connect_failure",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::OverLimit => "over_limit",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unspecified => "unspecified",
        }
    }

    /// Every kind, for pre-registering metric label sets.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::RouteNotFound,
        ErrorKind::ClusterNotFound,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::ConnectFailure,
        ErrorKind::UpstreamReset,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::OverLimit,
        ErrorKind::BadRequest,
        ErrorKind::Unspecified,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A local reply: the kind of failure and a human-readable message the client will see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Text carried in the protocol's error (Dubbo error message, TApplicationException message).
    pub message: String,
}

impl LocalReply {
    /// A local reply of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for LocalReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}
