//! The start of a Hessian string, read without walking the rest of it.

/// The first `max_units` UTF-16 units of the Hessian string (or null) at the start of `buf`,
/// without walking the rest of it. Characters are decoded as the codec's reader does (UTF-8 of
/// each unit; a 4-byte sequence counts two units), a cut surrogate pair becomes U+FFFD.
pub(super) fn string_prefix(buf: &[u8], max_units: usize) -> Result<Option<String>, &'static str> {
    const TRUNCATED: &str = "unexpected end of data";
    let byte = |at: usize| buf.get(at).copied().ok_or(TRUNCATED);
    let mut units: Vec<u16> = Vec::new();
    let mut pos = 0;
    loop {
        let code = byte(pos)?;
        let (head, mut left, last) = match code {
            b'N' if pos == 0 => return Ok(None),
            0x00..=0x1f => (1, usize::from(code), true),
            0x30..=0x33 => (
                2,
                usize::from(code - 0x30) << 8 | usize::from(byte(pos + 1)?),
                true,
            ),
            b'S' | b'R' => {
                let n = u16::from_be_bytes([byte(pos + 1)?, byte(pos + 2)?]);
                (3, usize::from(n), code == b'S')
            }
            _ => return Err("expected a string"),
        };
        pos += head;
        while left > 0 && units.len() < max_units {
            let b0 = byte(pos)?;
            let (extra, init) = match b0 {
                0x00..=0x7f => (0, u32::from(b0)),
                0xc0..=0xdf => (1, u32::from(b0 & 0x1f)),
                0xe0..=0xef => (2, u32::from(b0 & 0x0f)),
                0xf0..=0xf7 => (3, u32::from(b0 & 0x07)),
                _ => return Err("invalid UTF-8 lead byte"),
            };
            let mut cp = init;
            for i in 1..=extra {
                let b = byte(pos + i)?;
                if b & 0xc0 != 0x80 {
                    return Err("invalid UTF-8 continuation byte");
                }
                cp = (cp << 6) | u32::from(b & 0x3f);
            }
            pos += 1 + extra;
            if extra == 3 {
                if left < 2 || !(0x1_0000..=0x10_ffff).contains(&cp) {
                    return Err("invalid 4-byte UTF-8 sequence in string");
                }
                let v = cp - 0x1_0000;
                // Both halves fit in u16 by construction (v < 2^20).
                units.extend([0xd800 | (v >> 10) as u16, 0xdc00 | (v & 0x3ff) as u16]);
                left -= 2;
            } else {
                // One to three bytes encode at most 16 bits.
                units.push(cp as u16);
                left -= 1;
            }
        }
        if last || units.len() >= max_units {
            units.truncate(max_units);
            return Ok(Some(String::from_utf16_lossy(&units)));
        }
    }
}

#[cfg(test)]
mod tests {
    use codec_dubbo::hessian::{Reader, encode};

    use super::*;

    fn encoded(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode::write_string(&mut out, s);
        out
    }

    /// What the codec's reader makes of the whole string.
    fn whole(buf: &[u8]) -> Option<String> {
        Reader::new(buf).read_opt_string().unwrap()
    }

    #[test]
    fn whole_strings_read_as_the_codec_reads_them() {
        let long_mixed: String = "aé中😀".repeat(20_000); // > 0xffff units: 'R' chunks
        for s in [
            "",
            "w",
            "world",
            &"x".repeat(31),
            &"x".repeat(32),
            &"x".repeat(1023),
            &"x".repeat(1024),
            &"y".repeat(120 * 1024),
            "héllo wörld",
            "😀 outside the BMP",
            &long_mixed,
        ] {
            let buf = encoded(s);
            assert_eq!(
                string_prefix(&buf, usize::MAX),
                Ok(whole(&buf)),
                "{:.40}",
                s
            );
            assert_eq!(whole(&buf).as_deref(), Some(s));
        }
        assert_eq!(string_prefix(b"N", 10), Ok(None));
    }

    #[test]
    fn prefixes_stop_after_max_units() {
        let big = "z".repeat(120 * 1024);
        assert_eq!(string_prefix(&encoded(&big), 66), Ok(Some("z".repeat(66))));
        // the rest of the data is never looked at: a prefix of the encoding is enough
        let buf = encoded(&big);
        assert_eq!(string_prefix(&buf[..100], 66), Ok(Some("z".repeat(66))));
        assert_eq!(string_prefix(&encoded("héllo"), 2), Ok(Some("hé".into())));
        // a surrogate pair cut in two: the lone half becomes U+FFFD, as the codec's lossy read
        assert_eq!(
            string_prefix(&encoded("a😀b"), 2),
            Ok(Some("a\u{fffd}".into()))
        );
        assert_eq!(string_prefix(&encoded("a😀b"), 3), Ok(Some("a😀".into())));
        // a non-final chunk shorter than the prefix: the next chunk is read too
        let mut chunked = vec![b'R', 0, 3];
        chunked.extend_from_slice(b"abc");
        chunked.extend_from_slice(&encoded("defgh"));
        assert_eq!(whole(&chunked).as_deref(), Some("abcdefgh"));
        assert_eq!(string_prefix(&chunked, 5), Ok(Some("abcde".into())));
        assert_eq!(string_prefix(&chunked, 100), Ok(Some("abcdefgh".into())));
    }

    #[test]
    fn bad_or_truncated_strings_fail_without_panic() {
        let buf = encoded("héllo wörld");
        for cut in 0..buf.len() {
            assert!(
                string_prefix(&buf[..cut], usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(string_prefix(b"\x91", 5), Err("expected a string"));
        assert_eq!(
            string_prefix(&[0x02, b'a', 0xff], 5),
            Err("invalid UTF-8 lead byte")
        );
        assert_eq!(
            string_prefix(&[0x01, 0xc3, 0x41], 5),
            Err("invalid UTF-8 continuation byte")
        );
        // a 4-byte character with one unit left in the chunk
        assert_eq!(
            string_prefix(&[0x01, 0xf0, 0x9f, 0x98, 0x80], 5),
            Err("invalid 4-byte UTF-8 sequence in string")
        );
        for bad in [
            &[0x01, 0xc3][..],
            &[0x05, b'a'][..],
            &[b'S', 0][..],
            &[0x30][..],
        ] {
            assert_eq!(
                string_prefix(bad, 5),
                Err("unexpected end of data"),
                "{bad:?}"
            );
        }
    }
}
