//! Property tests: build → decode round trips, mutation round trips, frames split at every byte,
//! several frames per buffer, and hostile or truncated input never panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use bytes::BytesMut;
use codec_dubbo::DubboCodec;
use codec_dubbo::hessian::{Reader, encode};
use meta_protocol::{
    Codec, CodecOptions, Frame, KeyValues, MessageKind, Mutation, ReadKeys, ResponseStatus, Side,
};
use proptest::prelude::*;

fn codec() -> DubboCodec {
    DubboCodec::new(Side::Downstream, CodecOptions::default())
}

fn frame(flag: u8, status: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xda, 0xbb, flag, status];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    Int(i32),
}

#[derive(Debug, Clone)]
struct Req {
    id: u64,
    path: String,
    version: String,
    method: String,
    args: Vec<Arg>,
    attachments: Vec<(String, String)>,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let desc: String = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Str(_) => "Ljava/lang/String;",
                Arg::Int(_) => "I",
            })
            .collect();
        for s in ["2.0.2", &self.path, &self.version, &self.method, &desc] {
            encode::write_string(&mut b, s);
        }
        for a in &self.args {
            match a {
                Arg::Str(s) => encode::write_string(&mut b, s),
                Arg::Int(i) => encode::write_int(&mut b, *i),
            }
        }
        encode::write_string_map(&mut b, self.attachments.iter().map(|(k, v)| (&**k, &**v)));
        frame(0xc2, 0, self.id, &b)
    }

    fn expected(&self) -> KeyValues {
        let mut kv = KeyValues::new();
        kv.set("interface", &self.path);
        kv.set("method", &self.method);
        if !self.version.is_empty() {
            kv.set("version", &self.version);
        }
        for (k, v) in &self.attachments {
            // The invoked method is the invocation's, never an attachment's.
            if !k.eq_ignore_ascii_case("method") {
                kv.set(k, v);
            }
        }
        kv
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => "[a-zA-Z0-9._-]{0,20}",
        5 => "\\PC{0,12}",
        // Over 1024 UTF-16 units: the `S` string form.
        1 => (1usize..3).prop_map(|n| "é😀".repeat(n * 400)),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    let arg = prop_oneof![text().prop_map(Arg::Str), any::<i32>().prop_map(Arg::Int)];
    (
        0u64..=i64::MAX as u64,
        text(),
        text(),
        text(),
        prop::collection::vec(arg, 0..5),
        prop::collection::vec(("[a-z-]{1,8}", text()), 0..6),
    )
        .prop_map(|(id, path, version, method, args, attachments)| Req {
            id,
            path,
            version,
            method,
            args,
            attachments,
        })
}

/// A response: type 1 with a string value, or 4/5 with attachments.
fn resp() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u64>(),
        0u8..3,
        text(),
        prop::collection::vec(("[a-z]{1,6}", text()), 0..4),
    )
        .prop_map(|(id, kind, value, att)| {
            let mut b = Vec::new();
            let t = [1, 4, 5][usize::from(kind)];
            encode::write_int(&mut b, t);
            if t != 5 {
                encode::write_string(&mut b, &value);
            }
            if t != 1 {
                encode::write_string_map(&mut b, att.iter().map(|(k, v)| (&**k, &**v)));
            }
            frame(0x02, 20, id, &b)
        })
}

fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        req().prop_map(|r| r.bytes()),
        resp(),
        any::<u64>().prop_map(|id| frame(0xe2, 0, id, b"N")),
        (any::<u64>(), text()).prop_map(|(id, m)| {
            let mut b = Vec::new();
            encode::write_string(&mut b, &m);
            frame(0x02, 80, id, &b)
        }),
    ]
}

