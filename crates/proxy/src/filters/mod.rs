//! Built-in L7 filters and the factory that builds a listener's chain from its
//! [`meta_config::FilterConfig`]s.
//!
//! - [`local_ratelimit`]: token buckets in the proxy (lock-free, refilled lazily).
//! - [`ratelimit`]: a check against an Envoy RLS v3 service through a [`RateLimitClient`] the
//!   binary provides (the engine has no gRPC): the filter picks an endpoint of the RLS cluster
//!   with the cluster's balancer, the client owns the connections.
//!
//! A chain is rebuilt when the listener's filter configs change (LDS); a filter whose config is
//! unchanged is kept, so token buckets keep their state across LDS and RDS updates.

pub mod local_ratelimit;
pub mod ratelimit;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use meta_config::FilterConfig;

use crate::Engine;
use crate::filter::Filter;

/// One RLS descriptor: ordered `(key, value)` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDescriptor {
    /// Entries in order.
    pub entries: Vec<(String, String)>,
}

/// One `ShouldRateLimit` call.
#[derive(Debug, Clone)]
pub struct RateLimitRequest {
    /// The RLS endpoint picked from the cluster.
    pub endpoint: SocketAddr,
    /// Name of the RLS cluster (for logs and errors).
    pub cluster: String,
    /// RLS domain.
    pub domain: String,
    /// Descriptors (never empty).
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Deadline of the call (the filter also enforces it).
    pub timeout: Duration,
}

/// The service's overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitDecision {
    /// Under the limits (or no limit applies).
    Ok,
    /// At least one descriptor is over its limit.
    OverLimit,
}

/// A failed check (transport error, gRPC error, unknown answer); the filter applies its
/// failure mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RateLimitError(pub String);

/// What a [`RateLimitClient`] returns.
pub type RateLimitFuture =
    Pin<Box<dyn Future<Output = Result<RateLimitDecision, RateLimitError>> + Send>>;

/// An Envoy RLS v3 client (`ShouldRateLimit`), provided by whoever builds the engine.
pub trait RateLimitClient: Send + Sync {
    /// Asks `request.endpoint` whether the request described by `request.descriptors` is over
    /// a limit of `request.domain`.
    fn should_rate_limit(&self, request: RateLimitRequest) -> RateLimitFuture;
}

/// Services the engine's filters use, supplied by the binary
/// ([`Engine::start_with_extensions`]).
#[derive(Clone, Default)]
pub struct Extensions {
    /// RLS client for `aeraki.meta_protocol.filters.ratelimit`; without one every check fails
    /// (and the filter's failure mode decides).
    pub rate_limit_client: Option<Arc<dyn RateLimitClient>>,
}

/// A listener's current filter configs and the chain built from them.
pub(crate) type PreviousChain<'a> = (&'a [FilterConfig], &'a [Arc<dyn Filter>]);

impl Engine {
    /// The filters before the router for listener `listener`, from `configs` (the router entry
    /// is skipped). `previous`: the listener's current configs and chain; a filter whose config
    /// is unchanged is reused with its state.
    pub(crate) fn build_filters(
        &self,
        listener: &str,
        configs: &[FilterConfig],
        previous: Option<PreviousChain<'_>>,
    ) -> Vec<Arc<dyn Filter>> {
        let mut reusable: Vec<(serde_json::Value, Arc<dyn Filter>)> = match previous {
            Some((old_configs, old_chain)) => {
                let old: Vec<&FilterConfig> = old_configs
                    .iter()
                    .filter(|c| !matches!(c, FilterConfig::Router))
                    .collect();
                // A chain set by hand (`set_filters`) does not follow the config: no reuse.
                if old.len() == old_chain.len() {
                    old.into_iter()
                        .zip(old_chain.iter().cloned())
                        .filter_map(|(c, f)| serde_json::to_value(c).ok().map(|v| (v, f)))
                        .collect()
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        };
        let mut chain = Vec::new();
        for config in configs {
            let key = serde_json::to_value(config).ok();
            if let Some(i) = reusable.iter().position(|(v, _)| Some(v) == key.as_ref()) {
                chain.push(reusable.swap_remove(i).1);
                continue;
            }
            chain.extend(self.build_filter(listener, config));
        }
        chain
    }

    /// One filter; `None` for the router (the fixed terminal step, not a [`Filter`]).
    fn build_filter(&self, listener: &str, config: &FilterConfig) -> Option<Arc<dyn Filter>> {
        Some(match config {
            FilterConfig::LocalRateLimit(c) => {
                Arc::new(local_ratelimit::LocalRateLimitFilter::new(
                    c,
                    self.metrics.local_rate_limit(listener, &c.stat_prefix),
                ))
            }
            FilterConfig::RateLimit(c) => Arc::new(ratelimit::GlobalRateLimitFilter::new(
                c.clone(),
                self.clusters.clone(),
                self.extensions.rate_limit_client.clone(),
                self.metrics.global_rate_limit(listener, &c.domain),
            )),
            FilterConfig::Router => return None,
        })
    }
}
