//! ApplicationProtocol, the Redis and Dubbo CRDs (validated, not translated yet), and the
//! Kubernetes Service and EndpointSlice.

use std::collections::BTreeSet;

use super::common::{fqdn_problem, is_ip, istio_host_problem, port};
use super::istio::detect_port;
use crate::error::Diag;
use crate::lenient::IntOrString;
use crate::protocol::{Detected, Registry};
use crate::types::aeraki as t;
use crate::types::k8s;

pub fn application_protocol(d: &mut Diag, ap: &t::ApplicationProtocol) {
    if ap.protocol.is_empty() {
        d.err("spec.protocol", "required");
    } else if !ap
        .protocol
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        d.err(
            "spec.protocol",
            format!(
                "{:?} must be lowercase letters and digits: it is matched against the lowercased third token of port names (tcp-metaprotocol-<protocol>)",
                ap.protocol
            ),
        );
    }
    if ap.codec.is_empty() {
        d.err("spec.codec", "required");
    }
}

fn auth(d: &mut Diag, p: &str, a: &t::RedisAuth) {
    match (&a.secret, &a.plain) {
        (Some(_), Some(_)) => d.err(p, "only one of secret and plain may be set"),
        (None, None) => d.err(p, "one of secret or plain is required"),
        (Some(s), None) => {
            if s.name.is_empty() {
                d.err(format!("{p}.secret.name"), "required");
            }
        }
        (None, Some(pl)) => {
            if pl.password.is_empty() {
                d.err(format!("{p}.plain.password"), "required");
            }
        }
    }
}

fn percent(d: &mut Diag, p: &str, v: Option<&t::Percent>) {
    if let Some(v) = v.and_then(|x| x.value)
        && !(0.0..=100.0).contains(&v)
    {
        d.err(
            format!("{p}.value"),
            format!("{v} must be between 0 and 100"),
        );
    }
}

fn redis_dest(d: &mut Diag, p: &str, r: Option<&t::RedisDestinationRef>) {
    let Some(r) = r else {
        d.err(p, "required");
        return;
    };
    if let Some(e) = istio_host_problem(&r.host) {
        d.err(format!("{p}.host"), e);
    }
    if let Some(n) = r.port.filter(|n| *n != 0) {
        port(d, &format!("{p}.port"), n);
    }
}

pub fn redis_service(d: &mut Diag, rs: &t::RedisService) {
    if rs.host.is_empty() {
        d.err("spec.host", "at least one host is required");
    }
    for (i, h) in rs.host.iter().enumerate() {
        if let Some(e) = istio_host_problem(h) {
            d.err(format!("spec.host[{i}]"), e);
        }
    }
    if let Some(s) = &rs.settings {
        if let Some(rp) = &s.read_policy
            && !matches!(
                rp.as_str(),
                "MASTER" | "PREFER_MASTER" | "REPLICA" | "PREFER_REPLICA" | "ANY"
            )
        {
            d.err(
                    "spec.settings.readPolicy",
                    format!("unknown read policy {rp:?} (expected MASTER, PREFER_MASTER, REPLICA, PREFER_REPLICA or ANY)"),
                );
        }
        if let Some(a) = &s.auth {
            auth(d, "spec.settings.auth", a);
        }
    }
    let mut catch_all = 0;
    for (i, r) in rs.redis.iter().enumerate() {
        let p = format!("spec.redis[{i}]");
        match r.match_.as_ref().and_then(|m| m.key.as_ref()) {
            None => {
                catch_all += 1;
                if catch_all > 1 {
                    d.err(
                        &p,
                        "only one route without a match (the catch-all) is allowed",
                    );
                }
            }
            Some(k) if k.prefix.is_empty() => d.err(format!("{p}.match.key.prefix"), "required"),
            Some(_) => {}
        }
        redis_dest(d, &format!("{p}.route"), r.route.as_ref());
        for (j, m) in r.mirror.iter().enumerate() {
            let mp = format!("{p}.mirror[{j}]");
            redis_dest(d, &format!("{mp}.route"), m.route.as_ref());
            percent(d, &format!("{mp}.percentage"), m.percentage.as_ref());
        }
    }
    for (i, f) in rs.faults.iter().enumerate() {
        let p = format!("spec.faults[{i}]");
        match f.type_.as_deref().unwrap_or("DELAY") {
            "DELAY" => {
                if f.delay.is_none() {
                    d.err(format!("{p}.delay"), "required for a DELAY fault");
                }
            }
            "ERROR" => {}
            other => d.err(
                format!("{p}.type"),
                format!("unknown fault type {other:?} (expected DELAY or ERROR)"),
            ),
        }
        percent(d, &format!("{p}.percentage"), f.percentage.as_ref());
    }
    d.warn(
        "",
        "RedisService is validated but not translated yet: Redis routing is not served",
    );
}

pub fn redis_destination(d: &mut Diag, rd: &t::RedisDestination) {
    if let Some(e) = istio_host_problem(&rd.host) {
        d.err("spec.host", e);
    }
    if let Some(redis) = rd
        .traffic_policy
        .as_ref()
        .and_then(|t| t.connection_pool.as_ref())
        .and_then(|c| c.redis.as_ref())
    {
        let p = "spec.trafficPolicy.connectionPool.redis";
        if let Some(m) = &redis.mode
            && !matches!(m.as_str(), "PROXY" | "CLUSTER")
        {
            d.err(
                format!("{p}.mode"),
                format!("unknown mode {m:?} (expected PROXY or CLUSTER)"),
            );
        }
        if let Some(a) = &redis.auth {
            auth(d, &format!("{p}.auth"), a);
        }
    }
    d.warn("", "RedisDestination is validated but not translated yet");
}

