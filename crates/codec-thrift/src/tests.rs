//! Unit tests of the codec on hand-built frames (golden frames from real peers are in
//! `tests/golden.rs`).

use bytes::{BufMut, BytesMut};
use meta_protocol::{
    Codec, CodecErrorKind, CodecFactory, CodecOptions, ErrorKind, LocalReply, MessageKind,
    Metadata, Mutation, ResponseStatus, Side, keys,
};
use proptest::prelude::*;

use crate::ThriftCodecFactory;
use crate::codec::ThriftCodec;
use crate::cursor::put_varint;

const MAX: usize = 64 * 1024;

fn codec(side: Side) -> ThriftCodec {
    ThriftCodec::new(side, MAX)
}

/// A strict binary message; `body` is the struct (STOP appended).
fn binary(name: &str, mtype: u8, seqid: i32, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, 0x01, 0, mtype];
    b.extend_from_slice(&(name.len() as i32).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&seqid.to_be_bytes());
    b.extend_from_slice(body);
    b.push(0);
    b
}

fn compact(name: &str, mtype: u8, seqid: i32, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_slice(&[0x82, (mtype << 5) | 1]);
    put_varint(&mut b, u64::from(seqid as u32));
    put_varint(&mut b, name.len() as u64);
    b.put_slice(name.as_bytes());
    b.put_slice(body);
    b.put_u8(0);
    b.to_vec()
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut b = (msg.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(msg);
    b
}

fn theader(protocol_id: u8, seqid: i32, headers: &[(&str, &str)], msg: &[u8]) -> Vec<u8> {
    let mut h = BytesMut::new();
    put_varint(&mut h, u64::from(protocol_id));
    put_varint(&mut h, 0);
    if !headers.is_empty() {
        put_varint(&mut h, 1);
        put_varint(&mut h, headers.len() as u64);
        for (k, v) in headers {
            put_varint(&mut h, k.len() as u64);
            h.put_slice(k.as_bytes());
            put_varint(&mut h, v.len() as u64);
            h.put_slice(v.as_bytes());
        }
    }
    while !h.len().is_multiple_of(4) {
        h.put_u8(0);
    }
    let mut b = BytesMut::new();
    b.put_u32((10 + h.len() + msg.len()) as u32);
    b.put_slice(&[0x0f, 0xff, 0, 0]);
    b.put_i32(seqid);
    b.put_u16((h.len() / 4) as u16);
    b.put_slice(&h);
    b.put_slice(msg);
    b.to_vec()
}

fn decode_all(c: &mut ThriftCodec, bytes: &[u8]) -> Vec<meta_protocol::Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = c.decode(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty());
    out
}

fn decode_err(bytes: &[u8]) -> meta_protocol::CodecError {
    let mut buf = BytesMut::from(bytes);
    codec(Side::Downstream).decode(&mut buf).unwrap_err()
}

#[test]
fn factory_names() {
    let f = ThriftCodecFactory;
    assert_eq!(f.name(), "aeraki.meta_protocol.codec.thrift");
    assert_eq!(f.protocol(), "thrift");
    let c = f.new_codec(Side::Downstream, CodecOptions::default());
    assert_eq!(c.max_request_id(), i32::MAX as u64);
    assert_eq!(c.connection_variant(), 0);
}

#[test]
fn many_frames_in_one_buffer_and_partial_tail() {
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(framed(&compact("Svc:call", 1, i, &[0x15, 2])));
    }
    let full = bytes.len();
    bytes.extend(&framed(&compact("x", 1, 9, &[]))[..5]);
    let mut c = codec(Side::Downstream);
    let mut buf = BytesMut::from(&bytes[..]);
    for i in 0..5 {
        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.meta.request_id, i);
        assert_eq!(
            (f.meta.get("service"), f.meta.get("method")),
            (Some("Svc"), Some("call"))
        );
    }
    assert!(c.decode(&mut buf).unwrap().is_none());
    assert_eq!(
        buf.len(),
        bytes.len() - full,
        "nothing consumed while incomplete"
    );
}

