//! [`CallError`]: why a call of a [`crate::Client`] failed.

use std::io;
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting, reading or writing failed.
    #[error("transport error: {0}")]
    Transport(#[from] io::Error),
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The response could not be decoded.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// A Dubbo response with an error status (e.g. 70 SERVICE_ERROR) and its message.
    #[error("dubbo status {status}: {message}")]
    DubboStatus {
        /// The status byte.
        status: u8,
        /// The error message the response carries.
        message: String,
    },
    /// A Dubbo OK response whose result is an exception.
    #[error("dubbo exception: {0}")]
    DubboException(String),
    /// A Thrift `TApplicationException`.
    #[error("thrift TApplicationException type {kind}: {message}")]
    ThriftApplication {
        /// Exception type (1 UNKNOWN_METHOD, 6 INTERNAL_ERROR, 7 PROTOCOL_ERROR, ...).
        kind: i32,
        /// Its message.
        message: String,
    },
    /// A Thrift reply carrying a declared exception (result field id).
    #[error("thrift declared exception (result field {0})")]
    ThriftDeclared(i16),
    /// The request cannot be expressed in this protocol (e.g. attachments without THeader).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl CallError {
    /// Whether the failure is the connection's (transport, closed, timeout, undecodable
    /// response) rather than an error answer of the protocol.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            CallError::Transport(_)
                | CallError::Closed
                | CallError::Timeout(_)
                | CallError::BadResponse(_)
        )
    }

    /// A short stable label for counting errors by kind: `transport`, `closed`, `timeout`,
    /// `bad_response`, `dubbo_status_<n>`, `dubbo_exception`, `thrift_app_<type>`,
    /// `thrift_declared`, `unsupported`.
    pub fn kind(&self) -> String {
        match self {
            CallError::Transport(_) => "transport".into(),
            CallError::Closed => "closed".into(),
            CallError::Timeout(_) => "timeout".into(),
            CallError::BadResponse(_) => "bad_response".into(),
            CallError::DubboStatus { status, .. } => format!("dubbo_status_{status}"),
            CallError::DubboException(_) => "dubbo_exception".into(),
            CallError::ThriftApplication { kind, .. } => format!("thrift_app_{kind}"),
            CallError::ThriftDeclared(_) => "thrift_declared".into(),
            CallError::Unsupported(_) => "unsupported".into(),
        }
    }
}
