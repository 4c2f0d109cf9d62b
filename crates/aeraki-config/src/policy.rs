//! DestinationRule traffic policies: validation, conversion to the model, and Istio's merge
//! rules (port-level settings over the top level; a subset's policy over the rule's).

use std::collections::BTreeMap;

use aeraki_model::{
    ConnectionPool, HashAlgorithm, LoadBalancer, LocalityLb, OutlierDetection, SimpleLb,
    TrafficPolicy,
};

use crate::error::Diag;
use crate::types::istio as t;
use crate::validate::common::port;

/// A converted traffic policy: the top level plus port-level overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub base: TrafficPolicy,
    pub ports: BTreeMap<u16, TrafficPolicy>,
}

impl Policy {
    /// The policy for one port (port-level fields override top-level ones).
    pub fn for_port(&self, port: u16) -> TrafficPolicy {
        match self.ports.get(&port) {
            Some(p) => merge(&self.base, p),
            None => self.base.clone(),
        }
    }
}

/// Field-by-field override, as Istio merges policies (`localityLbSetting` is part of
/// `loadBalancer`: an overriding `loadBalancer` replaces it too).
pub fn merge(base: &TrafficPolicy, over: &TrafficPolicy) -> TrafficPolicy {
    let locality = if over.load_balancer.is_some() || over.locality.is_some() {
        over.locality.clone()
    } else {
        base.locality.clone()
    };
    TrafficPolicy {
        locality,
        load_balancer: over
            .load_balancer
            .clone()
            .or_else(|| base.load_balancer.clone()),
        connection_pool: over
            .connection_pool
            .clone()
            .or_else(|| base.connection_pool.clone()),
        outlier_detection: over
            .outlier_detection
            .clone()
            .or_else(|| base.outlier_detection.clone()),
    }
}

/// Istio applies locality failover only when outlier detection is set (nothing would eject
/// an endpoint otherwise): drops `locality` without it.
pub fn effective(mut p: TrafficPolicy) -> TrafficPolicy {
    if p.outlier_detection.is_none() {
        p.locality = None;
    }
    p
}

/// Warns at `path` when `p` (an effective policy) sets locality failover without outlier
/// detection.
pub fn warn_locality_without_outlier(d: &mut Diag, path: &str, p: &TrafficPolicy) {
    if p.locality.is_some() && p.outlier_detection.is_none() {
        d.warn(
            path,
            "localityLbSetting has no effect without outlierDetection (as in Istio)",
        );
    }
}

/// `Some` unless every field is unset.
pub fn non_empty(p: TrafficPolicy) -> Option<TrafficPolicy> {
    (p != TrafficPolicy::default()).then_some(p)
}

/// Validates and converts a `trafficPolicy`.
pub fn traffic_policy(d: &mut Diag, p: &str, tp: &t::TrafficPolicy) -> Policy {
    if tp.tunnel.is_some() {
        d.err(format!("{p}.tunnel"), "not supported");
    }
    if tp.proxy_protocol.is_some() {
        d.err(format!("{p}.proxyProtocol"), "not supported");
    }
    let base = parts(
        d,
        p,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    let mut ports = BTreeMap::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = format!("{p}.portLevelSettings[{i}]");
        let Some(sel) = &pl.port else {
            d.err(format!("{pp}.port"), "required");
            continue;
        };
        let Some(n) = port(d, &format!("{pp}.port.number"), sel.number) else {
            continue;
        };
        let v = parts(
            d,
            &pp,
            pl.load_balancer.as_ref(),
            pl.connection_pool.as_ref(),
            pl.outlier_detection.as_ref(),
            pl.tls.as_ref(),
        );
        if ports.insert(n, v).is_some() {
            d.err(
                format!("{pp}.port.number"),
                format!("port {n} appears more than once"),
            );
        }
    }
    Policy { base, ports }
}

fn parts(
    d: &mut Diag,
    p: &str,
    lb: Option<&t::LoadBalancerSettings>,
    cp: Option<&t::ConnectionPoolSettings>,
    od: Option<&t::OutlierDetection>,
    tls: Option<&t::TlsSettings>,
) -> TrafficPolicy {
    if let Some(tls) = tls {
        check_tls(d, &format!("{p}.tls"), tls);
    }
    TrafficPolicy {
        locality: lb
            .and_then(|lb| lb.locality_lb_setting.as_ref())
            .and_then(|l| locality(d, &format!("{p}.loadBalancer.localityLbSetting"), l)),
        load_balancer: lb.and_then(|lb| load_balancer(d, &format!("{p}.loadBalancer"), lb)),
        connection_pool: cp.map(|cp| connection_pool(d, &format!("{p}.connectionPool"), cp)),
        outlier_detection: od.map(|od| outlier(d, &format!("{p}.outlierDetection"), od)),
    }
}

