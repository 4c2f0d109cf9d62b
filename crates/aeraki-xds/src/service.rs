//! The tonic services: ADS and Aeraki's RDS, each stream run by its own task.

use std::sync::Arc;

use aeraki_model::resources::{Flavor, ROUTE};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryService;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::status::StreamKind;
use crate::stream::{self, Conn};
use crate::{Shared, delta, sotw};

/// Responses queued per stream before the stream task waits for the client to read.
pub(crate) const QUEUE: usize = 16;

/// The ADS service (`envoy.service.discovery.v3.AggregatedDiscoveryService`).
#[derive(Debug)]
pub struct Ads(pub(crate) Arc<Shared>);

/// Aeraki's RDS service (`envoy.service.route.v3.RouteDiscoveryService`): route
/// configurations of the MetaProxy flavour, by name.
#[derive(Debug)]
pub struct Rds(pub(crate) Arc<Shared>);

type SotwStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

fn start_sotw(
    shared: &Arc<Shared>,
    kind: StreamKind,
    request: Request<Streaming<DiscoveryRequest>>,
) -> Response<SotwStream> {
    let conn = Conn::new(shared.clone(), kind, request.remote_addr());
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(stream::run::<sotw::Sotw>(conn, request.into_inner(), tx));
    // The generated service encodes messages itself: turn the pre-encoded responses back
    // into messages (the server's own `serve` uses `crate::grpc`, which sends them as they are).
    let messages = ReceiverStream::new(rx).map(|r| r.map(|out| out.to_message()));
    Response::new(Box::pin(messages))
}

fn start_delta(
    shared: &Arc<Shared>,
    kind: StreamKind,
    request: Request<Streaming<DeltaDiscoveryRequest>>,
) -> Response<DeltaStream> {
    let conn = Conn::new(shared.clone(), kind, request.remote_addr());
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(stream::run::<delta::Delta>(conn, request.into_inner(), tx));
    Response::new(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = SotwStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        Ok(start_sotw(&self.0, StreamKind::AdsSotw, request))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Ok(start_delta(&self.0, StreamKind::AdsDelta, request))
    }
}

#[tonic::async_trait]
impl RouteDiscoveryService for Rds {
    type StreamRoutesStream = SotwStream;
    type DeltaRoutesStream = DeltaStream;

    async fn stream_routes(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        Ok(start_sotw(&self.0, StreamKind::RdsSotw, request))
    }

    async fn delta_routes(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Ok(start_delta(&self.0, StreamKind::RdsDelta, request))
    }

    /// One-shot fetch: the named route configurations (all of them when no name is given)
    /// at the current version; `Unavailable` before the first publish.
    async fn fetch_routes(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        if !request.type_url.is_empty() && request.type_url != ROUTE {
            return Err(Status::invalid_argument(format!(
                "type_url: the route discovery service serves only {ROUTE}, not {}",
                request.type_url
            )));
        }
        let snapshot = self.0.snapshot.borrow().clone();
        if snapshot.version == 0 {
            return Err(Status::unavailable("no configuration published yet"));
        }
        let resources = match snapshot.resources(Flavor::MetaProxy, ROUTE) {
            None => Vec::new(),
            Some(all) if request.resource_names.is_empty() => {
                all.values().map(|e| e.any.clone()).collect()
            }
            Some(all) => request
                .resource_names
                .iter()
                .filter_map(|n| all.get(n))
                .map(|e| e.any.clone())
                .collect(),
        };
        Ok(Response::new(DiscoveryResponse {
            version_info: snapshot.version_string(),
            resources,
            type_url: ROUTE.to_owned(),
            nonce: self.0.next_nonce(),
            ..Default::default()
        }))
    }
}
