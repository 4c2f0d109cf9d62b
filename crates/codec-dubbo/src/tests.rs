//! Codec tests on frames captured from sofa-rpc-node + dubbo-remoting (`tests/golden/`).

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecErrorKind, CodecFactory, CodecOptions, Correlation, ErrorKind, Frame, LocalReply,
    MessageKind, Metadata, Mutation, ResponseStatus, Side, keys,
};

use crate::hessian::{Reader, Value};
use crate::{DubboCodec, DubboCodecFactory};

macro_rules! golden {
    ($name:literal) => {
        hex(include_str!(concat!("../tests/golden/", $name, ".hex")))
    };
}

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn codec() -> DubboCodec {
    DubboCodec::new(Side::Downstream, CodecOptions::default())
}

fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = codec().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&frame.bytes[..], bytes);
    frame
}

/// Attachments of a request or response frame, decoded by our reader.
fn attachments_of(frame: &[u8]) -> Vec<(String, Value)> {
    let body = &frame[16..];
    let mut r = Reader::new(body);
    if frame[2] & 0x80 != 0 {
        for _ in 0..4 {
            r.read_opt_string().unwrap();
        }
        let desc = r.read_string().unwrap();
        for _ in 0..crate::body::count_params(&desc).unwrap() {
            r.skip_value().unwrap();
        }
    } else {
        let t = r.read_int().unwrap();
        assert!((3..=5).contains(&t), "type {t}");
        if t != 5 {
            r.skip_value().unwrap();
        }
    }
    let Value::Map(_, entries) = r.read_value().unwrap() else {
        panic!("attachments are not a map")
    };
    assert!(r.at_end());
    entries
        .into_iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
        .collect()
}

#[test]
fn factory_identity() {
    let f = DubboCodecFactory;
    assert_eq!(f.name(), "aeraki.meta_protocol.codec.dubbo");
    assert_eq!(f.protocol(), "dubbo");
    assert_eq!(f.correlation(), Correlation::RequestId);
    let c = f.new_codec(Side::Upstream, CodecOptions::default());
    assert_eq!(c.max_request_id(), i64::MAX as u64);
}

