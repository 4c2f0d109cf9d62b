//! Criterion micro-benchmarks of the data plane's per-request work (issue 5 item 3):
//! codec decode / request-id rewrite / mutation encode (Dubbo, Thrift), route matching over
//! decoded metadata (the engine's rule: first route whose matchers all hold, with
//! `meta_config::MetadataMatcher`), and endpoint picking (`meta_proxy_engine::lb`).
//!
//! Run: `cargo bench -p meta-bench --bench codecs` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_bench::{ClientOptions, Protocol, padded_name, reply_bytes, request_bytes};
use meta_config::{LbPolicy, MatchSpec, MetadataMatcher, StringMatch, StringMatchKind};
use meta_protocol::{CodecFactory, CodecOptions, Metadata, Mutation, ReadKeys, Side};
use meta_proxy_engine::lb::{self, LbContext, WeightedAddr};

fn factory(p: Protocol) -> Box<dyn CodecFactory> {
    match p {
        Protocol::Dubbo => Box::new(codec_dubbo::DubboCodecFactory),
        Protocol::Thrift(_) => Box::new(codec_thrift::ThriftCodecFactory),
    }
}

fn protocols() -> Vec<Protocol> {
    [
        "dubbo",
        "thrift",
        "thrift-compact",
        "thrift-buffered",
        "thrift-header",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn codecs(c: &mut Criterion) {
    let opts = ClientOptions::default();
    for (label, size) in [("20B", 20), ("120KB", 120 * 1024)] {
        let mut g = c.benchmark_group(format!("decode_request_{label}"));
        for p in protocols() {
            let req = request_bytes(p, 7, &opts, &padded_name("w", size), &[], false).unwrap();
            g.throughput(Throughput::Bytes(req.len() as u64));
            let f = factory(p);
            let mut codec = f.new_codec(Side::Downstream, CodecOptions::default());
            g.bench_with_input(BenchmarkId::from_parameter(p), &req, |b, req| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&req[..]);
                    black_box(codec.decode(&mut buf).unwrap().unwrap())
                })
            });
        }
        // Dubbo for a listener whose routes read only `method` (`Codec::set_read_keys`): the
        // arguments and attachments are not walked.
        let req = request_bytes(
            Protocol::Dubbo,
            7,
            &opts,
            &padded_name("w", size),
            &[],
            false,
        )
        .unwrap();
        let mut codec =
            codec_dubbo::DubboCodecFactory.new_codec(Side::Downstream, CodecOptions::default());
        codec.set_read_keys(&ReadKeys::only(["method"]));
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter("dubbo-method-only"),
            &req,
            |b, req| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&req[..]);
                    black_box(codec.decode(&mut buf).unwrap().unwrap())
                })
            },
        );
        g.finish();
    }

    let mut g = c.benchmark_group("decode_response_20B");
    for p in protocols() {
        let resp = reply_bytes(p, 7, "sayHello", "hello world from v1");
        let f = factory(p);
        let mut codec = f.new_codec(Side::Upstream, CodecOptions::default());
        g.bench_with_input(BenchmarkId::from_parameter(p), &resp, |b, resp| {
            b.iter(|| {
                let mut buf = BytesMut::from(&resp[..]);
                black_box(codec.decode(&mut buf).unwrap().unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("set_request_id");
    for p in protocols() {
        let req = request_bytes(p, 7, &opts, "world", &[], false).unwrap();
        let f = factory(p);
        let mut codec = f.new_codec(Side::Downstream, CodecOptions::default());
        let frame = codec
            .decode(&mut BytesMut::from(&req[..]))
            .unwrap()
            .unwrap();
        g.bench_function(BenchmarkId::from_parameter(p), |b| {
            let mut frame = frame.clone();
            let mut id = 0u64;
            b.iter(|| {
                id = (id + 1) & 0xffff;
                codec.set_request_id(&mut frame, black_box(id)).unwrap();
            })
        });
    }
    g.finish();

    // Mutations: Dubbo attachments and THeader info headers (other Thrift transports refuse).
    let mut g = c.benchmark_group("encode_mutation");
    let mut m = Mutation::new();
    m.set("x-canary", "true");
    m.set("x-user", "alice");
    for p in ["dubbo", "thrift-header", "thrift-header-compact"] {
        let p: Protocol = p.parse().unwrap();
        let req = request_bytes(p, 7, &opts, "world", &[("x-user", "bob")], false).unwrap();
        let f = factory(p);
        let mut codec = f.new_codec(Side::Downstream, CodecOptions::default());
        let frame = codec
            .decode(&mut BytesMut::from(&req[..]))
            .unwrap()
            .unwrap();
        g.bench_function(BenchmarkId::from_parameter(p), |b| {
            b.iter(|| {
                let mut fr = frame.clone();
                codec.encode(&mut fr, black_box(&m)).unwrap();
                black_box(fr)
            })
        });
    }
    g.finish();
}

fn exact(name: &str, value: &str) -> MetadataMatcher {
    MetadataMatcher::exact(name, value)
}

/// The engine's route rule over plain matcher lists: index of the first route whose matchers
/// all hold.
fn first_match(routes: &[Vec<MetadataMatcher>], meta: &Metadata) -> Option<usize> {
    routes
        .iter()
        .position(|ms| ms.iter().all(|m| m.matches(meta.get(&m.name))))
}

fn routing(c: &mut Criterion) {
    // Metadata as the Dubbo codec decodes it from a real request.
    let req = request_bytes(
        Protocol::Dubbo,
        1,
        &ClientOptions::default(),
        "world",
        &[("x-user", "alice"), ("x-region", "eu")],
        false,
    )
    .unwrap();
    let mut codec =
        codec_dubbo::DubboCodecFactory.new_codec(Side::Downstream, CodecOptions::default());
    let meta = codec
        .decode(&mut BytesMut::from(&req[..]))
        .unwrap()
        .unwrap()
        .meta;

    let mut g = c.benchmark_group("route_match");
    for n in [1usize, 10, 100] {
        // n-1 routes on other methods, then the one that matches (method + header).
        let mut routes: Vec<Vec<MetadataMatcher>> = (0..n - 1)
            .map(|i| {
                vec![
                    exact("method", &format!("method{i}")),
                    exact("x-user", "alice"),
                ]
            })
            .collect();
        routes.push(vec![exact("method", "sayHello"), exact("x-user", "alice")]);
        g.bench_with_input(BenchmarkId::new("last_of", n), &routes, |b, routes| {
            b.iter(|| black_box(first_match(routes, black_box(&meta))))
        });
    }
    let regex = vec![vec![MetadataMatcher {
        name: "interface".into(),
        spec: MatchSpec::String(StringMatch {
            kind: StringMatchKind::Regex(
                meta_config::Pattern::new("org\\.apache\\..*Service").unwrap(),
            ),
            ignore_case: false,
        }),
        invert: false,
        treat_missing_as_empty: false,
    }]];
    g.bench_function("regex_interface", |b| {
        b.iter(|| black_box(first_match(&regex, black_box(&meta))))
    });
    g.finish();
}

fn endpoints(n: usize, weighted: bool) -> Vec<WeightedAddr> {
    (0..n)
        .map(|i| WeightedAddr {
            addr: SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 20880)),
            weight: if weighted { 1 + (i as u32 % 5) } else { 1 },
        })
        .collect()
}

fn picking(c: &mut Criterion) {
    let mut g = c.benchmark_group("lb_pick");
    let ctx = LbContext::default();
    for n in [3usize, 100] {
        for (policy, name) in [
            (LbPolicy::RoundRobin, "round_robin"),
            (LbPolicy::Random, "random"),
        ] {
            for weighted in [false, true] {
                let lb = lb::build(policy, endpoints(n, weighted));
                let id = format!("{name}{}", if weighted { "_weighted" } else { "" });
                g.bench_function(BenchmarkId::new(id, n), |b| {
                    b.iter(|| black_box(lb.pick(&ctx)))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, codecs, routing, picking);
criterion_main!(benches);
