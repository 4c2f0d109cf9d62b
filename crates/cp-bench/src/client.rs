//! A simulated meta-proxy: one SotW ADS stream on its own HTTP/2 connection, subscribing as
//! `meta-proxy`'s xDS client does (CDS and LDS wildcard, RDS and EDS by name) and ACKing every
//! response at once with the version, the nonce and the same names.
//!
//! The simulator does not convert resources (that would measure the simulator); it reads only
//! the name of every RouteConfiguration (field 1) to report the one the benchmark watches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeraki_model::resources::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Largest response a client accepts (the full CDS of 10,000 services is tens of MB).
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// What every client subscribes to and watches.
#[derive(Debug)]
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
        /// The watched RouteConfiguration's bytes, when this (RDS) response carried it.
        watched: Option<Vec<u8>>,
    },
    /// The stream failed.
    Failed { client: usize, error: String },
}

/// Type URLs in push order, indexed by `kind`.
pub const TYPES: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

#[derive(Clone, PartialEq, Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
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
        .connect_timeout(Duration::from_secs(10))
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
        let names = names_of(sub, type_url);
        let request = DiscoveryRequest {
            node: (i == 0).then(|| node.clone()),
            type_url: (*type_url).to_owned(),
            resource_names: names,
            ..Default::default()
        };
        tx.send(request)
            .await
            .map_err(|_| "request channel closed")?;
    }
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut inbound = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("stream refused: {s}"))?
        .into_inner();
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
        let ack = DiscoveryRequest {
            version_info: response.version_info.clone(),
            resource_names: names_of(sub, &response.type_url),
            type_url: response.type_url,
            response_nonce: response.nonce,
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            return Ok(());
        }
        let event = Event::Response {
            client: id,
            kind,
            version: response.version_info,
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

/// The bytes of the RouteConfiguration named `name` in an RDS response.
fn watched(response: &DiscoveryResponse, name: &str) -> Option<Vec<u8>> {
    response
        .resources
        .iter()
        .find(|any| NameOnly::decode(any.value.as_slice()).is_ok_and(|n| n.name == name))
        .map(|any| any.value.clone())
}
