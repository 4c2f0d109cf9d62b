//! `aeraki-ratelimit`: a global rate-limit service (the library behind `aeraki ratelimit`).
//!
//! It owns:
//! - [`Config`]: envoyproxy/ratelimit's YAML format (`domain`, nested `descriptors` with
//!   `key`, `value`, `rate_limit`, `shadow_mode`, `detailed_metric`), from a file, a directory
//!   of files, or a Kubernetes ConfigMap's `data`; every error names file and field path;
//!   matching follows the Go service ([`Config::lookup`]).
//! - [`Service`]: Envoy's RLS v3 gRPC API (`envoy.service.ratelimit.v3.RateLimitService/
//!   ShouldRateLimit`), fixed windows aligned to the unit, `hits_addend`, per-descriptor
//!   `hits_addend` and `limit` overrides, shadow mode; unknown domains are answered OK.
//! - [`backend`]: counters in memory ([`MemoryBackend`], one instance) or in Redis
//!   ([`RedisBackend`], shared by instances; failures become gRPC UNAVAILABLE within ~100 ms).
//! - [`metrics`]: Prometheus counters and [`metrics_router`] serving `GET /metrics`.
//!
//! Design notes and the YAML reference: `docs/ratelimit-service.md`.

pub mod backend;
pub mod config;
pub mod metrics;
mod service;

use std::future::Future;

use tokio::net::TcpListener;

pub use backend::{Backend, BackendError, MemoryBackend, RedisBackend, RedisOptions};
pub use config::{Config, ConfigError, ConfigErrors, Limit, Lookup, Unit};
pub use metrics::{Metrics, metrics_router};
pub use service::{Clock, Service, ServiceBuilder};

/// Serves the rate-limit gRPC API on `listener` until `shutdown` completes.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service.grpc_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves the rate-limit gRPC API on `listener` forever.
pub async fn serve(listener: TcpListener, service: Service) -> Result<(), tonic::transport::Error> {
    serve_with_shutdown(listener, service, std::future::pending()).await
}
