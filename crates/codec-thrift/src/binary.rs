//! `TBinaryProtocol`: message header, value skipping and the writer for local replies.
//!
//! Strict header: `80 01 00 TT`, i32 name length, name, i32 seqid. Non-strict header: i32 name
//! length (non-negative), name, type byte, i32 seqid. Integers are big-endian.

use bytes::{BufMut, BytesMut};

use crate::cursor::{Cursor, Parse, Stop};
use crate::message::{MessageHeader, MessageType};

// Wire type ids.
const STOP: u8 = 0;
const BOOL: u8 = 2;
const BYTE: u8 = 3;
const DOUBLE: u8 = 4;
const I16: u8 = 6;
const I32: u8 = 8;
const I64: u8 = 10;
const STRING: u8 = 11;
const STRUCT: u8 = 12;
const MAP: u8 = 13;
const SET: u8 = 14;
const LIST: u8 = 15;
const UUID: u8 = 16;

/// Parses a message header at the start of `msg`.
pub(crate) fn read_header(msg: &[u8], strict: bool) -> Parse<MessageHeader<'_>> {
    let mut c = Cursor::at(msg, 0);
    let (mtype, name) = if strict {
        let version = c.take(4)?;
        if version[0] != 0x80 || version[1] != 0x01 {
            return Err(Stop::Malformed("bad binary protocol version"));
        }
        let mtype = MessageType::from_wire(version[3])?;
        let name = read_name(&mut c)?;
        (mtype, name)
    } else {
        let name = read_name(&mut c)?;
        (MessageType::from_wire(c.u8()?)?, name)
    };
    let seqid_at = c.pos();
    let seqid = c.i32()?;
    Ok(MessageHeader {
        name,
        mtype,
        seqid,
        seqid_at,
        seqid_len: 4,
        body_at: c.pos(),
    })
}

fn read_name<'a>(c: &mut Cursor<'a>) -> Parse<&'a [u8]> {
    let len = c.i32()?;
    let len = usize::try_from(len).map_err(|_| Stop::Malformed("negative name length"))?;
    c.take(len)
}

fn read_len(c: &mut Cursor<'_>) -> Parse<usize> {
    usize::try_from(c.i32()?).map_err(|_| Stop::Malformed("negative length"))
}

/// Skips a struct (fields until STOP).
pub(crate) fn skip_struct(c: &mut Cursor<'_>, depth: usize) -> Parse<()> {
    let depth = depth
        .checked_sub(1)
        .ok_or(Stop::Malformed("nesting too deep"))?;
    loop {
        let ty = c.u8()?;
        if ty == STOP {
            return Ok(());
        }
        c.skip(2)?;
        skip_value(c, ty, depth)?;
    }
}

/// Smallest encoding of one value of type `ty` (to reject absurd container sizes early).
fn min_size(ty: u8) -> Parse<usize> {
    Ok(match ty {
        BOOL | BYTE | STRUCT => 1,
        I16 => 2,
        I32 | STRING => 4,
        DOUBLE | I64 => 8,
        MAP | SET | LIST => 6,
        UUID => 16,
        _ => return Err(Stop::Malformed("invalid binary type")),
    })
}

/// Checks that `count` values of at least `each` bytes can fit, else asks for that many bytes.
fn need(c: &Cursor<'_>, count: usize, each: usize) -> Parse<()> {
    let bytes = count.saturating_mul(each);
    if bytes > c.remaining() {
        return Err(Stop::Incomplete(c.pos().saturating_add(bytes)));
    }
    Ok(())
}

fn skip_value(c: &mut Cursor<'_>, ty: u8, depth: usize) -> Parse<()> {
    match ty {
        BOOL | BYTE => c.skip(1),
        I16 => c.skip(2),
        I32 => c.skip(4),
        DOUBLE | I64 => c.skip(8),
        UUID => c.skip(16),
        STRING => {
            let len = read_len(c)?;
            c.skip(len)
        }
        STRUCT => skip_struct(c, depth),
        MAP => {
            let depth = depth
                .checked_sub(1)
                .ok_or(Stop::Malformed("nesting too deep"))?;
            let (kt, vt) = (c.u8()?, c.u8()?);
            let n = read_len(c)?;
            if n == 0 {
                return Ok(());
            }
            need(c, n, min_size(kt)? + min_size(vt)?)?;
            for _ in 0..n {
                skip_value(c, kt, depth)?;
                skip_value(c, vt, depth)?;
            }
            Ok(())
        }
        SET | LIST => {
            let depth = depth
                .checked_sub(1)
                .ok_or(Stop::Malformed("nesting too deep"))?;
            let et = c.u8()?;
            let n = read_len(c)?;
            if n == 0 {
                return Ok(());
            }
            need(c, n, min_size(et)?)?;
            for _ in 0..n {
                skip_value(c, et, depth)?;
            }
            Ok(())
        }
        _ => Err(Stop::Malformed("invalid binary type")),
    }
}

