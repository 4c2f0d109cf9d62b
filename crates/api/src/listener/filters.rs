//! The L7 filters of `meta_protocol_filters` → model: router, local and global rate limit.
//!
//! Each filter's `config` is an `Any` (or a TypedStruct naming the same message, as Aeraki's
//! control plane writes it). Rate-limit clusters are not checked here: the cluster may arrive
//! later over CDS, and a check against a missing cluster is an RLS failure at run time.

use std::time::Duration;

use meta_config::{
    DEFAULT_RATE_LIMIT_TIMEOUT, FilterConfig, GlobalRateLimit, LocalRateLimit,
    LocalRateLimitCondition, MIN_FILL_INTERVAL, MetadataMatcher, ROUTER_FILTER,
    RateLimitDescriptor, TokenBucket,
};

use crate::error::ConfigError;
use crate::view::View;

/// Name of the local rate-limit filter.
pub const LOCAL_RATELIMIT_FILTER: &str = "aeraki.meta_protocol.filters.local_ratelimit";
/// Name of the global rate-limit filter.
pub const RATELIMIT_FILTER: &str = "aeraki.meta_protocol.filters.ratelimit";

const ROUTER_TYPE: &str = "aeraki.meta_protocol_proxy.filters.router.v1alpha.Router";
const LOCAL_RATELIMIT_TYPE: &str =
    "aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit";
const RATELIMIT_TYPE: &str = "aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit";

/// Filters Aeraki defines that we know but do not run.
const UNSUPPORTED_FILTERS: &[&str] = &[
    "aeraki.meta_protocol.filters.metadata_exchange",
    "aeraki.meta_protocol.filters.istio_stats",
];

/// `meta_protocol_filters` of a MetaProtocolProxy (default: the router alone).
pub(crate) fn filters(p: &View) -> Result<Vec<FilterConfig>, ConfigError> {
    let list = p.list("meta_protocol_filters");
    if list.is_empty() {
        return Ok(vec![FilterConfig::Router]);
    }
    let last = list.len() - 1;
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        f.only(&["name", "config"])?;
        let name = f.str("name");
        let converted = match name.as_str() {
            ROUTER_FILTER => {
                if i != last {
                    return Err(ConfigError::new(
                        f.path.clone(),
                        format!("{ROUTER_FILTER} must be the last filter"),
                    ));
                }
                if let Some(cfg) = config(f, ROUTER_TYPE)? {
                    cfg.only(&[])?;
                }
                FilterConfig::Router
            }
            LOCAL_RATELIMIT_FILTER => {
                FilterConfig::LocalRateLimit(local_ratelimit(&required(f, LOCAL_RATELIMIT_TYPE)?)?)
            }
            RATELIMIT_FILTER => {
                FilterConfig::RateLimit(global_ratelimit(&required(f, RATELIMIT_TYPE)?)?)
            }
            n if UNSUPPORTED_FILTERS.contains(&n) => {
                return Err(ConfigError::new(
                    f.path.clone(),
                    format!("filter '{name}' is not supported yet"),
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    f.at("name"),
                    format!("unknown filter '{name}'"),
                ));
            }
        };
        out.push(converted);
    }
    if !matches!(out.last(), Some(FilterConfig::Router)) {
        return Err(ConfigError::new(
            p.at("meta_protocol_filters"),
            format!("must end with {ROUTER_FILTER}"),
        ));
    }
    Ok(out)
}

/// The filter's `config`, which must be set.
fn required(f: &View, type_name: &str) -> Result<View, ConfigError> {
    config(f, type_name)?.ok_or_else(|| ConfigError::new(f.at("config"), "required"))
}

/// The filter's `config`, if set, checked to be a `type_name` message.
fn config(f: &View, type_name: &str) -> Result<Option<View>, ConfigError> {
    match f.any("config")? {
        Some((url, cfg)) => {
            if url.rsplit('/').next() != Some(type_name) {
                return Err(ConfigError::new(
                    f.at("config"),
                    format!("expected type.googleapis.com/{type_name} (got '{url}')"),
                ));
            }
            Ok(Some(cfg))
        }
        None => Ok(None),
    }
}

