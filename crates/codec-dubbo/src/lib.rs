//! Dubbo codec of meta-proxy: dubbo2 framing (magic `0xdabb`) with hessian2 bodies, registered
//! as `aeraki.meta_protocol.codec.dubbo` (protocol `dubbo`, correlation by request id).
//!
//! This crate owns the dubbo2 header ([`header`]), the request/response body parsing that routing
//! and mutations need, and an in-house Hessian 2 subset ([`hessian`]: a reader for every value
//! kind that can also skip values without allocating, and a writer for strings and string maps).
//!
//! # Wire notes
//!
//! Header, 16 bytes, big-endian: magic `da bb`; flag (`0x80` request, `0x40` two-way, `0x20`
//! event, low 5 bits serialization id, only hessian2 = `2` is accepted); status (responses; 20 =
//! OK); request id `i64`; body length `i32`. A bad magic, a negative length or a non-hessian2
//! serialization is an error, and so is a frame above `CodecOptions::max_message_size`
//! (`TooLarge`); the last three carry the header's metadata (id, kind) so the core can answer
//! natively before closing. Frames are forwarded as the exact original bytes.
//!
//! Kinds: an event (either direction) is a `Heartbeat`; a request without the two-way bit is
//! `OneWay`. Only a two-way heartbeat *request* is answered
//! ([`Codec::heartbeat_reply`]): flag `0x22`, status 20,
//! same id, body `N` — as Dubbo's heartbeat handler does; one-way events (read-only notices) are not.
//!
//! Request body (hessian2 values in order): dubbo version, service path, service version, method,
//! parameter type descriptor (`Ljava/lang/String;I[J` = 3 arguments), the arguments (skipped), the
//! attachment map. Metadata: `interface` (path), `method`, `version` (service version, when
//! non-empty), then every string → string attachment (`path`, `group`, `timeout`, …; an attachment
//! overrides `interface` and `version`, never `method`, which is always the invocation's;
//! non-string keys or values are skipped).
//!
//! Response: status ≠ 20 is an error and its body (the error message string) is not parsed.
//! Status 20: a hessian int result type — 0 exception, 1 value, 2 null, and 3/4/5 the same
//! followed by an attachment map. 0 and 3 are errors; attachments are exposed as strings (except
//! one named `x-meta-protocol-status`: that key is the codec's). A
//! response body that does not parse is still a well-delimited frame: it is forwarded untouched
//! with status `Error` instead of failing the (possibly shared) upstream connection —
//! dubbo-remoting, for one, answers a null result with a bare `N` and no result type.
//!
//! Keys nobody reads ([`Codec::set_read_keys`]): the attachments follow the arguments (a 120 KB
//! string argument is 120 KB to walk), so they are decoded only when a key other than `method`
//! is read (requests) or a key other than `x-meta-protocol-status` (responses). Skipped, a
//! request is read up to its parameter types and a response up to its result type; what follows
//! is not validated (the frame is forwarded byte for byte and the server or client judges it).
//! Mutations re-parse the whole body when they are applied, so they work after a skipped decode.
//!
//! Mutations rewrite the attachment map in place (it is the last body element) and fix the body
//! length; everything else is byte-for-byte untouched. Existing keys (case-insensitive) keep
//! their position; new keys are appended; entries that are not string → string are copied
//! verbatim, as is a typed (`M`) map's opening. A response without attachments (type 0/1/2) is
//! converted to 3/4/5 with a new map appended. A missing or null request map becomes a new map.
//! Heartbeats and error-status responses are left as they are; an attachment value that is a
//! reference (`Q`) cannot be rewritten (`Unsupported`).
//!
//! Local replies ([`Codec::on_error`]) are Dubbo error
//! responses: flag `0x02`, the status below, the request's id, body = the message as a hessian
//! string (what Dubbo writes for a non-OK status). Dubbo clients fail the call at once with that
//! message: `tests/peers.rs` runs a real sofa-rpc-node `RpcClient` (dubbo-remoting) against a
//! server that answers with these bytes; each call rejects within milliseconds carrying the
//! message.
//!
//! # Test data
//!
//! `tests/golden/` holds frames captured between the real sofa-rpc-node client and server
//! (`capture.js`; their heartbeat answer is byte-for-byte ours), Hessian vectors written by
//! hessian.js (`hessian_vectors.js`) and by Caucho Hessian 4.0.38 (`CauchoVectors.java`), each
//! with the canonical value its writer meant.
//!
//! | `ErrorKind` | Dubbo status |
//! |---|---|
//! | RouteNotFound, ClusterNotFound | 60 SERVICE_NOT_FOUND |
//! | BadResponse | 50 BAD_RESPONSE |
//! | Timeout | 31 SERVER_TIMEOUT |
//! | BadRequest | 40 BAD_REQUEST |
//! | OverLimit | 100 SERVER_THREADPOOL_EXHAUSTED |
//! | NoHealthyUpstream, ConnectFailure, UpstreamReset | 80 SERVER_ERROR |
//! | Unspecified | 70 SERVICE_ERROR |
//!
//! Response status bytes other than 20 are not validated against the known list (newer Dubbo
//! versions add codes); they are all errors.

mod body;
mod codec;
pub mod header;
pub mod hessian;

pub use codec::{DubboCodec, status_of};

use meta_protocol::{Codec, CodecFactory, CodecOptions, Correlation, Side};

/// Factory of [`DubboCodec`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct DubboCodecFactory;

impl DubboCodecFactory {
    /// The codec name used in configuration.
    pub const NAME: &'static str = "aeraki.meta_protocol.codec.dubbo";
}

impl CodecFactory for DubboCodecFactory {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn protocol(&self) -> &'static str {
        "dubbo"
    }

    fn correlation(&self) -> Correlation {
        Correlation::RequestId
    }

    fn new_codec(&self, side: Side, options: CodecOptions) -> Box<dyn Codec> {
        Box::new(DubboCodec::new(side, options))
    }
}

#[cfg(test)]
mod read_keys_tests;
#[cfg(test)]
mod tests;
