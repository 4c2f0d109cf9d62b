//! THeader transport envelope: parsing, info-header rewriting and writing.
//!
//! Layout (big-endian): u32 length of what follows, magic `0FFF`, u16 flags, i32 seqid, u16
//! header size in 4-byte words, then the header: varint protocol id (0 binary, 2 compact),
//! varint transform count and transform ids, info sections (varint type; type 1 = key/value:
//! varint count, then varint-length key and value strings; type 0 = padding), zero padding to
//! the word size; then the payload message.

use bytes::{BufMut, BytesMut};
use meta_protocol::{CodecError, KeyValues};

use crate::cursor::{Cursor, Stop, put_varint};
use crate::message::Protocol;

/// Magic that follows the length of a THeader frame.
pub(crate) const MAGIC: [u8; 2] = [0x0f, 0xff];
/// Offset of the header seqid in the frame.
pub(crate) const SEQID_AT: usize = 8;
/// Offset of the header (after the header-words field) in the frame.
const HEADER_AT: usize = 14;
const INFO_KEY_VALUE: u64 = 1;
/// Most info headers a frame may carry (each becomes a metadata string).
const MAX_INFO_HEADERS: usize = 256;
const PROTOCOL_BINARY: u64 = 0;
const PROTOCOL_COMPACT: u64 = 2;

/// What the envelope of one frame says; offsets are from the frame start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) flags: u16,
    pub(crate) seqid: i32,
    pub(crate) protocol: Protocol,
    /// Start of the info sections.
    pub(crate) info_at: usize,
    /// Where the key/value sections end (padding or an unknown section follows).
    pub(crate) info_end: usize,
    /// End of the header: the payload message starts here.
    pub(crate) payload_at: usize,
}

fn malformed(stop: Stop) -> CodecError {
    match stop {
        Stop::Incomplete(_) => CodecError::malformed("thrift header runs past its size"),
        Stop::Malformed(why) => CodecError::malformed(format!("thrift header: {why}")),
    }
}

/// Parses the envelope of the complete frame `frame` (length field included), calling
/// `on_info` for every info header.
pub(crate) fn parse<'a>(
    frame: &'a [u8],
    mut on_info: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<Envelope, CodecError> {
    let mut c = Cursor::at(frame, 4);
    if c.take(2).map_err(malformed)? != MAGIC {
        return Err(CodecError::malformed("bad THeader magic"));
    }
    let flags = c.u16().map_err(malformed)?;
    let seqid = c.i32().map_err(malformed)?;
    let words = c.u16().map_err(malformed)?;
    let payload_at = HEADER_AT + usize::from(words) * 4;
    let header = frame
        .get(..payload_at)
        .ok_or_else(|| CodecError::malformed("THeader header size exceeds the frame"))?;
    let mut c = Cursor::at(header, HEADER_AT);
    let protocol = match c.varint(5).map_err(malformed)? {
        PROTOCOL_BINARY => Protocol::Binary,
        PROTOCOL_COMPACT => Protocol::Compact,
        other => {
            return Err(CodecError::unsupported(format!(
                "THeader protocol id {other} (only binary 0 and compact 2)"
            )));
        }
    };
    let transforms = c.varint(5).map_err(malformed)?;
    if transforms != 0 {
        let id = c.varint(5).map_err(malformed)?;
        return Err(CodecError::unsupported(format!(
            "THeader transform {id} (transforms are not supported)"
        )));
    }
    let info_at = c.pos();
    let mut info_end = info_at;
    let mut total = 0usize;
    while c.remaining() > 0 {
        if c.varint(5).map_err(malformed)? != INFO_KEY_VALUE {
            break; // padding, or a section we do not know: ignored like the reference peers do
        }
        let count = c.varint_len().map_err(malformed)?;
        total = total.saturating_add(count);
        if total > MAX_INFO_HEADERS {
            return Err(CodecError::malformed(format!(
                "more than {MAX_INFO_HEADERS} THeader info headers"
            )));
        }
        for _ in 0..count {
            let klen = c.varint_len().map_err(malformed)?;
            let key = c.take(klen).map_err(malformed)?;
            let vlen = c.varint_len().map_err(malformed)?;
            let value = c.take(vlen).map_err(malformed)?;
            on_info(key, value);
        }
        info_end = c.pos();
    }
    Ok(Envelope {
        flags,
        seqid,
        protocol,
        info_at,
        info_end,
        payload_at,
    })
}

/// Writes the fixed part and the header, returning the offset of the length field.
fn begin(out: &mut BytesMut, flags: u16, seqid: i32, protocol: Protocol) -> usize {
    let start = out.len();
    out.put_u32(0); // length, patched by `finish`
    out.put_slice(&MAGIC);
    out.put_u16(flags);
    out.put_i32(seqid);
    out.put_u16(0); // header words, patched by `end_header`
    put_varint(
        out,
        match protocol {
            Protocol::Compact => PROTOCOL_COMPACT,
            Protocol::Binary | Protocol::BinaryNonStrict => PROTOCOL_BINARY,
        },
    );
    put_varint(out, 0); // no transforms
    start
}

