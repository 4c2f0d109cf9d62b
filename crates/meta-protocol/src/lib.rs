//! The plug-in API of meta-proxy: what a protocol codec and a filter see.
//!
//! This crate owns the protocol-agnostic message model ([`Frame`], [`Metadata`], [`Mutation`],
//! [`MessageKind`], [`ResponseStatus`]), the [`Codec`] contract (decode / encode / on_error,
//! request-id rewriting for multiplexing, heartbeats) and the local-reply error model
//! ([`LocalReply`], [`ErrorKind`]), and [`ReadKeys`]: which metadata keys the core reads, so a
//! codec may skip decoding the others.
//!
//! It must not depend on networking, an async runtime, protobuf or configuration: a codec crate
//! depends on this crate (and `bytes`) only, so a new protocol compiles and is unit-tested
//! without any of the proxy.

mod codec;
mod error;
mod frame;
mod keyvalues;
mod metadata;
mod read_keys;

pub use codec::{Codec, CodecError, CodecErrorKind, CodecFactory, CodecOptions, Correlation, Side};
pub use error::{ErrorKind, LocalReply};
pub use frame::Frame;
pub use keyvalues::KeyValues;
pub use metadata::{MessageKind, Metadata, ResponseStatus, keys};
pub use read_keys::ReadKeys;

/// Key/value pairs a codec writes back into a message (request or response) when it is encoded.
///
/// Same representation as the string metadata: ordered, keys compared ASCII-case-insensitively,
/// a later `set` of the same key replaces the earlier value.
pub type Mutation = KeyValues;
