//! A simulated meta-proxy: one SotW ADS stream on its own HTTP/2 connection, subscribing as
//! `meta-proxy`'s xDS client does (CDS and LDS wildcard, RDS and EDS by name) and ACKing every
//! response at once with the version, the nonce and the same names.
//!
//! The simulator is cheap on purpose, so that many fit next to the server: it decodes a
//! response only down to its version, nonce, type and the raw bytes of each resource, keeps
//! per type only the version, the nonce, the resource count and a hash of the resources, and
//! drops the bytes at once. It decodes one RouteConfiguration, the watched one, to check the
//! edit's weights ([`crate::has_edited_weights`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeraki_model::resources::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Largest response a client accepts (the full CDS of 10,000 services is tens of MB).
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// HTTP/2 stream and connection receive window of a simulated client.
const WINDOW: u32 = 256 * 1024;

/// What every client subscribes to and watches.
#[derive(Debug, Serialize, Deserialize)]
pub struct Subscription {
    pub rds: Vec<String>,
    pub eds: Vec<String>,
    /// The RouteConfiguration whose deliveries are reported.
    pub watched_route: String,
}

/// What clients tell the benchmark.
#[derive(Debug)]
pub enum Event {
    /// A response arrived (`kind`: 0 CDS, 1 EDS, 2 LDS, 3 RDS) and was ACKed.
    Response {
        client: usize,
        kind: usize,
        version: String,
        at: Instant,
        /// When the ACK was handed to the stream.
        acked: Instant,
        /// When this (RDS) response carried the watched RouteConfiguration: whether it has
        /// the edited weights.
        watched: Option<bool>,
    },
    /// The stream failed.
    Failed { client: usize, error: String },
}

/// Type URLs in push order, indexed by `kind`.
pub const TYPES: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// A DiscoveryResponse as the simulator reads it: resources as raw bytes.
#[derive(Clone, PartialEq, Message)]
struct LightResponse {
    #[prost(string, tag = "1")]
    version_info: String,
    #[prost(message, repeated, tag = "2")]
    resources: Vec<LightAny>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

#[derive(Clone, PartialEq, Message)]
struct LightAny {
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// What a client keeps of the last response of one type.
#[derive(Debug, Default, Clone)]
pub struct Held {
    pub version: String,
    pub nonce: String,
    pub count: usize,
    /// FNV-1a over every resource's length and first 32 bytes (cheap; enough to tell
    /// responses apart in a benchmark).
    pub hash: u64,
}

/// Runs client `id` until the server closes the stream or `events` is dropped.
pub async fn run(
    id: usize,
    server: SocketAddr,
    sub: Arc<Subscription>,
    events: mpsc::UnboundedSender<Event>,
) {
    if let Err(error) = stream(id, server, &sub, &events).await {
        let _ = events.send(Event::Failed { client: id, error });
    }
}

async fn stream(
    id: usize,
    server: SocketAddr,
    sub: &Subscription,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        // Small HTTP/2 windows: what the server may send ahead of the client's reading is
        // buffered in the client (hyper's defaults, 2 MiB per stream and 5 MiB per
        // connection, would be most of a simulated client's memory).
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (tx, rx) = mpsc::channel(16);
    let node = Node {
        id: format!("cp-bench-{id}"),
        cluster: "cp-bench".to_owned(),
        user_agent_name: "meta-proxy".to_owned(),
        ..Default::default()
    };
    for (i, type_url) in TYPES.iter().enumerate() {
        let request = DiscoveryRequest {
            node: (i == 0).then(|| node.clone()),
            type_url: (*type_url).to_owned(),
            resource_names: names_of(sub, type_url),
            ..Default::default()
        };
        tx.send(request)
            .await
            .map_err(|_| "request channel closed")?;
    }
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let codec = tonic_prost::ProstCodec::<DiscoveryRequest, LightResponse>::default();
    let mut inbound = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await
        .map_err(|s| format!("stream refused: {s}"))?
        .into_inner();
    let mut held: [Held; 4] = Default::default();
    loop {
        let response = match inbound.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(status) => return Err(format!("stream error: {status}")),
        };
        let at = Instant::now();
        let kind = TYPES
            .iter()
            .position(|t| *t == response.type_url)
            .ok_or_else(|| format!("unexpected type {}", response.type_url))?;
        let watched = (kind == 3)
            .then(|| watched(&response, &sub.watched_route))
            .flatten();
        held[kind] = Held {
            count: response.resources.len(),
            hash: hash(&response.resources),
            version: response.version_info,
            nonce: response.nonce,
        };
        drop(response.resources);
        let ack = DiscoveryRequest {
            version_info: held[kind].version.clone(),
            resource_names: names_of(sub, TYPES[kind]),
            type_url: response.type_url,
            response_nonce: held[kind].nonce.clone(),
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            return Ok(());
        }
        let event = Event::Response {
            client: id,
            kind,
            version: held[kind].version.clone(),
            at,
            acked: Instant::now(),
            watched,
        };
        if events.send(event).is_err() {
            return Ok(());
        }
    }
}

fn names_of(sub: &Subscription, type_url: &str) -> Vec<String> {
    match type_url {
        ROUTE => sub.rds.clone(),
        ENDPOINT => sub.eds.clone(),
        _ => Vec::new(),
    }
}

fn hash(resources: &[LightAny]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in resources {
        let len = (r.value.len() as u64).to_le_bytes();
        for byte in len.iter().chain(r.value.iter().take(32)) {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Whether the RDS response carries the RouteConfiguration `name`, and if so whether it has
/// the edited weights.
fn watched(response: &LightResponse, name: &str) -> Option<bool> {
    response
        .resources
        .iter()
        .find(|any| NameOnly::decode(any.value.as_ref()).is_ok_and(|n| n.name == name))
        .map(|any| crate::has_edited_weights(&any.value))
}
