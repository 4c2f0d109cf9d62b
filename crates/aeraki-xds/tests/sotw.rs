//! State-of-the-world ADS against in-process tonic clients over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER, ROUTE, ResourceSet};
use aeraki_xds::StreamKind;
use common::*;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

#[tokio::test]
async fn initial_fetch_wildcard_and_named() {
    let server = start().await;
    assert_eq!(server.xds.publish(only_meta(full_set(1))), "1");
    let mut s = Sotw::open(channel(server.addr).await, node("n1", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    let cds = s.recv().await;
    assert_eq!(
        (cds.type_url.as_str(), cds.version_info.as_str()),
        (CLUSTER, "1")
    );
    assert_eq!(names(&cds), ["c1", "c2"]);
    s.subscribe(LISTENER, &[]).await;
    assert_eq!(names(&s.recv().await), ["l1", "l2"]);
    // Named types: only what was asked for and exists.
    s.subscribe(ROUTE, &["r2", "missing"]).await;
    let rds = s.recv().await;
    assert_eq!(rds.type_url, ROUTE);
    assert_eq!(names(&rds), ["r2"]);
    s.subscribe(ENDPOINT, &["e1"]).await;
    assert_eq!(names(&s.recv().await), ["e1-1"]);
    // Explicit wildcard on a named type.
    let mut w = Sotw::open(channel(server.addr).await, node("n2", "meta-proxy")).await;
    w.subscribe(ROUTE, &["*"]).await;
    assert_eq!(names(&w.recv().await), ["r1", "r2"]);

    let status = wait_status(&server.xds, "n1", |s| s.types.len() == 4).await;
    assert_eq!(status.kind, StreamKind::AdsSotw);
    assert_eq!(status.cluster, "n1-cluster");
    assert_eq!(status.flavor, Flavor::MetaProxy);
    assert!(status.peer.is_some_and(|p| p.ip().is_loopback()));
    assert!(status.types[CLUSTER].wildcard);
    assert_eq!(status.types[ROUTE].subscribed, ["missing", "r2"]);
    assert_eq!(status.types[ROUTE].last_sent_version.as_deref(), Some("1"));
}

#[tokio::test]
async fn ack_recorded_and_nack_keeps_old_acked_version() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    let v1 = s.recv().await;
    s.ack(&v1, &[]).await;
    let status = wait_status(&server.xds, "n", |s| {
        s.types
            .get(CLUSTER)
            .is_some_and(|t| t.last_acked_version.is_some())
    })
    .await;
    let cds = &status.types[CLUSTER];
    assert_eq!(cds.last_acked_version.as_deref(), Some("1"));
    assert_eq!(cds.last_sent_nonce.as_deref(), Some(v1.nonce.as_str()));
    assert!(cds.last_nack.is_none());

    server.xds.publish(only_meta(full_set(2)));
    let v2 = s.recv().await;
    assert_eq!(v2.version_info, "2");
    s.nack(&v2, "1", "cluster c1: bad connect_timeout").await;
    let status = wait_status(&server.xds, "n", |s| {
        s.types.get(CLUSTER).is_some_and(|t| t.last_nack.is_some())
    })
    .await;
    let cds = &status.types[CLUSTER];
    let nack = cds.last_nack.as_ref().unwrap();
    assert_eq!(nack.version, "2");
    assert_eq!(nack.message, "cluster c1: bad connect_timeout");
    assert_eq!(cds.last_acked_version.as_deref(), Some("1"));
    assert_eq!(cds.last_sent_version.as_deref(), Some("2"));
    // A NACK does not trigger a resend of the same content.
    s.expect_silence(Duration::from_millis(200)).await;
    // The next publish is pushed and its ACK recorded; the NACK stays for diagnosis.
    server.xds.publish(only_meta(full_set(3)));
    let v3 = s.recv().await;
    s.ack(&v3, &[]).await;
    let status = wait_status(&server.xds, "n", |s| {
        s.types[CLUSTER].last_acked_version.as_deref() == Some("3")
    })
    .await;
    assert!(status.types[CLUSTER].last_nack.is_some());
}

#[tokio::test]
async fn publish_pushes_within_100ms() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    let v1 = s.recv().await;
    s.ack(&v1, &[]).await;
    wait_status(&server.xds, "n", |s| {
        s.types[CLUSTER].last_acked_version.is_some()
    })
    .await;
    let started = Instant::now();
    let version = server.xds.publish(only_meta(full_set(2)));
    let pushed = s.recv().await;
    let took = started.elapsed();
    assert_eq!(pushed.version_info, version);
    assert_eq!(version, "2");
    assert_ne!(pushed.nonce, v1.nonce);
    assert!(took < Duration::from_millis(100), "push took {took:?}");
}

