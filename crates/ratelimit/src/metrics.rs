//! Prometheus metrics of the rate-limit service, and an axum router serving them.
//!
//! - `ratelimit_requests_total{domain,descriptor,result}`: one per descriptor checked;
//!   `result` is `ok`, `over_limit`, `shadow` (over the limit in shadow mode, answered OK),
//!   `unlimited` or `no_limit` (no configured limit matched; `descriptor` is empty).
//! - `ratelimit_hits_total{domain,descriptor}`: hits added (`hits_addend`) to counters.
//! - `ratelimit_unknown_domain_total{domain}`: requests for a domain not in the config.
//! - `ratelimit_backend_errors_total{backend}`: requests answered UNAVAILABLE.
//! - `ratelimit_backend_duration_seconds{backend}`: latency of the counter round trip.
//!
//! `descriptor` is the config node's path (`production.method_sayHello`); with
//! `detailed_metric: true` it is the request's own entries (`production.user_alice`).

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DescriptorLabels {
    pub domain: String,
    pub descriptor: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HitLabels {
    pub domain: String,
    pub descriptor: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DomainLabels {
    pub domain: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendLabels {
    pub backend: &'static str,
}

/// The service's metrics; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    registry: Registry,
    pub requests: Family<DescriptorLabels, Counter>,
    pub hits: Family<HitLabels, Counter>,
    pub unknown_domain: Family<DomainLabels, Counter>,
    pub backend_errors: Family<BackendLabels, Counter>,
    pub backend_duration: Family<BackendLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<DescriptorLabels, Counter>::default();
        let hits = Family::<HitLabels, Counter>::default();
        let unknown_domain = Family::<DomainLabels, Counter>::default();
        let backend_errors = Family::<BackendLabels, Counter>::default();
        let backend_duration = Family::<BackendLabels, Histogram>::new_with_constructor(
            (|| Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]))
                as fn() -> Histogram,
        );
        registry.register(
            "ratelimit_requests",
            "Descriptors checked, by result",
            requests.clone(),
        );
        registry.register(
            "ratelimit_hits",
            "Hits added to rate-limit counters",
            hits.clone(),
        );
        registry.register(
            "ratelimit_unknown_domain",
            "Requests for a domain not in the configuration",
            unknown_domain.clone(),
        );
        registry.register(
            "ratelimit_backend_errors",
            "Requests answered UNAVAILABLE because the counter backend failed",
            backend_errors.clone(),
        );
        registry.register(
            "ratelimit_backend_duration_seconds",
            "Latency of one request's counter round trip",
            backend_duration.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                hits,
                unknown_domain,
                backend_errors,
                backend_duration,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            tracing::warn!("cannot encode the rate-limit metrics");
        }
        out
    }

    /// Counter value of `ratelimit_requests_total` for one label set (for tests).
    pub fn requests(&self, domain: &str, descriptor: &str, result: &'static str) -> u64 {
        let labels = DescriptorLabels {
            domain: domain.into(),
            descriptor: descriptor.into(),
            result,
        };
        self.inner.requests.get_or_create(&labels).get()
    }
}

/// A router serving `GET /metrics`, for the binary to mount on its admin listener. A client
/// whose `Accept` names OpenMetrics gets OpenMetrics 1.0; any other gets the classic text
/// format 0.0.4 (as meta-proxy's admin server does).
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let text = metrics.encode();
            async move {
                let openmetrics = headers
                    .get_all(ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| {
                        v.to_ascii_lowercase()
                            .contains("application/openmetrics-text")
                    });
                if openmetrics {
                    ([(CONTENT_TYPE, meta_admin::OPENMETRICS_CONTENT_TYPE)], text).into_response()
                } else {
                    let text = meta_admin::openmetrics_to_prometheus(&text);
                    (
                        [(CONTENT_TYPE, meta_admin::PROMETHEUS_TEXT_CONTENT_TYPE)],
                        text,
                    )
                        .into_response()
                }
            }
        }),
    )
}
