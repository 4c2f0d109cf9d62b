//! `TCompactProtocol`: message header, value skipping and the writer for local replies.
//!
//! Header: `82`, `TTTVVVVV` (type in the top 3 bits, version 1), seqid as a varint32 (not
//! zigzag), name length varint, name. Field headers pack a field-id delta (high nibble) with the
//! type (low nibble); a zero delta is followed by a zigzag varint id.

use bytes::{BufMut, BytesMut};

use crate::cursor::{Cursor, Parse, Stop, put_varint, unzigzag, zigzag32};
use crate::message::{MessageHeader, MessageType};

/// First byte of every compact message.
pub(crate) const PROTOCOL_ID: u8 = 0x82;
const VERSION: u8 = 1;

// Compact wire type ids.
const STOP: u8 = 0;
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// Parses a message header at the start of `msg`.
pub(crate) fn read_header(msg: &[u8]) -> Parse<MessageHeader<'_>> {
    let mut c = Cursor::at(msg, 0);
    if c.u8()? != PROTOCOL_ID {
        return Err(Stop::Malformed("bad compact protocol id"));
    }
    let vt = c.u8()?;
    if vt & 0x1f != VERSION {
        return Err(Stop::Malformed("bad compact protocol version"));
    }
    let mtype = MessageType::from_wire(vt >> 5)?;
    let seqid_at = c.pos();
    let seqid = c.varint32()? as i32;
    let seqid_len = c.pos() - seqid_at;
    let len = c.varint_len()?;
    let name = c.take(len)?;
    Ok(MessageHeader {
        name,
        mtype,
        seqid,
        seqid_at,
        seqid_len,
        body_at: c.pos(),
    })
}

/// Skips a struct (fields until STOP).
pub(crate) fn skip_struct(c: &mut Cursor<'_>, depth: usize) -> Parse<()> {
    let depth = depth
        .checked_sub(1)
        .ok_or(Stop::Malformed("nesting too deep"))?;
    loop {
        let b = c.u8()?;
        if b == STOP {
            return Ok(());
        }
        if b >> 4 == 0 {
            c.varint(3)?; // long-form field id (zigzag i16)
        }
        match b & 0x0f {
            BOOL_TRUE | BOOL_FALSE => {} // the value is the type
            ty => skip_value(c, ty, depth)?,
        }
    }
}

/// Checks that `count` values of at least one byte each can fit, else asks for that many.
fn need(c: &Cursor<'_>, count: usize) -> Parse<()> {
    if count > c.remaining() {
        return Err(Stop::Incomplete(c.pos().saturating_add(count)));
    }
    Ok(())
}

fn check_type(ty: u8) -> Parse<u8> {
    match ty {
        BOOL_TRUE..=UUID => Ok(ty),
        _ => Err(Stop::Malformed("invalid compact type")),
    }
}

/// Skips one value; booleans here are collection elements (one byte each).
fn skip_value(c: &mut Cursor<'_>, ty: u8, depth: usize) -> Parse<()> {
    match ty {
        BOOL_TRUE | BOOL_FALSE | BYTE => c.skip(1),
        I16 => c.varint(3).map(|_| ()),
        I32 => c.varint(5).map(|_| ()),
        I64 => c.varint(10).map(|_| ()),
        DOUBLE => c.skip(8),
        UUID => c.skip(16),
        BINARY => {
            let len = c.varint_len()?;
            c.skip(len)
        }
        STRUCT => skip_struct(c, depth),
        LIST | SET => {
            let depth = depth
                .checked_sub(1)
                .ok_or(Stop::Malformed("nesting too deep"))?;
            let b = c.u8()?;
            let et = check_type(b & 0x0f)?;
            let n = match b >> 4 {
                15 => c.varint_len()?,
                n => usize::from(n),
            };
            need(c, n)?;
            for _ in 0..n {
                skip_value(c, et, depth)?;
            }
            Ok(())
        }
        MAP => {
            let depth = depth
                .checked_sub(1)
                .ok_or(Stop::Malformed("nesting too deep"))?;
            let n = c.varint_len()?;
            if n == 0 {
                return Ok(());
            }
            let kv = c.u8()?;
            let (kt, vt) = (check_type(kv >> 4)?, check_type(kv & 0x0f)?);
            need(c, n.saturating_mul(2))?;
            for _ in 0..n {
                skip_value(c, kt, depth)?;
                skip_value(c, vt, depth)?;
            }
            Ok(())
        }
        _ => Err(Stop::Malformed("invalid compact type")),
    }
}

/// Id of the struct's first field, `None` if the struct is empty.
pub(crate) fn first_field_id(c: &mut Cursor<'_>) -> Parse<Option<i16>> {
    let b = c.u8()?;
    if b == STOP {
        return Ok(None);
    }
    match b >> 4 {
        0 => {
            let id = unzigzag(c.varint(3)?);
            i16::try_from(id)
                .map(Some)
                .map_err(|_| Stop::Malformed("field id overflow"))
        }
        delta => Ok(Some(i16::from(delta))),
    }
}

