//! [`Codec::set_read_keys`]: what a Dubbo codec decodes, and skips, for a given set of keys.

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecErrorKind, CodecOptions, Frame, MessageKind, ReadKeys, ResponseStatus, Side, keys,
};

use crate::DubboCodec;
use crate::header::{HESSIAN2, Header, STATUS_OK};
use crate::hessian::encode;
use crate::tests::{hex, request_frame};

fn sayhello() -> Vec<u8> {
    hex(include_str!("../tests/golden/request_sayhello.hex"))
}

fn echo_types() -> Vec<u8> {
    hex(include_str!("../tests/golden/request_echo_types.hex"))
}

fn codec_reading(read: &ReadKeys) -> DubboCodec {
    let mut c = DubboCodec::new(Side::Downstream, CodecOptions::default());
    c.set_read_keys(read);
    c
}

fn method_only() -> ReadKeys {
    ReadKeys::only(["method"])
}

/// Decodes one whole frame, checking it is split off whole and untouched.
fn decode_with(read: &ReadKeys, bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let f = codec_reading(read).decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&f.bytes[..], bytes);
    f
}

/// A request body: head (`a.B`, version `1.0`, method `m`), one string argument `arg`, and
/// `attachments`.
fn request_with(arg: &[u8], attachments: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in ["2.0.2", "a.B", "1.0", "m", "Ljava/lang/String;"] {
        encode::write_string(&mut b, s);
    }
    b.extend_from_slice(arg);
    encode::write_string_map(&mut b, attachments.iter().copied());
    request_frame(5, &b)
}

fn string(s: &str) -> Vec<u8> {
    let mut b = Vec::new();
    encode::write_string(&mut b, s);
    b
}

/// An OK response of result type `rtype` with `value` (raw hessian) and, for types 3..=5,
/// `attachments`.
fn response(rtype: i32, value: &[u8], attachments: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    encode::write_int(&mut b, rtype);
    b.extend_from_slice(value);
    if rtype >= 3 {
        encode::write_string_map(&mut b, attachments.iter().copied());
    }
    let mut f = Vec::new();
    Header::write(&mut f, HESSIAN2, STATUS_OK, 8, b.len());
    f.extend_from_slice(&b);
    f
}

