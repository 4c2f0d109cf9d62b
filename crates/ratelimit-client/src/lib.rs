//! `meta-ratelimit-client`: meta-proxy's client of Envoy's rate-limit service API
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, tonic + `envoy-types`),
//! implementing the engine's [`RateLimitClient`] so that the engine itself stays free of gRPC.
//!
//! The engine's global rate-limit filter picks an endpoint of the RLS cluster with the
//! cluster's own balancer (so EDS/DNS updates and least-request apply as for any cluster) and
//! hands it here; this client keeps one lazily connected HTTP/2 channel per endpoint address
//! and multiplexes every check of every listener on it. A call carries its deadline as
//! `grpc-timeout` (the filter enforces it too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor as PbDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{
    RateLimitRequest as PbRequest, RateLimitResponse,
};
use meta_proxy_engine::{
    RateLimitClient, RateLimitDecision, RateLimitError, RateLimitFuture, RateLimitRequest,
};
use tonic::transport::{Channel, Endpoint};

/// Channels kept at most; beyond that the map is cleared (endpoints that left their cluster
/// would otherwise accumulate).
const MAX_CHANNELS: usize = 256;

/// Connect timeout of an RLS channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A gRPC RLS v3 client with one HTTP/2 channel per endpoint.
#[derive(Default)]
pub struct GrpcRateLimitClient {
    channels: Mutex<HashMap<SocketAddr, Channel>>,
}

impl GrpcRateLimitClient {
    /// A client with no connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The channel to `addr`, created (not yet connected) on first use.
    fn channel(&self, addr: SocketAddr) -> Result<Channel, RateLimitError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(&addr) {
            return Ok(c.clone());
        }
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RateLimitError(format!("bad endpoint {addr}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy();
        channels.insert(addr, channel.clone());
        Ok(channel)
    }
}

/// The protobuf request for `r`.
pub fn to_proto(r: &RateLimitRequest) -> PbRequest {
    PbRequest {
        domain: r.domain.clone(),
        descriptors: r
            .descriptors
            .iter()
            .map(|d| PbDescriptor {
                entries: d
                    .entries
                    .iter()
                    .map(|(key, value)| Entry {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

/// The decision carried by a response's `overall_code`.
pub fn decision(response: &RateLimitResponse) -> Result<RateLimitDecision, RateLimitError> {
    match Code::try_from(response.overall_code) {
        Ok(Code::Ok) => Ok(RateLimitDecision::Ok),
        Ok(Code::OverLimit) => Ok(RateLimitDecision::OverLimit),
        _ => Err(RateLimitError(format!(
            "rate-limit service answered overall_code {}",
            response.overall_code
        ))),
    }
}

impl RateLimitClient for GrpcRateLimitClient {
    fn should_rate_limit(&self, request: RateLimitRequest) -> RateLimitFuture {
        let channel = self.channel(request.endpoint);
        Box::pin(async move {
            let mut client = RateLimitServiceClient::new(channel?);
            let mut call = tonic::Request::new(to_proto(&request));
            call.set_timeout(request.timeout);
            match client.should_rate_limit(call).await {
                Ok(response) => decision(response.get_ref()),
                Err(status) => Err(RateLimitError(format!(
                    "{} ({}): {:?}: {}",
                    request.cluster,
                    request.endpoint,
                    status.code(),
                    status.message()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use meta_proxy_engine::RateLimitDescriptor;

    use super::*;

    #[test]
    fn request_and_decisions_map_to_the_protocol() {
        let r = RateLimitRequest {
            endpoint: SocketAddr::from(([127, 0, 0, 1], 8081)),
            cluster: "rls".into(),
            domain: "production".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![("method".into(), "sayHello".into())],
            }],
            timeout: Duration::from_millis(20),
        };
        let pb = to_proto(&r);
        assert_eq!(pb.domain, "production");
        assert_eq!(pb.hits_addend, 0);
        assert_eq!(pb.descriptors.len(), 1);
        assert_eq!(
            (
                pb.descriptors[0].entries[0].key.as_str(),
                pb.descriptors[0].entries[0].value.as_str()
            ),
            ("method", "sayHello")
        );
        let answer = |code: Code| RateLimitResponse {
            overall_code: code as i32,
            ..Default::default()
        };
        assert_eq!(decision(&answer(Code::Ok)), Ok(RateLimitDecision::Ok));
        assert_eq!(
            decision(&answer(Code::OverLimit)),
            Ok(RateLimitDecision::OverLimit)
        );
        // UNKNOWN is not an answer: the filter's failure mode decides.
        assert!(decision(&answer(Code::Unknown)).is_err());
    }
}