#[test]
fn kinds_and_reply_status() {
    let cases: [(Vec<u8>, MessageKind, ResponseStatus); 7] = [
        (
            binary("a", 1, 1, &[]),
            MessageKind::Request,
            ResponseStatus::Ok,
        ),
        (
            binary("a", 4, 1, &[]),
            MessageKind::OneWay,
            ResponseStatus::Ok,
        ),
        (
            binary("a", 2, 1, &[]),
            MessageKind::Response,
            ResponseStatus::Ok,
        ),
        (
            binary("a", 2, 1, &[11, 0, 0, 0, 0, 0, 0]),
            MessageKind::Response,
            ResponseStatus::Ok,
        ),
        (
            binary("a", 2, 1, &[12, 0, 1, 0]),
            MessageKind::Response,
            ResponseStatus::Error,
        ),
        (
            compact("a", 2, 1, &[0x0c, 0x04, 0]),
            MessageKind::Response,
            ResponseStatus::Error,
        ),
        (
            compact("a", 3, 1, &[]),
            MessageKind::Response,
            ResponseStatus::Error,
        ),
    ];
    let protocol_status = [
        None,
        None,
        None,
        None,
        Some("EXCEPTION"),
        Some("EXCEPTION"),
        Some("UNKNOWN"),
    ];
    for ((msg, kind, status), ps) in cases.into_iter().zip(protocol_status) {
        for bytes in [msg.clone(), framed(&msg)] {
            let f = decode_all(&mut codec(Side::Upstream), &bytes).remove(0);
            assert_eq!((f.meta.kind, f.meta.status), (kind, status), "{bytes:02x?}");
            assert_eq!(f.meta.get(keys::PROTOCOL_STATUS), ps, "{bytes:02x?}");
        }
    }
}

#[test]
fn non_strict_binary_behind_a_frame() {
    let mut msg = 4i32.to_be_bytes().to_vec();
    msg.extend_from_slice(b"ping");
    msg.push(1);
    msg.extend_from_slice(&77i32.to_be_bytes());
    msg.push(0);
    let mut c = codec(Side::Downstream);
    let f = decode_all(&mut c, &framed(&msg)).remove(0);
    assert_eq!(
        (f.meta.get("method"), f.meta.request_id),
        (Some("ping"), 77)
    );
    let mut out = BytesMut::new();
    c.on_error(&f.meta, &LocalReply::new(ErrorKind::Timeout, "t"), &mut out);
    let r = decode_all(&mut codec(Side::Upstream), &out).remove(0);
    assert_eq!(
        (r.meta.kind, r.meta.request_id),
        (MessageKind::Response, 77)
    );
    assert_eq!(&out[4..8], &4i32.to_be_bytes(), "non-strict reply");
}

#[test]
fn compact_seqid_rewrite_grows_and_shrinks() {
    let msg = compact("echo", 1, 5, &[0x18, 2, b'h', b'i']);
    let variants = [
        msg.clone(),
        framed(&msg),
        theader(2, 5, &[("k", "v")], &msg),
    ];
    for bytes in variants {
        let original = decode_all(&mut codec(Side::Downstream), &bytes).remove(0);
        let mut f = original.clone();
        let mut c = codec(Side::Downstream);
        for id in [300u64, 1 << 20, u64::from(u32::MAX), 0, 5] {
            c.set_request_id(&mut f, id).unwrap();
            let again = decode_all(&mut codec(Side::Downstream), &f.bytes).remove(0);
            assert_eq!(again.meta.request_id, id);
            assert_eq!(again.meta.get("method"), Some("echo"));
            assert_eq!(again.meta.message_size() as usize, f.bytes.len());
            assert_eq!(f.meta.header_size, again.meta.header_size);
            if bytes[4..6] == [0x0f, 0xff] {
                assert_eq!(&f.bytes[8..12], &(id as u32).to_be_bytes(), "THeader seqid");
            }
        }
        assert_eq!(f.bytes, original.bytes);
    }
}

