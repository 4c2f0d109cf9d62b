//! Aeraki's plain RDS service (RouteDiscoveryService) over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;

use aeraki_model::resources::{CLUSTER, Flavor, ROUTE, ResourceSet};
use aeraki_xds::StreamKind;
use common::*;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

fn publish_two_flavours(server: &TestServer, tag: u32) {
    let mut meta = ResourceSet::default();
    meta.insert(
        ROUTE,
        "dubbo.svc_20880".into(),
        route("dubbo.svc_20880", tag),
    );
    meta.insert(
        ROUTE,
        "thrift.svc_9090".into(),
        route("thrift.svc_9090", tag),
    );
    let mut envoy = ResourceSet::default();
    envoy.insert(ROUTE, "envoy-only".into(), route("envoy-only", tag));
    server.xds.publish(BTreeMap::from([
        (Flavor::MetaProxy, meta),
        (Flavor::Envoy, envoy),
    ]));
}

async fn open(
    server: &TestServer,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let (tx, rx) = mpsc::channel(8);
    let mut client = RouteDiscoveryServiceClient::new(channel(server.addr).await);
    let stream = client
        .stream_routes(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

async fn next(rx: &mut Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(WAIT, rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn stream_routes_serves_meta_proxy_routes_by_name() {
    let server = start().await;
    publish_two_flavours(&server, 1);
    let (tx, mut rx) = open(&server).await;
    // Even a node calling itself "envoy" gets the MetaProxy routes here; the type URL may be
    // left empty on this single-type service.
    tx.send(DiscoveryRequest {
        node: Some(node("mp", "envoy")),
        resource_names: vec!["dubbo.svc_20880".into(), "envoy-only".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let r = next(&mut rx).await;
    assert_eq!(r.type_url, ROUTE);
    assert_eq!(names(&r), ["dubbo.svc_20880"]);
    tx.send(DiscoveryRequest {
        type_url: ROUTE.into(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        resource_names: vec!["dubbo.svc_20880".into(), "envoy-only".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let st = wait_status(&server.xds, "mp", |s| {
        s.types
            .get(ROUTE)
            .is_some_and(|t| t.last_acked_version.is_some())
    })
    .await;
    assert_eq!(st.kind, StreamKind::RdsSotw);
    assert_eq!(st.flavor, Flavor::MetaProxy);
    // A change is pushed.
    publish_two_flavours(&server, 2);
    let r2 = next(&mut rx).await;
    assert_eq!(r2.version_info, "2");
    assert_eq!(names(&r2), ["dubbo.svc_20880"]);
}

#[tokio::test]
async fn stream_routes_refuses_other_types() {
    let server = start().await;
    publish_two_flavours(&server, 1);
    let (tx, mut rx) = open(&server).await;
    tx.send(DiscoveryRequest {
        node: Some(node("mp", "meta-proxy")),
        type_url: CLUSTER.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = tokio::time::timeout(WAIT, rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("type_url"), "{err}");
}

#[tokio::test]
async fn delta_routes_and_fetch_routes() {
    let server = start().await;
    publish_two_flavours(&server, 1);
    let mut client = RouteDiscoveryServiceClient::new(channel(server.addr).await);
    let (tx, rx) = mpsc::channel(8);
    let mut stream: Streaming<DeltaDiscoveryResponse> = client
        .delta_routes(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(DeltaDiscoveryRequest {
        node: Some(node("d", "meta-proxy")),
        type_url: ROUTE.into(),
        resource_names_subscribe: vec!["thrift.svc_9090".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let r = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.resources[0].name, "thrift.svc_9090");

    let fetched = client
        .fetch_routes(DiscoveryRequest {
            resource_names: vec!["thrift.svc_9090".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.version_info, "1");
    assert_eq!(names(&fetched), ["thrift.svc_9090"]);
    let all = client
        .fetch_routes(DiscoveryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&all), ["dubbo.svc_20880", "thrift.svc_9090"]);
}
