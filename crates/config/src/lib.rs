//! The validated, protobuf-free configuration model of meta-proxy.
//!
//! Everything the engine runs on is described here: listeners with their MetaProtocol proxy
//! (codec, filters, routes), clusters with endpoints, and where xDS comes from. Sources (a
//! bootstrap file, xDS) convert their protobuf messages into these types once, at the edge,
//! after validation; the engine never sees protobuf. Every type serialises to JSON for the admin `/config_dump`.
//!
//! This crate must not depend on protobuf, networking or the engine.

mod cluster;
mod listener;
mod policy;
mod route;

pub use cluster::{
    CircuitBreakers, Cluster, DiscoveryType, Endpoint, LbPolicy, Locality, LocalityLb,
    OutlierDetection, RetryBudget,
};
pub use listener::{
    Admin, Bootstrap, DEFAULT_RATE_LIMIT_TIMEOUT, FilterConfig, GlobalRateLimit, Listener,
    LocalRateLimit, LocalRateLimitCondition, MIN_FILL_INTERVAL, MetaProtocolProxy,
    RateLimitDescriptor, TokenBucket, XdsConfig,
};
pub use policy::{
    DEFAULT_HOST_SELECTION_MAX_ATTEMPTS, FaultAbort, FaultDelay, FaultError, FaultPolicy,
    PER_MILLION, RetryOn, RetryPolicy,
};
pub use route::{
    DEFAULT_ROUTE_TIMEOUT, Destination, MatchSpec, MetadataMatcher, MirrorPolicy, Pattern, Route,
    RouteConfig, StringMatch, StringMatchKind, WeightedCluster,
};

/// Name of the terminal router filter, as Aeraki writes it.
pub const ROUTER_FILTER: &str = "aeraki.meta_protocol.filters.router";
