//! Hessian 2 writer for what a mutation needs: strings, ints and untyped string maps.

/// Largest chunk, in UTF-16 units, of a chunked string (as Java writers use).
const CHUNK: usize = 0x8000;

/// Appends `s` as a Hessian 2 string. Lengths count UTF-16 units; characters outside the BMP are
/// written as two 3-byte surrogate sequences (what Java and hessian.js readers accept), and
/// chunks never split a surrogate pair.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().collect();
    let mut rest = units.as_slice();
    while rest.len() > 0xffff {
        let mut n = CHUNK;
        if (0xd800..0xdc00).contains(&rest[n - 1]) {
            n -= 1; // keep the pair together
        }
        out.push(b'R');
        out.extend_from_slice(&u16_be(n));
        put_units(out, &rest[..n]);
        rest = &rest[n..];
    }
    let n = rest.len();
    if n < 32 {
        out.push(n as u8); // < 32
    } else if n < 1024 {
        out.push(0x30 + (n >> 8) as u8); // n >> 8 < 4
        out.push((n & 0xff) as u8);
    } else {
        out.push(b'S');
        out.extend_from_slice(&u16_be(n));
    }
    put_units(out, rest);
}

fn u16_be(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// UTF-8 of each UTF-16 unit on its own (surrogates as 3-byte sequences).
fn put_units(out: &mut Vec<u8>, units: &[u16]) {
    for &u in units {
        let u = u32::from(u);
        if u < 0x80 {
            out.push(u as u8);
        } else if u < 0x800 {
            out.push(0xc0 | (u >> 6) as u8);
            out.push(0x80 | (u & 0x3f) as u8);
        } else {
            out.push(0xe0 | (u >> 12) as u8);
            out.push(0x80 | ((u >> 6) & 0x3f) as u8);
            out.push(0x80 | (u & 0x3f) as u8);
        }
    }
}

/// Appends `v` as a Hessian 2 int in its most compact form.
pub fn write_int(out: &mut Vec<u8>, v: i32) {
    if (-0x10..=0x2f).contains(&v) {
        out.push((0x90 + v) as u8);
    } else if (-0x800..=0x7ff).contains(&v) {
        out.push((0xc8 + (v >> 8)) as u8);
        out.push((v & 0xff) as u8);
    } else if (-0x4_0000..=0x3_ffff).contains(&v) {
        out.push((0xd4 + (v >> 16)) as u8);
        out.push(((v >> 8) & 0xff) as u8);
        out.push((v & 0xff) as u8);
    } else {
        out.push(b'I');
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends an untyped map (`H` … `Z`) of string keys and values.
pub fn write_string_map<'a>(
    out: &mut Vec<u8>,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.push(b'H');
    for (k, v) in pairs {
        write_string(out, k);
        write_string(out, v);
    }
    out.push(b'Z');
}