#[test]
fn garbage_and_wrong_magic_are_clean_errors() {
    let malformed = [
        &b"\x80\x02\x00\x01\x00\x00\x00\x00"[..], // bad binary version
        &b"\x82\x22"[..],                         // compact version 2
        &b"\x82\xa1"[..],                         // compact message type 5
        &b"\x00\x00\x00\x01\x80"[..],             // frame too short for a header
        &b"\x00\x00\x00\x06\x0f\xfe\x00\x00\x00\x00"[..], // wrong THeader magic (non-strict garbage)
        &b"\x00\x00\x00\x04\x80\x01\x00\x01"[..],         // header runs past the frame
        &b"\xff\xff\xff\xff"[..],                         // negative frame length
    ];
    for bytes in malformed {
        assert_eq!(
            decode_err(bytes).kind,
            CodecErrorKind::Malformed,
            "{bytes:02x?}"
        );
    }
    // An HTTP request reads as a huge frame length.
    assert_eq!(
        decode_err(b"GET / HTTP/1.1\r\n\r\n").kind,
        CodecErrorKind::TooLarge
    );
    // THeader: header larger than the frame, bad info lengths, JSON protocol, a transform.
    let msg = binary("m", 1, 3, &[]);
    let mut h = theader(0, 3, &[("a", "b")], &msg);
    h[13] = 200;
    assert_eq!(decode_err(&h).kind, CodecErrorKind::Malformed);
    let mut h = theader(0, 3, &[("a", "b")], &msg);
    h[18] = 100; // key length
    assert_eq!(decode_err(&h).kind, CodecErrorKind::Malformed);
    let err = decode_err(&theader(1, 3, &[], &msg));
    assert_eq!(err.kind, CodecErrorKind::Unsupported);
    let mut h = theader(0, 3, &[], &msg);
    h[15] = 1; // one transform: zlib
    h[16] = 1;
    let err = decode_err(&h);
    assert_eq!(err.kind, CodecErrorKind::Unsupported);
    assert_eq!(err.request.map(|m| m.request_id), Some(3));
    let many: Vec<(String, String)> = (0..300).map(|i| (format!("k{i}"), String::new())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        decode_err(&theader(0, 3, &many, &msg)).kind,
        CodecErrorKind::Malformed
    );
    assert!(
        decode_all(
            &mut codec(Side::Downstream),
            &theader(0, 3, &many[..256], &msg)
        )
        .len()
            == 1
    );
    // Unframed struct garbage: request metadata attached.
    let err = decode_err(&binary("m", 1, 9, &[0x63, 0, 1]));
    assert_eq!(err.kind, CodecErrorKind::Malformed);
    assert_eq!(err.request.map(|m| m.request_id), Some(9));
}

#[test]
fn oversized_frames_carry_the_request_when_known() {
    let big = vec![b'x'; MAX];
    let mut body = vec![11, 0, 1];
    body.extend_from_slice(&(big.len() as i32).to_be_bytes());
    body.extend_from_slice(&big);
    let msg = binary("Svc:big", 1, 42, &body);
    let check = |bytes: &[u8], id: Option<u64>| {
        let mut buf = BytesMut::from(&bytes[..bytes.len().min(600)]);
        let err = codec(Side::Downstream).decode(&mut buf).unwrap_err();
        assert_eq!(err.kind, CodecErrorKind::TooLarge);
        assert_eq!(err.request.as_ref().map(|m| m.request_id), id);
        if let (Some(m), false) = (err.request, bytes[4..6] == [0x0f, 0xff]) {
            assert_eq!(
                (m.get("service"), m.get("method")),
                (Some("Svc"), Some("big"))
            );
        }
    };
    check(&msg, Some(42));
    check(&framed(&msg), Some(42));
    check(&theader(0, 42, &[], &msg), Some(42));
    check(&framed(&compact("Svc:big", 1, 42, &body)), Some(42));
    // A response is not a request to answer.
    let mut buf = BytesMut::from(&framed(&binary("r", 2, 1, &body))[..]);
    let err = codec(Side::Upstream).decode(&mut buf).unwrap_err();
    assert!(err.request.is_none());
    // A small limit: a whole small frame in the buffer fails at once, header readable or not.
    let small = framed(&binary("Svc:a_method_with_a_long_name", 1, 5, &[]));
    let err = ThriftCodec::new(Side::Downstream, 20)
        .decode(&mut BytesMut::from(&small[..]))
        .unwrap_err();
    assert_eq!(
        (err.kind, err.request.map(|m| m.request_id)),
        (CodecErrorKind::TooLarge, Some(5))
    );
    let mut junk = framed(&[0, 0, 0, 40]);
    junk.resize(30, 1);
    junk[..4].copy_from_slice(&26u32.to_be_bytes());
    let err = ThriftCodec::new(Side::Downstream, 20)
        .decode(&mut BytesMut::from(&junk[..]))
        .unwrap_err();
    assert_eq!(
        (err.kind, err.request.is_none()),
        (CodecErrorKind::TooLarge, true)
    );
    // Waits for the header before failing, and fails once enough bytes show none.
    let f = framed(&msg);
    let mut buf = BytesMut::from(&f[..6]);
    assert!(codec(Side::Downstream).decode(&mut buf).unwrap().is_none());
    let mut junk = (MAX as u32 * 2).to_be_bytes().to_vec();
    junk.extend_from_slice(&[0x80, 1, 0, 1, 0x7f, 0, 0, 0]);
    junk.resize(600, 0);
    let err = decode_err(&junk);
    assert_eq!(
        (err.kind, err.request.is_none()),
        (CodecErrorKind::TooLarge, true)
    );
}

