//! Validation of every object in a [`Store`], collecting all errors in one pass. Each
//! validator also converts what resolution needs (router views, traffic policies, detected
//! port protocols), so the rules live in one place.

pub mod common;
pub mod istio;
mod metarouter;
pub mod other;
pub mod route_policy;

use std::collections::BTreeMap;

use aeraki_model::RouterView;

use crate::error::{ConfigError, Diag};
use crate::protocol::{Detected, Registry};
use crate::store::{Object, Store};
use crate::types::Body;

pub use metarouter::metarouter;

/// Store key: (kind, namespace, name).
pub type Key = (String, String, String);

/// What validation learned, for resolution.
#[derive(Debug, Default)]
pub struct Validated {
    pub registry: Registry,
    /// Detected protocol per port, for ServiceEntries and Services.
    pub ports: BTreeMap<Key, Vec<Detected>>,
    /// DestinationRules, in store order (namespace, name).
    pub destination_rules: Vec<(Key, istio::DrConv)>,
    /// MetaRouters, in store order, with their host.
    pub routers: Vec<(Key, String, RouterView)>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

fn diag(o: &Object) -> Diag<'_> {
    Diag::new(Some(&o.origin), Some(o.describe()))
}

/// Validates every object of the store.
pub fn validate(store: &Store) -> Validated {
    let mut v = Validated::default();
    // The registry first: port names depend on it.
    let mut declared: BTreeMap<String, &Object> = BTreeMap::new();
    for o in store.of_kind("ApplicationProtocol") {
        let Body::ApplicationProtocol(ap) = &o.body else {
            continue;
        };
        let mut d = diag(o);
        other::application_protocol(&mut d, ap);
        let proto = ap.protocol.to_ascii_lowercase();
        if d.errors.is_empty() {
            match declared.get(&proto) {
                Some(first) if !matches!(&first.body, Body::ApplicationProtocol(f) if f.codec == ap.codec) =>
                {
                    d.err(
                        "spec.protocol",
                        format!(
                            "protocol {proto:?} is already declared with another codec by {} ({})",
                            first.describe(),
                            first.origin
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    declared.insert(proto.clone(), o);
                    v.registry.register(&proto, &ap.codec);
                }
            }
        }
        absorb(&mut v, d);
    }

    for (key, o) in &store.objects {
        let mut d = diag(o);
        match &o.body {
            Body::ApplicationProtocol(_) => continue,
            Body::ServiceEntry(se) => {
                let ports = istio::service_entry(&mut d, se, &v.registry);
                v.ports.insert(key.clone(), ports);
            }
            Body::Service(svc) => {
                let ports = other::service(&mut d, svc, &v.registry);
                v.ports.insert(key.clone(), ports);
            }
            Body::WorkloadEntry(we) => {
                istio::endpoint(&mut d, "spec", we, None, false);
            }
            Body::DestinationRule(dr) => {
                let conv = istio::destination_rule(&mut d, &o.namespace, dr);
                v.destination_rules.push((key.clone(), conv));
            }
            Body::VirtualService(vs) => istio::virtual_service(&mut d, vs),
            Body::MetaRouter(mr) => {
                let source = format!("{}/{}", o.namespace, o.meta.name);
                let view = metarouter(&mut d, &source, mr);
                let host = mr.hosts.first().cloned().unwrap_or_default();
                v.routers.push((key.clone(), host, view));
            }
            Body::RedisService(rs) => other::redis_service(&mut d, rs),
            Body::RedisDestination(rd) => other::redis_destination(&mut d, rd),
            Body::DubboAuthorizationPolicy(p) => other::dubbo_authorization_policy(&mut d, p),
            Body::EndpointSlice(es) => other::endpoint_slice(&mut d, es),
        }
        absorb(&mut v, d);
    }
    v
}

fn absorb(v: &mut Validated, d: Diag<'_>) {
    v.errors.extend(d.errors);
    v.warnings.extend(d.warnings);
}
