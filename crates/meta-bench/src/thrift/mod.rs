//! Thrift messages of the sample service: writing calls and replies in every transport ×
//! protocol, and reading the argument / result out of a frame the codec delimited.

pub(crate) mod wire;

use wire::{Reader, Writer, mtype, ttype};

use crate::{ThriftProtocol, ThriftTransport, ThriftVariant};

const THEADER_MAGIC: [u8; 2] = [0x0f, 0xff];
/// Offset of the THeader header (after length, magic, flags, seqid, header words).
const THEADER_AT: usize = 14;

/// `TApplicationException` type UNKNOWN_METHOD.
pub(crate) const UNKNOWN_METHOD: i32 = 1;

/// What a REPLY or EXCEPTION message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Field 0 of the result struct: the string result.
    Value(String),
    /// A void or empty result.
    Void,
    /// A declared exception (result field `id` ≠ 0).
    Declared(i16),
    /// A `TApplicationException`.
    Application { kind: i32, message: String },
}

/// Wraps the message `write` produces in `v.transport`.
fn wrap(
    v: ThriftVariant,
    seqid: i32,
    headers: &[(&str, &str)],
    write: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    match v.transport {
        ThriftTransport::Buffered => write(&mut out),
        ThriftTransport::Framed => {
            out.extend_from_slice(&[0; 4]);
            write(&mut out);
            patch_len(&mut out);
        }
        ThriftTransport::Header => {
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&THEADER_MAGIC);
            out.extend_from_slice(&0u16.to_be_bytes()); // flags
            out.extend_from_slice(&seqid.to_be_bytes());
            out.extend_from_slice(&[0, 0]); // header words, patched below
            out.push(match v.protocol {
                ThriftProtocol::Binary => 0,
                ThriftProtocol::Compact => 2,
            });
            out.push(0); // no transforms
            if !headers.is_empty() {
                out.push(1); // info key/value section
                put_varint(&mut out, headers.len() as u64);
                for (k, val) in headers {
                    put_varint(&mut out, k.len() as u64);
                    out.extend_from_slice(k.as_bytes());
                    put_varint(&mut out, val.len() as u64);
                    out.extend_from_slice(val.as_bytes());
                }
            }
            while !(out.len() - THEADER_AT).is_multiple_of(4) {
                out.push(0);
            }
            let words = u16::try_from((out.len() - THEADER_AT) / 4).unwrap_or(u16::MAX);
            out[THEADER_AT - 2..THEADER_AT].copy_from_slice(&words.to_be_bytes());
            write(&mut out);
            patch_len(&mut out);
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn patch_len(out: &mut [u8]) {
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
}

/// A CALL (or ONEWAY) of `method(1: string name)`, with THeader info `headers` (only with the
/// header transport; the caller refuses headers elsewhere).
pub(crate) fn encode_call(
    v: ThriftVariant,
    seqid: i32,
    method: &str,
    name: &str,
    oneway: bool,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let kind = if oneway { mtype::ONEWAY } else { mtype::CALL };
    wrap(v, seqid, headers, |out| {
        let mut w = Writer::message(v.protocol, out, method, kind, seqid);
        w.string_field(1, name);
        w.finish();
    })
}

/// A REPLY carrying the string result `text` (result field 0).
pub(crate) fn encode_reply(v: ThriftVariant, seqid: i32, method: &str, text: &str) -> Vec<u8> {
    wrap(v, seqid, &[], |out| {
        let mut w = Writer::message(v.protocol, out, method, mtype::REPLY, seqid);
        w.string_field(0, text);
        w.finish();
    })
}

/// An EXCEPTION carrying `TApplicationException{1: message, 2: type}`.
pub(crate) fn encode_app_exception(
    v: ThriftVariant,
    seqid: i32,
    method: &str,
    kind: i32,
    message: &str,
) -> Vec<u8> {
    wrap(v, seqid, &[], |out| {
        let mut w = Writer::message(v.protocol, out, method, mtype::EXCEPTION, seqid);
        w.string_field(1, message);
        w.i32_field(2, kind);
        w.finish();
    })
}

/// A REPLY whose result is declared exception field `id` (an empty struct), for tests.
#[cfg(test)]
pub(crate) fn encode_declared(v: ThriftVariant, seqid: i32, method: &str, id: i16) -> Vec<u8> {
    wrap(v, seqid, &[], |out| {
        let mut w = Writer::message(v.protocol, out, method, mtype::REPLY, seqid);
        let saved = w.begin_struct_field(id);
        w.end_struct(saved);
        w.finish();
    })
}

/// The variant of a whole frame and the message inside it.
pub(crate) fn unwrap(frame: &[u8]) -> Result<(ThriftVariant, &[u8]), String> {
    let variant = |transport, protocol| ThriftVariant {
        protocol,
        transport,
    };
    match frame {
        [0x80, 0x01, ..] => Ok((
            variant(ThriftTransport::Buffered, ThriftProtocol::Binary),
            frame,
        )),
        [0x82, ..] => Ok((
            variant(ThriftTransport::Buffered, ThriftProtocol::Compact),
            frame,
        )),
        [_, _, _, _, 0x0f, 0xff, ..] => {
            let words = frame
                .get(THEADER_AT - 2..THEADER_AT)
                .map(|w| usize::from(u16::from_be_bytes([w[0], w[1]])))
                .ok_or("THeader frame truncated")?;
            let protocol = match frame.get(THEADER_AT) {
                Some(0) => ThriftProtocol::Binary,
                Some(2) => ThriftProtocol::Compact,
                other => return Err(format!("THeader protocol id {other:?} not supported")),
            };
            let msg = frame
                .get(THEADER_AT + words * 4..)
                .ok_or("THeader header size exceeds the frame")?;
            Ok((variant(ThriftTransport::Header, protocol), msg))
        }
        [_, _, _, _, 0x82, ..] => Ok((
            variant(ThriftTransport::Framed, ThriftProtocol::Compact),
            &frame[4..],
        )),
        [_, _, _, _, ..] => Ok((
            variant(ThriftTransport::Framed, ThriftProtocol::Binary),
            &frame[4..],
        )),
        _ => Err("frame shorter than 4 bytes".into()),
    }
}

/// Offsets of the seqid fields of a binary-protocol message in `frame` (the message header's
/// and, in THeader, the transport header's), 4 bytes big-endian each; `None` for compact, whose
/// varint seqid has no fixed width, or a frame that is not a strict binary message.
pub(crate) fn seqid_offsets(frame: &[u8]) -> Option<Vec<usize>> {
    let (v, msg) = unwrap(frame).ok()?;
    if v.protocol != ThriftProtocol::Binary || !msg.starts_with(&[0x80, 0x01]) {
        return None;
    }
    let at = frame.len() - msg.len();
    let name_len = u32::from_be_bytes(msg.get(4..8)?.try_into().ok()?) as usize;
    let seqid_at = at + 8 + name_len;
    frame.get(seqid_at..seqid_at + 4)?;
    Some(match v.transport {
        ThriftTransport::Header => vec![8, seqid_at],
        _ => vec![seqid_at],
    })
}

/// A CALL's header and its field 1 string argument (`None` when absent), borrowed from `msg`.
pub(crate) fn parse_call(
    proto: ThriftProtocol,
    msg: &[u8],
) -> Result<(wire::Header, Option<&str>), String> {
    let mut r = Reader::new(proto, msg);
    let h = r.header()?;
    let mut name = None;
    while let Some((id, t)) = r.field()? {
        if id == 1 && t == ttype::STRING {
            name = Some(r.str()?);
        } else {
            r.skip(t)?;
        }
    }
    Ok((h, name))
}

/// A REPLY's or EXCEPTION's header and outcome.
pub(crate) fn parse_reply(
    proto: ThriftProtocol,
    msg: &[u8],
) -> Result<(wire::Header, Outcome), String> {
    let mut r = Reader::new(proto, msg);
    let h = r.header()?;
    match h.mtype {
        mtype::REPLY => {
            let mut out = Outcome::Void;
            while let Some((id, t)) = r.field()? {
                match (id, t) {
                    (0, ttype::STRING) => out = Outcome::Value(r.string()?),
                    (0, _) => r.skip(t)?,
                    (id, _) => {
                        out = Outcome::Declared(id);
                        r.skip(t)?;
                    }
                }
            }
            Ok((h, out))
        }
        mtype::EXCEPTION => {
            let (mut kind, mut message) = (0, String::new());
            while let Some((id, t)) = r.field()? {
                match (id, t) {
                    (1, ttype::STRING) => message = r.string()?,
                    (2, ttype::I32) => kind = r.i32()?,
                    _ => r.skip(t)?,
                }
            }
            Ok((h, Outcome::Application { kind, message }))
        }
        other => Err(format!(
            "expected a REPLY or EXCEPTION, got message type {other}"
        )),
    }
}

#[cfg(test)]
mod tests;
