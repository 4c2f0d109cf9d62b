//! One decoded message: its metadata and its original bytes.

use bytes::BytesMut;

use crate::Metadata;

/// A decoded message: metadata for the core and the exact bytes that were on the wire.
///
/// `bytes` holds the whole frame, transport framing included (e.g. the Thrift frame length or the
/// THeader envelope), so forwarding it unchanged reproduces the original message. Codecs rewrite
/// `bytes` only when a mutation or a request-id rewrite requires it.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// What the codec decoded.
    pub meta: Metadata,
    /// The complete original frame.
    pub bytes: BytesMut,
}

impl Frame {
    /// A frame from parts.
    pub fn new(meta: Metadata, bytes: BytesMut) -> Self {
        Self { meta, bytes }
    }
}
