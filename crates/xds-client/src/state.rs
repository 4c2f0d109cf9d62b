//! What the client knows (resources by type, versions, nonces, subscriptions) and how a
//! response is applied to the engine: convert every resource, apply the valid ones, ACK, or
//! NACK naming each invalid one while the previous version of it keeps serving.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener as PbListener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use meta_config::{Cluster, DiscoveryType, Endpoint, Listener, RouteConfig, XdsConfig};
use meta_proxy_engine::Engine;
use prost::Message;
use serde_json::json;

/// Listener type URL.
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Cluster type URL.
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Route configuration type URL.
pub const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Cluster load assignment type URL.
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// gRPC `INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// Short name of a type URL (metric label, error prefix).
pub(crate) fn short(type_url: &str) -> &'static str {
    match type_url {
        LDS => "lds",
        CDS => "cds",
        RDS => "rds",
        EDS => "eds",
        _ => "unknown",
    }
}

/// Per-type protocol state.
#[derive(Debug, Default, Clone)]
pub(crate) struct TypeState {
    /// Last ACKed version.
    pub(crate) version: String,
    /// Nonce of the last response of this type on the current stream.
    pub(crate) nonce: String,
    /// Resource names subscribed (empty: wildcard for LDS/CDS).
    pub(crate) names: Vec<String>,
    /// Reason of the last NACK, cleared by the next ACK.
    pub(crate) last_nack: Option<String>,
    /// Whether a response of this type was ever processed.
    pub(crate) received: bool,
}

/// The client's whole state; one task owns it.
pub(crate) struct State {
    engine: Arc<Engine>,
    pub(crate) x: XdsConfig,
    node: envoy_types::pb::envoy::config::core::v3::Node,
    static_clusters: Vec<Cluster>,
    static_listeners: HashSet<String>,
    /// Listeners we manage: from LDS, plus static ones waiting for or using RDS.
    listeners: BTreeMap<String, Listener>,
    /// Which of `listeners` came from LDS.
    lds_names: BTreeSet<String>,
    /// Clusters from CDS (EDS endpoints are filled in from `eds` when applied).
    clusters: BTreeMap<String, Cluster>,
    routes: HashMap<String, RouteConfig>,
    eds: HashMap<String, Vec<Endpoint>>,
    /// Listeners currently running in the engine on our behalf.
    active: BTreeSet<String>,
    types: BTreeMap<&'static str, TypeState>,
    metrics: meta_proxy_engine::metrics::XdsMetrics,
    ready_sent: bool,
}

impl State {
    /// `bootstrap` is the whole bootstrap; its listeners that use RDS were not given to the
    /// engine (they warm until their routes arrive).
    pub(crate) fn new(
        engine: Arc<Engine>,
        x: XdsConfig,
        bootstrap: &meta_config::Bootstrap,
    ) -> Self {
        let mut listeners = BTreeMap::new();
        let mut static_listeners = HashSet::new();
        for l in &bootstrap.listeners {
            if l.proxy.rds.is_some() {
                listeners.insert(l.name.clone(), l.clone());
            } else {
                static_listeners.insert(l.name.clone());
            }
        }
        let metrics = engine.xds_metrics();
        let mut s = Self {
            node: crate::node::node(&x),
            engine,
            x,
            static_clusters: bootstrap.clusters.clone(),
            static_listeners,
            listeners,
            lds_names: BTreeSet::new(),
            clusters: BTreeMap::new(),
            routes: HashMap::new(),
            eds: HashMap::new(),
            active: BTreeSet::new(),
            types: BTreeMap::new(),
            metrics,
            ready_sent: false,
        };
        for t in [CDS, LDS, RDS, EDS] {
            s.types.insert(t, TypeState::default());
        }
        s.refresh_subscriptions();
        s
    }

    pub(crate) fn metrics(&self) -> &meta_proxy_engine::metrics::XdsMetrics {
        &self.metrics
    }

    fn ts(&mut self, t: &'static str) -> &mut TypeState {
        self.types.entry(t).or_default()
    }

