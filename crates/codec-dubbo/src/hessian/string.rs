//! Hessian strings: chunk framing and the UTF-8 data.
//!
//! A string's length counts UTF-16 code units, not bytes, so reaching the end of a string (to
//! skip a 120 KB argument on the way to the attachments) means walking its characters. Runs of
//! ASCII, one byte per unit, are crossed a block or a word at a time ([`ascii_prefix_len`]);
//! the first non-ASCII byte falls back to decoding one character, then the fast path resumes.

use super::{Reader, Result};

/// The high bit of each byte of a word: set in a word iff one of its bytes is not ASCII.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// One little-endian word from the first eight bytes of `b` (which has at least eight).
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// Bytes checked at once by the standard library's (vectorised) ASCII test in a long run.
const BLOCK: usize = 256;

/// Length of the all-ASCII prefix of `s`: whole blocks while they are ASCII, then a word at a
/// time up to the first non-ASCII byte.
pub(crate) fn ascii_prefix_len(s: &[u8]) -> usize {
    let mut n = 0;
    for block in s.chunks_exact(BLOCK) {
        if !block.is_ascii() {
            break;
        }
        n += BLOCK;
    }
    while let Some(b) = s.get(n..n + 8) {
        let high = word(b) & HIGH_BITS;
        if high != 0 {
            // Little-endian: the lowest set high bit belongs to the first non-ASCII byte.
            return n + (high.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + s[n..].iter().take_while(|b| b.is_ascii()).count()
}

impl Reader<'_> {
    /// Fast path: a single-chunk string whose data is all ASCII (interface and method names,
    /// most attachments) is copied straight out; anything else returns `None`, consuming
    /// nothing.
    pub(super) fn ascii_string(&mut self) -> Option<String> {
        let code = self.peek()?;
        let (head, len) = match code {
            0x00..=0x1f => (1, usize::from(code)),
            0x30..=0x33 => (
                2,
                (usize::from(code - 0x30) << 8) | usize::from(*self.buf.get(self.pos + 1)?),
            ),
            b'S' => {
                let b = self.buf.get(self.pos + 1..self.pos + 3)?;
                (3, usize::from(u16::from_be_bytes([b[0], b[1]])))
            }
            _ => return None,
        };
        let start = self.pos + head;
        let data = self.buf.get(start..start.checked_add(len)?)?;
        if ascii_prefix_len(data) != data.len() {
            return None;
        }
        let s = std::str::from_utf8(data).ok()?.to_owned();
        self.pos = start + len;
        Some(s)
    }

    /// Reads (into `out`) or skips the chunks of one string.
    pub(super) fn string_chunks(&mut self, mut out: Option<&mut Vec<u16>>) -> Result<()> {
        loop {
            let code = self.byte()?;
            let (len, last) = match code {
                0x00..=0x1f => (usize::from(code), true),
                0x30..=0x33 => (
                    (usize::from(code - 0x30) << 8) | usize::from(self.byte()?),
                    true,
                ),
                b'S' => (self.u16()?, true),
                b'R' => (self.u16()?, false),
                _ => {
                    self.pos -= 1;
                    return self.err("expected a string");
                }
            };
            self.utf8_units(len, out.as_deref_mut())?;
            if last {
                return Ok(());
            }
        }
    }

    /// Consumes `units` UTF-16 code units of UTF-8 data: ASCII runs a word at a time, anything
    /// else one character at a time.
    fn utf8_units(&mut self, mut units: usize, mut out: Option<&mut Vec<u16>>) -> Result<()> {
        while units > 0 {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            let run = ascii_prefix_len(&rest[..units.min(rest.len())]);
            if run > 0 {
                if let Some(out) = out.as_deref_mut() {
                    out.extend(rest[..run].iter().map(|&b| u16::from(b)));
                }
                self.pos += run;
                units -= run;
                continue;
            }
            units = self.utf8_char(units, out.as_deref_mut())?;
        }
        Ok(())
    }

    /// Consumes one character (1 to 4 bytes) out of `units` remaining code units; returns the
    /// units left after it.
    fn utf8_char(&mut self, units: usize, out: Option<&mut Vec<u16>>) -> Result<usize> {
        let b0 = self.byte()?;
        let (extra, init) = match b0 {
            0x00..=0x7f => (0, u32::from(b0)),
            0xc0..=0xdf => (1, u32::from(b0 & 0x1f)),
            0xe0..=0xef => (2, u32::from(b0 & 0x0f)),
            0xf0..=0xf7 => (3, u32::from(b0 & 0x07)),
            _ => {
                self.pos -= 1;
                return self.err("invalid UTF-8 lead byte");
            }
        };
        let mut cp = init;
        for _ in 0..extra {
            let b = self.byte()?;
            if b & 0xc0 != 0x80 {
                self.pos -= 1;
                return self.err("invalid UTF-8 continuation byte");
            }
            cp = (cp << 6) | u32::from(b & 0x3f);
        }
        if extra == 3 {
            if units < 2 || !(0x1_0000..=0x10_ffff).contains(&cp) {
                return self.err("invalid 4-byte UTF-8 sequence in string");
            }
            if let Some(out) = out {
                let v = cp - 0x1_0000;
                // Both halves fit in u16 by construction (v < 2^20).
                out.push(0xd800 | (v >> 10) as u16);
                out.push(0xdc00 | (v & 0x3ff) as u16);
            }
            Ok(units - 2)
        } else {
            if let Some(out) = out {
                // One to three bytes encode at most 16 bits.
                out.push(cp as u16);
            }
            Ok(units - 1)
        }
    }
}
