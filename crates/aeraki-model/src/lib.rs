//! The resolved mesh view: the contract between the config side of the control plane
//! (`aeraki-config`, which parses and validates Istio/Aeraki YAML and resolves references)
//! and the translation side (`aeraki-translate`, which turns this view into xDS resources).
//!
//! Everything here is already validated and resolved: hosts are FQDNs, DestinationRules are
//! joined to their services, WorkloadEntries and EndpointSlices are expanded into endpoints,
//! MetaRouters are attached to the service whose `hosts[0]` they name, and the protocol of
//! each port is decided. Translation never has to look anything up by name again, and never
//! fails on user input (anything it could not honour was refused earlier with a field path).
//!
//! The view is plain data (serde-serialisable for golden tests and `aeraki render`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The whole mesh as translation sees it. Services are sorted by (host, port) so that
/// translation output is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeshView {
    /// One entry per (service host, port) that speaks a protocol we manage, plus the plain
    /// gRPC/TCP ports that MetaRouters name as their rate-limit service (clusters only).
    pub services: Vec<ServiceView>,
    /// Mesh-wide settings (access log etc.).
    pub mesh: MeshSettings,
}

/// Mesh-wide settings, as Istio's MeshConfig carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeshSettings {
    /// Access log path for proxies (`accessLogFile`), if any.
    pub access_log_file: Option<String>,
}

/// One port of one service (a ServiceEntry host, or a Kubernetes Service).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// Fully qualified host name (`hosts[0]` of the ServiceEntry).
    pub host: String,
    /// Namespace of the object that declared the service.
    pub namespace: String,
    /// `namespace/name` of the declaring object, for messages and status.
    pub source: String,
    /// The service port.
    pub port: u16,
    /// The port name as written (e.g. `tcp-metaprotocol-dubbo`).
    pub port_name: String,
    /// Protocol decided from the port name.
    pub protocol: Protocol,
    /// Addresses (VIPs) clients use for this service; one outbound listener per address.
    /// Empty means no outbound listener (as Aeraki: no VIP, no listener).
    pub addresses: Vec<String>,
    /// How endpoint addresses are resolved.
    pub resolution: Resolution,
    /// All endpoints of the service for this port (port overrides already applied).
    pub endpoints: Vec<EndpointView>,
    /// Traffic policy of the DestinationRule's top level (port-level settings for this port
    /// already merged in), if a DestinationRule exists.
    pub traffic_policy: Option<TrafficPolicy>,
    /// DestinationRule subsets, in declaration order.
    pub subsets: Vec<SubsetView>,
    /// The MetaRouter attached to this host, if any (only meaningful for MetaProtocol ports).
    pub router: Option<RouterView>,
}

/// Protocol of a service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protocol {
    /// `tcp-metaprotocol-<app>[-…]`: served by the MetaProtocol proxy with this codec.
    MetaProtocol {
        /// Application protocol token (`dubbo`, `thrift`, `brpc`…).
        application: String,
        /// Codec name from the ApplicationProtocol registry
        /// (`aeraki.meta_protocol.codec.dubbo`…).
        codec: String,
    },
    /// `tcp-dubbo`: Envoy's native dubbo_proxy (Aeraki's native plugin).
    Dubbo,
    /// `tcp-thrift`: Envoy's native thrift_proxy.
    Thrift,
    /// `tcp-redis`: parsed now, translated in a later issue.
    Redis,
    /// A plain TCP port (`tcp` / `tcp-*`), in the view only because a MetaRouter's
    /// `globalRateLimit.rateLimitService` names its cluster: clusters only, no listener.
    Tcp,
    /// A gRPC port (`grpc` / `grpc-*`), in the view only because a MetaRouter's
    /// `globalRateLimit.rateLimitService` names its cluster: clusters only (HTTP/2 upstream),
    /// no listener.
    Grpc,
}

/// Endpoint resolution, as ServiceEntry `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Endpoint addresses are IPs (STATIC / EDS).
    Static,
    /// Endpoint addresses (or the host itself when there are no endpoints) are DNS names.
    Dns,
    /// `NONE`: no load balancing by us; the original destination is used.
    None,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointView {
    /// IP address or DNS name.
    pub address: String,
    /// Port to connect to (the ServiceEntry endpoint's `ports[<port name>]`, or the target
    /// port, or the service port).
    pub port: u16,
    /// Endpoint labels (used to select subsets).
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (≥ 1; 1 when unset).
    pub weight: u32,
    /// Locality `region/zone/subzone`, empty when unset.
    pub locality: String,
}

/// A DestinationRule subset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubsetView {
    /// Subset name (a DNS-1123 label).
    pub name: String,
    /// Labels an endpoint must all carry to belong to the subset.
    pub labels: BTreeMap<String, String>,
    /// The subset's own traffic policy, already merged over the top-level one (Istio's rule:
    /// a subset policy overrides the top-level policy field by field).
    pub traffic_policy: Option<TrafficPolicy>,
}

