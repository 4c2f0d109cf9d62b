//! Thrift codec of meta-proxy, registered as `aeraki.meta_protocol.codec.thrift` (protocol
//! `thrift`, correlation by seqid).
//!
//! This crate owns the Thrift transports (framed, unframed, THeader), the binary (strict and,
//! behind a frame length, non-strict) and compact protocols as far as routing needs them (the
//! message header, value skipping, the first field of a result struct), THeader info-header
//! rewriting and `TApplicationException` local replies. It depends only on `meta-protocol`.
//!
//! # Detection
//!
//! The transport and protocol are detected from each frame and must stay the same for the whole
//! connection ([`Codec::connection_variant`] is a distinct non-zero value per transport ×
//! protocol once known):
//! - `80 01` or `82` first: an unframed message; its end is found by skipping the whole argument
//!   struct (nesting limited to 64 levels).
//! - otherwise a 4-byte big-endian length, then `0F FF` (THeader), `80 01` (binary), `82`
//!   (compact) or anything else (non-strict binary: name length first). The frame length gives
//!   the end; the message header inside is still validated.
//!
//! Frames above `CodecOptions::max_message_size` fail with `TooLarge`; when the request header is
//! readable the error carries its metadata so the core can answer before closing. THeader
//! transforms (zlib, …) and protocols other than binary/compact are `Unsupported`; more than 256
//! info headers in a frame is `Malformed`.
//!
//! # Metadata
//!
//! `method`; a multiplexed name `service:method` gives `service` and `method`. THeader info
//! headers are exposed as strings (the message's `method`/`service` win over headers of the same
//! name). request id = seqid (its 32 bits, unsigned). Kinds: CALL → Request, ONEWAY → OneWay,
//! REPLY → Response (status Error when the result struct's first field id is not 0, i.e. a
//! declared exception; an empty struct is a void success), EXCEPTION → Response with Error.
//!
//! # Rewriting
//!
//! Bytes are forwarded as received. [`Codec::set_request_id`] rewrites the message seqid
//! (compact: the varint may change size, and the frame length with it) and the THeader seqid. A mutation is written as THeader info headers (existing keys, compared
//! case-insensitively, keep their position; new ones are appended; the header is re-padded and
//! the lengths fixed); other transports have no place for it and return `Unsupported`.
//!
//! # Local replies
//!
//! [`Codec::on_error`] writes an EXCEPTION message named like the request (`service:method`
//! when multiplexed; note a THeader info header named `service` is used too) with the request's
//! seqid, carrying `TApplicationException{1: message, 2: type}` in the connection's protocol and
//! transport (THeader: same protocol id, header seqid = seqid). Real clients (thriftpy2, Apache
//! THeader) raise it at once (`tests/peers.rs`):
//!
//! | `ErrorKind` | `TApplicationException` type |
//! |---|---|
//! | RouteNotFound | 1 UNKNOWN_METHOD |
//! | BadRequest | 7 PROTOCOL_ERROR |
//! | any other | 6 INTERNAL_ERROR |
//!
//! # Test data
//!
//! `tests/golden/` holds frames written by real peers (thriftpy2 for binary/compact × framed/
//! buffered, Apache Thrift Python for THeader), produced by `tests/peer.py capture tests/golden`
//! (with `tests/echo.thrift`); `tests/peers.rs` runs the same peers live.

mod binary;
mod codec;
mod compact;
mod cursor;
mod message;
mod theader;

#[cfg(test)]
mod tests;

pub use codec::ThriftCodec;
use meta_protocol::{Codec, CodecFactory, CodecOptions, Side};

/// Factory of [`ThriftCodec`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThriftCodecFactory;

impl ThriftCodecFactory {
    /// The configuration name of this codec.
    pub const NAME: &'static str = "aeraki.meta_protocol.codec.thrift";
    /// The protocol name.
    pub const PROTOCOL: &'static str = "thrift";
}

impl CodecFactory for ThriftCodecFactory {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn protocol(&self) -> &'static str {
        Self::PROTOCOL
    }

    fn new_codec(&self, side: Side, options: CodecOptions) -> Box<dyn Codec> {
        Box::new(ThriftCodec::new(side, options.max_message_size))
    }
}
