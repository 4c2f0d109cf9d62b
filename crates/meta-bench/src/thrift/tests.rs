//! Our Thrift messages decoded by the project's codec (and its local replies by our reader), in
//! every transport × protocol.

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecFactory, CodecOptions, ErrorKind, LocalReply, MessageKind, ResponseStatus, Side,
};

use super::*;

fn new_codec(side: Side) -> Box<dyn Codec> {
    codec_thrift::ThriftCodecFactory.new_codec(side, CodecOptions::default())
}

#[test]
fn calls_decode_with_ids_names_and_variant() {
    for v in ThriftVariant::all() {
        let mut c = new_codec(Side::Downstream);
        let long = crate::padded_name("big", 120 * 1024);
        let headers: &[(&str, &str)] = if v.transport == ThriftTransport::Header {
            &[("x-user", "alice"), ("canary", "1")]
        } else {
            &[]
        };
        // two calls and a one-way back to back in one buffer: each frame found in turn
        let mut buf = BytesMut::new();
        let first = encode_call(v, 7, "sayHello", "world", false, headers);
        let second = encode_call(v, i32::MAX, "sayHello", &long, false, &[]);
        let third = encode_call(v, 9, "sayHello", "note", true, &[]);
        for f in [&first, &second, &third] {
            buf.extend_from_slice(f);
        }
        let f1 = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f1.meta.kind, MessageKind::Request, "{v:?}");
        assert_eq!(f1.meta.request_id, 7, "{v:?}");
        assert_eq!(f1.meta.get("method"), Some("sayHello"));
        assert_eq!(&f1.bytes[..], &first[..], "{v:?}: bytes untouched");
        if v.transport == ThriftTransport::Header {
            assert_eq!(f1.meta.get("x-user"), Some("alice"), "{v:?}");
            assert_eq!(f1.meta.get("canary"), Some("1"), "{v:?}");
        }
        let (got_v, msg) = unwrap(&f1.bytes).unwrap();
        assert_eq!(got_v, v);
        let (h, name) = parse_call(v.protocol, msg).unwrap();
        assert_eq!((h.seqid, h.mtype, h.name.as_str()), (7, 1, "sayHello"));
        assert_eq!(name, Some("world"));

        let f2 = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f2.meta.request_id, i32::MAX as u64, "{v:?}");
        let (_, msg) = unwrap(&f2.bytes).unwrap();
        assert_eq!(parse_call(v.protocol, msg).unwrap().1, Some(long.as_str()));

        let f3 = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f3.meta.kind, MessageKind::OneWay, "{v:?}");
        assert!(buf.is_empty());
        assert!(c.connection_variant() != 0);
    }
}

#[test]
fn replies_and_exceptions_decode_with_status() {
    for v in ThriftVariant::all() {
        let mut c = new_codec(Side::Upstream);
        let mut buf = BytesMut::new();
        let ok = encode_reply(v, 42, "sayHello", "hello world from v1");
        let ex = encode_app_exception(v, 43, "nope", UNKNOWN_METHOD, "Unknown method nope");
        let declared = encode_declared(v, 44, "echo", 1);
        for f in [&ok, &ex, &declared] {
            buf.extend_from_slice(f);
        }
        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.kind, f.meta.status, f.meta.request_id),
            (MessageKind::Response, ResponseStatus::Ok, 42),
            "{v:?}"
        );
        let (got_v, msg) = unwrap(&f.bytes).unwrap();
        assert_eq!(got_v, v);
        let (h, out) = parse_reply(v.protocol, msg).unwrap();
        assert_eq!(h.seqid, 42);
        assert_eq!(out, Outcome::Value("hello world from v1".into()));

        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.status, f.meta.request_id),
            (ResponseStatus::Error, 43)
        );
        let (_, msg) = unwrap(&f.bytes).unwrap();
        assert_eq!(
            parse_reply(v.protocol, msg).unwrap().1,
            Outcome::Application {
                kind: UNKNOWN_METHOD,
                message: "Unknown method nope".into()
            }
        );

        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.status, f.meta.request_id),
            (ResponseStatus::Error, 44)
        );
        let (_, msg) = unwrap(&f.bytes).unwrap();
        assert_eq!(
            parse_reply(v.protocol, msg).unwrap().1,
            Outcome::Declared(1)
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn codec_local_replies_parse_as_application_exceptions() {
    for v in ThriftVariant::all() {
        let mut down = new_codec(Side::Downstream);
        let mut buf = BytesMut::from(&encode_call(v, 5, "sayHello", "x", false, &[])[..]);
        let req = down.decode(&mut buf).unwrap().unwrap();
        let mut out = BytesMut::new();
        let reply = LocalReply::new(ErrorKind::RouteNotFound, "no route for sayHello");
        down.on_error(&req.meta, &reply, &mut out);
        let (got_v, msg) = unwrap(&out).unwrap();
        assert_eq!(got_v, v, "local reply in the request's variant");
        let (h, outcome) = parse_reply(v.protocol, msg).unwrap();
        assert_eq!(h.seqid, 5);
        assert_eq!(
            outcome,
            Outcome::Application {
                kind: 1,
                message: "no route for sayHello".into()
            }
        );
    }
}

#[test]
fn reader_skips_nested_values_and_rejects_truncation() {
    for proto in [ThriftProtocol::Binary, ThriftProtocol::Compact] {
        // args { 3: struct { 1: string, 2: i32 }, 1: string "n" }
        let mut out = Vec::new();
        let mut w = Writer::message(proto, &mut out, "sayHello", wire::mtype::CALL, 3);
        let saved = w.begin_struct_field(3);
        w.string_field(1, "inner");
        w.i32_field(2, -5);
        w.end_struct(saved);
        w.string_field(1, "n");
        w.finish();
        let (h, name) = parse_call(proto, &out).unwrap();
        assert_eq!(h.seqid, 3);
        assert_eq!(name, Some("n"), "{proto:?}");
        for cut in 1..out.len() {
            assert!(
                parse_call(proto, &out[..cut]).is_err(),
                "{proto:?} cut at {cut}"
            );
        }
    }
}
