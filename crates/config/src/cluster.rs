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
