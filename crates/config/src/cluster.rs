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
}
