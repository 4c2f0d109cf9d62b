//! networking.istio.io ServiceEntry, DestinationRule, VirtualService, WorkloadEntry
//! (v1alpha3, v1beta1 and v1 share one schema).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::lenient;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<SePort>,
    /// MESH_EXTERNAL / MESH_INTERNAL: only affects mTLS and telemetry in Istio.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Identities for mTLS: no effect without mTLS.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SePort {
    #[serde(default, deserialize_with = "lenient::i64_")]
    pub number: i64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub target_port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A WorkloadEntry spec (also the shape of a ServiceEntry endpoint).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub ports: BTreeMap<String, Value>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Multi-network routing: refused when set (see validation).
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub weight: Option<i64>,
    /// Identity for mTLS: no effect without mTLS.
    #[serde(default)]
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub export_to: Vec<String>,
    #[serde(default)]
    pub workload_selector: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    #[serde(default)]
    pub tunnel: Option<Value>,
    #[serde(default)]
    pub proxy_protocol: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    #[serde(default)]
    pub port: Option<PortSelector>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    #[serde(default, deserialize_with = "lenient::i64_")]
    pub number: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default)]
    pub simple: Option<String>,
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHash>,
    #[serde(default)]
    pub locality_lb_setting: Option<LocalityLbSetting>,
    #[serde(default)]
    pub warmup_duration_secs: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLbSetting {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    #[serde(default)]
    pub failover_priority: Option<Value>,
    #[serde(default)]
    pub distribute: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    #[serde(default)]
    pub http_header_name: Option<String>,
    #[serde(default)]
    pub http_cookie: Option<Value>,
    #[serde(default)]
    pub use_source_ip: Option<Value>,
    #[serde(default)]
    pub http_query_parameter_name: Option<Value>,
    #[serde(default)]
    pub ring_hash: Option<RingHash>,
    #[serde(default)]
    pub maglev: Option<Maglev>,
    /// Deprecated alias of `ringHash.minimumRingSize`.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub minimum_ring_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub minimum_ring_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maglev {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub table_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_connections: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub tcp_keepalive: Option<Value>,
    #[serde(default)]
    pub max_connection_duration: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub http1_max_pending_requests: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub http2_max_requests: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_requests_per_connection: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_retries: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// HTTP-only settings: meaningless for the protocols we serve (Istio ignores them for
    /// TCP services too), accepted.
    #[serde(default)]
    pub h2_upgrade_policy: Option<Value>,
    #[serde(default)]
    pub use_client_protocol: Option<Value>,
    #[serde(default)]
    pub max_concurrent_streams: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub consecutive_errors: Option<i64>,
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        deserialize_with = "lenient::opt_i64"
    )]
    pub consecutive_5xx_errors: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub consecutive_gateway_errors: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub consecutive_local_origin_failures: Option<i64>,
    #[serde(default)]
    pub split_external_local_origin_errors: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub base_ejection_time: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_ejection_percent: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub min_health_percent: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub client_certificate: Option<Value>,
    #[serde(default)]
    pub private_key: Option<Value>,
    #[serde(default)]
    pub ca_certificates: Option<Value>,
    #[serde(default)]
    pub credential_name: Option<Value>,
    #[serde(default)]
    pub subject_alt_names: Option<Value>,
    #[serde(default)]
    pub sni: Option<Value>,
    #[serde(default)]
    pub insecure_skip_verify: Option<Value>,
}

/// VirtualService: Aeraki ignores it for MetaProtocol ports; we validate its outline and
/// keep the routes opaque (see docs/control-plane-config.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub http: Vec<Value>,
    #[serde(default)]
    pub tcp: Vec<Value>,
    #[serde(default)]
    pub tls: Vec<Value>,
    #[serde(default)]
    pub export_to: Vec<String>,
}