/// Pads the header to whole words and records its size.
fn end_header(out: &mut BytesMut, start: usize) -> Result<(), CodecError> {
    let header_at = start + HEADER_AT;
    while !(out.len() - header_at).is_multiple_of(4) {
        out.put_u8(0);
    }
    let words = u16::try_from((out.len() - header_at) / 4)
        .map_err(|_| CodecError::unsupported("THeader info headers exceed 256 KiB"))?;
    out[header_at - 2..header_at].copy_from_slice(&words.to_be_bytes());
    Ok(())
}

/// Patches the frame length once the payload is written.
fn finish(out: &mut BytesMut, start: usize) -> Result<(), CodecError> {
    let len = u32::try_from(out.len() - start - 4)
        .map_err(|_| CodecError::too_large(out.len() - start, u32::MAX as usize))?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Writes a THeader frame without info headers around the message `payload` writes.
pub(crate) fn write_frame(
    out: &mut BytesMut,
    protocol: Protocol,
    seqid: i32,
    payload: impl FnOnce(&mut BytesMut),
) {
    let start = begin(out, 0, seqid, protocol);
    // Neither can fail for an empty header and a local-reply-sized payload; on failure the
    // frame is dropped rather than written half-patched.
    if end_header(out, start).is_err() {
        out.truncate(start);
        return;
    }
    payload(out);
    if finish(out, start).is_err() {
        out.truncate(start);
    }
}

/// Rebuilds `frame` with `mutation` applied to its info headers: an existing key (compared
/// ASCII-case-insensitively) gets the new value in place, new keys are appended. Everything
/// else (flags, seqid, protocol, unknown sections, payload) is kept.
pub(crate) fn rewrite(frame: &[u8], mutation: &KeyValues) -> Result<BytesMut, CodecError> {
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    let env = parse(frame, |k, v| pairs.push((k, v)))?;
    for (key, value) in mutation.iter() {
        let mut found = false;
        for pair in pairs
            .iter_mut()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
        {
            pair.1 = value.as_bytes();
            found = true;
        }
        if !found {
            pairs.push((key.as_bytes(), value.as_bytes()));
        }
    }
    let rest = &frame[env.info_end..env.payload_at];
    let payload = &frame[env.payload_at..];
    let mut out = BytesMut::with_capacity(frame.len() + 64);
    let start = begin(&mut out, env.flags, env.seqid, env.protocol);
    if !pairs.is_empty() {
        put_varint(&mut out, INFO_KEY_VALUE);
        put_varint(&mut out, pairs.len() as u64);
        for (k, v) in &pairs {
            put_varint(&mut out, k.len() as u64);
            out.put_slice(k);
            put_varint(&mut out, v.len() as u64);
            out.put_slice(v);
        }
    }
    if rest.iter().any(|&b| b != 0) {
        out.put_slice(rest); // an unknown section: keep it after ours
    }
    end_header(&mut out, start)?;
    out.put_slice(payload);
    finish(&mut out, start)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_with(info: &[u8], payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let start = begin(&mut out, 1, 77, Protocol::Compact);
        out.put_slice(info);
        end_header(&mut out, start).unwrap();
        out.put_slice(payload);
        finish(&mut out, start).unwrap();
        out
    }

    #[test]
    fn parses_info_headers_and_rewrites() {
        let f = frame_with(
            &[1, 2, 1, b'a', 1, b'1', 1, b'B', 2, b'x', b'y'],
            b"PAYLOAD",
        );
        let mut got = Vec::new();
        let env = parse(&f, |k, v| got.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(
            (env.flags, env.seqid, env.protocol),
            (1, 77, Protocol::Compact)
        );
        assert_eq!(&f[env.payload_at..], b"PAYLOAD");
        assert_eq!(got.len(), 2);

        let m: KeyValues = [("b", "new"), ("c", "3")].into_iter().collect();
        let out = rewrite(&f, &m).unwrap();
        let mut got = Vec::new();
        let env = parse(&out, |k, v| got.push((k.to_vec(), v.to_vec()))).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a", "1"), ("B", "new"), ("c", "3")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(&out[env.payload_at..], b"PAYLOAD");
        assert_eq!((env.flags, env.seqid), (1, 77));
        assert_eq!(
            u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize,
            out.len() - 4
        );
        assert_eq!((env.payload_at - HEADER_AT) % 4, 0);
    }

    #[test]
    fn keeps_unknown_sections_and_rejects_transforms() {
        let f = frame_with(&[7, 5, 5], b"P");
        let out = rewrite(&f, &[("k", "v")].into_iter().collect()).unwrap();
        let env = parse(&out, |_, _| {}).unwrap();
        assert_eq!(&out[env.info_end..env.info_end + 3], &[7, 5, 5]);

        let mut f = frame_with(&[], b"P");
        f[HEADER_AT + 1] = 1; // one transform (zlib)
        f[HEADER_AT + 2] = 1;
        assert_eq!(
            parse(&f, |_, _| {}).unwrap_err().kind,
            meta_protocol::CodecErrorKind::Unsupported
        );
        let mut f = frame_with(&[1, 1, 9], b"P"); // key length runs past the header
        f[HEADER_AT - 1] = 1;
        assert!(parse(&f, |_, _| {}).is_err());
    }
}
