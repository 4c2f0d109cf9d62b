//! The codec contract: what a protocol implements to be proxied.

use bytes::BytesMut;

use crate::{Frame, LocalReply, Metadata, Mutation, ReadKeys};

/// Which direction a codec instance decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Faces a client: decodes requests, writes local replies.
    Downstream,
    /// Faces a server: decodes responses (and server-initiated heartbeats).
    Upstream,
}

/// How responses are matched to requests on an upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correlation {
    /// Each message carries a request id; the core rewrites it per upstream connection so that
    /// requests from many clients share one connection (multiplexing) and restores it on the way
    /// back.
    RequestId,
    /// The protocol has no id (Redis): responses come back in request order, so the core keeps a
    /// FIFO per upstream connection.
    InOrder,
}

/// Limits and options every codec instance receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// Largest frame accepted, in bytes; a larger frame is a [`CodecErrorKind::TooLarge`] error.
    pub max_message_size: usize,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            max_message_size: 8 * 1024 * 1024,
        }
    }
}

/// Kinds of codec failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecErrorKind {
    /// The bytes are not a valid message of the protocol (bad magic, invalid encoding…).
    Malformed,
    /// The frame declares a size above [`CodecOptions::max_message_size`].
    TooLarge,
    /// Valid protocol, but a variant this codec does not support (e.g. a serialization type).
    Unsupported,
}

/// A decode or encode failure. After a decode error the connection cannot be resynchronised and
/// the core closes it, first answering with [`Codec::on_error`] when `request` says enough about
/// the offending request to do so.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct CodecError {
    /// What class of failure.
    pub kind: CodecErrorKind,
    /// Precise description for logs.
    pub detail: String,
    /// What was decoded of the offending request before the failure (its request id at least), if
    /// anything: lets the core send a protocol-native error before closing.
    pub request: Option<Box<Metadata>>,
}

impl CodecError {
    /// A malformed-input error.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self {
            kind: CodecErrorKind::Malformed,
            detail: detail.into(),
            request: None,
        }
    }

    /// A frame-too-large error.
    pub fn too_large(size: usize, max: usize) -> Self {
        Self {
            kind: CodecErrorKind::TooLarge,
            detail: format!("message of {size} bytes exceeds the maximum of {max} bytes"),
            request: None,
        }
    }

    /// An unsupported-variant error.
    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self {
            kind: CodecErrorKind::Unsupported,
            detail: detail.into(),
            request: None,
        }
    }

    /// Attaches what is known of the offending request.
    pub fn with_request(mut self, request: Metadata) -> Self {
        self.request = Some(Box::new(request));
        self
    }
}

/// One protocol, one connection, one direction.
///
/// A codec instance is created per connection and side ([`CodecFactory::new_codec`]); it may keep
/// state between calls (a partially read header, the transport detected on the first frame).
/// Contract:
/// - [`Codec::decode`] consumes exactly one whole frame from the front of `buf` and returns it,
///   original bytes untouched; or returns `Ok(None)` and consumes nothing when more bytes are
///   needed. It decodes only what routing needs.
/// - [`Codec::set_read_keys`] says which metadata string keys the core may read from decoded
///   messages; the core calls it before the first decode and again whenever the set changes
///   (a route or filter update). Keys outside the set MAY be left out of [`Metadata::strings`]
///   (and the work of finding them skipped); typed fields (`kind`, `status`, `request_id`,
///   sizes) and the keys a codec reports errors with ([`crate::keys::PROTOCOL_STATUS`]) are
///   always filled, and a key inside the set must have the value a full decode would give it.
///   A codec that never receives the call decodes everything.
/// - [`Codec::frame_len`] may say how long the frame being received is (a buffer-size hint).
/// - [`Codec::encode`] writes a mutation into a frame's bytes; with an empty mutation it must leave
///   the bytes as they are.
/// - [`Codec::set_request_id`] rewrites the correlation id inside the bytes (and `meta`).
/// - [`Codec::on_error`] writes a complete protocol-native error response for a request.
/// - No method panics on any input.
pub trait Codec: Send + 'static {
    /// Decodes the next whole frame at the front of `buf`, splitting its bytes off `buf`.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError>;

    /// Which metadata string keys the core may read from the messages decoded from now on
    /// (see the contract above). The default ignores it and decodes everything. Called rarely
    /// (config changes): keep what decode needs as a flag or two, not the set.
    fn set_read_keys(&mut self, keys: &ReadKeys) {
        let _ = keys;
    }

    /// Total length of the frame at the front of `buf` (header included), if the bytes there
    /// already say it: a hint that lets the core size its read buffer for the whole frame once
    /// instead of growing it while a large frame arrives. `None` (the default) when the length
    /// is not known yet or the protocol does not declare it up front (unframed Thrift). Only a
    /// hint: [`Codec::decode`] remains the judge of validity and limits; a codec returns `None`
    /// rather than a length above [`CodecOptions::max_message_size`].
    fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        let _ = buf;
        None
    }

    /// Applies `mutation` to `frame` (request attachments, response attachments, THeader headers).
    /// Codecs whose protocol has no place for key/values return an `Unsupported` error for a
    /// non-empty mutation, so the core can count and report it.
    fn encode(&mut self, frame: &mut Frame, mutation: &Mutation) -> Result<(), CodecError>;

    /// Rewrites the correlation id of `frame` to `id` (the core allocates ids that fit
    /// [`Codec::max_request_id`]).
    fn set_request_id(&mut self, frame: &mut Frame, id: u64) -> Result<(), CodecError>;

    /// Writes to `out` a complete error response to `request` carrying `reply`, with the request's
    /// correlation id, in this connection's protocol variant.
    fn on_error(&mut self, request: &Metadata, reply: &LocalReply, out: &mut BytesMut);

    /// If `frame` is a heartbeat that expects an answer, writes the answer to `out` and returns
    /// true. Heartbeat responses return false (the core consumes them).
    fn heartbeat_reply(&mut self, frame: &Frame, out: &mut BytesMut) -> bool {
        let _ = (frame, out);
        false
    }

    /// Largest correlation id the protocol can carry (e.g. `i32::MAX` for Thrift's seqid).
    fn max_request_id(&self) -> u64 {
        u64::from(u32::MAX)
    }

    /// On a downstream codec, the protocol variant detected on this connection (e.g. Thrift
    /// transport × protocol), 0 until known or when the protocol has a single variant. The core
    /// only shares an upstream connection between downstream connections of the same variant,
    /// because servers detect the variant once per connection.
    fn connection_variant(&self) -> u32 {
        0
    }
}

/// Creates codec instances for one protocol. Registered by name (e.g.
/// `aeraki.meta_protocol.codec.dubbo`); one factory serves every listener of that protocol.
pub trait CodecFactory: Send + Sync + 'static {
    /// The codec name used in configuration.
    fn name(&self) -> &'static str;

    /// The protocol name used in metrics and the `x-meta-protocol-application-protocol` key.
    fn protocol(&self) -> &'static str;

    /// How responses are matched to requests.
    fn correlation(&self) -> Correlation {
        Correlation::RequestId
    }

    /// A fresh codec for one connection side.
    fn new_codec(&self, side: Side, options: CodecOptions) -> Box<dyn Codec>;
}
