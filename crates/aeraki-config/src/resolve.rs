//! Resolution: service sources × ports of our protocols → [`ServiceView`]s, with endpoints,
//! DestinationRule policies and subsets, and the attached MetaRouter.

use std::collections::{BTreeMap, BTreeSet};

use aeraki_model::{
    EndpointView, MeshView, Protocol, Resolution, ServiceView, SubsetView,
    parse_outbound_cluster_name,
};

use crate::error::{ConfigError, Diag};
use crate::policy::{effective, merge, non_empty};
use crate::protocol::Detected;
use crate::sources::{ServiceSource, sources};
use crate::store::Store;
use crate::types::Body;
use crate::validate::istio::{DrConv, normalize_host};
use crate::validate::{Key, Validated};

/// Whether a DestinationRule host matches a service host: exact, or a wildcard suffix.
/// Returns the match's specificity (higher wins), or `None`.
fn dr_match(dr_host: &str, host: &str) -> Option<usize> {
    if dr_host == host {
        return Some(usize::MAX);
    }
    if dr_host == "*" {
        return Some(0);
    }
    let suffix = dr_host.strip_prefix('*')?;
    host.ends_with(suffix).then_some(suffix.len())
}

/// The DestinationRule for a host: the most specific match, first by namespace/name.
fn find_dr<'v>(v: &'v Validated, host: &str) -> Option<&'v (Key, DrConv)> {
    let mut best: Option<(usize, &(Key, DrConv))> = None;
    for entry in &v.destination_rules {
        if let Some(s) = dr_match(&entry.1.host, host)
            && best.is_none_or(|(b, _)| s > b)
        {
            best = Some((s, entry));
        }
    }
    best.map(|(_, e)| e)
}

fn endpoints(
    src: &ServiceSource<'_>,
    host: &str,
    port: &crate::sources::PortInfo,
) -> Vec<EndpointView> {
    let mut out: Vec<EndpointView> = src
        .endpoints
        .iter()
        .filter_map(|e| {
            Some(EndpointView {
                address: e.address.clone(),
                port: e.port_for(port)?,
                labels: e.labels.clone(),
                weight: e.weight,
                locality: e.locality.clone(),
            })
        })
        .collect();
    if out.is_empty() && src.resolution == Resolution::Dns {
        out.push(EndpointView {
            address: host.to_owned(),
            port: port.target_port.unwrap_or(port.number),
            labels: BTreeMap::new(),
            weight: 1,
            locality: String::new(),
        });
    }
    out
}

fn describe_key(k: &Key) -> String {
    format!("{} {}/{}", k.0, k.1, k.2)
}

/// The protocol of a port Istio would call TCP or gRPC (`tcp`, `tcp-*`, `grpc`, `grpc-*`,
/// case-insensitive), which we otherwise leave alone.
fn plain_protocol(port_name: &str) -> Option<Protocol> {
    let first = port_name.split('-').next()?.to_ascii_lowercase();
    match first.as_str() {
        "tcp" => Some(Protocol::Tcp),
        "grpc" => Some(Protocol::Grpc),
        _ => None,
    }
}

fn is_plain(p: &Protocol) -> bool {
    matches!(p, Protocol::Tcp | Protocol::Grpc)
}

