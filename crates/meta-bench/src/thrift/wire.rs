//! Thrift binary and compact protocols: a writer for the few shapes we send (message header,
//! string and i32 fields) and a reader that finds fields and skips everything else.

use crate::ThriftProtocol;

/// Message types.
pub(crate) mod mtype {
    pub(crate) const CALL: u8 = 1;
    pub(crate) const REPLY: u8 = 2;
    pub(crate) const EXCEPTION: u8 = 3;
    pub(crate) const ONEWAY: u8 = 4;
}

/// Field types, as the binary protocol numbers them (the reader maps compact types to these).
pub(crate) mod ttype {
    pub(crate) const STOP: u8 = 0;
    pub(crate) const BOOL: u8 = 2;
    pub(crate) const BYTE: u8 = 3;
    pub(crate) const DOUBLE: u8 = 4;
    pub(crate) const I16: u8 = 6;
    pub(crate) const I32: u8 = 8;
    pub(crate) const I64: u8 = 10;
    pub(crate) const STRING: u8 = 11;
    pub(crate) const STRUCT: u8 = 12;
    pub(crate) const MAP: u8 = 13;
    pub(crate) const SET: u8 = 14;
    pub(crate) const LIST: u8 = 15;
}

const COMPACT_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 1;
const MAX_DEPTH: usize = 64;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn compact_type(t: u8) -> u8 {
    match t {
        ttype::BOOL => 1,
        ttype::BYTE => 3,
        ttype::I16 => 4,
        ttype::I32 => 5,
        ttype::I64 => 6,
        ttype::DOUBLE => 7,
        ttype::STRING => 8,
        ttype::LIST => 9,
        ttype::SET => 10,
        ttype::MAP => 11,
        _ => 12,
    }
}

/// Writes one message (header and a struct of string / i32 fields) in one protocol.
pub(crate) struct Writer<'a> {
    proto: ThriftProtocol,
    out: &'a mut Vec<u8>,
    last_field: i16,
}