fn check_tls(d: &mut Diag, p: &str, tls: &t::TlsSettings) {
    match tls.mode.as_deref().unwrap_or("DISABLE") {
        "DISABLE" => {}
        "ISTIO_MUTUAL" => d.warn(
            format!("{p}.mode"),
            "ISTIO_MUTUAL is served as plaintext: this mesh does not issue certificates yet",
        ),
        m @ ("SIMPLE" | "MUTUAL") => d.err(
            format!("{p}.mode"),
            format!("TLS mode {m} is not supported"),
        ),
        other => d.err(
            format!("{p}.mode"),
            format!(
                "unknown TLS mode {other:?} (expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL)"
            ),
        ),
    }
    let set = [
        ("clientCertificate", tls.client_certificate.is_some()),
        ("privateKey", tls.private_key.is_some()),
        ("caCertificates", tls.ca_certificates.is_some()),
        ("credentialName", tls.credential_name.is_some()),
        ("subjectAltNames", tls.subject_alt_names.is_some()),
        ("sni", tls.sni.is_some()),
        ("insecureSkipVerify", tls.insecure_skip_verify.is_some()),
    ];
    for (name, is_set) in set {
        if is_set {
            d.err(format!("{p}.{name}"), "TLS origination is not supported");
        }
    }
}

fn load_balancer(d: &mut Diag, p: &str, lb: &t::LoadBalancerSettings) -> Option<LoadBalancer> {
    if lb.warmup_duration_secs.is_some() {
        d.err(
            format!("{p}.warmupDurationSecs"),
            "slow start is not supported",
        );
    }
    match (&lb.simple, &lb.consistent_hash) {
        (Some(_), Some(_)) => {
            d.err(p, "only one of simple and consistentHash may be set");
            None
        }
        (Some(s), None) => {
            let v = match s.as_str() {
                "UNSPECIFIED" => return None,
                "ROUND_ROBIN" => SimpleLb::RoundRobin,
                "LEAST_REQUEST" | "LEAST_CONN" => SimpleLb::LeastRequest,
                "RANDOM" => SimpleLb::Random,
                "PASSTHROUGH" => SimpleLb::Passthrough,
                other => {
                    d.err(
                        format!("{p}.simple"),
                        format!("unknown load balancer {other:?} (expected ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH or UNSPECIFIED)"),
                    );
                    return None;
                }
            };
            Some(LoadBalancer::Simple(v))
        }
        (None, Some(ch)) => consistent_hash(d, &format!("{p}.consistentHash"), ch),
        (None, None) => None,
    }
}

/// `localityLbSetting`: `None` when disabled (`enabled: false`).
fn locality(d: &mut Diag, p: &str, l: &t::LocalityLbSetting) -> Option<LocalityLb> {
    if l.distribute.is_some() {
        d.err(format!("{p}.distribute"), "not supported");
    }
    if l.failover_priority.is_some() {
        d.err(format!("{p}.failoverPriority"), "not supported");
    }
    let mut failover = Vec::new();
    for (i, f) in l.failover.iter().enumerate() {
        let fp = format!("{p}.failover[{i}]");
        let mut region = |name: &str, v: &Option<String>| match v.as_deref() {
            Some(r) if !r.is_empty() && !r.contains('/') => Some(r.to_owned()),
            Some(r) if r.contains('/') => {
                d.err(
                    format!("{fp}.{name}"),
                    format!("{r:?} must be a region (no '/')"),
                );
                None
            }
            _ => {
                d.err(format!("{fp}.{name}"), "required: a region");
                None
            }
        };
        let (from, to) = (region("from", &f.from), region("to", &f.to));
        if let (Some(from), Some(to)) = (from, to) {
            if from == to {
                d.err(&fp, format!("from and to are the same region {from:?}"));
            } else {
                failover.push((from, to));
            }
        }
    }
    l.enabled.unwrap_or(true).then_some(LocalityLb { failover })
}

fn consistent_hash(d: &mut Diag, p: &str, ch: &t::ConsistentHash) -> Option<LoadBalancer> {
    let unsupported = [
        ("httpCookie", ch.http_cookie.is_some()),
        ("useSourceIp", ch.use_source_ip.is_some()),
        (
            "httpQueryParameterName",
            ch.http_query_parameter_name.is_some(),
        ),
    ];
    for (name, set) in unsupported {
        if set {
            d.err(
                format!("{p}.{name}"),
                "not supported: MetaProtocol hashes on a metadata key named by httpHeaderName",
            );
        }
    }
    let key = match ch.http_header_name.as_deref() {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => {
            d.err(
                format!("{p}.httpHeaderName"),
                "required: the metadata key to hash on (e.g. method)",
            );
            String::new()
        }
    };
    let positive = |d: &mut Diag, path: String, v: i64| -> u64 {
        if v < 1 {
            d.err(path, format!("{v} must be at least 1"));
        }
        u64::try_from(v).unwrap_or(0)
    };
    let ring = ch
        .ring_hash
        .as_ref()
        .map(|r| (r.minimum_ring_size, format!("{p}.ringHash.minimumRingSize")))
        .or_else(|| {
            ch.minimum_ring_size
                .map(|n| (Some(n), format!("{p}.minimumRingSize")))
        });
    let algorithm = match (ring, &ch.maglev) {
        (Some(_), Some(_)) => {
            d.err(
                p,
                "only one of ringHash (or minimumRingSize) and maglev may be set",
            );
            return None;
        }
        (None, Some(m)) => HashAlgorithm::Maglev {
            table_size: m
                .table_size
                .map_or(65537, |n| positive(d, format!("{p}.maglev.tableSize"), n)),
        },
        (Some((n, path)), None) => HashAlgorithm::RingHash {
            minimum_ring_size: n.map_or(1024, |n| positive(d, path, n)),
        },
        (None, None) => HashAlgorithm::RingHash {
            minimum_ring_size: 1024,
        },
    };
    Some(LoadBalancer::ConsistentHash { key, algorithm })
}

