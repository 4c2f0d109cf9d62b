//! In-house Hessian 2.0 subset: a bounds-checked, depth-limited reader for every value kind
//! (building [`Value`]s or skipping them without allocating) and, in [`encode`], a writer for
//! strings, ints and untyped string maps.
//!
//! Strings count their length in UTF-16 code units, as Java and hessian.js do: a 1-3 byte UTF-8
//! sequence is one unit, a 4-byte sequence two. Surrogates written as separate 3-byte sequences
//! (CESU-8, what Java writers emit for characters outside the BMP) are decoded too.

pub mod encode;
mod string;
mod value;

pub use value::Value;

use std::fmt;

/// Deepest nesting of lists, maps and objects accepted; deeper input is refused (no stack
/// overflow on hostile input).
pub const MAX_DEPTH: usize = 64;

/// A Hessian decoding failure, with the offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Offset in the decoded buffer.
    pub offset: usize,
    /// What went wrong.
    pub reason: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hessian2: {} at offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for Error {}

/// Result of a Hessian read.
pub type Result<T> = std::result::Result<T, Error>;

/// Hessian 2 reader over one buffer. Class definitions and type names accumulate across the
/// values read from the same reader, as they do across one Dubbo body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Field names of each class definition, in definition order.
    classes: Vec<(String, Vec<String>)>,
    /// Type names of typed lists and maps, in definition order.
    types: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            classes: Vec::new(),
            types: Vec::new(),
        }
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Whether every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn err<T>(&self, reason: &'static str) -> Result<T> {
        Err(Error {
            offset: self.pos,
            reason,
        })
    }

    pub(crate) fn byte(&mut self) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err("unexpected end of data"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => end,
            _ => return self.err("unexpected end of data"),
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Consumes `n` raw bytes.
    pub(crate) fn skip_bytes(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u16(&mut self) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    /// Whether `code` starts a string.
    pub fn is_string_code(code: u8) -> bool {
        matches!(code, 0x00..=0x1f | 0x30..=0x33 | b'R' | b'S')
    }

    /// Whether `code` starts an int.
    pub fn is_int_code(code: u8) -> bool {
        matches!(code, 0x80..=0xd7 | b'I')
    }

    /// Reads an int (any int form).
    pub fn read_int(&mut self) -> Result<i32> {
        let code = self.byte()?;
        self.int_body(code)
    }

    fn int_body(&mut self, code: u8) -> Result<i32> {
        let c = i32::from(code);
        Ok(match code {
            0x80..=0xbf => c - 0x90,
            0xc0..=0xcf => ((c - 0xc8) << 8) | i32::from(self.byte()?),
            0xd0..=0xd7 => {
                let [b1, b0] = self.be()?;
                ((c - 0xd4) << 16) | (i32::from(b1) << 8) | i32::from(b0)
            }
            b'I' => i32::from_be_bytes(self.be()?),
            _ => {
                self.pos -= 1;
                return self.err("expected an int");
            }
        })
    }

    /// A non-negative int used as a length or index.
    fn read_count(&mut self) -> Result<usize> {
        let n = self.read_int()?;
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.err("negative length or index"),
        }
    }

    fn long_body(&mut self, code: u8) -> Result<i64> {
        let c = i64::from(code);
        Ok(match code {
            0xd8..=0xef => c - 0xe0,
            0xf0..=0xff => ((c - 0xf8) << 8) | i64::from(self.byte()?),
            0x38..=0x3f => {
                let [b1, b0] = self.be()?;
                ((c - 0x3c) << 16) | (i64::from(b1) << 8) | i64::from(b0)
            }
            0x59 => i64::from(i32::from_be_bytes(self.be()?)),
            _ => i64::from_be_bytes(self.be()?), // 'L'
        })
    }

    fn double_body(&mut self, code: u8) -> Result<f64> {
        Ok(match code {
            0x5b => 0.0,
            0x5c => 1.0,
            0x5d => f64::from(i8::from_be_bytes(self.be()?)),
            0x5e => f64::from(i16::from_be_bytes(self.be()?)),
            0x5f => f64::from(i32::from_be_bytes(self.be()?)) * 0.001,
            _ => f64::from_be_bytes(self.be()?), // 'D'
        })
    }

    /// Reads a string, or `None` for a Hessian null.
    pub fn read_opt_string(&mut self) -> Result<Option<String>> {
        if self.peek() == Some(b'N') {
            self.pos += 1;
            return Ok(None);
        }
        if let Some(s) = self.ascii_string() {
            return Ok(Some(s));
        }
        let mut units = Vec::new();
        self.string_chunks(Some(&mut units))?;
        Ok(Some(String::from_utf16_lossy(&units)))
    }

    /// Reads a string (a null is an error).
    pub fn read_string(&mut self) -> Result<String> {
        match self.read_opt_string()? {
            Some(s) => Ok(s),
            None => {
                self.pos -= 1;
                self.err("expected a string, got null")
            }
        }
    }

    /// Reads or skips the chunks of one binary value.
    fn binary_chunks(&mut self, code: u8, mut out: Option<&mut Vec<u8>>) -> Result<()> {
        let mut code = code;
        loop {
            let (len, last) = match code {
                0x20..=0x2f => (usize::from(code - 0x20), true),
                0x34..=0x37 => (
                    (usize::from(code - 0x34) << 8) | usize::from(self.byte()?),
                    true,
                ),
                b'B' => (self.u16()?, true),
                b'A' => (self.u16()?, false),
                _ => {
                    self.pos -= 1;
                    return self.err("expected a binary chunk");
                }
            };
            let data = self.take(len)?;
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(data);
            }
            if last {
                return Ok(());
            }
            code = self.byte()?;
        }
    }

    /// Reads a type (of a typed list or map): a type name, or a reference to an earlier one.
    pub(crate) fn read_type(&mut self) -> Result<String> {
        match self.peek() {
            Some(c) if Self::is_string_code(c) => {
                let name = self.read_string()?;
                self.types.push(name.clone());
                Ok(name)
            }
            Some(c) if Self::is_int_code(c) => {
                let i = self.read_count()?;
                match self.types.get(i) {
                    Some(t) => Ok(t.clone()),
                    None => self.err("type reference to an undefined type"),
                }
            }
            _ => self.err("expected a type"),
        }
    }

    /// Reads a class definition (the `C` already consumed).
    fn class_def(&mut self) -> Result<()> {
        let name = self.read_string()?;
        let n = self.read_count()?;
        if n > self.buf.len() - self.pos {
            return self.err("class definition field count exceeds the data");
        }
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(self.read_string()?);
        }
        self.classes.push((name, fields));
        Ok(())
    }

    /// Index of the class of an object instance (code already consumed).
    fn instance_class(&mut self, code: u8) -> Result<usize> {
        let i = if code == b'O' {
            self.read_count()?
        } else {
            usize::from(code - 0x60)
        };
        if i >= self.classes.len() {
            return self.err("object of an undefined class");
        }
        Ok(i)
    }

    /// Length of a fixed-length list, checked against the remaining data (each element takes
    /// at least one byte), so a hostile length cannot make us allocate.
    fn fixed_len(&mut self, code: u8) -> Result<usize> {
        let n = match code {
            b'V' | b'X' => self.read_count()?,
            0x70..=0x77 => usize::from(code - 0x70),
            _ => usize::from(code - 0x78),
        };
        if n > self.buf.len() - self.pos {
            return self.err("list length exceeds the data");
        }
        Ok(n)
    }

    /// Consumes the `Z` that ends a variable-length list or a map if it is next.
    pub(crate) fn end_marker(&mut self) -> Result<bool> {
        match self.peek() {
            Some(b'Z') => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => self.err("unexpected end of data in list or map"),
        }
    }

    /// Skips one value of any kind without building it.
    pub fn skip_value(&mut self) -> Result<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<()> {
        loop {
            let code = self.byte()?;
            match code {
                b'N' | b'T' | b'F' | 0x5b | 0x5c => {}
                0x80..=0xd7 | b'I' => {
                    self.int_body(code)?;
                }
                0xd8..=0xff | 0x38..=0x3f | 0x59 | b'L' => {
                    self.long_body(code)?;
                }
                0x5d..=0x5f | b'D' => {
                    self.double_body(code)?;
                }
                0x4a => {
                    self.take(8)?;
                }
                0x4b => {
                    self.take(4)?;
                }
                0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => {
                    self.pos -= 1;
                    self.string_chunks(None)?;
                }
                0x20..=0x2f | 0x34..=0x37 | b'A' | b'B' => self.binary_chunks(code, None)?,
                b'Q' => {
                    self.read_count()?;
                }
                b'C' => {
                    self.class_def()?;
                    continue; // a class definition precedes the value it describes
                }
                _ => return self.skip_compound(code, depth),
            }
            return Ok(());
        }
    }

    fn skip_compound(&mut self, code: u8, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            self.pos -= 1;
            return self.err("nesting too deep");
        }
        match code {
            b'U' | b'W' => {
                if code == b'U' {
                    self.read_type()?;
                }
                while !self.end_marker()? {
                    self.skip_at(depth + 1)?;
                }
            }
            b'V' | b'X' | 0x70..=0x7f => {
                if matches!(code, b'V' | 0x70..=0x77) {
                    self.read_type()?;
                }
                for _ in 0..self.fixed_len(code)? {
                    self.skip_at(depth + 1)?;
                }
            }
            b'M' | b'H' => {
                if code == b'M' {
                    self.read_type()?;
                }
                while !self.end_marker()? {
                    self.skip_at(depth + 1)?;
                    self.skip_at(depth + 1)?;
                }
            }
            b'O' | 0x60..=0x6f => {
                let class = self.instance_class(code)?;
                let fields = self.classes.get(class).map_or(0, |c| c.1.len());
                for _ in 0..fields {
                    self.skip_at(depth + 1)?;
                }
            }
            _ => {
                self.pos -= 1;
                return self.err("unknown or misplaced type code");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
