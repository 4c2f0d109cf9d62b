//! Load-balancing policies end to end: consistent hashing on the route's hash keys, least
//! request steering away from a slow backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use custom_codec_example::{CustomCodecFactory, request};
use meta_config::LbPolicy;
use meta_protocol::{CodecFactory, CodecOptions, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The custom codec carries one metadata key, `cmd`: it plays the user id here.
async fn each_user_sticks_to_one_backend(policy: LbPolicy) {
    let (a, _) = backend("a", 5).await;
    let (b, _) = backend("b", 5).await;
    let (c, _) = backend("c", 5).await;
    let mut r = route("hashed", vec![], to("svc"));
    r.hash_policy = vec!["cmd".into()];
    let mut cl = cluster("svc", &[a, b, c]);
    cl.lb_policy = policy;
    let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cl])).await;

    let mut owner: HashMap<u16, String> = HashMap::new();
    // Several client connections, users interleaved: balancing is per request.
    for round in 0..3u32 {
        let mut client = Client::connect(addr).await;
        for user in 10..40u16 {
            for k in 0..3u32 {
                let id = round * 1000 + u32::from(user) * 10 + k;
                let (err, body) = client.call(id, user, b"q").await;
                assert!(!err, "{body}");
                let backend = body.split(':').next().unwrap().to_owned();
                let first = owner.entry(user).or_insert_with(|| backend.clone());
                assert_eq!(*first, backend, "{policy:?}: user {user} moved");
            }
        }
    }
    let used: HashSet<&String> = owner.values().collect();
    assert_eq!(
        used.len(),
        3,
        "{policy:?}: 30 users over 3 backends: {owner:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_keeps_each_user_on_one_backend() {
    bounded(each_user_sticks_to_one_backend(LbPolicy::RingHash {
        minimum_ring_size: 1024,
        maximum_ring_size: 8 * 1024 * 1024,
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keeps_each_user_on_one_backend() {
    bounded(each_user_sticks_to_one_backend(LbPolicy::Maglev {
        table_size: 65537,
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_without_the_key_spreads_requests() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let (b, _) = backend("b", 0).await;
        let mut r = route("hashed", vec![], to("svc"));
        r.hash_policy = vec!["user".into()]; // never present
        let mut cl = cluster("svc", &[a, b]);
        cl.lb_policy = LbPolicy::Maglev { table_size: 251 };
        let (_engine, addr) = start(bootstrap(proxy(vec![r]), vec![cl])).await;
        let mut client = Client::connect(addr).await;
        let mut to_a = 0;
        for i in 0..200 {
            if client.call(i, 1, b"").await.1.starts_with("a:") {
                to_a += 1;
            }
        }
        assert!((60..=140).contains(&to_a), "{to_a} of 200 to a");
    })
    .await;
}

/// Requests arrive every 2 ms on one connection; "slow" answers within 0..=200 ms, "fast" at once. Least
/// request sees the slow backend's requests pile up and sends most new ones to the fast one
/// (which only works if finished requests leave the active count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_slow_backend() {
    bounded(async {
        let (slow, _) = backend("slow", 200).await;
        let (fast, _) = backend("fast", 0).await;
        let mut cl = cluster("svc", &[slow, fast]);
        cl.lb_policy = LbPolicy::LeastRequest { choice_count: 4 };
        let (_engine, addr) = start(bootstrap(
            proxy(vec![route("all", vec![], to("svc"))]),
            vec![cl],
        ))
        .await;
        let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
        let n = 300u32;
        let sender = tokio::spawn(async move {
            for i in 0..n {
                wr.write_all(&request(i, 1, b"")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            wr
        });
        let mut codec = CustomCodecFactory.new_codec(Side::Upstream, CodecOptions::default());
        let mut buf = BytesMut::new();
        let (mut got, mut to_fast) = (0, 0);
        while got < n {
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got += 1;
                if f.bytes[16..].starts_with(b"fast:") {
                    to_fast += 1;
                }
            }
            if got < n {
                assert!(rd.read_buf(&mut buf).await.unwrap() > 0, "proxy closed");
            }
        }
        let _wr = sender.await.unwrap();
        // Round robin (or counts that never drop) would give ≈ 150; with 4 choices the slow
        // backend is picked only when every draw hits it (1/16) or while it is idle too.
        assert!(to_fast > 240, "{to_fast} of {n} to the fast backend");
    })
    .await;
}
