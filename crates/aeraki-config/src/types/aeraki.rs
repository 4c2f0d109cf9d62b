//! Aeraki CRDs: metaprotocol.aeraki.io MetaRouter and ApplicationProtocol; redis.aeraki.io
//! RedisService and RedisDestination; dubbo.aeraki.io DubboAuthorizationPolicy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::lenient;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetaRouter {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub routes: Vec<MetaRoute>,
    #[serde(default)]
    pub local_rate_limit: Option<LocalRateLimit>,
    #[serde(default)]
    pub global_rate_limit: Option<GlobalRateLimit>,
    #[serde(default)]
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetaRoute {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "match")]
    pub match_: Option<MetaRouteMatch>,
    #[serde(default)]
    pub route: Vec<MetaRouteDestination>,
    #[serde(default)]
    pub mirror: Option<Destination>,
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    #[serde(default)]
    pub request_mutation: Vec<KeyValue>,
    #[serde(default)]
    pub response_mutation: Vec<KeyValue>,
    /// Our extension (Istio VirtualService style): whole-request timeout.
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub timeout: Option<Duration>,
    /// Our extension: retry policy.
    #[serde(default)]
    pub retries: Option<Retries>,
    /// Our extension: fault injection.
    #[serde(default)]
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub attempts: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub retry_on: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub fixed_delay: Option<Duration>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    #[serde(default)]
    pub percentage: Option<Percent>,
    #[serde(default)]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetaRouteMatch {
    /// `null` (written `method:` or `method: {}`) means "present".
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<StringMatch>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetaRouteDestination {
    #[serde(default)]
    pub destination: Option<Destination>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub subset: String,
    #[serde(default)]
    pub port: Option<crate::types::istio::PortSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRateLimit {
    #[serde(default)]
    pub token_bucket: Option<TokenBucket>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenBucket {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub tokens_per_fill: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub fill_interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default, rename = "match")]
    pub match_: Option<MetaRouteMatch>,
    #[serde(default)]
    pub token_bucket: Option<TokenBucket>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalRateLimit {
    #[serde(default, rename = "match")]
    pub match_: Option<MetaRouteMatch>,
    #[serde(default)]
    pub domain: String,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub deny_on_fail: bool,
    #[serde(default)]
    pub rate_limit_service: String,
    #[serde(default)]
    pub descriptors: Vec<Descriptor>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Descriptor {
    #[serde(default)]
    pub property: String,
    #[serde(default)]
    pub descriptor_key: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationProtocol {
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub codec: String,
}

// ---- redis.aeraki.io (parse and validate only) ----

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisService {
    #[serde(default)]
    pub host: Vec<String>,
    #[serde(default)]
    pub settings: Option<RedisSettings>,
    #[serde(default)]
    pub redis: Vec<RedisRoute>,
    #[serde(default)]
    pub faults: Vec<RedisFault>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSettings {
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub case_insensitive: bool,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub op_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub enable_command_stats: bool,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_buffer_size_before_flush: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub buffer_flush_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_upstream_unknown_connections: Option<i64>,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub enable_hashtagging: bool,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub enable_redirection: bool,
    #[serde(default)]
    pub read_policy: Option<String>,
    #[serde(default)]
    pub auth: Option<RedisAuth>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisRoute {
    #[serde(default, rename = "match")]
    pub match_: Option<RedisRouteMatch>,
    #[serde(default)]
    pub route: Option<RedisDestinationRef>,
    #[serde(default)]
    pub mirror: Vec<RedisMirror>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisRouteMatch {
    #[serde(default)]
    pub key: Option<RedisKeyMatch>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisKeyMatch {
    #[serde(default)]
    pub prefix: String,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub remove_prefix: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisDestinationRef {
    #[serde(default)]
    pub host: String,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisMirror {
    #[serde(default)]
    pub route: Option<RedisDestinationRef>,
    #[serde(default)]
    pub percentage: Option<Percent>,
    #[serde(default, deserialize_with = "lenient::bool_")]
    pub exclude_read_commands: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisFault {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub percentage: Option<Percent>,
    #[serde(default, deserialize_with = "lenient::opt_duration")]
    pub delay: Option<Duration>,
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisAuth {
    #[serde(default)]
    pub secret: Option<SecretReference>,
    #[serde(default)]
    pub plain: Option<PlainAuth>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretReference {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub password_field: String,
    #[serde(default)]
    pub username_field: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlainAuth {
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisDestination {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<RedisTrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTrafficPolicy {
    #[serde(default)]
    pub connection_pool: Option<RedisConnectionPool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConnectionPool {
    #[serde(default)]
    pub tcp: Option<crate::types::istio::TcpSettings>,
    #[serde(default)]
    pub redis: Option<RedisPoolSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisPoolSettings {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub auth: Option<RedisAuth>,
    #[serde(default)]
    pub discovery_endpoints: Vec<String>,
}

// ---- dubbo.aeraki.io (parse and validate only) ----

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboAuthorizationPolicy {
    #[serde(default)]
    pub rules: Vec<DubboRule>,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboRule {
    #[serde(default)]
    pub from: Vec<DubboFrom>,
    #[serde(default)]
    pub to: Vec<DubboTo>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboFrom {
    #[serde(default)]
    pub source: Option<DubboSource>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboSource {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub not_principals: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub not_namespaces: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboTo {
    #[serde(default)]
    pub operation: Option<DubboOperation>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DubboOperation {
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub not_interfaces: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub not_methods: Vec<String>,
}