fn count(d: &mut Diag, path: String, v: Option<i64>) -> Option<u32> {
    let n = v?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            d.err(path, format!("{n} must be between 0 and {}", u32::MAX));
            None
        }
    }
}

fn percent(d: &mut Diag, path: String, v: Option<i64>) -> Option<u32> {
    let n = v?;
    if (0..=100).contains(&n) {
        u32::try_from(n).ok()
    } else {
        d.err(path, format!("{n} must be between 0 and 100"));
        None
    }
}

fn connection_pool(d: &mut Diag, p: &str, cp: &t::ConnectionPoolSettings) -> ConnectionPool {
    let mut out = ConnectionPool::default();
    if let Some(tcp) = &cp.tcp {
        let tp = format!("{p}.tcp");
        out.max_connections = count(d, format!("{tp}.maxConnections"), tcp.max_connections);
        out.connect_timeout = tcp.connect_timeout;
        if tcp.connect_timeout.is_some_and(|t| t.is_zero()) {
            d.err(format!("{tp}.connectTimeout"), "must be greater than 0");
        }
        out.idle_timeout = tcp.idle_timeout;
        if tcp.tcp_keepalive.is_some() {
            d.err(format!("{tp}.tcpKeepalive"), "not supported");
        }
        if tcp.max_connection_duration.is_some() {
            d.err(format!("{tp}.maxConnectionDuration"), "not supported");
        }
    }
    if let Some(http) = &cp.http {
        let hp = format!("{p}.http");
        out.max_pending_requests = count(
            d,
            format!("{hp}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        out.max_requests = count(d, format!("{hp}.http2MaxRequests"), http.http2_max_requests);
        out.max_requests_per_connection = count(
            d,
            format!("{hp}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        out.max_retries = count(d, format!("{hp}.maxRetries"), http.max_retries);
        // Istio's rule: http.idleTimeout wins over tcp.idleTimeout.
        if http.idle_timeout.is_some() {
            out.idle_timeout = http.idle_timeout;
        }
        let http_only = [
            ("h2UpgradePolicy", http.h2_upgrade_policy.is_some()),
            ("useClientProtocol", http.use_client_protocol.is_some()),
            (
                "maxConcurrentStreams",
                http.max_concurrent_streams.is_some(),
            ),
        ];
        for (name, set) in http_only {
            if set {
                d.warn(
                    format!("{hp}.{name}"),
                    "HTTP-only setting: no effect on Dubbo/Thrift/MetaProtocol services (ignored, as Istio does for TCP)",
                );
            }
        }
    }
    out
}

fn outlier(d: &mut Diag, p: &str, od: &t::OutlierDetection) -> OutlierDetection {
    let consecutive_errors = match (od.consecutive_5xx_errors, od.consecutive_errors) {
        (Some(n), _) => count(d, format!("{p}.consecutive5xxErrors"), Some(n)),
        (None, Some(n)) => count(d, format!("{p}.consecutiveErrors"), Some(n)),
        (None, None) => None,
    };
    let split = od.split_external_local_origin_errors.unwrap_or(false);
    let local = count(
        d,
        format!("{p}.consecutiveLocalOriginFailures"),
        od.consecutive_local_origin_failures,
    );
    if local.is_some() && !split {
        d.warn(
            format!("{p}.consecutiveLocalOriginFailures"),
            "has no effect unless splitExternalLocalOriginErrors is true (as in Envoy)",
        );
    }
    OutlierDetection {
        consecutive_errors,
        consecutive_gateway_errors: count(
            d,
            format!("{p}.consecutiveGatewayErrors"),
            od.consecutive_gateway_errors,
        ),
        consecutive_local_origin_failures: local.filter(|_| split),
        interval: od.interval,
        base_ejection_time: od.base_ejection_time,
        max_ejection_percent: percent(
            d,
            format!("{p}.maxEjectionPercent"),
            od.max_ejection_percent,
        ),
        min_health_percent: percent(d, format!("{p}.minHealthPercent"), od.min_health_percent),
    }
}