impl<'a> Writer<'a> {
    /// Starts a message: header with `name`, `mtype`, `seqid`; a struct follows.
    pub(crate) fn message(
        proto: ThriftProtocol,
        out: &'a mut Vec<u8>,
        name: &str,
        mtype: u8,
        seqid: i32,
    ) -> Self {
        match proto {
            ThriftProtocol::Binary => {
                out.extend_from_slice(&(0x8001_0000u32 | u32::from(mtype)).to_be_bytes());
                out.extend_from_slice(&(name.len() as u32).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&seqid.to_be_bytes());
            }
            ThriftProtocol::Compact => {
                out.push(COMPACT_ID);
                out.push((mtype << 5) | COMPACT_VERSION);
                put_varint(out, u64::from(seqid as u32));
                put_varint(out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
            }
        }
        Writer {
            proto,
            out,
            last_field: 0,
        }
    }

    fn field_header(&mut self, id: i16, t: u8) {
        match self.proto {
            ThriftProtocol::Binary => {
                self.out.push(t);
                self.out.extend_from_slice(&id.to_be_bytes());
            }
            ThriftProtocol::Compact => {
                let delta = i32::from(id) - i32::from(self.last_field);
                if (1..=15).contains(&delta) {
                    self.out.push(((delta as u8) << 4) | compact_type(t));
                } else {
                    self.out.push(compact_type(t));
                    put_varint(self.out, zigzag(i64::from(id)));
                }
                self.last_field = id;
            }
        }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    /// Opens a struct field (its fields follow; close with [`Writer::end_struct`]).
    pub(crate) fn begin_struct_field(&mut self, id: i16) -> i16 {
        self.field_header(id, ttype::STRUCT);
        std::mem::replace(&mut self.last_field, 0)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    /// Closes a struct opened by [`Writer::begin_struct_field`].
    pub(crate) fn end_struct(&mut self, saved: i16) {
        self.out.push(ttype::STOP);
        self.last_field = saved;
    }

    /// A string field.
    pub(crate) fn string_field(&mut self, id: i16, s: &str) {
        self.field_header(id, ttype::STRING);
        match self.proto {
            ThriftProtocol::Binary => self.out.extend_from_slice(&(s.len() as u32).to_be_bytes()),
            ThriftProtocol::Compact => put_varint(self.out, s.len() as u64),
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    /// An i32 field.
    pub(crate) fn i32_field(&mut self, id: i16, v: i32) {
        self.field_header(id, ttype::I32);
        match self.proto {
            ThriftProtocol::Binary => self.out.extend_from_slice(&v.to_be_bytes()),
            ThriftProtocol::Compact => put_varint(self.out, zigzag(i64::from(v))),
        }
    }

    /// Ends the message's struct.
    pub(crate) fn finish(self) {
        self.out.push(ttype::STOP);
    }
}

/// A message header read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: String,
    pub(crate) mtype: u8,
    pub(crate) seqid: i32,
}

/// Reads fields out of one message.
pub(crate) struct Reader<'a> {
    proto: ThriftProtocol,
    buf: &'a [u8],
    pos: usize,
    last_field: i16,
    /// Compact: the value of a bool field, carried in its header.
    pending_bool: Option<bool>,
}

pub(crate) type Result<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    pub(crate) fn new(proto: ThriftProtocol, buf: &'a [u8]) -> Self {
        Reader {
            proto,
            buf,
            pos: 0,
            last_field: 0,
            pending_bool: None,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("message truncated at byte {}", self.pos));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.pos))
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn len(&mut self) -> Result<usize> {
        let n = match self.proto {
            ThriftProtocol::Binary => i64::from(i32::from_be_bytes(self.be()?)),
            ThriftProtocol::Compact => self.varint()? as i64,
        };
        let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
        if n > self.buf.len() - self.pos.min(self.buf.len()) {
            return Err(format!("length {n} runs past the message"));
        }
        Ok(n)
    }

    /// Reads the message header (binary: strict or not).
    pub(crate) fn header(&mut self) -> Result<Header> {
        match self.proto {
            ThriftProtocol::Binary => {
                let v = i32::from_be_bytes(self.be()?);
                let (name, mtype) = if v < 0 {
                    if (v as u32) & 0xffff_0000 != 0x8001_0000 {
                        return Err(format!("bad binary version 0x{v:08x}"));
                    }
                    (self.string()?, (v & 0xff) as u8)
                } else {
                    self.pos -= 4;
                    let name = self.string()?;
                    (name, self.u8()?)
                };
                let seqid = i32::from_be_bytes(self.be()?);
                Ok(Header { name, mtype, seqid })
            }
            ThriftProtocol::Compact => {
                if self.u8()? != COMPACT_ID {
                    return Err("not a compact message".into());
                }
                let vt = self.u8()?;
                let seqid = self.varint()? as u32 as i32;
                let name = self.string()?;
                Ok(Header {
                    name,
                    mtype: vt >> 5,
                    seqid,
                })
            }
        }
    }

    /// A string value.
    pub(crate) fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    /// A string value, borrowed from the message (checked to be UTF-8, not copied).
    pub(crate) fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| "string is not UTF-8".to_string())
    }

    /// An i32 value.
    pub(crate) fn i32(&mut self) -> Result<i32> {
        match self.proto {
            ThriftProtocol::Binary => Ok(i32::from_be_bytes(self.be()?)),
            ThriftProtocol::Compact => Ok(self.zigzag()? as i32),
        }
    }

    /// The next field of the current struct: `(id, type)`, `None` at its end.
    pub(crate) fn field(&mut self) -> Result<Option<(i16, u8)>> {
        match self.proto {
            ThriftProtocol::Binary => {
                let t = self.u8()?;
                if t == ttype::STOP {
                    return Ok(None);
                }
                Ok(Some((i16::from_be_bytes(self.be()?), t)))
            }
            ThriftProtocol::Compact => {
                let b = self.u8()?;
                if b == 0 {
                    return Ok(None);
                }
                let ct = b & 0x0f;
                let delta = b >> 4;
                let id = if delta == 0 {
                    self.zigzag()? as i16
                } else {
                    self.last_field.wrapping_add(i16::from(delta))
                };
                self.last_field = id;
                let t = self.compact_to_binary(ct)?;
                if t == ttype::BOOL {
                    self.pending_bool = Some(ct == 1);
                }
                Ok(Some((id, t)))
            }
        }
    }

    fn compact_to_binary(&self, ct: u8) -> Result<u8> {
        Ok(match ct {
            1 | 2 => ttype::BOOL,
            3 => ttype::BYTE,
            4 => ttype::I16,
            5 => ttype::I32,
            6 => ttype::I64,
            7 => ttype::DOUBLE,
            8 => ttype::STRING,
            9 => ttype::LIST,
            10 => ttype::SET,
            11 => ttype::MAP,
            12 => ttype::STRUCT,
            _ => return Err(format!("unknown compact type {ct} at byte {}", self.pos)),
        })
    }

    fn elem_type(&self, t: u8) -> Result<u8> {
        match self.proto {
            ThriftProtocol::Binary => Ok(t),
            ThriftProtocol::Compact => self.compact_to_binary(t),
        }
    }

    /// Enters a struct-typed value: its fields follow.
    pub(crate) fn enter_struct(&mut self) -> i16 {
        std::mem::replace(&mut self.last_field, 0)
    }

    /// Leaves a struct entered by [`Reader::enter_struct`] (after its `None` field).
    pub(crate) fn leave_struct(&mut self, saved: i16) {
        self.last_field = saved;
    }

    /// Skips a value of type `t`.
    pub(crate) fn skip(&mut self, t: u8) -> Result<()> {
        self.skip_at(t, 0)
    }

    fn skip_at(&mut self, t: u8, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err("values nested too deeply".into());
        }
        let compact = self.proto == ThriftProtocol::Compact;
        match t {
            ttype::BOOL => {
                if self.pending_bool.take().is_none() {
                    self.take(1)?;
                }
            }
            ttype::BYTE => {
                self.take(1)?;
            }
            ttype::DOUBLE => {
                self.take(8)?;
            }
            ttype::I16 | ttype::I32 | ttype::I64 if compact => {
                self.varint()?;
            }
            ttype::I16 => {
                self.take(2)?;
            }
            ttype::I32 => {
                self.take(4)?;
            }
            ttype::I64 => {
                self.take(8)?;
            }
            ttype::STRING => {
                let n = self.len()?;
                self.take(n)?;
            }
            ttype::STRUCT => {
                let saved = self.enter_struct();
                while let Some((_, ft)) = self.field()? {
                    self.skip_at(ft, depth + 1)?;
                }
                self.leave_struct(saved);
            }
            ttype::MAP => {
                let (kt, vt, n) = if compact {
                    let n = self.varint()?;
                    if n == 0 {
                        return Ok(());
                    }
                    let kv = self.u8()?;
                    (self.elem_type(kv >> 4)?, self.elem_type(kv & 0x0f)?, n)
                } else {
                    let kt = self.u8()?;
                    let vt = self.u8()?;
                    (
                        kt,
                        vt,
                        u64::from(i32::from_be_bytes(self.be()?).max(0) as u32),
                    )
                };
                for _ in 0..n {
                    self.skip_at(kt, depth + 1)?;
                    self.skip_at(vt, depth + 1)?;
                }
            }
            ttype::SET | ttype::LIST => {
                let (et, n) = if compact {
                    let b = self.u8()?;
                    let n = if b >> 4 == 15 {
                        self.varint()?
                    } else {
                        u64::from(b >> 4)
                    };
                    (self.elem_type(b & 0x0f)?, n)
                } else {
                    let et = self.u8()?;
                    (et, u64::from(i32::from_be_bytes(self.be()?).max(0) as u32))
                };
                for _ in 0..n {
                    self.skip_at(et, depth + 1)?;
                }
            }
            _ => return Err(format!("unknown type {t} at byte {}", self.pos)),
        }
        Ok(())
    }
}