#[tokio::test]
async fn unchanged_types_are_not_repushed() {
    let server = start().await;
    let base = full_set(1);
    server.xds.publish(only_meta(base.clone()));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    let cds = s.recv().await;
    s.subscribe(LISTENER, &[]).await;
    let lds = s.recv().await;
    s.subscribe(ROUTE, &["r1"]).await;
    let rds = s.recv().await;
    s.ack(&cds, &[]).await;
    s.ack(&lds, &[]).await;
    s.ack(&rds, &["r1"]).await;

    // Identical content under a new version: nothing is sent.
    assert_eq!(server.xds.publish(only_meta(base.clone())), "2");
    s.expect_silence(Duration::from_millis(200)).await;

    // Only a cluster and an unsubscribed route change: only CDS is pushed.
    let mut changed = base.clone();
    changed.insert(CLUSTER, "c2".into(), cluster("c2", 99));
    changed.insert(ROUTE, "r2".into(), route("r2", 99));
    assert_eq!(server.xds.publish(only_meta(changed)), "3");
    let pushed = s.recv().await;
    assert_eq!(
        (pushed.type_url.as_str(), pushed.version_info.as_str()),
        (CLUSTER, "3")
    );
    s.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn push_order_is_cds_eds_lds_rds() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    // Subscribe in the "wrong" order.
    for (t, n) in [
        (ROUTE, &["r1"][..]),
        (LISTENER, &[]),
        (ENDPOINT, &["e1"]),
        (CLUSTER, &[]),
    ] {
        s.subscribe(t, n).await;
        let r = s.recv().await;
        s.ack(&r, n).await;
    }
    server.xds.publish(only_meta(full_set(2)));
    let mut order = Vec::new();
    for _ in 0..4 {
        let r = s.recv().await;
        assert_eq!(r.version_info, "2");
        order.push(r.type_url);
    }
    assert_eq!(order, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
}

#[tokio::test]
async fn stale_nonce_is_ignored() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    s.subscribe(ROUTE, &["r1"]).await;
    let v1 = s.recv().await;
    // No ACK yet; a new version is pushed with a new nonce.
    server.xds.publish(only_meta(full_set(2)));
    let v2 = s.recv().await;
    assert_eq!(v2.version_info, "2");
    // A NACK and a subscription change carrying the old nonce are both ignored.
    s.nack(&v1, "", "late complaint").await;
    s.ack(&v1, &["r1", "r2"]).await;
    s.expect_silence(Duration::from_millis(200)).await;
    let status = wait_status(&server.xds, "n", |_| true).await;
    let rds = &status.types[ROUTE];
    assert!(rds.last_nack.is_none(), "{rds:?}");
    assert!(rds.last_acked_version.is_none());
    assert_eq!(rds.subscribed, ["r1"]);
    // The current nonce is honoured, including its subscription change.
    s.ack(&v2, &["r1", "r2"]).await;
    let v2b = s.recv().await;
    assert_eq!(names(&v2b), ["r1", "r2"]);
    let status = wait_status(&server.xds, "n", |s| {
        s.types[ROUTE].last_acked_version.is_some()
    })
    .await;
    assert_eq!(status.types[ROUTE].last_acked_version.as_deref(), Some("2"));
}

