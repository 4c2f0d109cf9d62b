//! Translates the resolved [`aeraki_model::MeshView`] into Envoy v3 xDS resources, one
//! [`ResourceSet`] per proxy [`Flavor`]:
//!
//! - [`Flavor::MetaProxy`]: MetaProtocol listeners whose routes come over RDS in Aeraki's
//!   tunnelled form (a MetaProtocol route table carried inside an HTTP `RouteConfiguration`),
//!   and EDS clusters with their `ClusterLoadAssignment`s. MetaRoute timeouts, retries and
//!   faults ride on the tunnelled routes; MetaRouter rate limits become the listener's
//!   `local_ratelimit`/`ratelimit` filters before the router.
//! - Plain gRPC/TCP services (rate-limit services): clusters only, in both flavours.
//! - [`Flavor::Envoy`]: the same clusters and endpoints, with native `dubbo_proxy` /
//!   `thrift_proxy` listeners carrying inline route tables (Aeraki's native plugins).
//!
//! Translation never fails: the view is already validated. What a flavour cannot express is
//! skipped and reported as a deterministic warning naming the service, the route and the field.
//! [`to_json`] renders a set in proto3 JSON (snake_case field names) for golden tests and
//! `aeraki render`. The exact output shape, which the meta-proxy's xDS client reads back, is
//! documented in `docs/translation.md`.

mod cluster;
mod common;
mod json;
mod meta;
mod native;
mod policy;
mod pool;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use aeraki_model::resources::{Flavor, ResourceSet};
use aeraki_model::{MeshView, Protocol, ServiceView};

pub use json::to_json;

/// The result of translating one mesh view for one flavour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// Listeners, clusters, routes and endpoints, keyed by type URL and name.
    pub resources: ResourceSet,
    /// What could not be expressed for this flavour, in a deterministic order.
    pub warnings: Vec<String>,
}

/// Translates `view` for proxies of kind `flavor`.
pub fn translate(view: &MeshView, flavor: Flavor) -> Translation {
    let mut cx = Cx::new(view, flavor);
    if let Some(path) = &view.mesh.access_log_file {
        cx.warn(format!(
            "mesh accessLogFile {path:?}: access logs are not configured by translation yet; ignored"
        ));
    }
    for svc in &view.services {
        if svc.protocol == Protocol::Redis {
            cx.warn(format!(
                "{}: protocol redis is not translated yet; service skipped",
                svc_id(svc)
            ));
            continue;
        }
        cluster::clusters(&mut cx, svc);
        match (flavor, &svc.protocol) {
            // Plain TCP/gRPC services (rate-limit services): clusters only.
            (_, Protocol::Tcp | Protocol::Grpc) => {}
            (Flavor::MetaProxy, _) => meta::service(&mut cx, svc),
            (Flavor::Envoy, _) => native::service(&mut cx, svc),
        }
    }
    Translation {
        resources: cx.set,
        warnings: cx.warnings,
    }
}

/// Translation state: the output so far and an index of services for destination lookups.
pub(crate) struct Cx<'a> {
    by_key: BTreeMap<(&'a str, u16), &'a ServiceView>,
    pub(crate) flavor: Flavor,
    pub(crate) set: ResourceSet,
    pub(crate) warnings: Vec<String>,
}

impl<'a> Cx<'a> {
    fn new(view: &'a MeshView, flavor: Flavor) -> Self {
        let mut by_key = BTreeMap::new();
        for s in &view.services {
            by_key.entry((s.host.as_str(), s.port)).or_insert(s);
        }
        Cx {
            by_key,
            flavor,
            set: ResourceSet::default(),
            warnings: Vec::new(),
        }
    }

    /// The service a route destination names, if the view has it.
    pub(crate) fn service(&self, host: &str, port: u16) -> Option<&'a ServiceView> {
        self.by_key.get(&(host, port)).copied()
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// Packs `msg` and stores it under `type_url` / `name`.
    pub(crate) fn insert<M: prost::Message>(&mut self, type_url: &str, name: String, msg: &M) {
        let any = prost_types::Any {
            type_url: type_url.to_owned(),
            value: msg.encode_to_vec(),
        };
        self.set.insert(type_url, name, any);
    }
}

/// `host:port (port name)`, the prefix of every warning about a service.
pub(crate) fn svc_id(svc: &ServiceView) -> String {
    format!("service {}:{} ({})", svc.host, svc.port, svc.port_name)
}
