//! Shared test helpers: a server on 127.0.0.1:0, tonic clients from envoy-types, resources.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER, ROUTE, ResourceSet};
use aeraki_xds::{ProxyStatus, XdsServer};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub xds: XdsServer,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn start() -> TestServer {
    let xds = XdsServer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = xds.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    });
    tokio::spawn(serve);
    TestServer {
        xds,
        addr,
        _stop: stop,
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub fn node(id: &str, user_agent: &str) -> Node {
    Node {
        id: id.to_owned(),
        cluster: format!("{id}-cluster"),
        user_agent_name: user_agent.to_owned(),
        ..Default::default()
    }
}

pub fn any_of(type_url: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: message.encode_to_vec(),
    }
}

/// A cluster whose content varies with `timeout_s`.
pub fn cluster(name: &str, timeout_s: i64) -> prost_types::Any {
    any_of(
        CLUSTER,
        &Cluster {
            name: name.to_owned(),
            connect_timeout: Some(PbDuration {
                seconds: timeout_s,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
}

pub fn listener(name: &str, stat: &str) -> prost_types::Any {
    any_of(
        LISTENER,
        &Listener {
            name: name.to_owned(),
            stat_prefix: stat.to_owned(),
            ..Default::default()
        },
    )
}

pub fn route(name: &str, vhosts_tag: u32) -> prost_types::Any {
    any_of(
        ROUTE,
        &RouteConfiguration {
            name: name.to_owned(),
            max_direct_response_body_size_bytes: Some(
                envoy_types::pb::google::protobuf::UInt32Value { value: vhosts_tag },
            ),
            ..Default::default()
        },
    )
}

pub fn endpoint(name: &str) -> prost_types::Any {
    any_of(
        ENDPOINT,
        &ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            ..Default::default()
        },
    )
}

/// A set with clusters c1,c2, listeners l1,l2, routes r1,r2, endpoints e1,e2; `tag` varies
/// the content of every resource.
pub fn full_set(tag: i64) -> ResourceSet {
    let mut set = ResourceSet::default();
    for n in ["c1", "c2"] {
        set.insert(CLUSTER, n.into(), cluster(n, tag));
    }
    for n in ["l1", "l2"] {
        set.insert(LISTENER, n.into(), listener(n, &format!("s{tag}")));
    }
    for n in ["r1", "r2"] {
        set.insert(ROUTE, n.into(), route(n, tag as u32));
    }
    for n in ["e1", "e2"] {
        set.insert(ENDPOINT, n.into(), endpoint(&format!("{n}-{tag}")));
    }
    set
}

pub fn only_meta(set: ResourceSet) -> BTreeMap<Flavor, ResourceSet> {
    BTreeMap::from([(Flavor::MetaProxy, set)])
}

/// Decoded resource names of a response, in order.
pub fn names(response: &DiscoveryResponse) -> Vec<String> {
    response.resources.iter().map(resource_name).collect()
}

pub fn resource_name(any: &envoy_types::pb::google::protobuf::Any) -> String {
    match any.type_url.as_str() {
        CLUSTER => Cluster::decode(any.value.as_slice()).unwrap().name,
        LISTENER => Listener::decode(any.value.as_slice()).unwrap().name,
        ROUTE => {
            RouteConfiguration::decode(any.value.as_slice())
                .unwrap()
                .name
        }
        ENDPOINT => {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .unwrap()
                .cluster_name
        }
        other => panic!("unexpected type {other}"),
    }
}

/// One SotW ADS stream.
pub struct Sotw {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    pub rx: Streaming<DiscoveryResponse>,
    pub node: Node,
    sent_node: bool,
}

impl Sotw {
    pub async fn open(channel: Channel, node: Node) -> Sotw {
        let (tx, requests) = mpsc::channel(64);
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Sotw {
            tx,
            rx,
            node,
            sent_node: false,
        }
    }

    pub async fn send(&mut self, mut request: DiscoveryRequest) {
        if !self.sent_node {
            request.node = Some(self.node.clone());
            self.sent_node = true;
        }
        self.tx.send(request).await.unwrap();
    }

    /// Initial request for a type.
    pub async fn subscribe(&mut self, type_url: &str, names: &[&str]) {
        self.send(DiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        })
        .await;
    }

    pub async fn ack(&mut self, response: &DiscoveryResponse, names: &[&str]) {
        self.send(DiscoveryRequest {
            type_url: response.type_url.clone(),
            version_info: response.version_info.clone(),
            response_nonce: response.nonce.clone(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        })
        .await;
    }

    pub async fn nack(&mut self, response: &DiscoveryResponse, accepted_version: &str, why: &str) {
        self.send(DiscoveryRequest {
            type_url: response.type_url.clone(),
            version_info: accepted_version.to_owned(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                code: 3,
                message: why.to_owned(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("timed out waiting for a response")
            .unwrap()
            .expect("stream closed")
    }

    /// Asserts nothing arrives within `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(message) = tokio::time::timeout(quiet, self.rx.message()).await {
            panic!("expected no response, got {message:?}");
        }
    }
}

/// One delta ADS stream.
pub struct Delta {
    pub tx: mpsc::Sender<DeltaDiscoveryRequest>,
    pub rx: Streaming<DeltaDiscoveryResponse>,
    pub node: Node,
    sent_node: bool,
}

impl Delta {
    pub async fn open(channel: Channel, node: Node) -> Delta {
        let (tx, requests) = mpsc::channel(64);
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Delta {
            tx,
            rx,
            node,
            sent_node: false,
        }
    }

    pub async fn send(&mut self, mut request: DeltaDiscoveryRequest) {
        if !self.sent_node {
            request.node = Some(self.node.clone());
            self.sent_node = true;
        }
        self.tx.send(request).await.unwrap();
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("timed out waiting for a delta response")
            .unwrap()
            .expect("stream closed")
    }

    pub async fn ack(&mut self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(message) = tokio::time::timeout(quiet, self.rx.message()).await {
            panic!("expected no delta response, got {message:?}");
        }
    }
}

/// Polls the server's status until `check` holds for the stream of `node_id`.
pub async fn wait_status(
    xds: &XdsServer,
    node_id: &str,
    check: impl Fn(&ProxyStatus) -> bool,
) -> ProxyStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = xds.status().into_iter().find(|s| s.node_id == node_id)
            && check(&status)
        {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status of {node_id} never satisfied the check: {:#?}",
            xds.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