fn local_ratelimit(c: &View) -> Result<LocalRateLimit, ConfigError> {
    c.only(&["stat_prefix", "token_bucket", "conditions"])?;
    let stat_prefix = c.str("stat_prefix");
    if stat_prefix.is_empty() {
        return Err(ConfigError::new(c.at("stat_prefix"), "required"));
    }
    let bucket = c
        .msg("token_bucket")
        .map(|b| token_bucket(&b))
        .transpose()?;
    let conditions = c
        .list("conditions")
        .iter()
        .map(|cond| {
            cond.only(&["match", "token_bucket"])?;
            let m = cond
                .msg("match")
                .ok_or_else(|| ConfigError::new(cond.at("match"), "required"))?;
            let b = cond
                .msg("token_bucket")
                .ok_or_else(|| ConfigError::new(cond.at("token_bucket"), "required"))?;
            Ok(LocalRateLimitCondition {
                matchers: route_match(&m)?,
                token_bucket: token_bucket(&b)?,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(LocalRateLimit {
        stat_prefix,
        token_bucket: bucket,
        conditions,
    })
}

/// An `envoy.type.v3.TokenBucket`.
fn token_bucket(b: &View) -> Result<TokenBucket, ConfigError> {
    b.only(&["max_tokens", "tokens_per_fill", "fill_interval"])?;
    let max_tokens = b.u32("max_tokens");
    if max_tokens == 0 {
        return Err(ConfigError::new(b.at("max_tokens"), "must be > 0"));
    }
    let tokens_per_fill = b.wrapped_u32("tokens_per_fill").unwrap_or(1);
    if tokens_per_fill == 0 {
        return Err(ConfigError::new(b.at("tokens_per_fill"), "must be > 0"));
    }
    let fill_interval = b
        .duration("fill_interval")?
        .ok_or_else(|| ConfigError::new(b.at("fill_interval"), "required"))?;
    if fill_interval < MIN_FILL_INTERVAL {
        return Err(ConfigError::new(
            b.at("fill_interval"),
            "local rate limit token bucket fill timer must be >= 50ms",
        ));
    }
    Ok(TokenBucket {
        max_tokens,
        tokens_per_fill,
        fill_interval,
    })
}

/// Aeraki's `RouteMatch{metadata: [HeaderMatcher]}`.
fn route_match(m: &View) -> Result<Vec<MetadataMatcher>, ConfigError> {
    m.only(&["metadata"])?;
    m.list("metadata")
        .iter()
        .map(crate::route::header_matcher)
        .collect()
}

fn global_ratelimit(c: &View) -> Result<GlobalRateLimit, ConfigError> {
    c.only(&[
        "match",
        "domain",
        "timeout",
        "failure_mode_deny",
        "rate_limit_service",
        "descriptors",
    ])?;
    let matchers = match c.msg("match") {
        Some(m) => route_match(&m)?,
        None => Vec::new(),
    };
    let domain = c.str("domain");
    if domain.is_empty() {
        return Err(ConfigError::new(c.at("domain"), "required"));
    }
    let timeout = match c.duration("timeout")? {
        None => DEFAULT_RATE_LIMIT_TIMEOUT,
        Some(d) if d == Duration::ZERO => {
            return Err(ConfigError::new(
                c.at("timeout"),
                "must be > 0 (omit it for the 20ms default)",
            ));
        }
        Some(d) => d,
    };
    let cluster = rate_limit_service(c)?;
    let list = c.list("descriptors");
    if list.is_empty() {
        return Err(ConfigError::new(
            c.at("descriptors"),
            "at least one descriptor is required",
        ));
    }
    let descriptors = list
        .iter()
        .map(|d| {
            d.only(&["property", "descriptor_key"])?;
            let (property, descriptor_key) = (d.str("property"), d.str("descriptor_key"));
            if property.is_empty() {
                return Err(ConfigError::new(d.at("property"), "required"));
            }
            if descriptor_key.is_empty() {
                return Err(ConfigError::new(d.at("descriptor_key"), "required"));
            }
            Ok(RateLimitDescriptor {
                property,
                descriptor_key,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(GlobalRateLimit {
        matchers,
        domain,
        timeout,
        failure_mode_deny: c.bool("failure_mode_deny"),
        cluster,
        descriptors,
    })
}

/// `rate_limit_service` (Envoy `RateLimitServiceConfig`) → the cluster name of its `envoy_grpc`.
fn rate_limit_service(c: &View) -> Result<String, ConfigError> {
    let rls = c
        .msg("rate_limit_service")
        .ok_or_else(|| ConfigError::new(c.at("rate_limit_service"), "required"))?;
    rls.only(&["grpc_service", "transport_api_version"])?;
    // AUTO (0) and V3 (2) both mean v3 here; V2 is gone from Envoy.
    if rls.enum_num("transport_api_version") == 1 {
        return Err(ConfigError::new(
            rls.at("transport_api_version"),
            "only V3 is supported",
        ));
    }
    let grpc = rls
        .msg("grpc_service")
        .ok_or_else(|| ConfigError::new(rls.at("grpc_service"), "required"))?;
    grpc.only(&["envoy_grpc"])?;
    let envoy_grpc = grpc
        .msg("envoy_grpc")
        .ok_or_else(|| ConfigError::new(grpc.at("envoy_grpc"), "required"))?;
    envoy_grpc.only(&["cluster_name"])?;
    let cluster = envoy_grpc.str("cluster_name");
    if cluster.is_empty() {
        return Err(ConfigError::new(envoy_grpc.at("cluster_name"), "required"));
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests;