    fn request(&self, t: &'static str, error: Option<String>) -> DiscoveryRequest {
        let ts = self.types.get(t).cloned().unwrap_or_default();
        DiscoveryRequest {
            version_info: ts.version,
            node: Some(self.node.clone()),
            resource_names: ts.names,
            type_url: t.to_owned(),
            response_nonce: ts.nonce,
            error_detail: error.map(|message| Status {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }

    /// The requests opening a new stream: every subscription with the last ACKed version and
    /// no nonce.
    pub(crate) fn initial_requests(&mut self) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for (t, on) in [
            (CDS, self.x.cds),
            (LDS, self.x.lds),
            (RDS, true),
            (EDS, true),
        ] {
            self.ts(t).nonce.clear();
            let wildcard = matches!(t, CDS | LDS);
            if on && (wildcard || !self.types[t].names.is_empty()) {
                out.push(self.request(t, None));
            }
        }
        out
    }

    /// Applies one response; returns the requests to send (its ACK or NACK, then any
    /// subscription change it caused).
    pub(crate) async fn handle(&mut self, resp: DiscoveryResponse) -> Vec<DiscoveryRequest> {
        let t: &'static str = match resp.type_url.as_str() {
            LDS => LDS,
            CDS => CDS,
            RDS => RDS,
            EDS => EDS,
            other => {
                tracing::warn!(
                    type_url = other,
                    "ignoring a response of a type never asked for"
                );
                return Vec::new();
            }
        };
        let errors = match t {
            LDS => self.on_lds(&resp.resources).await,
            CDS => self.on_cds(&resp.resources).await,
            RDS => self.on_rds(&resp.resources).await,
            _ => self.on_eds(&resp.resources).await,
        };
        let ack = errors.is_empty();
        self.metrics.update(short(t), ack);
        let ts = self.ts(t);
        ts.nonce = resp.nonce;
        ts.received = true;
        let error = if ack {
            ts.version = resp.version_info;
            ts.last_nack = None;
            tracing::info!(r#type = short(t), version = %ts.version, "ACK");
            None
        } else {
            let text = errors.join("; ");
            tracing::warn!(r#type = short(t), version = %resp.version_info, "NACK: {text}");
            ts.last_nack = Some(text.clone());
            Some(text)
        };
        let mut out = vec![self.request(t, error)];
        for t in self.refresh_subscriptions() {
            out.push(self.request(t, None));
        }
        if !self.ready_sent
            && (!self.x.lds || self.types[LDS].received)
            && (!self.x.cds || self.types[CDS].received)
        {
            self.ready_sent = true;
            self.engine.set_ready(true);
            tracing::info!("first LDS/CDS round applied: ready");
        }
        out
    }

    /// Recomputes the RDS and EDS names; returns the types whose subscription changed (and is
    /// not empty: an empty list would mean "everything").
    fn refresh_subscriptions(&mut self) -> Vec<&'static str> {
        let rds: BTreeSet<String> = self
            .listeners
            .values()
            .filter_map(|l| l.proxy.rds.clone())
            .collect();
        let eds: BTreeSet<String> = self
            .all_clusters()
            .iter()
            .filter_map(|c| c.eds_service_name.clone())
            .collect();
        let mut changed = Vec::new();
        for (t, names) in [(RDS, rds), (EDS, eds)] {
            let names: Vec<String> = names.into_iter().collect();
            if self.types[t].names != names {
                let empty = names.is_empty();
                self.ts(t).names = names;
                if !empty {
                    changed.push(t);
                }
            }
        }
        changed
    }

    /// Static and CDS clusters, EDS ones with their current endpoints.
    fn all_clusters(&self) -> Vec<Cluster> {
        self.static_clusters
            .iter()
            .chain(self.clusters.values())
            .map(|c| {
                let mut c = c.clone();
                if c.discovery == DiscoveryType::Eds {
                    c.endpoints = c
                        .eds_service_name
                        .as_ref()
                        .and_then(|n| self.eds.get(n))
                        .cloned()
                        .unwrap_or_default();
                }
                c
            })
            .collect()
    }

    async fn on_lds(&mut self, resources: &[Any]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut valid = BTreeMap::new();
        let mut invalid = HashSet::new();
        for (i, any) in resources.iter().enumerate() {
            let Some(l) = decode::<PbListener>(any, LDS, i, &mut errors) else {
                continue;
            };
            let name = l.name.clone();
            if self.static_listeners.contains(&name) {
                errors.push(format!(
                    "lds[{name}]: a static listener of the bootstrap has this name"
                ));
                invalid.insert(name);
                continue;
            }
            match meta_api::listener_from_proto(&l, &format!("lds[{name}]")) {
                Ok(c) => {
                    valid.insert(name, c);
                }
                Err(e) => {
                    errors.push(e.to_string());
                    invalid.insert(name);
                }
            }
        }
        let gone: Vec<String> = self
            .lds_names
            .iter()
            .filter(|n| !valid.contains_key(*n) && !invalid.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.lds_names.remove(&name);
            self.listeners.remove(&name);
            if self.active.remove(&name) {
                self.engine.remove_listener(&name).await;
            }
        }
        for (name, l) in valid {
            self.lds_names.insert(name.clone());
            self.listeners.insert(name.clone(), l);
            if let Err(e) = self.activate(&name).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Runs listener `name` in the engine if its routes are known (else it keeps warming, and
    /// its previous version, if any, keeps serving).
    async fn activate(&mut self, name: &str) -> Result<(), String> {
        let Some(mut l) = self.listeners.get(name).cloned() else {
            return Ok(());
        };
        if let Some(rds) = &l.proxy.rds {
            match self.routes.get(rds) {
                Some(rc) => l.proxy.route_config = rc.clone(),
                None => {
                    tracing::info!(listener = name, route_config = %rds, "warming: waiting for RDS");
                    return Ok(());
                }
            }
        }
        match self.engine.apply_listener(l).await {
            Ok(change) => {
                tracing::debug!(listener = name, ?change, "listener applied");
                self.active.insert(name.to_owned());
                Ok(())
            }
            Err(e) => Err(format!("lds[{name}]: {e}")),
        }
    }

    async fn on_cds(&mut self, resources: &[Any]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut valid = BTreeMap::new();
        let mut invalid = HashSet::new();
        for (i, any) in resources.iter().enumerate() {
            let Some(c) = decode::<PbCluster>(any, CDS, i, &mut errors) else {
                continue;
            };
            let name = c.name.clone();
            if self.static_clusters.iter().any(|s| s.name == name) {
                errors.push(format!(
                    "cds[{name}]: a static cluster of the bootstrap has this name"
                ));
                invalid.insert(name);
                continue;
            }
            match meta_api::cluster_from_proto(&c, &format!("cds[{name}]")) {
                Ok(c) => {
                    valid.insert(name, c);
                }
                Err(e) => {
                    errors.push(e.to_string());
                    invalid.insert(name);
                }
            }
        }
        // Invalid clusters keep their previous version; absent ones are removed.
        self.clusters
            .retain(|n, _| valid.contains_key(n) || invalid.contains(n));
        self.clusters.extend(valid);
        if let Err(e) = self.engine.update_clusters(self.all_clusters()).await {
            errors.push(format!("cds: {e}"));
        }
        errors
    }

    async fn on_rds(&mut self, resources: &[Any]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut updated = Vec::new();
        for (i, any) in resources.iter().enumerate() {
            let Some(rc) = decode::<RouteConfiguration>(any, RDS, i, &mut errors) else {
                continue;
            };
            let name = rc.name.clone();
            match meta_api::route_configuration_from_proto(&rc, &format!("rds[{name}]")) {
                Ok(conv) => {
                    self.routes.insert(name.clone(), conv);
                    updated.push(name);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let users: Vec<String> = self
            .listeners
            .values()
            .filter(|l| l.proxy.rds.as_ref().is_some_and(|r| updated.contains(r)))
            .map(|l| l.name.clone())
            .collect();
        for name in users {
            if let Err(e) = self.activate(&name).await {
                errors.push(e);
            }
        }
        errors
    }

    async fn on_eds(&mut self, resources: &[Any]) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, any) in resources.iter().enumerate() {
            let Some(la) = decode::<ClusterLoadAssignment>(any, EDS, i, &mut errors) else {
                continue;
            };
            let path = format!("eds[{}]", la.cluster_name);
            let (name, endpoints) = match meta_api::cluster_load_assignment_from_proto(&la, &path) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            self.eds.insert(name.clone(), endpoints.clone());
            let users: Vec<String> = self
                .all_clusters()
                .into_iter()
                .filter(|c| c.eds_service_name.as_deref() == Some(name.as_str()))
                .map(|c| c.name)
                .collect();
            for cluster in users {
                if let Err(e) = self
                    .engine
                    .update_endpoints(&cluster, endpoints.clone())
                    .await
                {
                    errors.push(format!("{path}: {e}"));
                }
            }
        }
        errors
    }

    /// The state for `/config_dump`.
    pub(crate) fn status(&self) -> serde_json::Value {
        let types: serde_json::Map<String, serde_json::Value> = self
            .types
            .iter()
            .map(|(t, s)| {
                (
                    short(t).to_owned(),
                    json!({
                        "type_url": t,
                        "version": s.version,
                        "nonce": s.nonce,
                        "subscribed": s.names,
                        "last_nack": s.last_nack,
                    }),
                )
            })
            .collect();
        let warming: Vec<&String> = self
            .listeners
            .keys()
            .filter(|n| !self.active.contains(*n))
            .collect();
        json!({
            "server_cluster": self.x.server_cluster,
            "node_id": self.x.node_id,
            "resources": types,
            "warming_listeners": warming,
        })
    }
}

/// Decodes one resource, or records why not.
fn decode<M: Message + Default>(
    any: &Any,
    t: &'static str,
    i: usize,
    errors: &mut Vec<String>,
) -> Option<M> {
    if any.type_url != t {
        errors.push(format!(
            "{}: resources[{i}]: type_url '{}' is not {t}",
            short(t),
            any.type_url
        ));
        return None;
    }
    match M::decode(any.value.as_slice()) {
        Ok(m) => Some(m),
        Err(e) => {
            errors.push(format!("{}: resources[{i}]: cannot decode: {e}", short(t)));
            None
        }
    }
}