fn decode_all(buf: &mut BytesMut) -> Vec<Frame> {
    let mut c = codec();
    let mut out = Vec::new();
    while let Some(f) = c.decode(buf).unwrap() {
        out.push(f);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn request_round_trip(r in req()) {
        let bytes = r.bytes();
        let f = decode_all(&mut BytesMut::from(&bytes[..])).remove(0);
        prop_assert_eq!(&f.bytes[..], &bytes[..]);
        prop_assert_eq!(f.meta.request_id, r.id);
        prop_assert_eq!(f.meta.kind, MessageKind::Request);
        prop_assert_eq!(&f.meta.strings, &r.expected());
    }

    #[test]
    fn method_only_decode_routes_like_a_full_decode(r in req()) {
        let bytes = r.bytes();
        let full = decode_all(&mut BytesMut::from(&bytes[..])).remove(0);
        let mut c = codec();
        c.set_read_keys(&ReadKeys::only(["method"]));
        let head = c.decode(&mut BytesMut::from(&bytes[..])).unwrap().unwrap();
        prop_assert_eq!(&head.bytes[..], &bytes[..]);
        prop_assert_eq!(head.meta.get("method"), full.meta.get("method"));
        prop_assert_eq!(head.meta.get("interface"), Some(r.path.as_str()));
        prop_assert_eq!(
            (head.meta.kind, head.meta.request_id, head.meta.body_size),
            (full.meta.kind, full.meta.request_id, full.meta.body_size)
        );
        // Nothing but the head's keys.
        prop_assert!(head.meta.strings.len() <= 3);
    }

    #[test]
    fn mutation_round_trip(r in req(), m in prop::collection::vec(("[a-zA-Z-]{1,8}", text()), 0..5)) {
        let mutation: Mutation = m.iter().map(|(k, v)| (k, v)).collect();
        let bytes = r.bytes();
        let mut f = decode_all(&mut BytesMut::from(&bytes[..])).remove(0);
        codec().encode(&mut f, &mutation).unwrap();
        let again = decode_all(&mut BytesMut::from(&f.bytes[..])).remove(0);
        let mut expected = r.expected();
        // Mutation keys only touch attachments, which override the routing keys when decoded.
        let mut atts: KeyValues = r.attachments.iter().map(|(k, v)| (k, v)).collect();
        atts.extend_from(&mutation);
        atts.remove("method");
        expected.extend_from(&atts);
        for (k, v) in expected.iter() {
            prop_assert_eq!(again.meta.get(k), Some(v), "key {}", k);
        }
        prop_assert_eq!(&again.bytes[4..12], &bytes[4..12]);
        if mutation.is_empty() {
            prop_assert_eq!(&f.bytes[..], &bytes[..]);
        }
    }

    #[test]
    fn response_mutation_round_trip(bytes in resp(), m in prop::collection::vec(("[a-z-]{1,8}", text()), 1..4)) {
        let mutation: Mutation = m.iter().map(|(k, v)| (k, v)).collect();
        let mut f = decode_all(&mut BytesMut::from(&bytes[..])).remove(0);
        let mut expected = f.meta.strings.clone();
        expected.extend_from(&mutation);
        codec().encode(&mut f, &mutation).unwrap();
        let again = decode_all(&mut BytesMut::from(&f.bytes[..])).remove(0);
        prop_assert_eq!(again.meta.status, ResponseStatus::Ok);
        for (k, v) in expected.iter() {
            prop_assert_eq!(again.meta.get(k), Some(v));
        }
        // The value is still readable right after the result type.
        let mut r = Reader::new(&again.bytes[16..]);
        let t = r.read_int().unwrap();
        prop_assert!((4..=5).contains(&t));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_at_every_byte_decodes_the_same(bytes in any_frame()) {
        let whole = decode_all(&mut BytesMut::from(&bytes[..])).remove(0);
        for cut in 0..bytes.len() {
            let mut c = codec();
            let mut buf = BytesMut::from(&bytes[..cut]);
            prop_assert!(c.decode(&mut buf).unwrap().is_none());
            prop_assert_eq!(buf.len(), cut);
            buf.extend_from_slice(&bytes[cut..]);
            let f = c.decode(&mut buf).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&f.bytes, &whole.bytes);
            prop_assert_eq!(&f.meta, &whole.meta);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn several_frames_in_one_buffer(frames in prop::collection::vec(any_frame(), 1..6)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            buf.extend_from_slice(f);
        }
        let got = decode_all(&mut buf);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), frames.len());
        for (g, f) in got.iter().zip(&frames) {
            prop_assert_eq!(&g.bytes[..], &f[..]);
        }
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Reader::new(&data).read_value();
        let _ = Reader::new(&data).skip_value();
        let mut buf = BytesMut::from(&data[..]);
        let _ = codec().decode(&mut buf);
        // Same bytes behind a valid header, as a request, a response and a heartbeat.
        for (flag, status) in [(0xc2, 0), (0x02, 20), (0xe2, 0), (0x82, 0)] {
            let bytes = frame(flag, status, 7, &data);
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(mut f)) = codec().decode(&mut buf) {
                let _ = codec().encode(&mut f, &[("k", "v")].into_iter().collect());
                let _ = codec().set_request_id(&mut f, 9);
                let _ = codec().heartbeat_reply(&f, &mut BytesMut::new());
            }
        }
    }

    #[test]
    fn truncated_bodies_never_panic(bytes in any_frame(), cut in any::<prop::sample::Index>()) {
        let body = &bytes[16..];
        let body = &body[..cut.index(body.len() + 1)];
        let flag = bytes[2];
        let t = frame(flag, bytes[3], 1, body);
        let mut buf = BytesMut::from(&t[..]);
        if let Ok(Some(mut f)) = codec().decode(&mut buf) {
            let _ = codec().encode(&mut f, &[("k", "v")].into_iter().collect());
        }
    }
}
