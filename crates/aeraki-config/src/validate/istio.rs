//! Istio's own basic checks for ServiceEntry, WorkloadEntry, DestinationRule and
//! VirtualService, plus the protocol detection of ServiceEntry ports.

use std::collections::{BTreeMap, BTreeSet};

use super::common::{export_to, fqdn_problem, is_dns1123_label, is_ip, istio_host_problem, port};
use crate::error::Diag;
use crate::policy::{self, Policy};
use crate::protocol::{Detected, Registry, detect};
use crate::types::istio as t;

/// Port protocols Istio accepts (case-insensitive).
const ISTIO_PROTOCOLS: [&str; 14] = [
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
    "THRIFT",
    "DUBBO",
];

/// Detects a port's protocol, recording an error (unknown application protocol, bare
/// `tcp-metaprotocol`) or a warning (a protocol Aeraki handles natively and we do not).
pub fn detect_port(d: &mut Diag, path: &str, name: &str, registry: &Registry) -> Detected {
    match detect(name, registry) {
        Ok(Detected::Unsupported(p)) => {
            d.warn(
                path,
                format!("port {name:?}: protocol {p} is not supported by this control plane; the port is left to Istio"),
            );
            Detected::Unsupported(p)
        }
        Ok(x) => x,
        Err(e) => {
            d.err(path, e);
            Detected::NotOurs
        }
    }
}

/// Validates a ServiceEntry spec. Returns, per port index, the detected protocol.
pub fn service_entry(d: &mut Diag, se: &t::ServiceEntry, registry: &Registry) -> Vec<Detected> {
    if se.hosts.is_empty() {
        d.err("spec.hosts", "at least one host is required");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        if let Some(p) = istio_host_problem(h) {
            d.err(format!("spec.hosts[{i}]"), p);
        }
    }
    if se.ports.is_empty() {
        d.err("spec.ports", "at least one port is required");
    }
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    let mut detected = Vec::new();
    for (i, p) in se.ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        if let Some(n) = port(d, &format!("{pp}.number"), p.number)
            && !numbers.insert(n)
        {
            d.err(
                format!("{pp}.number"),
                format!("port {n} is declared twice"),
            );
        }
        if p.name.is_empty() {
            d.err(format!("{pp}.name"), "required");
        } else if !names.insert(p.name.as_str()) {
            d.err(
                format!("{pp}.name"),
                format!("port name {:?} is used twice", p.name),
            );
        }
        if let Some(proto) = &p.protocol
            && !ISTIO_PROTOCOLS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(proto))
        {
            d.err(
                format!("{pp}.protocol"),
                format!("unsupported protocol {proto:?}"),
            );
        }
        if let Some(tp) = p.target_port.filter(|n| *n != 0) {
            port(d, &format!("{pp}.targetPort"), tp);
        }
        detected.push(detect_port(d, &format!("{pp}.name"), &p.name, registry));
    }
    let ours = detected.iter().any(|x| matches!(x, Detected::Ours(_)));
    if ours {
        for (i, h) in se.hosts.iter().enumerate() {
            if h.starts_with('*') {
                d.err(
                    format!("spec.hosts[{i}]"),
                    format!(
                        "wildcard host {h:?} cannot serve Dubbo/Thrift/Redis/MetaProtocol ports"
                    ),
                );
            }
        }
    }
    for (i, a) in se.addresses.iter().enumerate() {
        let ap = format!("spec.addresses[{i}]");
        match a.split_once('/') {
            None if is_ip(a) => {}
            Some((ip, bits)) if is_ip(ip) && bits.parse::<u8>().is_ok() => {
                if ours {
                    d.err(
                        &ap,
                        format!("CIDR address {a:?} is not supported: a listener needs one IP"),
                    );
                }
            }
            _ => d.err(&ap, format!("{a:?} is not an IP address or CIDR range")),
        }
    }
    if let Some(loc) = &se.location
        && !matches!(loc.as_str(), "MESH_EXTERNAL" | "MESH_INTERNAL")
    {
        d.err(
            "spec.location",
            format!("unknown location {loc:?} (expected MESH_EXTERNAL or MESH_INTERNAL)"),
        );
    }
    let resolution = se.resolution.as_deref().unwrap_or("NONE");
    let require_ip = match resolution {
        "NONE" => {
            if !se.endpoints.is_empty() {
                d.err(
                    "spec.endpoints",
                    "no endpoints should be provided for resolution NONE",
                );
            }
            false
        }
        "STATIC" => true,
        "DNS" => false,
        "DNS_ROUND_ROBIN" => {
            if se.endpoints.len() > 1 {
                d.err(
                    "spec.endpoints",
                    "resolution DNS_ROUND_ROBIN allows at most one endpoint",
                );
            }
            false
        }
        other => {
            d.err(
                "spec.resolution",
                format!(
                    "unknown resolution {other:?} (expected NONE, STATIC, DNS or DNS_ROUND_ROBIN)"
                ),
            );
            false
        }
    };
    if !se.endpoints.is_empty() && se.workload_selector.is_some() {
        d.err(
            "spec.workloadSelector",
            "cannot be set together with endpoints",
        );
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        endpoint(
            d,
            &format!("spec.endpoints[{i}]"),
            ep,
            Some(&names),
            require_ip,
        );
    }
    if export_to(d, "spec.exportTo", &se.export_to) && ours {
        d.warn(
            "spec.exportTo",
            "exportTo is not applied in file mode: every proxy sees this service",
        );
    }
    detected
}

