//! `envoy.config.cluster.v3.Cluster` → model.

use std::net::IpAddr;
use std::time::Duration;

use meta_config::{Cluster, DiscoveryType, Endpoint, LbPolicy};

use crate::error::ConfigError;
use crate::listener::socket_address;
use crate::view::View;

/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

/// Converts a cluster; `ads`: EDS over ADS is available.
pub(crate) fn cluster(c: &View, ads: bool) -> Result<Cluster, ConfigError> {
    c.only(&[
        "name",
        "eds_cluster_config",
        "type",
        "connect_timeout",
        "lb_policy",
        "least_request_lb_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
        "dns_refresh_rate",
        "load_assignment",
        "circuit_breakers",
        "outlier_detection",
        "common_lb_config",
        "metadata",
        "typed_extension_protocol_options",
    ])?;
    let name = c.str("name");
    if name.is_empty() {
        return Err(ConfigError::new(c.at("name"), "required"));
    }
    let discovery = match c.enum_num("type") {
        0 => DiscoveryType::Static,
        1 => DiscoveryType::StrictDns,
        3 if ads => DiscoveryType::Eds,
        3 => {
            return Err(ConfigError::new(
                c.at("type"),
                "EDS needs dynamic_resources.ads_config in the bootstrap",
            ));
        }
        _ => {
            return Err(ConfigError::new(
                c.at("type"),
                format!(
                    "{} not supported (STATIC, STRICT_DNS or EDS)",
                    c.enum_name("type")
                ),
            ));
        }
    };
    let lb_policy = lb_policy(c)?;
    let connect_timeout = c
        .duration("connect_timeout")?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err(ConfigError::new(c.at("connect_timeout"), "must be > 0"));
    }
    let dns_refresh_rate = c
        .duration("dns_refresh_rate")?
        .unwrap_or(DEFAULT_DNS_REFRESH_RATE);
    if dns_refresh_rate.is_zero() {
        return Err(ConfigError::new(c.at("dns_refresh_rate"), "must be > 0"));
    }
    let mut endpoints = Vec::new();
    let mut eds_service_name = None;
    if discovery == DiscoveryType::Eds {
        if c.has("load_assignment") {
            return Err(ConfigError::new(
                c.at("load_assignment"),
                "not allowed on an EDS cluster (endpoints come from EDS)",
            ));
        }
        let service = match c.msg("eds_cluster_config") {
            Some(ec) => {
                ec.only(&["eds_config", "service_name"])?;
                let source = ec
                    .msg("eds_config")
                    .ok_or_else(|| ConfigError::new(ec.at("eds_config"), "required"))?;
                crate::xds::ads_source(&source)?;
                ec.str("service_name")
            }
            None => {
                return Err(ConfigError::new(c.at("eds_cluster_config"), "required"));
            }
        };
        eds_service_name = Some(if service.is_empty() {
            name.clone()
        } else {
            service
        });
    } else if c.has("eds_cluster_config") {
        return Err(ConfigError::new(
            c.at("eds_cluster_config"),
            "only allowed on an EDS cluster",
        ));
    }
    if let Some(la) = c.msg("load_assignment") {
        endpoints = load_assignment(&la, discovery)?;
    }
    let lifetime = protocol::conn_lifetime(c)?;
    Ok(Cluster {
        name,
        discovery,
        connect_timeout,
        lb_policy,
        endpoints,
        dns_refresh_rate,
        eds_service_name,
        circuit_breakers: health::circuit_breakers(c.msg("circuit_breakers"))?,
        outlier_detection: health::outlier_detection(c.msg("outlier_detection"))?,
        healthy_panic_threshold: health::healthy_panic_threshold(c.msg("common_lb_config"))?,
        locality_lb: locality::locality_lb(c)?,
        max_requests_per_connection: lifetime.max_requests_per_connection,
        idle_timeout: lifetime.idle_timeout,
    })
}

/// `lb_policy` and its `*_lb_config`; a config for another policy than the chosen one is
/// refused (Envoy would ignore it).
fn lb_policy(c: &View) -> Result<LbPolicy, ConfigError> {
    let policy = match c.enum_num("lb_policy") {
        0 => LbPolicy::RoundRobin,
        1 => least_request(c.msg("least_request_lb_config"))?,
        2 => ring_hash(c.msg("ring_hash_lb_config"))?,
        3 => LbPolicy::Random,
        5 => maglev(c.msg("maglev_lb_config"))?,
        _ => {
            return Err(ConfigError::new(
                c.at("lb_policy"),
                format!(
                    "{} not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)",
                    c.enum_name("lb_policy")
                ),
            ));
        }
    };
    let wanted = match policy {
        LbPolicy::LeastRequest { .. } => "least_request_lb_config",
        LbPolicy::RingHash { .. } => "ring_hash_lb_config",
        LbPolicy::Maglev { .. } => "maglev_lb_config",
        LbPolicy::RoundRobin | LbPolicy::Random => "",
    };
    for f in [
        "least_request_lb_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
    ] {
        if f != wanted && c.has(f) {
            return Err(ConfigError::new(
                c.at(f),
                format!("does not apply to lb_policy {}", c.enum_name("lb_policy")),
            ));
        }
    }
    Ok(policy)
}

