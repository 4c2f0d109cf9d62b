//! A bounds-checked reader over a byte slice and the varint helpers both protocols share.

use bytes::{BufMut, BytesMut};

/// Why a parse stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// More bytes are needed: at least this many in total (from the start of the slice).
    Incomplete(usize),
    /// The bytes cannot be Thrift.
    Malformed(&'static str),
}

/// Shorthand for parse results.
pub(crate) type Parse<T> = Result<T, Stop>;

/// A forward-only reader over `buf`.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` in `buf`.
    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    /// Current offset from the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Stop::Malformed("length overflow"))?;
        let out = self.buf.get(self.pos..end).ok_or(Stop::Incomplete(end))?;
        self.pos = end;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn i16(&mut self) -> Parse<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u16(&mut self) -> Parse<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Parse<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned LEB128 varint of at most `max_bytes` bytes.
    pub(crate) fn varint(&mut self, max_bytes: usize) -> Parse<u64> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Malformed("varint too long"))
    }

    /// A varint that must fit a u32 (Thrift's varint32).
    pub(crate) fn varint32(&mut self) -> Parse<u32> {
        u32::try_from(self.varint(5)?).map_err(|_| Stop::Malformed("varint32 overflow"))
    }

    /// A varint length, bounded by `i32::MAX` as every Thrift length is.
    pub(crate) fn varint_len(&mut self) -> Parse<usize> {
        let v = self.varint32()?;
        if v > i32::MAX as u32 {
            return Err(Stop::Malformed("negative length"));
        }
        Ok(v as usize)
    }
}

/// Writes `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Zigzag-encodes an i32 (compact protocol integers).
pub(crate) fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Decodes a zigzag-encoded integer.
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(Cursor::at(&out, 0).varint(10), Ok(v));
        }
        assert_eq!(
            Cursor::at(&[0x80, 0x80], 0).varint(5),
            Err(Stop::Incomplete(3))
        );
        assert!(matches!(
            Cursor::at(&[0xff; 6], 0).varint32(),
            Err(Stop::Malformed(_))
        ));
    }

    #[test]
    fn zigzag() {
        for v in [0, 1, -1, 63, -64, i32::MAX, i32::MIN] {
            assert_eq!(unzigzag(u64::from(zigzag32(v))), i64::from(v));
        }
    }
}