/// Validates a WorkloadEntry (an object, or a ServiceEntry endpoint when `port_names` is
/// given).
pub fn endpoint(
    d: &mut Diag,
    p: &str,
    ep: &t::WorkloadEntry,
    port_names: Option<&BTreeSet<&str>>,
    require_ip: bool,
) {
    let a = ep.address.as_str();
    if a.is_empty() {
        d.err(format!("{p}.address"), "required");
    } else if a.starts_with("unix://") {
        d.err(
            format!("{p}.address"),
            "unix domain socket endpoints are not supported",
        );
    } else if require_ip && !is_ip(a) {
        d.err(
            format!("{p}.address"),
            format!("{a:?} is not an IP address (resolution STATIC needs IPs)"),
        );
    } else if !is_ip(a)
        && let Some(e) = fqdn_problem(a)
    {
        d.err(format!("{p}.address"), e);
    }
    for (name, v) in &ep.ports {
        let pp = format!("{p}.ports.{name}");
        if let Some(names) = port_names
            && !names.contains(name.as_str())
        {
            d.err(&pp, format!("{name:?} is not the name of a declared port"));
        }
        match port_value(v) {
            Some(n) => {
                port(d, &pp, n);
            }
            None => d.err(&pp, format!("invalid port {v}")),
        }
    }
    if let Some(w) = ep.weight
        && u32::try_from(w).is_err()
    {
        d.err(
            format!("{p}.weight"),
            format!("{w} must be between 0 and {}", u32::MAX),
        );
    }
    if let Some(l) = &ep.locality
        && (l.split('/').count() > 3 || l.starts_with('/'))
    {
        d.err(
            format!("{p}.locality"),
            format!("{l:?} is not region/zone/subzone"),
        );
    }
    if ep.network.as_deref().is_some_and(|n| !n.is_empty()) {
        d.warn(
            format!("{p}.network"),
            "multi-network routing is not supported; the network is ignored",
        );
    }
}

/// An endpoint port value (a number or a numeric string).
pub fn port_value(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A validated DestinationRule.
#[derive(Debug, Clone, Default)]
pub struct DrConv {
    /// FQDN-normalised host.
    pub host: String,
    pub policy: Option<Policy>,
    pub subsets: Vec<(String, BTreeMap<String, String>, Option<Policy>)>,
}

/// FQDN normalisation as Istio and Aeraki do it: a short name (no dot) is relative to the
/// object's namespace.
pub fn normalize_host(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

pub fn destination_rule(d: &mut Diag, ns: &str, dr: &t::DestinationRule) -> DrConv {
    if dr.host.is_empty() {
        d.err("spec.host", "required");
    } else if let Some(p) = istio_host_problem(&dr.host) {
        d.err("spec.host", p);
    }
    if dr.workload_selector.is_some() {
        d.err(
            "spec.workloadSelector",
            "not supported: client workloads are not distinguished in file mode",
        );
    }
    if export_to(d, "spec.exportTo", &dr.export_to) {
        d.warn(
            "spec.exportTo",
            "exportTo is not applied in file mode: every proxy sees this rule",
        );
    }
    let policy = dr
        .traffic_policy
        .as_ref()
        .map(|tp| policy::traffic_policy(d, "spec.trafficPolicy", tp));
    if let Some(top) = &policy {
        policy::warn_locality_without_outlier(d, "spec.trafficPolicy", &top.base);
    }
    let mut names = BTreeSet::new();
    let subsets = dr
        .subsets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                d.err(format!("{p}.name"), "required");
            } else if !is_dns1123_label(&s.name) {
                d.err(
                    format!("{p}.name"),
                    format!("{:?} is not a valid subset name (a DNS-1123 label)", s.name),
                );
            } else if !names.insert(s.name.as_str()) {
                d.err(
                    format!("{p}.name"),
                    format!("duplicate subset name {:?}", s.name),
                );
            }
            let pol = s
                .traffic_policy
                .as_ref()
                .map(|tp| policy::traffic_policy(d, &format!("{p}.trafficPolicy"), tp));
            if let Some(own) = &pol {
                let top = policy.as_ref().map(|t| t.base.clone()).unwrap_or_default();
                policy::warn_locality_without_outlier(
                    d,
                    &format!("{p}.trafficPolicy"),
                    &policy::merge(&top, &own.base),
                );
            }
            (s.name.clone(), s.labels.clone(), pol)
        })
        .collect();
    DrConv {
        host: normalize_host(&dr.host, ns),
        policy,
        subsets,
    }
}

/// VirtualService: hosts are checked; routes are kept opaque (see the crate docs).
pub fn virtual_service(d: &mut Diag, vs: &t::VirtualService) {
    if vs.hosts.is_empty() {
        d.err("spec.hosts", "at least one host is required");
    }
    for (i, h) in vs.hosts.iter().enumerate() {
        if let Some(p) = istio_host_problem(h) {
            d.err(format!("spec.hosts[{i}]"), p);
        }
    }
    export_to(d, "spec.exportTo", &vs.export_to);
}
