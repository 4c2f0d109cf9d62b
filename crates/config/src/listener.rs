//! Bootstrap, admin and listeners.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::{Cluster, MetadataMatcher, RouteConfig};

/// A whole static configuration: what `meta-proxy --config FILE` runs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Bootstrap {
    /// Node id from the bootstrap (`node.id`), if any.
    pub node_id: Option<String>,
    /// Where this proxy runs (`node.locality`), if set: orders endpoints of locality-aware
    /// clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_locality: Option<crate::Locality>,
    /// Admin server, if configured.
    pub admin: Option<Admin>,
    /// Listeners, each running one MetaProtocol proxy.
    pub listeners: Vec<Listener>,
    /// Upstream clusters.
    pub clusters: Vec<Cluster>,
    /// The bootstrap's `dynamic_resources` (ADS), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xds: Option<XdsConfig>,
}

/// Where and how meta-proxy fetches its dynamic configuration (Envoy `dynamic_resources` with
/// an `ads_config`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct XdsConfig {
    /// `node.id` sent to the control plane.
    pub node_id: String,
    /// `node.cluster` sent to the control plane.
    pub node_cluster: String,
    /// `node.metadata` as JSON text (a `google.protobuf.Struct`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_metadata: Option<String>,
    /// `node.locality` sent to the control plane, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_locality: Option<crate::Locality>,
    /// The static cluster (of [`Bootstrap::clusters`]) whose endpoints are the control plane.
    pub server_cluster: String,
    /// Subscribe to listeners (`lds_config` is `ads{}`).
    pub lds: bool,
    /// Subscribe to clusters (`cds_config` is `ads{}`).
    pub cds: bool,
}

/// The admin HTTP server.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    /// Where it listens.
    pub address: SocketAddr,
    /// Envoy's (deprecated but honoured) `admin.access_log_path`: one line per admin request.
    pub access_log_path: Option<String>,
}

/// A listening socket and the MetaProtocol proxy that serves its connections.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    /// Listener name (unique).
    pub name: String,
    /// Bound address.
    pub address: SocketAddr,
    /// The proxy configuration.
    pub proxy: MetaProtocolProxy,
}

/// The `aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy` network filter, validated.
#[derive(Debug, Clone, Serialize)]
pub struct MetaProtocolProxy {
    /// Prefix of the proxy's statistics (metric label `stat_prefix`).
    pub stat_prefix: String,
    /// Application protocol name, e.g. `dubbo` (from `protocol.name` or the deprecated
    /// `application_protocol`).
    pub protocol: String,
    /// Codec name, e.g. `aeraki.meta_protocol.codec.dubbo`.
    pub codec: String,
    /// Routes (static `route_config`, or the last one received over RDS).
    pub route_config: RouteConfig,
    /// `rds.route_config_name` when the routes come from RDS (over ADS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds: Option<String>,
    /// Filter chain in order; the last one is always [`FilterConfig::Router`].
    pub filters: Vec<FilterConfig>,
    /// Close downstream connections idle for this long.
    pub idle_timeout: Option<Duration>,
    /// Largest message accepted in either direction, in bytes.
    pub max_message_size: usize,
}

/// One entry of the filter chain.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "name")]
pub enum FilterConfig {
    /// `aeraki.meta_protocol.filters.local_ratelimit`: token buckets in the proxy.
    #[serde(rename = "aeraki.meta_protocol.filters.local_ratelimit")]
    LocalRateLimit(LocalRateLimit),
    /// `aeraki.meta_protocol.filters.ratelimit`: a check against an Envoy RLS v3 service.
    #[serde(rename = "aeraki.meta_protocol.filters.ratelimit")]
    RateLimit(GlobalRateLimit),
    /// `aeraki.meta_protocol.filters.router`: the terminal filter that forwards upstream.
    #[serde(rename = "aeraki.meta_protocol.filters.router")]
    Router,
}

/// Default timeout of a global rate-limit check (Aeraki's proto: "default 20ms").
pub const DEFAULT_RATE_LIMIT_TIMEOUT: Duration = Duration::from_millis(20);

/// Smallest token bucket `fill_interval` accepted (Aeraki's limit).
pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// Envoy's `TokenBucket`: `tokens_per_fill` tokens are added every `fill_interval`, up to
/// `max_tokens`; the bucket starts full.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TokenBucket {
    /// Capacity (> 0).
    pub max_tokens: u32,
    /// Tokens added per interval (> 0; default 1).
    pub tokens_per_fill: u32,
    /// Refill period (>= [`MIN_FILL_INTERVAL`]).
    pub fill_interval: Duration,
}

/// The local (token bucket) rate-limit filter.
#[derive(Debug, Clone, Serialize)]
pub struct LocalRateLimit {
    /// Metric label `stat_prefix` (Aeraki puts the service host here).
    pub stat_prefix: String,
    /// Bucket for requests that match no condition; `None`: those are allowed.
    pub token_bucket: Option<TokenBucket>,
    /// Conditions in order: the first whose matchers all hold takes a token from its own bucket.
    pub conditions: Vec<LocalRateLimitCondition>,
}

/// One condition of [`LocalRateLimit`].
#[derive(Debug, Clone, Serialize)]
pub struct LocalRateLimitCondition {
    /// All must hold (Envoy `HeaderMatcher` on metadata); empty matches every request.
    pub matchers: Vec<MetadataMatcher>,
    /// The condition's own bucket.
    pub token_bucket: TokenBucket,
}

/// The global rate-limit filter: an Envoy RLS v3 client.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalRateLimit {
    /// Requests checked (all must hold); empty: every request is checked.
    pub matchers: Vec<MetadataMatcher>,
    /// RLS domain.
    pub domain: String,
    /// Deadline of one check (default [`DEFAULT_RATE_LIMIT_TIMEOUT`]).
    pub timeout: Duration,
    /// On an RLS error or timeout: `true` rejects the request, `false` lets it through.
    pub failure_mode_deny: bool,
    /// Cluster of the rate-limit service
    /// (`rate_limit_service.grpc_service.envoy_grpc.cluster_name`); it may appear later.
    pub cluster: String,
    /// One single-entry RLS descriptor each: `{descriptor_key: metadata[property]}`.
    pub descriptors: Vec<RateLimitDescriptor>,
}

/// A descriptor of [`GlobalRateLimit`].
#[derive(Debug, Clone, Serialize)]
pub struct RateLimitDescriptor {
    /// Request metadata key whose value is sent.
    pub property: String,
    /// Descriptor entry key sent to the service.
    pub descriptor_key: String,
}