#[test]
fn method_only_fills_the_head_and_leaves_attachments_out() {
    let f = decode_with(&method_only(), &sayhello());
    let m = &f.meta;
    assert_eq!((m.kind, m.request_id), (MessageKind::Request, 1));
    assert_eq!(m.body_size as usize, f.bytes.len() - 16);
    assert_eq!(m.get("method"), Some("sayHello"));
    assert_eq!(
        m.get("interface"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(m.get("version"), Some("1.0.0"));
    for attachment in ["group", "path", "dubbo"] {
        assert_eq!(m.get(attachment), None, "{attachment}");
    }
    assert_eq!(m.strings.len(), 3);
    // The same with no string key read at all.
    assert_eq!(decode_with(&ReadKeys::none(), &sayhello()).meta, f.meta);
}

#[test]
fn a_set_naming_an_attachment_decodes_the_attachments() {
    for read in [
        ReadKeys::only(["method", "GROUP"]),
        ReadKeys::only(["interface"]),
        ReadKeys::only(["version"]),
    ] {
        let f = decode_with(&read, &sayhello());
        assert_eq!(f.meta.get("group"), Some("SOFA"), "{read}");
        assert_eq!(f.meta.get("dubbo"), Some("5.3.0"), "{read}");
    }
}

#[test]
fn all_decodes_what_a_codec_without_the_call_decodes() {
    let mut c = DubboCodec::new(Side::Downstream, CodecOptions::default());
    c.set_read_keys(&method_only());
    c.set_read_keys(&ReadKeys::all());
    for bytes in [sayhello(), echo_types()] {
        let fresh = DubboCodec::new(Side::Downstream, CodecOptions::default())
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        let back = c.decode(&mut BytesMut::from(&bytes[..])).unwrap().unwrap();
        assert_eq!(back.meta, fresh.meta);
        assert_eq!(back.meta.get("group"), Some("SOFA"));
    }
}

#[test]
fn an_attachment_named_method_never_overrides_the_invocation() {
    let bytes = request_with(
        &string("x"),
        &[("METHOD", "evil"), ("interface", "c.D"), ("user", "bob")],
    );
    let full = decode_with(&ReadKeys::all(), &bytes);
    assert_eq!(full.meta.get("method"), Some("m"));
    // Attachments still override `interface` (Dubbo's rule) when they are decoded...
    assert_eq!(full.meta.get("interface"), Some("c.D"));
    assert_eq!(full.meta.get("user"), Some("bob"));
    // ...and a method route sees the same method either way.
    let head = decode_with(&method_only(), &bytes);
    assert_eq!(head.meta.get("method"), Some("m"));
    assert_eq!(head.meta.get("interface"), Some("a.B"));
    assert_eq!(head.meta.get("user"), None);
    // A request mutation of `method` writes the attachment, not the routing key.
    let mut mutated = head.clone();
    let mutation = [("method", "other"), ("x-k", "v")].into_iter().collect();
    codec_reading(&method_only())
        .encode(&mut mutated, &mutation)
        .unwrap();
    assert_eq!(mutated.meta.get("method"), Some("m"));
    assert_eq!(mutated.meta.get("x-k"), Some("v"));
}

#[test]
fn bytes_after_the_parameter_types_are_judged_only_when_attachments_are_decoded() {
    // 0x40 is a reserved Hessian code: the argument cannot be read.
    let bad_argument = request_with(&[0x40], &[("user", "bob")]);
    // A valid argument, then an attachment map cut short.
    let mut bad_map = request_with(&string("x"), &[]);
    bad_map.pop(); // the map's closing `Z`
    bad_map[15] -= 1;
    for bytes in [bad_argument, bad_map] {
        // Skipped: the frame is forwarded byte for byte (decode_with checks it), the server
        // judges it.
        let f = decode_with(&method_only(), &bytes);
        assert_eq!(f.meta.get("method"), Some("m"));
        // Decoded: a malformed request, answered with its id before the connection closes.
        let e = codec_reading(&ReadKeys::only(["user"]))
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap_err();
        assert_eq!(e.kind, CodecErrorKind::Malformed);
        assert_eq!(e.request.unwrap().request_id, 5);
    }
    // The head itself is always checked.
    let mut bad_head = sayhello();
    bad_head[16] = 0x40;
    let e = codec_reading(&method_only())
        .decode(&mut BytesMut::from(&bad_head[..]))
        .unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Malformed);
}

#[test]
fn mutation_after_a_skipped_decode() {
    let orig = echo_types();
    let mut f = decode_with(&method_only(), &orig);
    assert_eq!(f.meta.get("group"), None);
    let mutation = [("GROUP", "blue"), ("x-user", "alice")]
        .into_iter()
        .collect();
    codec_reading(&method_only())
        .encode(&mut f, &mutation)
        .unwrap();
    assert_eq!(f.meta.get("x-user"), Some("alice"));
    let again = decode_with(&ReadKeys::all(), &f.bytes);
    assert_eq!(again.meta.get("group"), Some("blue"));
    assert_eq!(again.meta.get("x-user"), Some("alice"));
    // The other attachments and everything before them are kept.
    assert_eq!(again.meta.get("dubbo"), Some("5.3.0"));
    assert_eq!(again.meta.get("method"), Some("echo"));
    assert_eq!(&f.bytes[16..200], &orig[16..200]);
}

#[test]
fn responses_skip_value_and_attachments_unless_an_attachment_key_is_read() {
    let status_only = ReadKeys::only([keys::PROTOCOL_STATUS]);
    let value = response(4, &string("hello"), &[("x-peer", "a")]);
    let f = decode_with(&status_only, &value);
    assert_eq!(
        (f.meta.kind, f.meta.status, f.meta.request_id),
        (MessageKind::Response, ResponseStatus::Ok, 8)
    );
    assert!(f.meta.strings.is_empty());
    let f = decode_with(&ReadKeys::only(["X-Peer"]), &value);
    assert_eq!(f.meta.get("x-peer"), Some("a"));

    // Exceptions are errors either way.
    let exception = response(3, &string("boom"), &[("x-peer", "a")]);
    for read in [status_only.clone(), ReadKeys::all()] {
        let f = decode_with(&read, &exception);
        assert_eq!(f.meta.status, ResponseStatus::Error, "{read}");
        assert_eq!(f.meta.get(keys::PROTOCOL_STATUS), Some("EXCEPTION"));
    }

    // An attachment cannot fake the codec's status key.
    let faked = response(
        4,
        &string("v"),
        &[(keys::PROTOCOL_STATUS, "SERVER_TIMEOUT")],
    );
    for read in [status_only.clone(), ReadKeys::all()] {
        let f = decode_with(&read, &faked);
        assert_eq!(f.meta.status, ResponseStatus::Ok, "{read}");
        assert_eq!(f.meta.get(keys::PROTOCOL_STATUS), None, "{read}");
    }

    // A damaged value after a valid result type: noticed (an error) only when walked.
    let damaged = response(4, &[0x40], &[("x-peer", "a")]);
    assert_eq!(
        decode_with(&status_only, &damaged).meta.status,
        ResponseStatus::Ok
    );
    assert_eq!(
        decode_with(&ReadKeys::all(), &damaged).meta.status,
        ResponseStatus::Error
    );
    // A body without a result type is an error either way.
    let bare_null = response(2, &[], &[]);
    let mut bare = bare_null[..16].to_vec();
    bare[15] = 1;
    bare.push(b'N');
    assert_eq!(
        decode_with(&status_only, &bare).meta.status,
        ResponseStatus::Error
    );
}
