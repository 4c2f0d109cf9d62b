//! Upstream clusters and their endpoints.

use std::time::Duration;

use serde::Serialize;

/// A named group of upstream endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Cluster name (unique), as routes refer to it.
    pub name: String,
    /// How endpoints are found.
    pub discovery: DiscoveryType,
    /// Time allowed to establish an upstream connection.
    pub connect_timeout: Duration,
    /// How an endpoint is picked per request.
    pub lb_policy: LbPolicy,
    /// Endpoints (for STRICT_DNS: host names resolved periodically).
    pub endpoints: Vec<Endpoint>,
    /// How often STRICT_DNS names are re-resolved.
    pub dns_refresh_rate: Duration,
    /// EDS service name (`eds_cluster_config.service_name`, else the cluster name) of an EDS
    /// cluster; its endpoints are those of the last ClusterLoadAssignment received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eds_service_name: Option<String>,
    /// Circuit-breaker thresholds (priority DEFAULT).
    pub circuit_breakers: CircuitBreakers,
    /// Outlier detection; `None`: no endpoint is ever ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// `common_lb_config.healthy_panic_threshold` in percent: below this share of healthy
    /// endpoints every endpoint is used (0 disables panic mode).
    pub healthy_panic_threshold: f64,
    /// Locality-aware priorities (`common_lb_config.zone_aware_lb_config` plus the failover
    /// list in `metadata.filter_metadata["aeraki.locality"]`); `None`: endpoint priorities
    /// are used as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_lb: Option<LocalityLb>,
    /// Requests (two-way and one-way) an upstream connection carries over its lifetime; after
    /// the last one it takes no new request, delivers the responses still owed and closes
    /// (`HttpProtocolOptions.common_http_protocol_options.max_requests_per_connection`).
    /// `None`: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// An upstream connection with nothing in flight and no traffic for this long is closed
    /// (`common_http_protocol_options.idle_timeout`, or `TcpProtocolOptions.idle_timeout`).
    /// `None`: never (set to 0 in the config). Default [`Cluster::DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Option<Duration>,
}

/// Locality-aware load balancing: the proxy gives each endpoint a priority from its own
/// locality (`node.locality`): 0 same region, zone and sub-zone; 1 same region and zone;
/// 2 same region; then the failover regions in order; then every other endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LocalityLb {
    /// (from region, to region): a proxy in `from` prefers `to` after its own region.
    pub failover: Vec<(String, String)>,
}

/// Where an endpoint or the proxy runs (`envoy.config.core.v3.Locality`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl Cluster {
    /// Envoy's default `healthy_panic_threshold` (50%).
    pub const DEFAULT_HEALTHY_PANIC_THRESHOLD: f64 = 50.0;
    /// Upstream idle timeout when the config sets none: 60 s (meta-proxy's long-standing
    /// value; Envoy's are 1 h for HTTP and 10 min for TCP pools, needlessly long for
    /// connections that many clients share).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// A STATIC, round-robin cluster of `endpoints` with every other setting at its default
    /// (Envoy's circuit breakers and panic threshold, our idle timeout), except a 1 s connect
    /// timeout. What embedders and tests start from; a bootstrap goes through `meta-api`.
    pub fn fixed(name: &str, endpoints: impl IntoIterator<Item = Endpoint>) -> Cluster {
        Cluster {
            name: name.to_owned(),
            discovery: DiscoveryType::Static,
            connect_timeout: Duration::from_secs(1),
            lb_policy: LbPolicy::RoundRobin,
            endpoints: endpoints.into_iter().collect(),
            dns_refresh_rate: Duration::from_secs(5),
            eds_service_name: None,
            circuit_breakers: CircuitBreakers::default(),
            outlier_detection: None,
            healthy_panic_threshold: Self::DEFAULT_HEALTHY_PANIC_THRESHOLD,
            locality_lb: None,
            max_requests_per_connection: None,
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
        }
    }
}

/// Circuit-breaker thresholds of a cluster (`circuit_breakers.thresholds`, priority DEFAULT).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakers {
    /// Upstream connections of the cluster (all endpoints, all listeners).
    pub max_connections: u32,
    /// Requests waiting for an upstream connection to be ready.
    pub max_pending_requests: u32,
    /// Requests in flight to the cluster.
    pub max_requests: u32,
    /// Retries in flight to the cluster (when no `retry_budget`).
    pub max_retries: u32,
    /// A retry budget; replaces `max_retries` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

