//! Protocol-independent view of a Thrift message: its header, the transport and protocol
//! variants, and dispatch to the binary and compact implementations.

use bytes::BytesMut;

use crate::binary;
use crate::compact;
use crate::cursor::{Cursor, Parse, Stop};

/// Deepest nesting of structs and containers a skipped value may have.
pub(crate) const MAX_DEPTH: usize = 64;

/// Thrift message types (`TMessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
    Call,
    Reply,
    Exception,
    Oneway,
}

impl MessageType {
    pub(crate) fn from_wire(v: u8) -> Parse<Self> {
        match v {
            1 => Ok(Self::Call),
            2 => Ok(Self::Reply),
            3 => Ok(Self::Exception),
            4 => Ok(Self::Oneway),
            _ => Err(Stop::Malformed("invalid message type")),
        }
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Self::Call => 1,
            Self::Reply => 2,
            Self::Exception => 3,
            Self::Oneway => 4,
        }
    }
}

/// The message encodings this codec understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `TBinaryProtocol` with the `0x8001` version word.
    Binary,
    /// `TBinaryProtocol` without version word (only behind a frame length).
    BinaryNonStrict,
    /// `TCompactProtocol` (`0x82`).
    Compact,
}

/// The transports this codec understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// 4-byte big-endian length, then the message.
    Framed,
    /// The bare message ("buffered").
    Unframed,
    /// THeader envelope (`0x0FFF` magic) around the message.
    Header,
}

/// Transport and protocol of a connection; `id()` is the connection variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
}

impl Variant {
    /// A distinct non-zero number per transport × protocol.
    pub(crate) fn id(self) -> u32 {
        let t = match self.transport {
            Transport::Framed => 0,
            Transport::Unframed => 1,
            Transport::Header => 2,
        };
        let p = match self.protocol {
            Protocol::Binary => 0,
            Protocol::BinaryNonStrict => 1,
            Protocol::Compact => 2,
        };
        1 + t * 3 + p
    }
}

/// A parsed message header; offsets are relative to the message start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageHeader<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) mtype: MessageType,
    pub(crate) seqid: i32,
    /// Where the seqid is encoded and how many bytes it takes.
    pub(crate) seqid_at: usize,
    pub(crate) seqid_len: usize,
    /// Where the argument / result struct starts.
    pub(crate) body_at: usize,
}

/// Parses the message header at the start of `msg`.
pub(crate) fn read_header(protocol: Protocol, msg: &[u8]) -> Parse<MessageHeader<'_>> {
    match protocol {
        Protocol::Binary => binary::read_header(msg, true),
        Protocol::BinaryNonStrict => binary::read_header(msg, false),
        Protocol::Compact => compact::read_header(msg),
    }
}

/// Skips the struct at the cursor (the message body).
pub(crate) fn skip_struct(protocol: Protocol, c: &mut Cursor<'_>) -> Parse<()> {
    match protocol {
        Protocol::Binary | Protocol::BinaryNonStrict => binary::skip_struct(c, MAX_DEPTH),
        Protocol::Compact => compact::skip_struct(c, MAX_DEPTH),
    }
}

/// Id of the first field of the struct at the cursor, `None` for an empty struct.
pub(crate) fn first_field_id(protocol: Protocol, c: &mut Cursor<'_>) -> Parse<Option<i16>> {
    match protocol {
        Protocol::Binary | Protocol::BinaryNonStrict => binary::first_field_id(c),
        Protocol::Compact => compact::first_field_id(c),
    }
}

/// The `type` of the `TApplicationException` struct at the cursor, `None` if absent.
pub(crate) fn app_exception_type(protocol: Protocol, c: &mut Cursor<'_>) -> Parse<Option<i32>> {
    match protocol {
        Protocol::Binary | Protocol::BinaryNonStrict => binary::app_exception_type(c),
        Protocol::Compact => compact::app_exception_type(c),
    }
}

/// Name of a `TApplicationException` type, as Apache Thrift spells it.
pub(crate) fn app_exception_name(ty: i32) -> Option<&'static str> {
    Some(match ty {
        0 => "UNKNOWN",
        1 => "UNKNOWN_METHOD",
        2 => "INVALID_MESSAGE_TYPE",
        3 => "WRONG_METHOD_NAME",
        4 => "BAD_SEQUENCE_ID",
        5 => "MISSING_RESULT",
        6 => "INTERNAL_ERROR",
        7 => "PROTOCOL_ERROR",
        8 => "INVALID_TRANSFORM",
        9 => "INVALID_PROTOCOL",
        10 => "UNSUPPORTED_CLIENT_TYPE",
        _ => return None,
    })
}

/// Encodes `seqid` as `protocol` writes it in a message header.
pub(crate) fn put_seqid(protocol: Protocol, out: &mut BytesMut, seqid: i32) {
    match protocol {
        Protocol::Binary | Protocol::BinaryNonStrict => binary::put_seqid(out, seqid),
        Protocol::Compact => compact::put_seqid(out, seqid),
    }
}

/// Writes a whole `TApplicationException` message (header and struct).
pub(crate) fn write_app_exception(
    protocol: Protocol,
    out: &mut BytesMut,
    name: &str,
    seqid: i32,
    message: &str,
    ex_type: i32,
) {
    match protocol {
        Protocol::Binary => binary::write_app_exception(out, name, seqid, message, ex_type, true),
        Protocol::BinaryNonStrict => {
            binary::write_app_exception(out, name, seqid, message, ex_type, false)
        }
        Protocol::Compact => compact::write_app_exception(out, name, seqid, message, ex_type),
    }
}