#[tokio::test]
async fn flavours_get_their_own_sets() {
    let server = start().await;
    let mut meta = ResourceSet::default();
    meta.insert(CLUSTER, "meta-c".into(), cluster("meta-c", 1));
    let mut envoy = ResourceSet::default();
    envoy.insert(CLUSTER, "envoy-c".into(), cluster("envoy-c", 1));
    server.xds.publish(BTreeMap::from([
        (Flavor::MetaProxy, meta),
        (Flavor::Envoy, envoy),
    ]));
    let mut e = Sotw::open(channel(server.addr).await, node("e", "envoy")).await;
    let mut m = Sotw::open(channel(server.addr).await, node("m", "meta-proxy")).await;
    e.subscribe(CLUSTER, &[]).await;
    m.subscribe(CLUSTER, &[]).await;
    assert_eq!(names(&e.recv().await), ["envoy-c"]);
    assert_eq!(names(&m.recv().await), ["meta-c"]);
    assert_eq!(
        wait_status(&server.xds, "e", |_| true).await.flavor,
        Flavor::Envoy
    );
    assert_eq!(
        wait_status(&server.xds, "m", |_| true).await.flavor,
        Flavor::MetaProxy
    );

    // A flavour missing from a publish is served empty: its wildcard CDS becomes empty.
    let mut meta = ResourceSet::default();
    meta.insert(CLUSTER, "meta-c".into(), cluster("meta-c", 1));
    server.xds.publish(only_meta(meta));
    let emptied = e.recv().await;
    assert!(emptied.resources.is_empty());
    m.expect_silence(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn requests_before_first_publish_are_answered_after_it() {
    let server = start().await;
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    s.expect_silence(Duration::from_millis(150)).await;
    assert_eq!(server.xds.version(), None);
    server.xds.publish(only_meta(ResourceSet::default()));
    let r = s.recv().await;
    assert_eq!(r.version_info, "1");
    assert!(
        r.resources.is_empty(),
        "an empty CDS answer still completes Envoy's init"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    // No node on the first request.
    let mut s = Sotw::open(channel(server.addr).await, node("n", "x")).await;
    s.tx.send(DiscoveryRequest {
        type_url: CLUSTER.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = tokio::time::timeout(WAIT, s.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node"), "{err}");
    // No type URL.
    let mut s = Sotw::open(channel(server.addr).await, node("n", "x")).await;
    s.subscribe("", &[]).await;
    let err = tokio::time::timeout(WAIT, s.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("type_url"), "{err}");
}

#[tokio::test]
async fn closed_stream_leaves_status() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut s = Sotw::open(channel(server.addr).await, node("gone", "meta-proxy")).await;
    s.subscribe(CLUSTER, &[]).await;
    s.recv().await;
    assert_eq!(server.xds.status().len(), 1);
    drop(s);
    let deadline = Instant::now() + WAIT;
    while !server.xds.status().is_empty() {
        assert!(
            Instant::now() < deadline,
            "status not cleaned: {:?}",
            server.xds.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_all_get_the_push() {
    const STREAMS: usize = 200;
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(server.addr).await);
    }
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(STREAMS);
    for i in 0..STREAMS {
        let ch = channels[i % channels.len()].clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sotw::open(ch, node(&format!("n{i}"), "meta-proxy")).await;
            s.subscribe(CLUSTER, &[]).await;
            let first = s.recv().await;
            assert_eq!(first.version_info, "1");
            s.ack(&first, &[]).await;
            ready.send(()).await.unwrap();
            let pushed = s.recv().await;
            assert_eq!(pushed.version_info, "2");
            assert_eq!(names(&pushed), ["c1", "c2"]);
        }));
    }
    for n in 0..STREAMS {
        if tokio::time::timeout(WAIT * 2, ready_rx.recv())
            .await
            .is_err()
        {
            panic!(
                "only {n} streams ready; status has {}",
                server.xds.status().len()
            );
        }
    }
    assert_eq!(server.xds.status().len(), STREAMS);
    server.xds.publish(only_meta(full_set(2)));
    for task in tasks {
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_push_carries_only_the_changed_routes_and_endpoints() {
    let server = start().await;
    let base = full_set(1);
    server.xds.publish(only_meta(base.clone()));
    let mut s = Sotw::open(channel(server.addr).await, node("n", "meta-proxy")).await;
    for (t, n) in [
        (CLUSTER, &[][..]),
        (ENDPOINT, &["e1", "e2"]),
        (LISTENER, &[]),
        (ROUTE, &["r1", "r2"]),
    ] {
        s.subscribe(t, n).await;
        let r = s.recv().await;
        assert_eq!(r.resources.len(), 2, "{t}");
        s.ack(&r, n).await;
    }
    // One route and one cluster change: RDS carries only r2, CDS (state of the world) both.
    let mut changed = base.clone();
    changed.insert(ROUTE, "r2".into(), route("r2", 99));
    changed.insert(CLUSTER, "c1".into(), cluster("c1", 99));
    assert_eq!(server.xds.publish(only_meta(changed.clone())), "2");
    let cds = s.recv().await;
    assert_eq!(
        (cds.type_url.as_str(), names(&cds)),
        (CLUSTER, vec!["c1".into(), "c2".into()])
    );
    s.ack(&cds, &[]).await;
    let rds = s.recv().await;
    assert_eq!(
        (rds.type_url.as_str(), rds.version_info.as_str()),
        (ROUTE, "2")
    );
    assert_eq!(names(&rds), ["r2"]);
    assert_eq!(rds.resources[0].value, route("r2", 99).value);
    s.ack(&rds, &["r1", "r2"]).await;
    s.expect_silence(Duration::from_millis(200)).await;
    let status = wait_status(&server.xds, "n", |st| {
        st.types[ROUTE].last_acked_version.as_deref() == Some("2")
    })
    .await;
    assert_eq!(status.types[ROUTE].subscribed, ["r1", "r2"]);

    // A removed route cannot be expressed in a SotW RDS push: nothing is sent. A changed
    // subscription is answered in full.
    let mut removed = changed.clone();
    removed.by_type.get_mut(ROUTE).unwrap().remove("r1");
    assert_eq!(server.xds.publish(only_meta(removed)), "3");
    s.expect_silence(Duration::from_millis(200)).await;
    s.ack(&rds, &["r2", "r3"]).await;
    let full = s.recv().await;
    assert_eq!(
        (full.version_info.as_str(), names(&full)),
        ("3", vec!["r2".into()])
    );
}