/// The `type` (field 2, i32) of the `TApplicationException` struct at the cursor, `None` if
/// absent.
pub(crate) fn app_exception_type(c: &mut Cursor<'_>) -> Parse<Option<i32>> {
    let mut last: i64 = 0;
    loop {
        let b = c.u8()?;
        if b == STOP {
            return Ok(None);
        }
        let id = match b >> 4 {
            0 => unzigzag(c.varint(3)?),
            delta => last + i64::from(delta),
        };
        last = id;
        match b & 0x0f {
            BOOL_TRUE | BOOL_FALSE => {}
            I32 if id == 2 => {
                let v = unzigzag(c.varint(5)?);
                return i32::try_from(v)
                    .map(Some)
                    .map_err(|_| Stop::Malformed("i32 overflow"));
            }
            ty => skip_value(c, ty, crate::message::MAX_DEPTH)?,
        }
    }
}

/// Writes a seqid as the compact protocol does (varint of the i32's bits).
pub(crate) fn put_seqid(out: &mut BytesMut, seqid: i32) {
    put_varint(out, u64::from(seqid as u32));
}

fn put_binary(out: &mut BytesMut, s: &[u8]) {
    let len = s.len().min(i32::MAX as usize);
    put_varint(out, len as u64);
    out.put_slice(&s[..len]);
}

/// Writes an EXCEPTION message carrying a `TApplicationException{1: message, 2: type}`.
pub(crate) fn write_app_exception(
    out: &mut BytesMut,
    name: &str,
    seqid: i32,
    message: &str,
    ex_type: i32,
) {
    out.put_u8(PROTOCOL_ID);
    out.put_u8((MessageType::Exception.to_wire() << 5) | VERSION);
    put_seqid(out, seqid);
    put_binary(out, name.as_bytes());
    out.put_u8(0x10 | BINARY); // field 1 (delta 1): message
    put_binary(out, message.as_bytes());
    out.put_u8(0x10 | I32); // field 2 (delta 1): type
    put_varint(out, u64::from(zigzag32(ex_type)));
    out.put_u8(STOP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header() {
        let msg = [0x82, 0x21, 0x96, 0x01, 4, b'p', b'i', b'n', b'g', 0];
        let h = read_header(&msg).unwrap();
        assert_eq!(
            (h.name, h.mtype, h.seqid),
            (&b"ping"[..], MessageType::Call, 150)
        );
        assert_eq!((h.seqid_at, h.seqid_len, h.body_at), (2, 2, 9));
        assert!(matches!(
            read_header(&[0x82, 0x22]),
            Err(Stop::Malformed(_))
        ));
        assert!(matches!(
            read_header(&[0x82, 0xa1]),
            Err(Stop::Malformed(_))
        ));
        assert_eq!(
            read_header(&[0x82, 0x21, 0, 3, b'a']),
            Err(Stop::Incomplete(7))
        );
    }

    #[test]
    fn skips_nested_values() {
        let b: Vec<u8> = vec![
            0x11, // field 1 bool true
            0x19, 0x28, 1, b'a', 2, b'b', b'c', // field 2 list<binary> ["a", "bc"]
            0x1b, 2, 0x5c, 2, 0, 4, 0, // field 3 map<i32, struct> {1: {}, 2: {}}
            0x09, 0x0a, 0xf1, 16, // field 5 (long form) list<bool> of 16 elements
            1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, //
            0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // i64
            0x1d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // uuid
            0x1b, 0, // empty map
            0,
        ];
        let mut c = Cursor::at(&b, 0);
        skip_struct(&mut c, 64).unwrap();
        assert_eq!(c.pos(), b.len());
        for cut in 0..b.len() {
            let mut c = Cursor::at(&b[..cut], 0);
            assert!(
                matches!(skip_struct(&mut c, 64), Err(Stop::Incomplete(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        let mut c = Cursor::at(&[0x1e], 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Malformed(_))));
        let nested = vec![0x1c; 100];
        let mut c = Cursor::at(&nested, 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Malformed(_))));
        let mut c = Cursor::at(&[0x19, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x07], 0);
        assert!(matches!(skip_struct(&mut c, 64), Err(Stop::Incomplete(n)) if n > 1 << 30));
    }

    #[test]
    fn first_field_ids() {
        assert_eq!(first_field_id(&mut Cursor::at(&[0], 0)), Ok(None));
        assert_eq!(first_field_id(&mut Cursor::at(&[0x1c], 0)), Ok(Some(1)));
        assert_eq!(first_field_id(&mut Cursor::at(&[0x0c, 0], 0)), Ok(Some(0)));
        assert_eq!(
            first_field_id(&mut Cursor::at(&[0x0c, 0x03], 0)),
            Ok(Some(-2))
        );
    }
}