#[test]
fn real_request_metadata() {
    let f = decode_one(&golden!("request_sayhello"));
    let m = &f.meta;
    assert_eq!(m.kind, MessageKind::Request);
    assert_eq!(m.request_id, 1);
    assert_eq!(
        (m.header_size, m.body_size as usize),
        (16, f.bytes.len() - 16)
    );
    assert_eq!(
        m.get("interface"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(m.get("method"), Some("sayHello"));
    assert_eq!(m.get("version"), Some("1.0.0"));
    assert_eq!(m.get("group"), Some("SOFA"));
    assert_eq!(m.get("path"), Some("org.apache.dubbo.demo.DemoService"));
    assert_eq!(m.get("dubbo"), Some("5.3.0"));
}

#[test]
fn real_request_with_many_argument_kinds() {
    // 13 arguments: int, strings, bool, double, date, binary, list, map, long, int[], objects.
    let f = decode_one(&golden!("request_echo_types"));
    assert_eq!(f.meta.get("method"), Some("echo"));
    assert_eq!(f.meta.get("group"), Some("SOFA"));
    for name in [
        "request_fail",
        "request_exception",
        "request_nothing",
        "request_nomethod",
    ] {
        let bytes = match name {
            "request_fail" => golden!("request_fail"),
            "request_exception" => golden!("request_exception"),
            "request_nothing" => golden!("request_nothing"),
            _ => golden!("request_nomethod"),
        };
        let f = decode_one(&bytes);
        assert_eq!(f.meta.kind, MessageKind::Request, "{name}");
        assert!(f.meta.get("method").is_some(), "{name}");
    }
}

#[test]
fn real_responses() {
    let ok = decode_one(&golden!("response_sayhello"));
    assert_eq!(
        (ok.meta.kind, ok.meta.status),
        (MessageKind::Response, ResponseStatus::Ok)
    );
    assert_eq!(ok.meta.request_id, 1);
    let echo = decode_one(&golden!("response_echo_types"));
    assert_eq!(echo.meta.status, ResponseStatus::Ok);
    // Result type 0: an exception object.
    let exc = decode_one(&golden!("response_exception"));
    assert_eq!(exc.meta.status, ResponseStatus::Error);
    assert_eq!(exc.meta.get(keys::PROTOCOL_STATUS), Some("EXCEPTION"));
    // Only error responses carry the protocol status.
    assert_eq!(ok.meta.get(keys::PROTOCOL_STATUS), None);
    assert_eq!(echo.meta.get(keys::PROTOCOL_STATUS), None);
    // Status 80 with the error message as body.
    for bytes in [golden!("response_fail"), golden!("response_nomethod")] {
        let f = decode_one(&bytes);
        assert_eq!(
            (f.meta.kind, f.meta.status),
            (MessageKind::Response, ResponseStatus::Error)
        );
        assert_eq!(f.meta.get(keys::PROTOCOL_STATUS), Some("SERVER_ERROR"));
    }
    // dubbo-remoting writes a null result as a bare `N` (no result type): forwarded, as an error.
    let null = decode_one(&golden!("response_nothing"));
    assert_eq!(null.meta.status, ResponseStatus::Error);
}

#[test]
fn heartbeats() {
    let req = decode_one(&golden!("request_heartbeat"));
    assert_eq!(req.meta.kind, MessageKind::Heartbeat);
    let resp = decode_one(&golden!("response_heartbeat"));
    assert_eq!(resp.meta.kind, MessageKind::Heartbeat);
    let mut out = BytesMut::new();
    assert!(codec().heartbeat_reply(&req, &mut out));
    // Byte for byte what the real sofa-rpc-node server answered.
    assert_eq!(&out[..], &golden!("response_heartbeat")[..]);
    let mut out = BytesMut::new();
    assert!(!codec().heartbeat_reply(&resp, &mut out));
    assert!(out.is_empty());
    // A one-way event (e.g. a read-only notice) gets no answer.
    let mut oneway = golden!("request_heartbeat");
    oneway[2] &= !0x40;
    assert!(!codec().heartbeat_reply(&decode_one(&oneway), &mut out));
    // Mutations leave heartbeats alone.
    let mut f = req.clone();
    codec()
        .encode(&mut f, &[("a", "b")].into_iter().collect())
        .unwrap();
    assert_eq!(f.bytes, req.bytes);
}

#[test]
fn oneway_kind() {
    let mut b = golden!("request_sayhello");
    b[2] &= !0x40;
    assert_eq!(decode_one(&b).meta.kind, MessageKind::OneWay);
}

#[test]
fn partial_input_waits_and_consumes_nothing() {
    let bytes = golden!("request_sayhello");
    for n in [0, 1, 15, 16, 17, bytes.len() - 1] {
        let mut buf = BytesMut::from(&bytes[..n]);
        assert!(codec().decode(&mut buf).unwrap().is_none(), "{n}");
        assert_eq!(buf.len(), n);
    }
}

#[test]
fn header_errors() {
    let good = golden!("request_sayhello");
    let mut bad_magic = good.clone();
    bad_magic[0] = 0xdb;
    let e = codec()
        .decode(&mut BytesMut::from(&bad_magic[..]))
        .unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Malformed);

    let mut neg = good.clone();
    neg[12] = 0x80;
    let e = codec().decode(&mut BytesMut::from(&neg[..])).unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Malformed);
    assert_eq!(e.request.unwrap().request_id, 1);

    let mut small = DubboCodec::new(
        Side::Downstream,
        CodecOptions {
            max_message_size: 64,
        },
    );
    // Only the header has arrived: refused already, with the request's id and kind.
    let e = small.decode(&mut BytesMut::from(&good[..16])).unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::TooLarge);
    let req = e.request.unwrap();
    assert_eq!((req.request_id, req.kind), (1, MessageKind::Request));

    let mut kryo = good.clone();
    kryo[2] = 0xc8;
    let e = codec().decode(&mut BytesMut::from(&kryo[..])).unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Unsupported);
    assert_eq!(e.request.unwrap().request_id, 1);
}

#[test]
fn bad_request_body_is_malformed_with_request_metadata() {
    let mut b = golden!("request_sayhello");
    b[16] = 0x40; // reserved code instead of the dubbo version string
    let e = codec().decode(&mut BytesMut::from(&b[..])).unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Malformed);
    assert_eq!(e.request.unwrap().request_id, 1);
}