/// DestinationRule traffic policy (the parts a proxy applies to a cluster).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancer>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `loadBalancer.localityLbSetting` when enabled (and outlier detection is set: Istio
    /// applies locality failover only then).
    pub locality: Option<LocalityLb>,
}

/// `loadBalancer.localityLbSetting` (enabled): the proxy orders endpoints by locality
/// (same region/zone/sub-zone first), client-side from its own `node.locality`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LocalityLb {
    /// `failover[]` as (from region, to region): a proxy in `from` prefers `to` after its own
    /// region, before any other region.
    pub failover: Vec<(String, String)>,
}

/// `trafficPolicy.loadBalancer`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadBalancer {
    /// `simple`.
    Simple(SimpleLb),
    /// `consistentHash`: hash on the metadata key named by `httpHeaderName` (Aeraki's
    /// convention: for MetaProtocol the "header" is a metadata key such as `method`).
    ConsistentHash {
        /// Metadata key to hash on.
        key: String,
        /// `ringHash` (or the deprecated `minimumRingSize`) vs `maglev`.
        algorithm: HashAlgorithm,
    },
}

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    RoundRobin,
    LeastRequest,
    Random,
    Passthrough,
}

/// Consistent-hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HashAlgorithm {
    RingHash { minimum_ring_size: u64 },
    Maglev { table_size: u64 },
}

/// `trafficPolicy.connectionPool` (tcp + http settings, as Istio names them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`.
    pub max_connections: Option<u32>,
    /// `tcp.connectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`.
    pub max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`.
    pub max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection`.
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxRetries`.
    pub max_retries: Option<u32>,
    /// `tcp.idleTimeout` / `http.idleTimeout`.
    pub idle_timeout: Option<Duration>,
}

/// `trafficPolicy.outlierDetection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (or the deprecated `consecutiveErrors`): for MetaProtocol, any
    /// error response counts.
    pub consecutive_errors: Option<u32>,
    /// `consecutiveGatewayErrors`: connect failures, resets, timeouts.
    pub consecutive_gateway_errors: Option<u32>,
    /// `consecutiveLocalOriginFailures`.
    pub consecutive_local_origin_failures: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub min_health_percent: Option<u32>,
}

/// A MetaRouter, validated and attached to its service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterView {
    /// `namespace/name` of the MetaRouter.
    pub source: String,
    /// Routes in order; the first match wins.
    pub routes: Vec<RouteView>,
    pub local_rate_limit: Option<LocalRateLimit>,
    pub global_rate_limit: Option<GlobalRateLimit>,
}

/// One MetaRoute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteView {
    /// Route name (may be empty in the YAML; translation then uses the index).
    pub name: String,
    /// Attribute conditions, all of which must hold; sorted by attribute name so output is
    /// deterministic. Empty matches everything.
    pub matches: Vec<AttributeMatch>,
    /// Weighted destinations (≥ 1). With one destination the weight is 100.
    pub destinations: Vec<DestinationView>,
    /// Mirror destination, with the percentage of requests mirrored (default 100).
    pub mirror: Option<MirrorView>,
    /// Key/values written into requests.
    pub request_mutation: Vec<(String, String)>,
    /// Key/values written into responses.
    pub response_mutation: Vec<(String, String)>,
    /// Whole-request timeout including retries; `Some(ZERO)` disables it, `None` leaves the
    /// proxy's default (15 s, Envoy's route default).
    pub timeout: Option<Duration>,
    /// Retry policy (absent, or `attempts: 0`, means no retries).
    pub retries: Option<RetryPolicy>,
    /// Fault injection.
    pub fault: Option<Fault>,
}

/// MetaRoute `retries`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first try (≥ 1; `attempts: 0` leaves `retries` unset).
    pub attempts: u32,
    /// Timeout of each try, if set (> 0).
    pub per_try_timeout: Option<Duration>,
    /// Validated retryOn tokens, comma-joined (`connect-failure,reset,status:SERVER_TIMEOUT`).
    pub retry_on: String,
}

/// MetaRoute `fault`: at least one of delay and abort.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    /// Delay (> 0).
    pub fixed_delay: Duration,
    /// Share of requests delayed, in [0, 100] (default 100).
    pub percentage: f64,
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    /// Share of requests aborted, in [0, 100] (default 100).
    pub percentage: f64,
    pub error_code: AbortCode,
}

/// `fault.abort.errorCode`: the kind of protocol-native error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortCode {
    Unspecified,
    OverLimit,
    Timeout,
    UpstreamReset,
    RouteNotFound,
    BadRequest,
}

