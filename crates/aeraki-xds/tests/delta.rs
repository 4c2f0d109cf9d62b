//! Delta ADS against in-process tonic clients over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aeraki_model::resources::{CLUSTER, ROUTE, ResourceSet};
use aeraki_xds::StreamKind;
use common::*;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

fn versions(r: &DeltaDiscoveryResponse) -> HashMap<String, String> {
    r.resources
        .iter()
        .map(|res| (res.name.clone(), res.version.clone()))
        .collect()
}

fn sorted_names(r: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut n: Vec<String> = r.resources.iter().map(|res| res.name.clone()).collect();
    n.sort();
    n
}

fn subscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn wildcard_then_initial_versions_skip_what_the_client_has() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut first = Delta::open(channel(server.addr).await, node("a", "meta-proxy")).await;
    first.send(subscribe(CLUSTER, &[])).await;
    let all = first.recv().await;
    assert_eq!(all.system_version_info, "1");
    assert_eq!(sorted_names(&all), ["c1", "c2"]);
    assert!(all.removed_resources.is_empty());
    let v = versions(&all);
    // The body is the resource itself, its version a content hash.
    let c1 = all.resources.iter().find(|r| r.name == "c1").unwrap();
    assert_eq!(resource_name(c1.resource.as_ref().unwrap()), "c1");
    assert_ne!(v["c1"], v["c2"]);

    // A reconnecting client that already has c1 (same version) and a stale "gone".
    let mut again = Delta::open(channel(server.addr).await, node("b", "meta-proxy")).await;
    let mut request = subscribe(CLUSTER, &["*"]);
    request.initial_resource_versions = HashMap::from([
        ("c1".to_string(), v["c1"].clone()),
        ("c2".to_string(), "outdated".to_string()),
        ("gone".to_string(), "x".to_string()),
    ]);
    again.send(request).await;
    let r = again.recv().await;
    assert_eq!(sorted_names(&r), ["c2"]);
    assert_eq!(versions(&r)["c2"], v["c2"]);
    assert_eq!(r.removed_resources, ["gone"]);
    let status = wait_status(&server.xds, "b", |_| true).await;
    assert_eq!(status.kind, StreamKind::AdsDelta);
    assert!(status.types[CLUSTER].wildcard);
}

#[tokio::test]
async fn first_request_is_answered_even_when_empty() {
    let server = start().await;
    server.xds.publish(only_meta(ResourceSet::default()));
    let mut d = Delta::open(channel(server.addr).await, node("a", "meta-proxy")).await;
    d.send(subscribe(CLUSTER, &[])).await;
    let r = d.recv().await;
    assert!(r.resources.is_empty() && r.removed_resources.is_empty());
    assert_eq!(r.type_url, CLUSTER);
    assert!(!r.nonce.is_empty());
}

#[tokio::test]
async fn removal_change_and_ack_nack() {
    let server = start().await;
    let base = full_set(1);
    server.xds.publish(only_meta(base.clone()));
    let mut d = Delta::open(channel(server.addr).await, node("a", "meta-proxy")).await;
    d.send(subscribe(CLUSTER, &[])).await;
    let r1 = d.recv().await;
    d.ack(&r1).await;
    let st = wait_status(&server.xds, "a", |s| {
        s.types[CLUSTER].last_acked_version.is_some()
    })
    .await;
    assert_eq!(st.types[CLUSTER].last_acked_version.as_deref(), Some("1"));

    // c2 deleted: only a removal is sent.
    let mut without = base.clone();
    without.by_type.get_mut(CLUSTER).unwrap().remove("c2");
    server.xds.publish(only_meta(without.clone()));
    let r2 = d.recv().await;
    assert_eq!(r2.system_version_info, "2");
    assert!(r2.resources.is_empty());
    assert_eq!(r2.removed_resources, ["c2"]);
    d.ack(&r2).await;

    // An unchanged publish sends nothing; a changed c1 sends only c1.
    server.xds.publish(only_meta(without.clone()));
    d.expect_silence(Duration::from_millis(200)).await;
    without.insert(CLUSTER, "c1".into(), cluster("c1", 42));
    server.xds.publish(only_meta(without));
    let r4 = d.recv().await;
    assert_eq!(sorted_names(&r4), ["c1"]);
    assert_eq!(r4.system_version_info, "4");
    d.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: r4.nonce.clone(),
        error_detail: Some(envoy_types::pb::google::rpc::Status {
            code: 3,
            message: "c1 rejected".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
    let st = wait_status(&server.xds, "a", |s| s.types[CLUSTER].last_nack.is_some()).await;
    let cds = &st.types[CLUSTER];
    assert_eq!(cds.last_nack.as_ref().unwrap().version, "4");
    assert_eq!(cds.last_nack.as_ref().unwrap().message, "c1 rejected");
    assert_eq!(cds.last_acked_version.as_deref(), Some("2"));
}

#[tokio::test]
async fn named_subscribe_and_unsubscribe() {
    let server = start().await;
    server.xds.publish(only_meta(full_set(1)));
    let mut d = Delta::open(channel(server.addr).await, node("a", "meta-proxy")).await;
    d.send(subscribe(ROUTE, &["r1"])).await;
    let r = d.recv().await;
    assert_eq!(sorted_names(&r), ["r1"]);
    d.ack(&r).await;
    // Subscribing more names sends only the new one.
    d.send(subscribe(ROUTE, &["r2", "nope"])).await;
    let r = d.recv().await;
    assert_eq!(sorted_names(&r), ["r2"]);
    d.ack(&r).await;
    // Unsubscribe r1 (with a stale nonce: the subscription change still counts).
    d.send(DeltaDiscoveryRequest {
        type_url: ROUTE.into(),
        resource_names_unsubscribe: vec!["r1".into()],
        response_nonce: "stale".into(),
        ..Default::default()
    })
    .await;
    d.expect_silence(Duration::from_millis(150)).await;
    let st = wait_status(&server.xds, "a", |s| s.types[ROUTE].subscribed.len() == 2).await;
    assert_eq!(st.types[ROUTE].subscribed, ["nope", "r2"]);
    // Both routes change: only r2 is sent.
    server.xds.publish(only_meta(full_set(2)));
    let r = d.recv().await;
    assert_eq!(sorted_names(&r), ["r2"]);
    assert!(r.removed_resources.is_empty());
    // Re-subscribing r1 sends it again (the client dropped it).
    d.send(subscribe(ROUTE, &["r1"])).await;
    let r = d.recv().await;
    assert_eq!(sorted_names(&r), ["r1"]);
}