#[test]
fn transport_and_protocol_must_not_change() {
    let mut c = codec(Side::Downstream);
    decode_all(&mut c, &framed(&binary("a", 1, 1, &[])));
    let first = c.connection_variant();
    assert_ne!(first, 0);
    let mut buf = BytesMut::from(&binary("a", 1, 1, &[])[..]);
    assert!(c.decode(&mut buf).is_err());
    let mut buf = BytesMut::from(&framed(&compact("a", 1, 1, &[]))[..]);
    assert!(c.decode(&mut buf).is_err());
    assert_eq!(c.connection_variant(), first);
}

#[test]
fn on_error_in_every_variant_decodes_back() {
    let msgs = [
        (binary("Calc:add", 1, 11, &[]), 0u8),
        (compact("Calc:add", 1, 11, &[]), 2u8),
    ];
    for (msg, pid) in msgs {
        for bytes in [
            msg.clone(),
            framed(&msg),
            theader(pid, 11, &[("h", "v")], &msg),
        ] {
            let mut c = codec(Side::Downstream);
            let req = decode_all(&mut c, &bytes).remove(0);
            for (kind, ty) in [
                (ErrorKind::RouteNotFound, 1i32),
                (ErrorKind::BadRequest, 7),
                (ErrorKind::Unspecified, 6),
            ] {
                let mut out = BytesMut::new();
                c.on_error(&req.meta, &LocalReply::new(kind, "nope"), &mut out);
                let mut up = codec(Side::Upstream);
                let r = decode_all(&mut up, &out).remove(0);
                assert_eq!(up.connection_variant(), c.connection_variant());
                assert_eq!(
                    (r.meta.kind, r.meta.status),
                    (MessageKind::Response, ResponseStatus::Error)
                );
                assert_eq!(r.meta.request_id, 11);
                let name = crate::message::app_exception_name(ty).unwrap();
                assert_eq!(r.meta.get(keys::PROTOCOL_STATUS), Some(name));
                assert_eq!(
                    (r.meta.get("service"), r.meta.get("method")),
                    (Some("Calc"), Some("add"))
                );
                // The type is the last field, just before STOP.
                let n = out.len();
                if pid == 0 {
                    assert_eq!(out[n - 5..n - 1], ty.to_be_bytes());
                } else {
                    assert_eq!(out[n - 2..], [ty as u8 * 2, 0], "zigzag varint");
                }
            }
        }
    }
    // Before any frame: framed binary, empty name.
    let mut out = BytesMut::new();
    codec(Side::Downstream).on_error(
        &Metadata::default(),
        &LocalReply::new(ErrorKind::Timeout, "t"),
        &mut out,
    );
    let r = decode_all(&mut codec(Side::Upstream), &out).remove(0);
    assert_eq!(r.meta.get("method"), Some(""));
}

