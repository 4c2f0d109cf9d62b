//! Service sources: a ServiceEntry, or the synthetic ServiceEntry Istio derives from a
//! Kubernetes Service (host `<name>.<ns>.svc.cluster.local`, cluster IPs as addresses,
//! endpoints from EndpointSlices and selected WorkloadEntries).

use std::collections::BTreeMap;

use aeraki_model::Resolution;

use crate::lenient::IntOrString;
use crate::protocol::Detected;
use crate::store::{Object, Store};
use crate::types::Body;
use crate::types::istio::WorkloadEntry;
use crate::validate::Validated;
use crate::validate::istio::port_value;

/// One declared port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub number: u16,
    pub name: String,
    /// Where endpoints listen when they do not say (ServiceEntry `targetPort`, numeric
    /// Service `targetPort`).
    pub target_port: Option<u16>,
    pub detected: Detected,
}

/// An endpoint before it is specialised to a port.
#[derive(Debug, Clone)]
pub struct RawEndpoint {
    pub address: String,
    /// Port overrides by port name.
    pub ports: BTreeMap<String, u16>,
    /// EndpointSlice endpoints only serve the ports their slice lists.
    pub only_listed_ports: bool,
    pub labels: BTreeMap<String, String>,
    pub weight: u32,
    pub locality: String,
}

impl RawEndpoint {
    /// The port this endpoint listens on for `p`, or `None` when it does not serve it.
    pub fn port_for(&self, p: &PortInfo) -> Option<u16> {
        match self.ports.get(&p.name) {
            Some(n) => Some(*n),
            None if self.only_listed_ports => None,
            None => Some(p.target_port.unwrap_or(p.number)),
        }
    }
}

/// A ServiceEntry-shaped service.
#[derive(Debug, Clone)]
pub struct ServiceSource<'a> {
    pub object: &'a Object,
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<PortInfo>,
    pub resolution: Resolution,
    pub endpoints: Vec<RawEndpoint>,
}

fn from_workload_entry(we: &WorkloadEntry) -> RawEndpoint {
    RawEndpoint {
        address: we.address.clone(),
        ports: we
            .ports
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), u16::try_from(port_value(v)?).ok()?)))
            .collect(),
        only_listed_ports: false,
        labels: we.labels.clone(),
        weight: we
            .weight
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| *w > 0)
            .unwrap_or(1),
        locality: we.locality.clone().unwrap_or_default(),
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// WorkloadEntries in `ns` carrying every label of `selector`, sorted by name.
fn selected_workloads(
    store: &Store,
    ns: &str,
    selector: &BTreeMap<String, String>,
) -> Vec<RawEndpoint> {
    store
        .of_kind("WorkloadEntry")
        .filter(|o| o.namespace == ns)
        .filter_map(|o| match &o.body {
            Body::WorkloadEntry(we) if selects(selector, &we.labels) => {
                Some(from_workload_entry(we))
            }
            _ => None,
        })
        .collect()
}

/// Label keys Kubernetes itself puts on EndpointSlices; they are not endpoint labels.
fn is_kubernetes_label(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(prefix, _)| prefix == "kubernetes.io" || prefix.ends_with(".kubernetes.io"))
}

fn ports(
    v: &Validated,
    o: &Object,
    list: impl Iterator<Item = (i64, String, Option<u16>)>,
) -> Vec<PortInfo> {
    let key = (
        o.body.kind().to_owned(),
        o.namespace.clone(),
        o.meta.name.clone(),
    );
    let detected = v.ports.get(&key).cloned().unwrap_or_default();
    list.zip(detected)
        .filter_map(|((number, name, target_port), detected)| {
            Some(PortInfo {
                number: u16::try_from(number).ok()?,
                name,
                target_port,
                detected,
            })
        })
        .collect()
}

/// Every service source, ServiceEntries first then Services, each sorted by namespace/name.
pub fn sources<'a>(store: &'a Store, v: &Validated) -> Vec<ServiceSource<'a>> {
    let mut out = Vec::new();
    for o in store.of_kind("ServiceEntry") {
        let Body::ServiceEntry(se) = &o.body else {
            continue;
        };
        let endpoints = match &se.workload_selector {
            Some(sel) => selected_workloads(store, &o.namespace, &sel.labels),
            None => se.endpoints.iter().map(from_workload_entry).collect(),
        };
        out.push(ServiceSource {
            object: o,
            hosts: se.hosts.clone(),
            addresses: se.addresses.clone(),
            ports: ports(
                v,
                o,
                se.ports.iter().map(|p| {
                    let tp = p
                        .target_port
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n > 0);
                    (p.number, p.name.clone(), tp)
                }),
            ),
            resolution: match se.resolution.as_deref() {
                Some("STATIC") => Resolution::Static,
                Some("DNS" | "DNS_ROUND_ROBIN") => Resolution::Dns,
                _ => Resolution::None,
            },
            endpoints,
        });
    }
    for o in store.of_kind("Service") {
        let Body::Service(svc) = &o.body else {
            continue;
        };
        let external = svc.type_.as_deref() == Some("ExternalName");
        let mut endpoints = Vec::new();
        if external {
            endpoints.push(RawEndpoint {
                address: svc.external_name.clone().unwrap_or_default(),
                ports: BTreeMap::new(),
                only_listed_ports: false,
                labels: BTreeMap::new(),
                weight: 1,
                locality: String::new(),
            });
        } else {
            for s in store
                .of_kind("EndpointSlice")
                .filter(|s| s.namespace == o.namespace)
            {
                let Body::EndpointSlice(es) = &s.body else {
                    continue;
                };
                if es.metadata.labels.get("kubernetes.io/service-name") != Some(&o.meta.name) {
                    continue;
                }
                let labels: BTreeMap<String, String> = es
                    .metadata
                    .labels
                    .iter()
                    .filter(|(k, _)| !is_kubernetes_label(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let slice_ports: BTreeMap<String, u16> = es
                    .ports
                    .iter()
                    .filter_map(|p| {
                        Some((
                            p.name.clone().unwrap_or_default(),
                            u16::try_from(p.port?).ok()?,
                        ))
                    })
                    .collect();
                for e in &es.endpoints {
                    if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    let Some(address) = e.addresses.first() else {
                        continue;
                    };
                    endpoints.push(RawEndpoint {
                        address: address.clone(),
                        ports: slice_ports.clone(),
                        only_listed_ports: true,
                        labels: labels.clone(),
                        weight: 1,
                        locality: String::new(),
                    });
                }
            }
            if !svc.selector.is_empty() {
                endpoints.extend(selected_workloads(store, &o.namespace, &svc.selector));
            }
        }
        let mut addresses: Vec<String> = if svc.cluster_ips.is_empty() {
            svc.cluster_ip.iter().cloned().collect()
        } else {
            svc.cluster_ips.clone()
        };
        addresses.retain(|a| !a.is_empty() && a != "None");
        out.push(ServiceSource {
            object: o,
            hosts: vec![format!("{}.{}.svc.cluster.local", o.meta.name, o.namespace)],
            addresses,
            ports: ports(
                v,
                o,
                svc.ports.iter().map(|p| {
                    let tp = match &p.target_port {
                        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n > 0),
                        _ => None,
                    };
                    (p.port, p.name.clone(), tp)
                }),
            ),
            resolution: if external {
                Resolution::Dns
            } else {
                Resolution::Static
            },
            endpoints,
        });
    }
    out
}