impl AbortCode {
    /// Every code with its YAML name.
    pub const ALL: [(AbortCode, &'static str); 6] = [
        (AbortCode::Unspecified, "UNSPECIFIED"),
        (AbortCode::OverLimit, "OVER_LIMIT"),
        (AbortCode::Timeout, "TIMEOUT"),
        (AbortCode::UpstreamReset, "UPSTREAM_RESET"),
        (AbortCode::RouteNotFound, "ROUTE_NOT_FOUND"),
        (AbortCode::BadRequest, "BAD_REQUEST"),
    ];

    /// The HTTP status that carries this kind in `HTTPFault.abort.http_status` (xDS contract).
    pub fn http_status(self) -> u32 {
        match self {
            AbortCode::Unspecified => 503,
            AbortCode::OverLimit => 429,
            AbortCode::Timeout => 504,
            AbortCode::UpstreamReset => 502,
            AbortCode::RouteNotFound => 404,
            AbortCode::BadRequest => 400,
        }
    }
}

/// One attribute condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeMatch {
    pub attribute: String,
    pub kind: StringMatchKind,
}

/// MetaRouter `StringMatch` (an empty one, or regex `*`, means "present").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum StringMatchKind {
    Exact(String),
    Prefix(String),
    Regex(String),
    Present,
}

/// A weighted destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationView {
    pub host: String,
    pub subset: Option<String>,
    /// `port.number`; `None` means the service port.
    pub port: Option<u16>,
    pub weight: u32,
}

/// Mirror target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorView {
    pub destination: DestinationView,
    /// Percentage in (0, 100].
    pub percentage: f64,
}

/// MetaRouter `localRateLimit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalRateLimit {
    pub token_bucket: Option<TokenBucket>,
    pub conditions: Vec<RateLimitCondition>,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
}

/// A conditional bucket: applies to requests matching all `matches`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitCondition {
    pub matches: Vec<AttributeMatch>,
    pub token_bucket: TokenBucket,
}

/// MetaRouter `globalRateLimit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlobalRateLimit {
    pub matches: Vec<AttributeMatch>,
    pub domain: String,
    /// RLS call timeout; `None` leaves the proxy's default (20 ms).
    pub request_timeout: Option<Duration>,
    pub deny_on_fail: bool,
    /// Envoy cluster name of the rate-limit service.
    pub rate_limit_service: String,
    /// (property, descriptor_key) pairs.
    pub descriptors: Vec<(String, String)>,
}

/// Aeraki's cluster name: `outbound|<port>|<subset>|<host>`.
pub fn outbound_cluster_name(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// Parses `outbound|<port>|<subset>|<host>` into (port, subset, host); `None` for any other
/// name (an empty host or a port that is not a number).
pub fn parse_outbound_cluster_name(name: &str) -> Option<(u16, Option<&str>, &str)> {
    let mut parts = name.split('|');
    let (Some("outbound"), Some(port), Some(subset), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((port, (!subset.is_empty()).then_some(subset), host))
}

/// Aeraki's route-config name and stat-prefix base: `<host>_<port>`.
pub fn route_config_name(host: &str, port: u16) -> String {
    format!("{host}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_aeraki() {
        assert_eq!(
            outbound_cluster_name(20880, Some("v1"), "a.b.svc.cluster.local"),
            "outbound|20880|v1|a.b.svc.cluster.local"
        );
        assert_eq!(
            outbound_cluster_name(9090, None, "t.x"),
            "outbound|9090||t.x"
        );
        assert_eq!(route_config_name("t.x", 9090), "t.x_9090");
        assert_eq!(
            parse_outbound_cluster_name("outbound|8081||rls.x"),
            Some((8081, None, "rls.x"))
        );
        assert_eq!(
            parse_outbound_cluster_name("outbound|1|v1|h"),
            Some((1, Some("v1"), "h"))
        );
        for bad in [
            "rls",
            "outbound|x||h",
            "outbound|1||",
            "inbound|1||h",
            "outbound|1||h|x",
        ] {
            assert_eq!(parse_outbound_cluster_name(bad), None, "{bad}");
        }
    }
}

/// xDS resources as the control plane serves them: the output of translation and the input of
/// the xDS server, independent of both.
pub mod resources {
    use std::collections::BTreeMap;

    /// Envoy v3 type URLs.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

    /// Which kind of proxy a node is; each kind gets its own translation of the same mesh.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Flavor {
        /// Our meta-proxy: MetaProtocol listeners, routes over RDS (Aeraki's tunnelled
        /// HTTP RouteConfiguration), EDS clusters.
        MetaProxy,
        /// Stock Envoy (`node.user_agent_name == "envoy"`): native dubbo_proxy/thrift_proxy.
        Envoy,
    }

    /// Resources of every type, keyed by type URL then by resource name (sorted, so output
    /// and versions are deterministic).
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct ResourceSet {
        pub by_type: BTreeMap<String, BTreeMap<String, prost_types::Any>>,
    }

    impl ResourceSet {
        /// Adds (or replaces) one resource.
        pub fn insert(&mut self, type_url: &str, name: String, body: prost_types::Any) {
            self.by_type
                .entry(type_url.to_owned())
                .or_default()
                .insert(name, body);
        }

        /// Resources of one type (empty when none).
        pub fn of_type(
            &self,
            type_url: &str,
        ) -> impl Iterator<Item = (&String, &prost_types::Any)> {
            self.by_type.get(type_url).into_iter().flatten()
        }
    }
}
