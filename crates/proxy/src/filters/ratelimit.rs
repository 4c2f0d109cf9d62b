//! `aeraki.meta_protocol.filters.ratelimit`: a check against an Envoy RLS v3 service.
//!
//! A request is checked when every matcher of `match` holds (an empty `match` checks every
//! request, as the proto says; Aeraki's C++ filter checks none). Each configured descriptor
//! becomes a one-entry RLS descriptor `{descriptor_key: metadata[property]}`; a descriptor
//! whose property is missing from the request is not sent, and a request left with no
//! descriptor passes unchecked (Envoy's rule for descriptors it cannot build).
//!
//! The check is asynchronous ([`FilterStatus::Wait`]) and bounded by `timeout`. OVER_LIMIT →
//! an `OverLimit` local reply; any failure (no such cluster, no endpoint, no client, transport
//! or gRPC error, timeout) → `failure_mode_deny` rejects with an `OverLimit` local reply,
//! otherwise the request goes on.

use std::sync::Arc;

use arc_swap::ArcSwap;
use meta_config::GlobalRateLimit;
use meta_protocol::{ErrorKind, LocalReply, ReadKeys};

use super::{
    RateLimitClient, RateLimitDecision, RateLimitDescriptor, RateLimitError, RateLimitRequest,
};
use crate::cluster::ClusterMap;
use crate::filter::{Filter, FilterStatus, RequestContext};
use crate::lb::LbContext;
use crate::metrics::GlobalRateLimitMetrics;

/// The global rate-limit filter of one listener.
pub struct GlobalRateLimitFilter {
    config: GlobalRateLimit,
    clusters: Arc<ArcSwap<ClusterMap>>,
    client: Option<Arc<dyn RateLimitClient>>,
    metrics: Arc<GlobalRateLimitMetrics>,
}

impl GlobalRateLimitFilter {
    /// A filter checking against the endpoints of `config.cluster` (looked up per request in
    /// `clusters`) through `client`.
    pub fn new(
        config: GlobalRateLimit,
        clusters: Arc<ArcSwap<ClusterMap>>,
        client: Option<Arc<dyn RateLimitClient>>,
        metrics: GlobalRateLimitMetrics,
    ) -> Self {
        Self {
            config,
            clusters,
            client,
            metrics: Arc::new(metrics),
        }
    }

    /// The descriptors for a request: one per configured descriptor whose property is present.
    pub fn descriptors(&self, meta: &meta_protocol::Metadata) -> Vec<RateLimitDescriptor> {
        self.config
            .descriptors
            .iter()
            .filter_map(|d| {
                meta.get(&d.property).map(|v| RateLimitDescriptor {
                    entries: vec![(d.descriptor_key.clone(), v.to_owned())],
                })
            })
            .collect()
    }
}

/// Turns the outcome of a check into the filter's decision, counting it.
fn decide(
    result: Result<RateLimitDecision, RateLimitError>,
    request_id: u64,
    deny_on_failure: bool,
    metrics: &GlobalRateLimitMetrics,
) -> FilterStatus {
    match result {
        Ok(RateLimitDecision::Ok) => {
            metrics.ok.inc();
            FilterStatus::Continue
        }
        Ok(RateLimitDecision::OverLimit) => {
            metrics.over_limit.inc();
            FilterStatus::LocalReply(LocalReply::new(
                ErrorKind::OverLimit,
                format!(
                    "meta protocol global ratelimit: request '{request_id}' has been rate limited"
                ),
            ))
        }
        Err(e) if deny_on_failure => {
            metrics.error.inc();
            tracing::debug!("rate-limit check failed, request {request_id} denied: {e}");
            FilterStatus::LocalReply(LocalReply::new(
                ErrorKind::OverLimit,
                format!(
                    "meta protocol global ratelimit: request '{request_id}' denied: \
                     rate-limit service failed ({e})"
                ),
            ))
        }
        Err(e) => {
            metrics.failure_mode_allowed.inc();
            tracing::debug!("rate-limit check failed, request {request_id} allowed: {e}");
            FilterStatus::Continue
        }
    }
}

impl Filter for GlobalRateLimitFilter {
    fn name(&self) -> &'static str {
        "aeraki.meta_protocol.filters.ratelimit"
    }

    /// The keys of its matchers and its descriptors' properties.
    fn request_keys(&self) -> ReadKeys {
        let matchers = self.config.matchers.iter().map(|m| &m.name);
        let properties = self.config.descriptors.iter().map(|d| &d.property);
        ReadKeys::only(matchers.chain(properties))
    }

    fn response_keys(&self) -> ReadKeys {
        ReadKeys::none()
    }

    fn on_request(&self, ctx: &mut RequestContext<'_>) -> FilterStatus {
        let meta = &*ctx.meta;
        if !self
            .config
            .matchers
            .iter()
            .all(|m| m.matches(meta.get(&m.name)))
        {
            return FilterStatus::Continue;
        }
        let descriptors = self.descriptors(meta);
        if descriptors.is_empty() {
            return FilterStatus::Continue;
        }
        let (id, deny) = (meta.request_id, self.config.failure_mode_deny);
        let cluster = self.clusters.load().get(&self.config.cluster).cloned();
        let Some(cluster) = cluster else {
            let e = RateLimitError(format!(
                "unknown rate-limit cluster '{}'",
                self.config.cluster
            ));
            return decide(Err(e), id, deny, &self.metrics);
        };
        let Some(picked) = cluster.pick(&LbContext::default()) else {
            let e = RateLimitError(format!(
                "no healthy endpoint in rate-limit cluster '{}'",
                self.config.cluster
            ));
            return decide(Err(e), id, deny, &self.metrics);
        };
        let Some(client) = self.client.clone() else {
            let e = RateLimitError("meta-proxy was built without a rate-limit client".into());
            return decide(Err(e), id, deny, &self.metrics);
        };
        let timeout = self.config.timeout;
        let call = client.should_rate_limit(RateLimitRequest {
            endpoint: picked.addr,
            cluster: self.config.cluster.clone(),
            domain: self.config.domain.clone(),
            descriptors,
            timeout,
        });
        let metrics = self.metrics.clone();
        FilterStatus::Wait(Box::pin(async move {
            // The endpoint counts as busy (least-request balancing) until the answer.
            let _picked = picked;
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(RateLimitError(format!(
                    "no answer within {}ms",
                    timeout.as_millis()
                ))),
            };
            decide(result, id, deny, &metrics)
        }))
    }
}

#[cfg(test)]
mod tests;