/// Id of the struct's first field, `None` if the struct is empty.
pub(crate) fn first_field_id(c: &mut Cursor<'_>) -> Parse<Option<i16>> {
    if c.u8()? == STOP {
        return Ok(None);
    }
    Ok(Some(c.i16()?))
}

/// The `type` (field 2, i32) of the `TApplicationException` struct at the cursor, `None` if
/// absent.
pub(crate) fn app_exception_type(c: &mut Cursor<'_>) -> Parse<Option<i32>> {
    loop {
        let ty = c.u8()?;
        if ty == STOP {
            return Ok(None);
        }
        let id = c.i16()?;
        if id == 2 && ty == I32 {
            return Ok(Some(c.i32()?));
        }
        skip_value(c, ty, crate::message::MAX_DEPTH)?;
    }
}

/// Writes a seqid as the binary protocol does.
pub(crate) fn put_seqid(out: &mut BytesMut, seqid: i32) {
    out.put_i32(seqid);
}

fn put_string(out: &mut BytesMut, s: &[u8]) {
    // Lengths here come from our own strings; clamp instead of failing on absurd sizes.
    let len = s.len().min(i32::MAX as usize);
    out.put_i32(len as i32);
    out.put_slice(&s[..len]);
}

/// Writes an EXCEPTION message carrying a `TApplicationException{1: message, 2: type}`.
pub(crate) fn write_app_exception(
    out: &mut BytesMut,
    name: &str,
    seqid: i32,
    message: &str,
    ex_type: i32,
    strict: bool,
) {
    let mtype = MessageType::Exception.to_wire();
    if strict {
        out.put_slice(&[0x80, 0x01, 0x00, mtype]);
        put_string(out, name.as_bytes());
    } else {
        put_string(out, name.as_bytes());
        out.put_u8(mtype);
    }
    out.put_i32(seqid);
    out.put_u8(STRING);
    out.put_i16(1);
    put_string(out, message.as_bytes());
    out.put_u8(I32);
    out.put_i16(2);
    out.put_i32(ex_type);
    out.put_u8(STOP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_non_strict_headers() {
        let msg = [
            0x80, 1, 0, 1, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 9, 0,
        ];
        let h = read_header(&msg, true).unwrap();
        assert_eq!(
            (h.name, h.mtype, h.seqid),
            (&b"ping"[..], MessageType::Call, 9)
        );
        assert_eq!((h.seqid_at, h.body_at), (12, 16));

        let msg = [0, 0, 0, 1, b'x', 4, 0, 0, 0, 7, 0];
        let h = read_header(&msg, false).unwrap();
        assert_eq!(
            (h.name, h.mtype, h.seqid),
            (&b"x"[..], MessageType::Oneway, 7)
        );
        assert_eq!((h.seqid_at, h.body_at), (6, 10));

        assert!(matches!(
            read_header(&[0x80, 2, 0, 1], true),
            Err(Stop::Malformed(_))
        ));
        assert!(matches!(
            read_header(&[0x80, 1, 0, 9], true),
            Err(Stop::Malformed(_))
        ));
        assert_eq!(
            read_header(&[0x80, 1, 0, 1, 0, 0, 0, 9], true),
            Err(Stop::Incomplete(17))
        );
    }

    #[test]
    fn skips_nested_values() {
        // struct { 1: list<string> ["ab"], 2: map<i32, struct{}> {5: {}}, 3: bool, 4: uuid }
        let mut b = BytesMut::new();
        b.put_slice(&[LIST, 0, 1, STRING]);
        b.put_i32(1);
        b.put_i32(2);
        b.put_slice(b"ab");
        b.put_slice(&[MAP, 0, 2, I32, STRUCT]);
        b.put_i32(1);
        b.put_i32(5);
        b.put_u8(STOP);
        b.put_slice(&[BOOL, 0, 3, 1]);
        b.put_slice(&[UUID, 0, 4]);
        b.put_slice(&[7; 16]);
        b.put_u8(STOP);
        let mut c = Cursor::at(&b, 0);
        skip_struct(&mut c, 64).unwrap();
        assert_eq!(c.pos(), b.len());
        for cut in 0..b.len() {
            let mut c = Cursor::at(&b[..cut], 0);
            assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Incomplete(_))));
        }
    }

    #[test]
    fn rejects_bad_types_depth_and_sizes() {
        let mut c = Cursor::at(&[1, 0, 1, 0], 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Malformed(_))));
        let nested: Vec<u8> = std::iter::repeat_n([STRUCT, 0, 1], 100).flatten().collect();
        let mut c = Cursor::at(&nested, 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Malformed(_))));
        let mut c = Cursor::at(&[LIST, 0, 1, I64, 0x7f, 0xff, 0xff, 0xff], 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Incomplete(n)) if n > 1 << 33));
        let mut c = Cursor::at(&[STRING, 0, 1, 0xff, 0xff, 0xff, 0xff], 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Malformed(_))));
    }
}