#[test]
fn mutation_rules() {
    let msg = binary("a", 1, 1, &[]);
    let m: Mutation = [("k", "v")].into_iter().collect();
    for bytes in [msg.clone(), framed(&msg)] {
        let mut f = decode_all(&mut codec(Side::Downstream), &bytes).remove(0);
        let err = codec(Side::Downstream).encode(&mut f, &m).unwrap_err();
        assert_eq!(err.kind, CodecErrorKind::Unsupported);
        assert_eq!(&f.bytes[..], &bytes[..]);
    }
    let bytes = theader(0, 1, &[], &msg);
    let mut f = decode_all(&mut codec(Side::Downstream), &bytes).remove(0);
    codec(Side::Downstream).encode(&mut f, &m).unwrap();
    let again = decode_all(&mut codec(Side::Downstream), &f.bytes).remove(0);
    assert_eq!(
        (again.meta.get("k"), f.meta.get("k")),
        (Some("v"), Some("v"))
    );
    assert_eq!(again.meta.header_size, f.meta.header_size);
    assert_eq!(again.meta.strings.len(), f.meta.strings.len());
}

fn any_frames() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<(i32, u8)>().prop_map(|(s, t)| framed(&binary(
            "m",
            t % 4 + 1,
            s,
            &[8, 0, 1, 0, 0, 0, 1]
        ))),
        any::<(i32, u8)>().prop_map(|(s, t)| compact("s:m", t % 4 + 1, s, &[0x15, 4])),
        any::<i32>().prop_map(|s| theader(2, s, &[("a", "b")], &compact("m", 1, s, &[]))),
        any::<i32>().prop_map(|s| binary("m", 1, s, &[15, 0, 1, 11, 0, 0, 0, 1, 0, 0, 0, 0])),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for side in [Side::Downstream, Side::Upstream] {
            let mut c = codec(side);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(mut f)) = c.decode(&mut buf) {
                let _ = c.set_request_id(&mut f, 123_456);
                let _ = c.encode(&mut f, &[("a", "b")].into_iter().collect());
            }
            let mut out = BytesMut::new();
            c.on_error(&Metadata::default(), &LocalReply::new(ErrorKind::Timeout, "x"), &mut out);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        frame in any_frames(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = frame;
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        let mut c = codec(Side::Downstream);
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(mut f)) = c.decode(&mut buf) {
            let _ = c.set_request_id(&mut f, 7);
            let _ = c.encode(&mut f, &[("a", "b")].into_iter().collect());
        }
    }

    #[test]
    fn valid_frames_split_anywhere_decode_the_same(frame in any_frames(), cut in any::<usize>()) {
        let whole = decode_all(&mut codec(Side::Downstream), &frame);
        let cut = cut % (frame.len() + 1);
        let mut c = codec(Side::Downstream);
        let mut buf = BytesMut::from(&frame[..cut]);
        let early = c.decode(&mut buf).unwrap();
        prop_assert!(early.is_none() || cut == frame.len());
        buf.extend_from_slice(&frame[cut..]);
        let f = match early { Some(f) => f, None => c.decode(&mut buf).unwrap().unwrap() };
        prop_assert_eq!(&f.meta, &whole[0].meta);
        prop_assert_eq!(&f.bytes, &whole[0].bytes);
    }
}

#[test]
fn frame_len_hint_for_framed_and_theader_only() {
    let msg = binary("sayHello", 1, 7, &[0]);
    let c = codec(Side::Downstream);
    let fr = framed(&msg);
    assert_eq!(c.frame_len(&fr[..4]), Some(fr.len()));
    assert_eq!(c.frame_len(&fr), Some(fr.len()));
    assert_eq!(c.frame_len(&fr[..3]), None);
    let th = theader(0, 7, &[("k", "v")], &msg);
    assert_eq!(c.frame_len(&th[..5]), Some(th.len()));
    // Unframed binary and compact: the length is not declared up front.
    assert_eq!(c.frame_len(&msg), None);
    assert_eq!(c.frame_len(&compact("sayHello", 1, 7, &[0])), None);
    // Above the maximum: no hint (decode reports the error).
    let huge = ((MAX as u32) + 1).to_be_bytes();
    assert_eq!(
        c.frame_len(&[huge[0], huge[1], huge[2], huge[3], 0x80]),
        None
    );
}
