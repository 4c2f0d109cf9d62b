//! What a codec tells the core about one message.

use crate::KeyValues;

/// Reserved metadata keys set by the core (names as in Aeraki's MetaProtocol proxy).
pub mod keys {
    /// The upstream `ip:port` a request was sent to (set on the request and copied to the response).
    pub const REAL_SERVER_ADDRESS: &str = "x-meta-protocol-real-server-address";
    /// The application protocol name (e.g. `dubbo`), set on every decoded request.
    pub const APPLICATION_PROTOCOL: &str = "x-meta-protocol-application-protocol";
    /// Request UUID carried for tracing and access logs.
    pub const REQUEST_ID: &str = "x-request-id";
    /// The protocol's own status of an error response (Dubbo: the status name, e.g.
    /// `SERVER_TIMEOUT`, or `EXCEPTION` for an OK status carrying an exception; Thrift:
    /// `EXCEPTION` for a declared exception, or the `TApplicationException` type name). Codecs
    /// set it on error responses only; retry policies match it with `status:<VALUE>`.
    pub const PROTOCOL_STATUS: &str = "x-meta-protocol-status";
}

/// What kind of message a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageKind {
    /// A request that expects a response.
    #[default]
    Request,
    /// A response to a request (see [`ResponseStatus`] for success or error).
    Response,
    /// A request that gets no response: forwarded, never answered.
    OneWay,
    /// A keep-alive. A heartbeat *request* is answered by the proxy itself
    /// ([`crate::Codec::heartbeat_reply`]); a heartbeat response is consumed.
    Heartbeat,
    /// First frame of a stream (routed like a request).
    StreamInit,
    /// A data frame of an open stream.
    StreamData,
    /// Closes one direction of a stream.
    StreamCloseOneWay,
    /// Closes both directions of a stream.
    StreamCloseTwoWay,
}

impl MessageKind {
    /// Stable lower-case name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
            MessageKind::OneWay => "oneway",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::StreamInit => "stream_init",
            MessageKind::StreamData => "stream_data",
            MessageKind::StreamCloseOneWay => "stream_close_oneway",
            MessageKind::StreamCloseTwoWay => "stream_close_twoway",
        }
    }
}

/// Outcome carried by a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseStatus {
    /// The call succeeded.
    #[default]
    Ok,
    /// The call failed: a protocol error status, an exception or an application error.
    Error,
}

impl ResponseStatus {
    /// `"ok"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "ok",
            ResponseStatus::Error => "error",
        }
    }
}

/// Everything the core knows about one message: typed fields plus routable string pairs.
///
/// Codecs fill it in `decode`; routing, rate limiting and metrics read it. The string pairs are
/// matched case-insensitively (like Envoy header maps), so a route on `Method` sees `method`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Request, response, one-way, heartbeat or stream frame.
    pub kind: MessageKind,
    /// Success or error (meaningful on responses).
    pub status: ResponseStatus,
    /// The protocol's correlation id (Dubbo request id, Thrift seqid…); 0 if the protocol has none.
    pub request_id: u64,
    /// Stream id for streaming protocols; 0 otherwise.
    pub stream_id: u64,
    /// Size in bytes of the protocol header part of the frame (informational).
    pub header_size: u32,
    /// Size in bytes of the body part of the frame (informational).
    pub body_size: u32,
    /// Routable string metadata (`interface`, `method`, attachments, THeader headers…).
    pub strings: KeyValues,
}

impl Metadata {
    /// Metadata of a given kind with everything else empty.
    pub fn of_kind(kind: MessageKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// String value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.strings.get(key)
    }

    /// Sets a string value.
    pub fn set(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        self.strings.set(key, value);
    }

    /// Whole frame size (header + body).
    pub fn message_size(&self) -> u64 {
        u64::from(self.header_size) + u64::from(self.body_size)
    }
}
