//! The 16-byte dubbo2 header.

use meta_protocol::{CodecError, MessageKind, Metadata};

/// Header length.
pub const HEADER_LEN: usize = 16;
/// Magic number, big-endian, at offset 0.
pub const MAGIC: u16 = 0xdabb;
/// Flag bit: the message is a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: the request expects a response.
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: the message is an event (heartbeat, read-only notice).
pub const FLAG_EVENT: u8 = 0x20;
/// Mask of the serialization id in the flag byte.
pub const SERIALIZATION_MASK: u8 = 0x1f;
/// Serialization id of hessian2, the only one supported.
pub const HESSIAN2: u8 = 2;
/// Response status OK.
pub const STATUS_OK: u8 = 20;

/// Dubbo response status codes written by [`crate::DubboCodec`]'s local replies.
pub mod status {
    /// The server timed out.
    pub const SERVER_TIMEOUT: u8 = 31;
    /// The request could not be decoded.
    pub const BAD_REQUEST: u8 = 40;
    /// The response could not be decoded.
    pub const BAD_RESPONSE: u8 = 50;
    /// No such service.
    pub const SERVICE_NOT_FOUND: u8 = 60;
    /// The service failed.
    pub const SERVICE_ERROR: u8 = 70;
    /// The server failed.
    pub const SERVER_ERROR: u8 = 80;
    /// The server's thread pool is exhausted (over limit).
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;

    /// The name of a non-OK status (Dubbo's constant name), `None` if unknown.
    pub fn name(code: u8) -> Option<&'static str> {
        Some(match code {
            30 => "CLIENT_TIMEOUT",
            SERVER_TIMEOUT => "SERVER_TIMEOUT",
            35 => "CHANNEL_INACTIVE",
            BAD_REQUEST => "BAD_REQUEST",
            BAD_RESPONSE => "BAD_RESPONSE",
            SERVICE_NOT_FOUND => "SERVICE_NOT_FOUND",
            SERVICE_ERROR => "SERVICE_ERROR",
            SERVER_ERROR => "SERVER_ERROR",
            90 => "CLIENT_ERROR",
            SERVER_THREADPOOL_EXHAUSTED => "SERVER_THREADPOOL_EXHAUSTED",
            _ => return None,
        })
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flag byte.
    pub flag: u8,
    /// Status byte (meaningful on responses).
    pub status: u8,
    /// Request id.
    pub id: u64,
    /// Body length.
    pub body_len: usize,
}

impl Header {
    /// Whether the message is a request.
    pub fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }

    /// Whether the message is an event.
    pub fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }

    /// Whether a request expects a response.
    pub fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }

    /// Message kind from the flags.
    pub fn kind(&self) -> MessageKind {
        match (self.is_event(), self.is_request(), self.is_two_way()) {
            (true, _, _) => MessageKind::Heartbeat,
            (false, false, _) => MessageKind::Response,
            (false, true, true) => MessageKind::Request,
            (false, true, false) => MessageKind::OneWay,
        }
    }

    /// Metadata of what the header says (kind, id, sizes), for errors and as a start.
    pub fn metadata(&self) -> Metadata {
        let mut m = Metadata::of_kind(self.kind());
        m.request_id = self.id;
        m.header_size = HEADER_LEN as u32;
        m.body_size = u32::try_from(self.body_len).unwrap_or(u32::MAX);
        m
    }

    /// Parses and validates a header from the first 16 bytes of `b` (`None` if shorter).
    pub fn parse(b: &[u8], max_message_size: usize) -> Result<Option<Header>, CodecError> {
        let Some(h) = b.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let magic = u16::from_be_bytes([h[0], h[1]]);
        if magic != MAGIC {
            return Err(CodecError::malformed(format!(
                "dubbo: bad magic 0x{magic:04x} (expected 0xdabb)"
            )));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[4..12]);
        let len = i32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let mut header = Header {
            flag: h[2],
            status: h[3],
            id: u64::from_be_bytes(id),
            body_len: 0,
        };
        let Ok(body_len) = usize::try_from(len) else {
            return Err(
                CodecError::malformed(format!("dubbo: negative body length {len}"))
                    .with_request(header.metadata()),
            );
        };
        header.body_len = body_len;
        let size = HEADER_LEN.saturating_add(body_len);
        if size > max_message_size {
            return Err(
                CodecError::too_large(size, max_message_size).with_request(header.metadata())
            );
        }
        let ser = header.flag & SERIALIZATION_MASK;
        if ser != HESSIAN2 {
            return Err(CodecError::unsupported(format!(
                "dubbo: serialization id {ser} is not supported (only hessian2 = 2)"
            ))
            .with_request(header.metadata()));
        }
        Ok(Some(header))
    }

    /// Writes a 16-byte header.
    pub fn write(out: &mut Vec<u8>, flag: u8, status: u8, id: u64, body_len: usize) {
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(flag);
        out.push(status);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&i32::try_from(body_len).unwrap_or(i32::MAX).to_be_bytes());
    }
}

/// Rewrites the body length field of a frame.
pub fn set_body_len(frame: &mut [u8], body_len: usize) -> Result<(), CodecError> {
    let Ok(len) = i32::try_from(body_len) else {
        return Err(CodecError::malformed("dubbo: body too long after mutation"));
    };
    match frame.get_mut(12..16) {
        Some(f) => {
            f.copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        None => Err(CodecError::malformed(
            "dubbo: frame shorter than its header",
        )),
    }
}