/// Builds the mesh view; `v` must hold no errors. Cross-object conflicts are returned as
/// errors, everything questionable but servable as warnings.
pub fn resolve(store: &Store, v: &Validated) -> (MeshView, Vec<ConfigError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut services: Vec<ServiceView> = Vec::new();
    // (host, port) → declaring object; (address, port) → (host, object).
    let mut declared: BTreeMap<(String, u16), String> = BTreeMap::new();
    let mut listeners: BTreeMap<(String, u16), (String, String)> = BTreeMap::new();
    let mut used_drs: BTreeSet<Key> = BTreeSet::new();
    let mut used_routers: BTreeSet<Key> = BTreeSet::new();
    let mut routed_hosts: BTreeMap<String, Key> = BTreeMap::new();
    // (host, port) of rate-limit services named `outbound|<port>||<host>` by MetaRouters:
    // plain TCP/gRPC ports enter the view only for these.
    let rls_refs: BTreeSet<(String, u16)> = v
        .routers
        .iter()
        .filter_map(|(_, _, r)| r.global_rate_limit.as_ref())
        .filter_map(|g| parse_outbound_cluster_name(&g.rate_limit_service))
        .map(|(port, _, host)| (host.to_owned(), port))
        .collect();

    for src in sources(store, v) {
        let o = src.object;
        let mut d = Diag::new(Some(&o.origin), Some(o.describe()));
        let source = format!("{}/{}", o.namespace, o.meta.name);
        let our_ports: Vec<_> = src
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.detected {
                Detected::Ours(proto) => Some((i, p, proto.clone())),
                Detected::NotOurs => plain_protocol(&p.name)
                    .filter(|_| {
                        src.hosts
                            .iter()
                            .any(|h| rls_refs.contains(&(h.clone(), p.number)))
                    })
                    .map(|proto| (i, p, proto)),
                Detected::Unsupported(_) => None,
            })
            .collect();
        if our_ports.is_empty() {
            continue;
        }
        let managed = our_ports.iter().any(|(_, _, proto)| !is_plain(proto));
        if managed && src.addresses.is_empty() && src.resolution != Resolution::None {
            d.warn(
                if o.body.kind() == "Service" { "spec.clusterIP" } else { "spec.addresses" },
                "no address: no outbound listener for this service (Aeraki would allocate a 240.240.0.0/16 VIP; file mode does not — add an address)",
            );
        }
        if src.hosts.len() > 1 {
            d.warn(
                "spec.hosts",
                "several hosts: each gets its own clusters and routes; only hosts[0] gets the listeners on the addresses",
            );
        }
        for (hi, host) in src.hosts.iter().enumerate() {
            let dr = find_dr(v, host);
            if let Some((k, _)) = dr {
                used_drs.insert(k.clone());
            }
            for (pi, port, protocol) in &our_ports {
                if is_plain(protocol) && !rls_refs.contains(&(host.clone(), port.number)) {
                    continue;
                }
                let pp = format!("spec.ports[{pi}]");
                if let Some(first) = declared.insert(
                    (host.clone(), port.number),
                    describe_key(&(
                        o.body.kind().into(),
                        o.namespace.clone(),
                        o.meta.name.clone(),
                    )),
                ) {
                    d.err(
                        pp.to_string(),
                        format!(
                            "host {host} port {} is already declared by {first}",
                            port.number
                        ),
                    );
                    continue;
                }
                // Plain TCP/gRPC services get clusters only: no listener, no address.
                let addresses = if hi == 0 && !is_plain(protocol) {
                    src.addresses.clone()
                } else {
                    Vec::new()
                };
                for a in &addresses {
                    if let Some((h, by)) =
                        listeners.insert((a.clone(), port.number), (host.clone(), source.clone()))
                    {
                        d.err(
                            &pp,
                            format!(
                                "address {a} port {} is already the listener of {h} ({by})",
                                port.number
                            ),
                        );
                    }
                }
                let eps = endpoints(&src, host, port);
                if eps.is_empty() && src.resolution == Resolution::Static {
                    d.warn(
                        &pp,
                        format!("host {host} port {} has no endpoints", port.number),
                    );
                }
                let (traffic_policy, subsets) = match dr {
                    None => (None, Vec::new()),
                    Some((_, conv)) => {
                        let top = conv
                            .policy
                            .as_ref()
                            .map(|p| p.for_port(port.number))
                            .unwrap_or_default();
                        let subsets = conv
                            .subsets
                            .iter()
                            .map(|(name, labels, pol)| {
                                let own = pol
                                    .as_ref()
                                    .map(|p| p.for_port(port.number))
                                    .unwrap_or_default();
                                if !eps.is_empty()
                                    && !eps.iter().any(|e| {
                                        labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))
                                    })
                                {
                                    d.warn(
                                        &pp,
                                        format!(
                                            "subset {name:?} of host {host} matches no endpoint"
                                        ),
                                    );
                                }
                                SubsetView {
                                    name: name.clone(),
                                    labels: labels.clone(),
                                    traffic_policy: non_empty(effective(merge(&top, &own))),
                                }
                            })
                            .collect();
                        (non_empty(effective(top)), subsets)
                    }
                };
                let router = if matches!(protocol, Protocol::MetaProtocol { .. }) {
                    v.routers
                        .iter()
                        .find(|(_, h, _)| h == host)
                        .map(|(k, _, r)| {
                            used_routers.insert(k.clone());
                            routed_hosts
                                .entry(host.clone())
                                .or_insert_with(|| k.clone());
                            r.clone()
                        })
                } else {
                    None
                };
                services.push(ServiceView {
                    host: host.clone(),
                    namespace: o.namespace.clone(),
                    source: source.clone(),
                    port: port.number,
                    port_name: port.name.clone(),
                    protocol: protocol.clone(),
                    addresses,
                    resolution: src.resolution,
                    endpoints: eps,
                    traffic_policy,
                    subsets,
                    router,
                });
            }
        }
        errors.extend(d.errors);
        warnings.extend(d.warnings);
    }
    services.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));

    cross_checks(
        store,
        v,
        &services,
        &used_routers,
        &routed_hosts,
        &mut warnings,
        &mut errors,
    );
    let view = MeshView {
        services,
        mesh: Default::default(),
    };
    (view, errors, warnings)
}

