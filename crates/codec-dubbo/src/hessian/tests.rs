//! Hand-written Hessian 2 vectors (forms hessian.js does not write), errors and the writer.

use super::encode::{write_int, write_string, write_string_map};
use super::string::ascii_prefix_len;
use super::{MAX_DEPTH, Reader, Value};

fn read(b: &[u8]) -> Value {
    let mut r = Reader::new(b);
    let v = r.read_value().unwrap();
    assert!(
        r.at_end(),
        "read_value left {} bytes of {b:02x?}",
        b.len() - r.pos()
    );
    let mut s = Reader::new(b);
    s.skip_value().unwrap();
    assert_eq!(s.pos(), b.len(), "skip_value stopped early in {b:02x?}");
    v
}

fn fails(b: &[u8]) {
    assert!(Reader::new(b).read_value().is_err(), "read {b:02x?}");
    assert!(Reader::new(b).skip_value().is_err(), "skip {b:02x?}");
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

#[test]
fn scalars() {
    assert_eq!(read(b"N"), Value::Null);
    assert_eq!(read(b"T"), Value::Bool(true));
    assert_eq!(read(&[0x90]), Value::Int(0));
    assert_eq!(read(&[0xc7, 0x00]), Value::Int(-256));
    assert_eq!(read(&[0xd3, 0x00, 0x00]), Value::Int(-65536));
    assert_eq!(read(b"I\x00\x00\x01\x00"), Value::Int(256));
    assert_eq!(read(&[0xe0]), Value::Long(0));
    assert_eq!(read(&[0xf7, 0x00]), Value::Long(-256));
    assert_eq!(read(&[0x3b, 0x00, 0x00]), Value::Long(-65536));
    assert_eq!(read(b"Y\xff\xff\xff\xff"), Value::Long(-1));
    assert_eq!(
        read(b"L\x80\x00\x00\x00\x00\x00\x00\x00"),
        Value::Long(i64::MIN)
    );
    assert_eq!(read(&[0x5d, 0xff]), Value::Double(-1.0));
    assert_eq!(
        read(b"D\x40\x24\x00\x00\x00\x00\x00\x00"),
        Value::Double(10.0)
    );
    assert_eq!(read(b"\x4b\x00\x00\x00\x02"), Value::Date(120_000));
}

#[test]
fn strings_in_every_form() {
    assert_eq!(read(&[0x00]), s(""));
    assert_eq!(read(b"\x05hello"), s("hello"));
    assert_eq!(read(b"\x30\x03abc"), s("abc"));
    assert_eq!(read(b"S\x00\x03abc"), s("abc"));
    // Chunked: R (non-final) then any final form.
    assert_eq!(read(b"R\x00\x02abS\x00\x01c"), s("abc"));
    assert_eq!(read(b"R\x00\x01aR\x00\x01b\x01c"), s("abc"));
    // Length counts UTF-16 units: é is 1, 😀 is 2 (4-byte UTF-8 or CESU-8 surrogates).
    assert_eq!(read("\x01é".as_bytes()), s("é"));
    assert_eq!(read(&[0x02, 0xf0, 0x9f, 0x98, 0x80]), s("😀"));
    assert_eq!(read(&[0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]), s("😀"));
    fails(&[0x01, 0xf0, 0x9f, 0x98, 0x80]); // a 4-byte char needs 2 units
    fails(&[0x01, 0xff]);
    fails(&[0x01, 0xc3, 0x41]);
    fails(b"\x05hel");
    fails(b"R\x00\x01a");
    fails(b"R\x00\x01aT");
}

#[test]
fn binary_in_every_form() {
    assert_eq!(read(&[0x20]), Value::Binary(vec![]));
    assert_eq!(read(&[0x23, 1, 2, 3]), Value::Binary(vec![1, 2, 3]));
    assert_eq!(read(&[0x34, 0x02, 1, 2]), Value::Binary(vec![1, 2]));
    assert_eq!(
        read(b"A\x00\x01\x01B\x00\x01\x02"),
        Value::Binary(vec![1, 2])
    );
    assert_eq!(read(b"A\x00\x01\x01\x21\x02"), Value::Binary(vec![1, 2]));
    fails(b"B\x00\x05ab");
    fails(b"A\x00\x01\x01N");
}

#[test]
fn lists_and_maps_in_every_form() {
    let ints = |v: &[i32]| v.iter().map(|&i| Value::Int(i)).collect::<Vec<_>>();
    assert_eq!(
        read(b"U\x04[int\x91\x92Z"),
        Value::List(Some("[int".into()), ints(&[1, 2]))
    );
    assert_eq!(
        read(b"V\x04[int\x92\x91\x92"),
        Value::List(Some("[int".into()), ints(&[1, 2]))
    );
    assert_eq!(read(b"W\x91\x92Z"), Value::List(None, ints(&[1, 2])));
    assert_eq!(read(b"X\x92\x91\x92"), Value::List(None, ints(&[1, 2])));
    assert_eq!(
        read(b"\x72\x04[int\x91\x92"),
        Value::List(Some("[int".into()), ints(&[1, 2]))
    );
    assert_eq!(read(b"\x7a\x91\x92"), Value::List(None, ints(&[1, 2])));
    // Second typed list refers to the first one's type by index.
    assert_eq!(
        read(b"\x7a\x71\x04[int\x91\x71\x90\x92"),
        Value::List(
            None,
            vec![
                Value::List(Some("[int".into()), ints(&[1])),
                Value::List(Some("[int".into()), ints(&[2])),
            ]
        )
    );
    assert_eq!(
        read(b"M\x08java.Map\x01a\x91Z"),
        Value::Map(Some("java.Map".into()), vec![(s("a"), Value::Int(1))])
    );
    assert_eq!(
        read(b"H\x91\x01aZ"),
        Value::Map(None, vec![(Value::Int(1), s("a"))])
    );
    assert_eq!(
        read(b"\x7aQ\x90Q\x91"),
        Value::List(None, vec![Value::Ref(0), Value::Ref(1)])
    );
    fails(b"W\x91");
    fails(b"H\x01aZ");
    fails(b"X\x9f\x91"); // length 15, one element present
    fails(b"XI\x7f\xff\xff\xff\x91"); // hostile length: no huge allocation, just an error
    fails(b"V\x92\x90\x91"); // type reference to an undefined type
}

#[test]
fn objects_and_class_definitions() {
    let point = |x, y| {
        Value::Object(
            "P".into(),
            vec![("x".into(), Value::Int(x)), ("y".into(), Value::Int(y))],
        )
    };
    assert_eq!(read(b"C\x01P\x92\x01x\x01y\x60\x91\x92"), point(1, 2));
    // Long form `O` with the class index as an int, class reused.
    assert_eq!(
        read(b"\x7aC\x01P\x92\x01x\x01y\x60\x91\x92O\x90\x93\x94"),
        Value::List(None, vec![point(1, 2), point(3, 4)])
    );
    // Class definitions persist across the values read from one reader (one Dubbo body).
    let body = b"C\x01P\x92\x01x\x01y\x60\x91\x92\x60\x93\x94";
    let mut r = Reader::new(body);
    assert_eq!(r.read_value().unwrap(), point(1, 2));
    assert_eq!(r.read_value().unwrap(), point(3, 4));
    let mut r = Reader::new(body);
    r.skip_value().unwrap();
    r.skip_value().unwrap();
    assert!(r.at_end());
    fails(b"\x61\x91"); // undefined class
    fails(b"O\x90");
    fails(b"C\x01P\x92\x01x");
}

#[test]
fn unknown_codes_and_truncation_fail() {
    for code in [0x40u8, 0x45, 0x47, 0x50, b'Z'] {
        fails(&[code]);
    }
    fails(b"");
    fails(b"I\x00\x00");
    fails(b"L\x00");
    fails(b"D\x00");
    fails(b"\x4a\x00");
}

#[test]
fn depth_is_limited() {
    let ok: Vec<u8> = std::iter::repeat_n(0x79u8, MAX_DEPTH)
        .chain([0x90])
        .collect();
    read(&ok);
    let deep: Vec<u8> = std::iter::repeat_n(0x79u8, MAX_DEPTH + 1)
        .chain([0x90])
        .collect();
    fails(&deep);
    // Very deep hostile input: an error, not a stack overflow.
    let hostile: Vec<u8> = std::iter::repeat_n(b'H', 1_000_000).collect();
    fails(&hostile);
    let hostile: Vec<u8> = std::iter::repeat_n(b'W', 1_000_000).collect();
    fails(&hostile);
}

#[test]
fn writer_round_trips() {
    let long = "é".repeat(70_000);
    let edge = format!("{}😀{}", "a".repeat(0x7fff), "b".repeat(0x10000));
    for text in [
        "",
        "a",
        &"x".repeat(31),
        &"y".repeat(32),
        &"z".repeat(1023),
        &"w".repeat(1024),
        &"v".repeat(0xffff),
        &"u".repeat(0x10000),
        &long,
        &edge,
        "😀",
        "héllo € 中文 😀",
    ] {
        let mut out = Vec::new();
        write_string(&mut out, text);
        assert_eq!(read(&out), s(text), "length {}", text.len());
    }
    let mut out = Vec::new();
    write_string(&mut out, "world");
    assert_eq!(out, b"\x05world"); // Caucho's writeString("world")
    for v in [
        0,
        -16,
        47,
        48,
        -2048,
        2047,
        2048,
        -262_144,
        262_143,
        262_144,
        i32::MIN,
        i32::MAX,
    ] {
        let mut out = Vec::new();
        write_int(&mut out, v);
        assert_eq!(read(&out), Value::Int(v));
    }
    let mut out = Vec::new();
    write_string_map(&mut out, [("k", "v")]);
    assert_eq!(out, b"\x48\x01k\x01v\x5a"); // Caucho's {k=v}
}

/// Raw (non-chunk-split) string encodings: a final `S` chunk of `units` units over `data`.
fn s_chunk(out: &mut Vec<u8>, code: u8, units: usize, data: &[u8]) {
    out.push(code);
    out.extend_from_slice(&u16::try_from(units).unwrap().to_be_bytes());
    out.extend_from_slice(data);
}

#[test]
fn ascii_prefix_finds_the_first_non_ascii_byte() {
    for len in (0..48).chain([255, 256, 257, 511, 512, 600]) {
        let all = vec![b'a'; len];
        assert_eq!(ascii_prefix_len(&all), len, "all ASCII, length {len}");
        for at in 0..len {
            for high in [0x80u8, 0xc3, 0xff] {
                let mut b = all.clone();
                b[at] = high;
                // Later non-ASCII bytes must not matter.
                if at + 9 < len {
                    b[at + 9] = 0xe4;
                }
                assert_eq!(ascii_prefix_len(&b), at, "length {len}, {high:#x} at {at}");
            }
        }
    }
}

#[test]
fn long_ascii_strings_read_and_skip_exactly() {
    // One chunk of every length around the word size, and a 120 KB chunked string.
    for n in (0..70).chain([1023, 1024, 0xffff]) {
        let text = "q".repeat(n);
        let mut out = Vec::new();
        write_string(&mut out, &text);
        out.push(b'T'); // what follows must stay unread
        let mut r = Reader::new(&out);
        assert_eq!(r.read_string().unwrap(), text);
        assert_eq!(r.peek(), Some(b'T'), "read of {n} units overran");
        let mut r = Reader::new(&out);
        r.skip_value().unwrap();
        assert_eq!(r.peek(), Some(b'T'), "skip of {n} units overran");
    }
    let big = "w".repeat(120 * 1024);
    let mut out = Vec::new();
    write_string(&mut out, &big);
    assert_eq!(read(&out), s(&big));
    // The length counts units, not bytes: ASCII data beyond the count is not the string's.
    let mut out = Vec::new();
    s_chunk(&mut out, b'S', 20, &[b'a'; 40]);
    let mut r = Reader::new(&out);
    assert_eq!(r.read_string().unwrap(), "a".repeat(20));
    assert_eq!(r.pos(), 23);
}

#[test]
fn mixed_multi_byte_strings_round_trip() {
    // ASCII runs of every length up to two words between 2-, 3- and 4-byte characters.
    let mut text = String::new();
    for (i, c) in ['é', '中', '😀', 'ß', '€']
        .iter()
        .cycle()
        .take(60)
        .enumerate()
    {
        text.push_str(&"k".repeat(i % 19));
        text.push(*c);
    }
    let mut out = Vec::new();
    write_string(&mut out, &text);
    assert_eq!(read(&out), s(&text));
    // Real 4-byte UTF-8 (not CESU-8) inside ASCII runs, split over chunks mid-run.
    let units = |t: &str| t.encode_utf16().count();
    let (a, b) = (
        format!("{}😀{}", "x".repeat(13), "y".repeat(5)),
        "z".repeat(21),
    );
    let mut out = Vec::new();
    s_chunk(&mut out, b'R', units(&a), a.as_bytes());
    s_chunk(&mut out, b'S', units(&b), b.as_bytes());
    assert_eq!(read(&out), s(&format!("{a}{b}")));
}

#[test]
fn bad_or_truncated_strings_fail_without_panic() {
    let mut text = "p".repeat(40);
    text.push_str("é中😀");
    text.push_str(&"r".repeat(0x10000));
    let mut out = Vec::new();
    write_string(&mut out, &text);
    for cut in (0..out.len()).step_by(97).chain(out.len() - 20..out.len()) {
        fails(&out[..cut]);
    }
    // A 4-byte character after an ASCII run with one unit left.
    let mut bad = Vec::new();
    s_chunk(&mut bad, b'S', 10, b"abcdefghi\xf0\x9f\x98\x80");
    fails(&bad);
    // A bad continuation byte and a bad lead byte after long ASCII runs.
    let mut bad = Vec::new();
    s_chunk(&mut bad, b'S', 18, b"abcdefghijklmnopq\xc3\x41");
    fails(&bad);
    let mut bad = Vec::new();
    s_chunk(&mut bad, b'S', 25, b"abcdefghijklmnopqrstuvwx\xff");
    fails(&bad);
    // A count larger than the data, all ASCII.
    let mut bad = Vec::new();
    s_chunk(&mut bad, b'S', 100, &[b'a'; 64]);
    fails(&bad);
}