fn least_request(cfg: Option<View>) -> Result<LbPolicy, ConfigError> {
    let mut choice_count = LbPolicy::DEFAULT_CHOICE_COUNT;
    if let Some(cfg) = cfg {
        cfg.only(&["choice_count"])?;
        if let Some(n) = cfg.wrapped_u32("choice_count") {
            if n < 2 {
                return Err(ConfigError::new(cfg.at("choice_count"), "must be >= 2"));
            }
            choice_count = n;
        }
    }
    Ok(LbPolicy::LeastRequest { choice_count })
}

fn ring_hash(cfg: Option<View>) -> Result<LbPolicy, ConfigError> {
    let (mut min, mut max) = (
        LbPolicy::DEFAULT_MIN_RING_SIZE,
        LbPolicy::DEFAULT_MAX_RING_SIZE,
    );
    if let Some(cfg) = cfg {
        cfg.only(&["minimum_ring_size", "maximum_ring_size", "hash_function"])?;
        if cfg.enum_num("hash_function") != 0 {
            return Err(ConfigError::new(
                cfg.at("hash_function"),
                format!(
                    "{} not supported (XX_HASH only)",
                    cfg.enum_name("hash_function")
                ),
            ));
        }
        for (field, value) in [
            ("minimum_ring_size", &mut min),
            ("maximum_ring_size", &mut max),
        ] {
            if let Some(n) = cfg.wrapped_u64(field) {
                if n == 0 || n > LbPolicy::DEFAULT_MAX_RING_SIZE {
                    return Err(ConfigError::new(
                        cfg.at(field),
                        format!("must be in 1..={}", LbPolicy::DEFAULT_MAX_RING_SIZE),
                    ));
                }
                *value = n;
            }
        }
        if min > max {
            return Err(ConfigError::new(
                cfg.at("minimum_ring_size"),
                format!("{min} is larger than maximum_ring_size {max}"),
            ));
        }
    }
    Ok(LbPolicy::RingHash {
        minimum_ring_size: min,
        maximum_ring_size: max,
    })
}

/// Envoy's largest maglev table.
const MAX_MAGLEV_TABLE: u64 = 5_000_011;

fn maglev(cfg: Option<View>) -> Result<LbPolicy, ConfigError> {
    let mut table_size = LbPolicy::DEFAULT_MAGLEV_TABLE_SIZE;
    if let Some(cfg) = cfg {
        cfg.only(&["table_size"])?;
        if let Some(n) = cfg.wrapped_u64("table_size") {
            if n > MAX_MAGLEV_TABLE || !is_prime(n) {
                return Err(ConfigError::new(
                    cfg.at("table_size"),
                    format!("{n} is not a prime <= {MAX_MAGLEV_TABLE}"),
                ));
            }
            table_size = n;
        }
    }
    Ok(LbPolicy::Maglev { table_size })
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The endpoints of a `ClusterLoadAssignment` (a cluster's `load_assignment`, or EDS).
pub(crate) fn load_assignment(
    la: &View,
    discovery: DiscoveryType,
) -> Result<Vec<Endpoint>, ConfigError> {
    la.only(&["cluster_name", "endpoints"])?;
    let mut endpoints = Vec::new();
    for locality in la.list("endpoints") {
        // `priority` orders failover; `locality` feeds locality-aware clusters (no
        // locality-weighted balancing).
        locality.only(&["lb_endpoints", "locality", "priority"])?;
        let priority = locality.u32("priority");
        let place = locality
            .msg("locality")
            .map(|l| locality::locality(&l))
            .transpose()?;
        for lbe in locality.list("lb_endpoints") {
            let mut e = endpoint(&lbe, discovery, priority)?;
            e.locality = place.clone();
            endpoints.push(e);
        }
    }
    Ok(endpoints)
}

fn endpoint(lbe: &View, discovery: DiscoveryType, priority: u32) -> Result<Endpoint, ConfigError> {
    lbe.only(&["endpoint", "load_balancing_weight"])?;
    let ep = lbe
        .msg("endpoint")
        .ok_or_else(|| ConfigError::new(lbe.at("endpoint"), "required"))?;
    ep.only(&["address"])?;
    let addr = ep
        .msg("address")
        .ok_or_else(|| ConfigError::new(ep.at("address"), "required"))?;
    let (host, port) = socket_address(&addr)?;
    if port == 0 {
        return Err(ConfigError::new(
            addr.at("socket_address.port_value"),
            "must be in 1..=65535",
        ));
    }
    if discovery != DiscoveryType::StrictDns && host.parse::<IpAddr>().is_err() {
        return Err(ConfigError::new(
            addr.at("socket_address.address"),
            if discovery == DiscoveryType::Static {
                format!("'{host}' is not an IP address (STATIC cluster; use STRICT_DNS for names)")
            } else {
                format!("'{host}' is not an IP address (EDS endpoints must be IP addresses)")
            },
        ));
    }
    let weight = match lbe.wrapped_u32("load_balancing_weight") {
        None => 1,
        Some(0) => {
            return Err(ConfigError::new(
                lbe.at("load_balancing_weight"),
                "must be > 0",
            ));
        }
        Some(w) => w,
    };
    Ok(Endpoint {
        host,
        port,
        weight,
        priority,
        locality: None,
    })
}

mod health;
pub(crate) mod locality;
pub(crate) mod protocol;

#[cfg(test)]
mod tests;