/// Warnings (and refusals) that need the whole view: unused routers, routes to unknown
/// services or subsets, VirtualServices on our hosts.
fn cross_checks(
    store: &Store,
    v: &Validated,
    services: &[ServiceView],
    used_routers: &BTreeSet<Key>,
    routed_hosts: &BTreeMap<String, Key>,
    warnings: &mut Vec<String>,
    errors: &mut Vec<ConfigError>,
) {
    let by_host: BTreeMap<&str, Vec<&ServiceView>> =
        services.iter().fold(BTreeMap::new(), |mut m, s| {
            m.entry(s.host.as_str()).or_default().push(s);
            m
        });
    for (key, host, router) in &v.routers {
        let Some(o) = store.objects.get(key) else {
            continue;
        };
        let mut d = Diag::new(Some(&o.origin), Some(o.describe()));
        if !used_routers.contains(key) {
            match (by_host.get(host.as_str()), routed_hosts.get(host)) {
                (_, Some(first)) => d.warn(
                    "spec.hosts[0]",
                    format!("ignored: {} already routes {host} (the first by namespace/name wins)", describe_key(first)),
                ),
                (Some(_), None) => d.warn(
                    "spec.hosts[0]",
                    format!("{host} has no tcp-metaprotocol-* port: MetaRouters apply only to MetaProtocol ports"),
                ),
                (None, None) => d.warn(
                    "spec.hosts[0]",
                    format!("no service declares host {host}: this router is not used"),
                ),
            }
        }
        let routes = if used_routers.contains(key) {
            router.routes.as_slice()
        } else {
            &[]
        };
        for (i, r) in routes.iter().enumerate() {
            let mut dests: Vec<(String, &aeraki_model::DestinationView)> = r
                .destinations
                .iter()
                .enumerate()
                .map(|(j, dv)| (format!("spec.routes[{i}].route[{j}].destination"), dv))
                .collect();
            if let Some(m) = &r.mirror {
                dests.push((format!("spec.routes[{i}].mirror"), &m.destination));
            }
            for (path, dv) in dests {
                let Some(svcs) = by_host.get(dv.host.as_str()) else {
                    d.warn(
                        &path,
                        format!(
                            "no service declares host {}: requests routed there fail",
                            dv.host
                        ),
                    );
                    continue;
                };
                let svc = match dv.port {
                    Some(p) => svcs.iter().find(|s| s.port == p),
                    None => svcs.first(),
                };
                let Some(svc) = svc else {
                    d.warn(
                        &path,
                        format!("host {} has no port {}", dv.host, dv.port.unwrap_or(0)),
                    );
                    continue;
                };
                if let Some(sub) = &dv.subset
                    && !svc.subsets.iter().any(|s| &s.name == sub)
                {
                    d.warn(
                        &path,
                        format!(
                            "host {} has no subset {sub:?} (no DestinationRule defines it)",
                            dv.host
                        ),
                    );
                }
            }
        }
        warnings.extend(d.warnings);
    }
    for o in store.of_kind("VirtualService") {
        let Body::VirtualService(vs) = &o.body else {
            continue;
        };
        let mut d = Diag::new(Some(&o.origin), Some(o.describe()));
        for (i, h) in vs.hosts.iter().enumerate() {
            let host = normalize_host(h, &o.namespace);
            for s in by_host.get(host.as_str()).into_iter().flatten() {
                match &s.protocol {
                    Protocol::MetaProtocol { .. } => d.warn(
                        format!("spec.hosts[{i}]"),
                        format!("ignored for MetaProtocol port {} of {host}, as Aeraki does: route with a MetaRouter", s.port),
                    ),
                    Protocol::Dubbo | Protocol::Thrift => d.err(
                        format!("spec.hosts[{i}]"),
                        format!("VirtualService routing of the native {} port {} of {host} is not supported yet; use a tcp-metaprotocol-* port and a MetaRouter", s.port_name, s.port),
                    ),
                    Protocol::Tcp | Protocol::Grpc => {}
                    Protocol::Redis => d.warn(
                        format!("spec.hosts[{i}]"),
                        format!("ignored for Redis port {} of {host}", s.port),
                    ),
                }
            }
        }
        errors.extend(d.errors);
        warnings.extend(d.warnings);
    }
}
