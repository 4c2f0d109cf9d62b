//! Golden streams captured between real peers (`tests/peer.py capture tests/golden`): thriftpy2
//! for binary/compact × framed/buffered (plain and multiplexed) and Apache Thrift's THeader
//! protocol. Every stream is decoded whole, split at every byte boundary and byte by byte; ids
//! are rewritten and restored; THeader frames take a mutation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::path::Path;

use bytes::BytesMut;
use codec_thrift::ThriftCodec;
use meta_protocol::{Codec, CodecErrorKind, Frame, Metadata, Mutation, Side};
use serde_json::Value as Json;

const MAX: usize = 1 << 20;

fn golden_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
}

fn manifest() -> serde_json::Map<String, Json> {
    let text = std::fs::read_to_string(golden_dir().join("manifest.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        Json::Object(m) => m,
        _ => panic!("manifest is not an object"),
    }
}

fn stream(name: &str, dir: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(golden_dir().join(format!("{name}.{dir}.hex"))).unwrap();
    let text = text.trim();
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn side(dir: &str) -> Side {
    if dir == "c2s" {
        Side::Downstream
    } else {
        Side::Upstream
    }
}

/// Decodes every frame of `chunks` fed one after another.
fn decode_chunks(side: Side, chunks: &[&[u8]]) -> (Vec<Frame>, ThriftCodec) {
    let mut codec = ThriftCodec::new(side, MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    (frames, codec)
}

fn check_meta(meta: &Metadata, want: &Json, ctx: &str) {
    assert_eq!(meta.get("method"), want["method"].as_str(), "{ctx}: method");
    assert_eq!(
        meta.get("service"),
        want["service"].as_str(),
        "{ctx}: service"
    );
    assert_eq!(
        meta.kind.as_str(),
        want["kind"].as_str().unwrap(),
        "{ctx}: kind"
    );
    if meta.kind == meta_protocol::MessageKind::Response {
        assert_eq!(
            meta.status.as_str(),
            want["status"].as_str().unwrap(),
            "{ctx}: status"
        );
    }
    assert_eq!(
        meta.request_id,
        want["seqid"].as_u64().unwrap(),
        "{ctx}: seqid"
    );
    let headers = want["headers"].as_object().unwrap();
    for (k, v) in headers {
        assert_eq!(meta.get(k), v.as_str(), "{ctx}: header {k}");
    }
    // The peers' error replies: `get` raises a declared exception, `boom` an INTERNAL_ERROR
    // TApplicationException; only error responses carry a protocol status.
    let protocol_status = match (meta.status, meta.get("method")) {
        (meta_protocol::ResponseStatus::Ok, _) => None,
        (_, Some("get")) => Some("EXCEPTION"),
        (_, Some("boom")) => Some("INTERNAL_ERROR"),
        (_, m) => panic!("{ctx}: unexpected error response for {m:?}"),
    };
    assert_eq!(
        meta.get(meta_protocol::keys::PROTOCOL_STATUS),
        protocol_status,
        "{ctx}: protocol status"
    );
    let extra = usize::from(meta.get("method").is_some())
        + usize::from(meta.get("service").is_some())
        + usize::from(protocol_status.is_some());
    assert_eq!(
        meta.strings.len(),
        headers.len() + extra,
        "{ctx}: strings {:?}",
        meta.strings
    );
    assert!(meta.message_size() > 0);
}

#[test]
fn golden_streams_decode_with_expected_metadata() {
    let mut variants = BTreeSet::new();
    for (name, expected) in manifest() {
        for dir in ["c2s", "s2c"] {
            let bytes = stream(&name, dir);
            let (frames, codec) = decode_chunks(side(dir), &[&bytes]);
            let want: Vec<&Json> = expected
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["dir"] == dir)
                .collect();
            assert_eq!(frames.len(), want.len(), "{name}.{dir}");
            for (i, (f, w)) in frames.iter().zip(&want).enumerate() {
                check_meta(&f.meta, w, &format!("{name}.{dir}[{i}]"));
                assert_eq!(
                    f.meta.message_size() as usize,
                    f.bytes.len(),
                    "{name}.{dir}[{i}] size"
                );
            }
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.bytes.to_vec()).collect();
            assert_eq!(joined, bytes, "{name}.{dir}: frames are the original bytes");
            assert_ne!(codec.connection_variant(), 0);
            variants.insert((
                name.trim_end_matches("_mux").to_owned(),
                codec.connection_variant(),
            ));
        }
    }
    // One distinct variant per transport × protocol, the same in both directions.
    let ids: BTreeSet<u32> = variants.iter().map(|(_, id)| *id).collect();
    assert_eq!(variants.len(), 6, "{variants:?}");
    assert_eq!(ids.len(), 6, "{variants:?}");
}

#[test]
fn golden_streams_split_at_every_byte_and_byte_by_byte() {
    for name in manifest().keys() {
        for dir in ["c2s", "s2c"] {
            let bytes = stream(name, dir);
            let (whole, _) = decode_chunks(side(dir), &[&bytes]);
            for cut in 0..=bytes.len() {
                let (frames, _) = decode_chunks(side(dir), &[&bytes[..cut], &bytes[cut..]]);
                assert_eq!(frames.len(), whole.len(), "{name}.{dir} cut {cut}");
                for (a, b) in frames.iter().zip(&whole) {
                    assert_eq!((&a.meta, &a.bytes), (&b.meta, &b.bytes));
                }
            }
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            let (frames, _) = decode_chunks(side(dir), &singles);
            assert_eq!(frames.len(), whole.len(), "{name}.{dir} byte by byte");
        }
    }
}

#[test]
fn request_ids_are_rewritten_and_restored() {
    for name in manifest().keys() {
        for dir in ["c2s", "s2c"] {
            let (frames, _) = decode_chunks(side(dir), &[&stream(name, dir)]);
            for (i, original) in frames.iter().enumerate() {
                for id in [1u64, 200, 20_000, i32::MAX as u64, u32::MAX as u64] {
                    let mut f = original.clone();
                    let mut codec = ThriftCodec::new(side(dir), MAX);
                    codec.set_request_id(&mut f, id).unwrap();
                    assert_eq!(f.meta.request_id, id);
                    let (again, _) = decode_chunks(side(dir), &[&f.bytes]);
                    assert_eq!(again.len(), 1, "{name}.{dir}[{i}] id {id}");
                    assert_eq!(again[0].meta.request_id, id, "{name}.{dir}[{i}]");
                    assert_eq!(again[0].meta.strings, original.meta.strings);
                    assert_eq!(again[0].meta.message_size() as usize, f.bytes.len());
                    codec
                        .set_request_id(&mut f, original.meta.request_id)
                        .unwrap();
                    assert_eq!(f.bytes, original.bytes, "{name}.{dir}[{i}] restored");
                }
                let mut f = original.clone();
                let mut codec = ThriftCodec::new(side(dir), MAX);
                let err = codec.set_request_id(&mut f, 1 << 32).unwrap_err();
                assert_eq!(err.kind, CodecErrorKind::Unsupported);
            }
        }
    }
}

#[test]
fn mutations_rewrite_theader_headers_and_are_refused_elsewhere() {
    let mutation: Mutation = [("x-user", "bob"), ("x-added", "yes")]
        .into_iter()
        .collect();
    for name in manifest().keys() {
        let (frames, _) = decode_chunks(Side::Downstream, &[&stream(name, "c2s")]);
        for original in frames {
            let mut codec = ThriftCodec::new(Side::Downstream, MAX);
            let mut f = original.clone();
            codec.encode(&mut f, &Mutation::new()).unwrap();
            assert_eq!(
                f.bytes, original.bytes,
                "empty mutation leaves bytes untouched"
            );
            let result = codec.encode(&mut f, &mutation);
            if !name.starts_with("header_") {
                assert_eq!(result.unwrap_err().kind, CodecErrorKind::Unsupported);
                assert_eq!(f.bytes, original.bytes);
                continue;
            }
            result.unwrap();
            assert_eq!(f.meta.get("x-user"), Some("bob"));
            let (again, _) = decode_chunks(Side::Downstream, &[&f.bytes]);
            let meta = &again[0].meta;
            assert_eq!(meta.get("x-user"), Some("bob"));
            assert_eq!(meta.get("x-added"), Some("yes"));
            assert_eq!(meta.get("method"), original.meta.get("method"));
            assert_eq!(meta.request_id, original.meta.request_id);
            assert_eq!(meta.get("x-request-id"), original.meta.get("x-request-id"));
            assert_eq!(
                meta.strings.len(),
                original.meta.strings.len() + 2
                    - usize::from(original.meta.get("x-user").is_some())
            );
            // The payload message is untouched.
            let body = original.meta.body_size as usize;
            assert_eq!(
                f.bytes[f.bytes.len() - body..],
                original.bytes[original.bytes.len() - body..]
            );
            // encode keeps the metadata in step with the bytes (key order aside)
            let sorted = |m: &Metadata| {
                let mut v: Vec<(String, String)> = m
                    .strings
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                v.sort();
                (v, m.header_size, m.body_size, m.request_id, m.kind)
            };
            assert_eq!(sorted(meta), sorted(&f.meta));
        }
    }
}