impl Default for CircuitBreakers {
    /// Envoy's defaults: 1024 connections, pending and requests, 3 retries.
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
        }
    }
}

/// Active retries allowed: `max(min_retry_concurrency, budget_percent × active requests)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryBudget {
    /// Percent of active requests that may be retries (Envoy's default 20).
    pub budget_percent: f64,
    /// Retries always allowed concurrently (Envoy's default 3).
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            budget_percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

/// Outlier detection (Envoy's `outlier_detection`, consecutive-error detectors only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// Consecutive error responses or gateway/local errors before ejection (0 disables).
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (refused, connect failure, reset, timeout) before ejection.
    pub consecutive_gateway_failure: u32,
    /// Consecutive locally originated errors (connect failure, reset, timeout) before
    /// ejection; only with `split_external_local_origin_errors`.
    pub consecutive_local_origin_failure: u32,
    /// Percent chance that a `consecutive_5xx` detection ejects (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// Percent chance that a `consecutive_gateway_failure` detection ejects (default 0).
    pub enforcing_consecutive_gateway_failure: u32,
    /// Percent chance that a `consecutive_local_origin_failure` detection ejects (default 100).
    pub enforcing_consecutive_local_origin_failure: u32,
    /// Count locally originated errors apart from the upstream's own errors.
    pub split_external_local_origin_errors: bool,
    /// How often ejections are reconsidered (default 10 s).
    pub interval: std::time::Duration,
    /// Ejection time, multiplied by the number of times an endpoint was ejected (default 30 s).
    pub base_ejection_time: std::time::Duration,
    /// Cap of the ejection time (default 300 s).
    pub max_ejection_time: std::time::Duration,
    /// Most endpoints ejected at once, in percent (default 10; one is always allowed).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    /// Envoy's defaults.
    fn default() -> Self {
        use std::time::Duration;
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Envoy cluster discovery types we honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscoveryType {
    /// Endpoints are IP addresses given in the config.
    Static,
    /// Endpoints are names resolved with DNS; every resolved address is an endpoint.
    StrictDns,
    /// Endpoints (IP addresses) come from EDS over ADS.
    Eds,
}

/// Load-balancing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// Uniform random among healthy endpoints.
    Random,
    /// Power of `choice_count` choices: the endpoint with the fewest active requests (relative
    /// to its weight) among `choice_count` weighted random picks.
    LeastRequest {
        /// Random picks compared per request (Envoy's default 2).
        choice_count: u32,
    },
    /// Ketama-style consistent-hash ring on the route's hash keys (xxHash64); weights give
    /// proportionally many virtual nodes. No hash key on a request: weighted random.
    RingHash {
        /// Minimum virtual nodes on the ring (Envoy's default 1024).
        minimum_ring_size: u64,
        /// Maximum virtual nodes on the ring (Envoy's default and cap 8M).
        maximum_ring_size: u64,
    },
    /// Maglev lookup table on the route's hash keys; weights give proportionally many
    /// entries. No hash key on a request: weighted random.
    Maglev {
        /// Lookup table size, a prime (Envoy's default 65537).
        table_size: u64,
    },
}

impl LbPolicy {
    /// Envoy's default `least_request_lb_config.choice_count`.
    pub const DEFAULT_CHOICE_COUNT: u32 = 2;
    /// Envoy's default `ring_hash_lb_config.minimum_ring_size`.
    pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
    /// Envoy's default (and largest allowed) `ring_hash_lb_config.maximum_ring_size`.
    pub const DEFAULT_MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
    /// Envoy's default `maglev_lb_config.table_size`.
    pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// IP address (STATIC) or DNS name (STRICT_DNS).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
    /// Priority level of its locality group (0 highest); traffic fails over to the next level
    /// when a level has no healthy endpoint. In a locality-aware cluster, computed from the
    /// proxy's and the endpoint's locality.
    pub priority: u32,
    /// The locality of its `LocalityLbEndpoints` group, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

impl Endpoint {
    /// An endpoint at `addr`, weight 1, priority 0, no locality.
    pub fn at(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            weight: 1,
            priority: 0,
            locality: None,
        }
    }
}