/// Dubbo authorization match syntax: exact, `pre*`, `*suf` or `*`.
fn dubbo_values(d: &mut Diag, p: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let inner = v.strip_prefix('*').unwrap_or(v);
        let inner = inner.strip_suffix('*').unwrap_or(inner);
        if v.is_empty() {
            d.err(format!("{p}[{i}]"), "must not be empty");
        } else if inner.contains('*') || (v.len() > 1 && v.starts_with('*') && v.ends_with('*')) {
            d.err(
                format!("{p}[{i}]"),
                format!("{v:?}: `*` is only allowed alone, as a prefix or as a suffix"),
            );
        }
    }
}

pub fn dubbo_authorization_policy(d: &mut Diag, dap: &t::DubboAuthorizationPolicy) {
    if let Some(a) = &dap.action
        && !matches!(a.as_str(), "ALLOW" | "DENY")
    {
        d.err(
            "spec.action",
            format!("unknown action {a:?} (expected ALLOW or DENY)"),
        );
    }
    for (i, r) in dap.rules.iter().enumerate() {
        for (j, f) in r.from.iter().enumerate() {
            let p = format!("spec.rules[{i}].from[{j}].source");
            let Some(s) = &f.source else {
                d.err(p, "required");
                continue;
            };
            dubbo_values(d, &format!("{p}.principals"), &s.principals);
            dubbo_values(d, &format!("{p}.notPrincipals"), &s.not_principals);
            dubbo_values(d, &format!("{p}.namespaces"), &s.namespaces);
            dubbo_values(d, &format!("{p}.notNamespaces"), &s.not_namespaces);
        }
        for (j, t) in r.to.iter().enumerate() {
            let p = format!("spec.rules[{i}].to[{j}].operation");
            let Some(o) = &t.operation else {
                d.err(p, "required");
                continue;
            };
            dubbo_values(d, &format!("{p}.interfaces"), &o.interfaces);
            dubbo_values(d, &format!("{p}.notInterfaces"), &o.not_interfaces);
            dubbo_values(d, &format!("{p}.methods"), &o.methods);
            dubbo_values(d, &format!("{p}.notMethods"), &o.not_methods);
        }
    }
    d.warn(
        "",
        "DubboAuthorizationPolicy is validated but NOT enforced yet: requests are not authorised by it",
    );
}

/// Validates a Kubernetes Service; returns the detected protocol per port.
pub fn service(d: &mut Diag, svc: &k8s::ServiceSpec, registry: &Registry) -> Vec<Detected> {
    let ty = svc.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        match svc.external_name.as_deref() {
            None | Some("") => d.err("spec.externalName", "required for type ExternalName"),
            Some(n) => {
                if let Some(e) = fqdn_problem(n) {
                    d.err("spec.externalName", e);
                }
            }
        }
    }
    for (i, ip) in svc
        .cluster_ips
        .iter()
        .chain(svc.cluster_ip.iter())
        .enumerate()
    {
        if ip != "None" && !ip.is_empty() && !is_ip(ip) {
            d.err(
                if i < svc.cluster_ips.len() {
                    format!("spec.clusterIPs[{i}]")
                } else {
                    "spec.clusterIP".into()
                },
                format!("{ip:?} is not an IP address"),
            );
        }
    }
    let mut names = BTreeSet::new();
    svc.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pp = format!("spec.ports[{i}]");
            port(d, &format!("{pp}.port"), p.port);
            if svc.ports.len() > 1 && p.name.is_empty() {
                d.err(
                    format!("{pp}.name"),
                    "required when a Service has several ports",
                );
            }
            if !p.name.is_empty() && !names.insert(p.name.as_str()) {
                d.err(
                    format!("{pp}.name"),
                    format!("port name {:?} is used twice", p.name),
                );
            }
            if let Some(IntOrString::Int(n)) = &p.target_port {
                port(d, &format!("{pp}.targetPort"), *n);
            }
            if p.protocol.as_deref().is_some_and(|x| x != "TCP") {
                return Detected::NotOurs;
            }
            detect_port(d, &format!("{pp}.name"), &p.name, registry)
        })
        .collect()
}

pub fn endpoint_slice(d: &mut Diag, es: &k8s::EndpointSlice) {
    match es.address_type.as_deref() {
        Some("IPv4" | "IPv6") | None => {}
        Some(other) => d.err(
            "addressType",
            format!("address type {other:?} is not supported (expected IPv4 or IPv6)"),
        ),
    }
    for (i, e) in es.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            d.err(
                format!("endpoints[{i}].addresses"),
                "at least one address is required",
            );
        }
        for (j, a) in e.addresses.iter().enumerate() {
            if !is_ip(a) {
                d.err(
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!("{a:?} is not an IP address"),
                );
            }
        }
    }
    for (i, p) in es.ports.iter().enumerate() {
        if let Some(n) = p.port {
            port(d, &format!("ports[{i}].port"), n);
        }
    }
}