#[test]
fn set_request_id_rewrites_bytes_4_to_12() {
    let mut f = decode_one(&golden!("request_sayhello"));
    codec()
        .set_request_id(&mut f, 0x0102_0304_0506_0708)
        .unwrap();
    assert_eq!(&f.bytes[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(f.meta.request_id, 0x0102_0304_0506_0708);
    let again = decode_one(&f.bytes);
    assert_eq!(again.meta.request_id, 0x0102_0304_0506_0708);
    let mut junk = Frame::new(Metadata::default(), BytesMut::from(&b"short"[..]));
    assert!(codec().set_request_id(&mut junk, 1).is_err());
}

#[test]
fn on_error_layout_and_status_mapping() {
    let mut req = Metadata::of_kind(MessageKind::Request);
    req.request_id = 42;
    let cases = [
        (ErrorKind::RouteNotFound, 60),
        (ErrorKind::ClusterNotFound, 60),
        (ErrorKind::BadResponse, 50),
        (ErrorKind::Timeout, 31),
        (ErrorKind::BadRequest, 40),
        (ErrorKind::OverLimit, 100),
        (ErrorKind::NoHealthyUpstream, 80),
        (ErrorKind::ConnectFailure, 80),
        (ErrorKind::UpstreamReset, 80),
        (ErrorKind::Unspecified, 70),
    ];
    for (kind, status) in cases {
        let mut out = BytesMut::new();
        codec().on_error(&req, &LocalReply::new(kind, "no route for héllo"), &mut out);
        assert_eq!(&out[..4], &[0xda, 0xbb, 0x02, status]);
        assert_eq!(&out[4..12], &42u64.to_be_bytes());
        let f = decode_one(&out);
        assert_eq!(
            (f.meta.kind, f.meta.status),
            (MessageKind::Response, ResponseStatus::Error)
        );
        let msg = Reader::new(&out[16..]).read_string().unwrap();
        assert_eq!(msg, "no route for héllo");
        let name = f.meta.get(keys::PROTOCOL_STATUS).unwrap();
        assert_eq!(name, crate::header::status::name(status).unwrap());
    }
}

fn mutation(pairs: &[(&str, &str)]) -> Mutation {
    pairs.iter().copied().collect()
}

#[test]
fn empty_mutation_leaves_bytes() {
    for bytes in [golden!("request_sayhello"), golden!("response_sayhello")] {
        let mut f = decode_one(&bytes);
        codec().encode(&mut f, &Mutation::new()).unwrap();
        assert_eq!(&f.bytes[..], &bytes[..]);
    }
}

#[test]
fn request_mutation_rewrites_attachments_only() {
    let orig = golden!("request_echo_types");
    let mut f = decode_one(&orig);
    let m = mutation(&[("GROUP", "blue"), ("x-user", "ü😀"), ("timeout", "300")]);
    codec().encode(&mut f, &m).unwrap();
    let re = decode_one(&f.bytes);
    assert_eq!(re.meta.get("group"), Some("blue"));
    assert_eq!(re.meta.get("x-user"), Some("ü😀"));
    assert_eq!(re.meta.get("method"), Some("echo"));
    assert_eq!(f.meta.get("x-user"), Some("ü😀"));
    let att = attachments_of(&f.bytes);
    let keys: Vec<_> = att.iter().map(|(k, _)| k.as_str()).collect();
    // Existing keys keep their place and spelling; new ones are appended.
    assert_eq!(keys[0], "dubbo");
    assert!(keys.contains(&"group"));
    assert_eq!(&keys[keys.len() - 2..], &["x-user", "timeout"]);
    // Everything before the attachment map is untouched.
    let old_att = attachments_of(&orig);
    assert_eq!(att.len(), old_att.len() + 2);
    let start = orig.len() - old_map_len(&orig);
    assert_eq!(&f.bytes[4..12], &orig[4..12]);
    assert_eq!(&f.bytes[16..start], &orig[16..start]);
}

/// Length of the attachment map of a request frame (it ends the frame).
fn old_map_len(frame: &[u8]) -> usize {
    let body = &frame[16..];
    let mut r = Reader::new(body);
    for _ in 0..4 {
        r.read_opt_string().unwrap();
    }
    let desc = r.read_string().unwrap();
    for _ in 0..crate::body::count_params(&desc).unwrap() {
        r.skip_value().unwrap();
    }
    body.len() - r.pos()
}

#[test]
fn mutation_with_unchanged_values_keeps_bytes() {
    let orig = golden!("request_sayhello");
    let mut f = decode_one(&orig);
    codec()
        .encode(&mut f, &mutation(&[("group", "SOFA")]))
        .unwrap();
    assert_eq!(&f.bytes[..], &orig[..]);
}

#[test]
fn response_mutation_converts_types_without_attachments() {
    // Type 1 (value) → 4 with the map appended.
    let mut f = decode_one(&golden!("response_sayhello"));
    codec()
        .encode(&mut f, &mutation(&[("x-peer", "a")]))
        .unwrap();
    assert_eq!(f.bytes[16], 0x94);
    let re = decode_one(&f.bytes);
    assert_eq!(re.meta.get("x-peer"), Some("a"));
    assert_eq!(re.meta.status, ResponseStatus::Ok);
    let again = Reader::new(&f.bytes[17..]).read_value().unwrap();
    assert_eq!(again, Value::String("hello world".into()));
    // Then in place on the type-4 map.
    let mut f2 = re.clone();
    codec()
        .encode(&mut f2, &mutation(&[("x-peer", "b"), ("k", "v")]))
        .unwrap();
    let att = attachments_of(&f2.bytes);
    assert_eq!(att.len(), 2);
    assert_eq!(att[0], ("x-peer".into(), Value::String("b".into())));
    // Type 0 (exception) → 3, still an error.
    let mut e = decode_one(&golden!("response_exception"));
    codec()
        .encode(&mut e, &mutation(&[("x-peer", "c")]))
        .unwrap();
    assert_eq!(e.bytes[16], 0x93);
    let re = decode_one(&e.bytes);
    assert_eq!(
        (re.meta.status, re.meta.get("x-peer")),
        (ResponseStatus::Error, Some("c"))
    );
    // Type 2 (null) → 5.
    let mut null = golden!("response_sayhello")[..16].to_vec();
    null[15] = 1;
    null.push(0x92);
    let mut n = decode_one(&null);
    codec().encode(&mut n, &mutation(&[("x", "y")])).unwrap();
    assert_eq!(&n.bytes[16..], &[0x95, b'H', 1, b'x', 1, b'y', b'Z']);
    assert_eq!(n.bytes[15], 7);
    // Error-status responses have no place for attachments: left as they are.
    let fail = golden!("response_fail");
    let mut ef = decode_one(&fail);
    codec().encode(&mut ef, &mutation(&[("x", "y")])).unwrap();
    assert_eq!(&ef.bytes[..], &fail[..]);
}

/// Builds a request frame from a body.
pub(crate) fn request_frame(id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    crate::header::Header::write(&mut f, 0xc2, 0, id, body.len());
    f.extend_from_slice(body);
    f
}

fn body_head(desc: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for s in ["2.0.2", "a.B", "", "m", desc] {
        crate::hessian::encode::write_string(&mut b, s);
    }
    b
}

#[test]
fn typed_null_absent_and_opaque_attachment_maps() {
    // Typed map with a non-string value: opening and foreign entry copied verbatim.
    let mut body = body_head("I");
    body.push(0x91);
    body.extend_from_slice(b"M\x07java.Ma\x01k\x91\x01s\x01vZ");
    let mut f = decode_one(&request_frame(9, &body));
    assert_eq!(f.meta.get("s"), Some("v"));
    assert_eq!(f.meta.get("k"), None);
    assert_eq!(f.meta.get("version"), None);
    codec().encode(&mut f, &mutation(&[("s", "w")])).unwrap();
    let tail: &[u8] = b"M\x07java.Ma\x01k\x91\x01s\x01wZ";
    assert!(f.bytes.ends_with(tail));
    // Null map → new map; absent map → appended.
    let mut null_body = body_head("");
    null_body.push(b'N');
    let absent_body = body_head("");
    for body in [null_body, absent_body] {
        let mut f = decode_one(&request_frame(9, &body));
        codec().encode(&mut f, &mutation(&[("a", "b")])).unwrap();
        assert!(f.bytes.ends_with(b"H\x01a\x01bZ"));
        assert_eq!(decode_one(&f.bytes).meta.get("a"), Some("b"));
    }
    // A reference cannot be rewritten.
    let mut ref_body = body_head("");
    ref_body.extend_from_slice(b"Q\x90");
    let mut f = decode_one(&request_frame(9, &ref_body));
    let e = codec()
        .encode(&mut f, &mutation(&[("a", "b")]))
        .unwrap_err();
    assert_eq!(e.kind, CodecErrorKind::Unsupported);
}

#[test]
fn descriptors() {
    use crate::body::count_params;
    assert_eq!(count_params(""), Some(0));
    assert_eq!(count_params("Ljava/lang/String;I[J"), Some(3));
    assert_eq!(count_params("[[Ljava.lang.String;ZBCDFJS"), Some(8));
    for bad in ["L;", "Ljava/lang/String", "V", "[", "X", "I["] {
        assert_eq!(count_params(bad), None, "{bad}");
    }
}

#[test]
fn frame_len_hint_from_the_header() {
    let req = golden!("request_sayhello");
    let c = codec();
    // Known as soon as the 16-byte header is in, whatever else has arrived.
    for cut in [16, 17, req.len() - 1, req.len()] {
        assert_eq!(c.frame_len(&req[..cut]), Some(req.len()), "cut at {cut}");
    }
    assert_eq!(c.frame_len(&req[..15]), None);
    // No hint for what decode refuses: bad magic, above the maximum, negative length.
    let mut bad = req.clone();
    bad[0] = 0;
    assert_eq!(c.frame_len(&bad), None);
    let small = DubboCodec::new(
        Side::Downstream,
        CodecOptions {
            max_message_size: req.len() - 1,
        },
    );
    assert_eq!(small.frame_len(&req), None);
    let mut neg = req.clone();
    neg[12] = 0x80;
    assert_eq!(c.frame_len(&neg), None);
}
