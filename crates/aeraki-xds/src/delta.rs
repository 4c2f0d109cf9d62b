//! Incremental (delta) streams (ADS `DeltaAggregatedResources`, RDS `DeltaRoutes`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::snapshot::{Snapshot, is_wildcard_type};
use crate::stream::{Conn, Exchange};

type Tx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

/// The exchange for one type URL.
#[derive(Debug, Default)]
pub(crate) struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client holds, as far as we know: name → resource version. Seeded from
    /// `initial_resource_versions`, updated with every response we send.
    known: BTreeMap<String, String>,
    nonce: Option<String>,
    version: Option<String>,
    /// The first request of a type is always answered (possibly empty), so that the
    /// client's initial fetch completes.
    pending: bool,
}

/// Delta streams for [`crate::stream::run`].
pub(crate) struct Delta;

impl Exchange for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    type State = TypeState;
    const NAME: &'static str = "delta xDS";

    fn on_request(
        conn: &mut Conn,
        types: &mut BTreeMap<String, TypeState>,
        request: DeltaDiscoveryRequest,
    ) -> Result<Option<String>, Status> {
        on_request(conn, types, request).map(Some)
    }

    fn respond<'a>(
        conn: &'a Conn,
        types: &'a mut BTreeMap<String, TypeState>,
        type_url: &'a str,
        snapshot: &'a Arc<Snapshot>,
        tx: &'a Tx,
    ) -> impl Future<Output = bool> + Send + 'a {
        respond(conn, types, type_url, snapshot, tx)
    }
}

/// Applies one request: ACK/NACK bookkeeping and subscription changes. Unlike SotW, a request
/// with a stale nonce still carries subscription changes (delta requests are incremental), so
/// only its ACK/NACK is ignored.
fn on_request(
    conn: &mut Conn,
    types: &mut BTreeMap<String, TypeState>,
    request: DeltaDiscoveryRequest,
) -> Result<String, Status> {
    let type_url = conn.type_url(&request.type_url)?;
    conn.identify(request.node.as_ref())?;
    if !request.resource_locators_subscribe.is_empty()
        || !request.resource_locators_unsubscribe.is_empty()
    {
        return Err(Status::invalid_argument(format!(
            "resource_locators_subscribe/unsubscribe ({type_url}): xDS-TP resource locators are not supported"
        )));
    }
    let first = !types.contains_key(&type_url);
    let state = types.entry(type_url.clone()).or_default();
    if !request.response_nonce.is_empty() {
        if state.nonce.as_deref() == Some(request.response_nonce.as_str()) {
            let sent = state.version.clone().unwrap_or_default();
            match &request.error_detail {
                Some(detail) => conn.record_nack(&type_url, &sent, detail),
                None => conn.record_ack(&type_url, &sent),
            }
        } else {
            tracing::debug!(
                node = %conn.node_id(),
                type_url,
                nonce = request.response_nonce,
                "delta request with a stale nonce: ACK/NACK ignored"
            );
        }
    }
    if first {
        state.known = request.initial_resource_versions.into_iter().collect();
        state.wildcard = is_wildcard_type(&type_url) && request.resource_names_subscribe.is_empty();
        state.pending = true;
    }
    for name in request.resource_names_subscribe {
        if name == "*" {
            state.wildcard = true;
        } else {
            state.names.insert(name);
        }
    }
    for name in request.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(&name);
            state.known.remove(&name);
        }
    }
    conn.record_subscription(&type_url, state.wildcard, Arc::new(state.names.clone()));
    Ok(type_url)
}

/// Sends what the client lacks (new or changed resources it is interested in) and what it
/// holds that no longer exists. Returns false when the client has gone.
async fn respond(
    conn: &Conn,
    types: &mut BTreeMap<String, TypeState>,
    type_url: &str,
    snapshot: &Arc<Snapshot>,
    tx: &Tx,
) -> bool {
    let Some(state) = types.get_mut(type_url) else {
        return true;
    };
    if snapshot.version == 0 {
        return true; // nothing published yet: answer after the first publish
    }
    let Some(flavor) = conn.flavor() else {
        return true;
    };
    let all = snapshot.resources(flavor, type_url);
    let exists = |name: &str| all.is_some_and(|all| all.contains_key(name));

    let mut resources = Vec::new();
    if let Some(all) = all {
        let wanted: Box<dyn Iterator<Item = (&String, &crate::snapshot::Entry)>> = if state.wildcard
        {
            Box::new(all.iter())
        } else {
            Box::new(state.names.iter().filter_map(|n| all.get_key_value(n)))
        };
        for (name, entry) in wanted {
            if state.known.get(name) != Some(&entry.version) {
                resources.push(Resource {
                    name: name.clone(),
                    version: entry.version.clone(),
                    resource: Some(entry.any.clone()),
                    ..Default::default()
                });
            }
        }
    }
    let removed: Vec<String> = state
        .known
        .keys()
        .filter(|name| !exists(name))
        .cloned()
        .collect();
    if resources.is_empty() && removed.is_empty() && !state.pending {
        return true;
    }
    for resource in &resources {
        state
            .known
            .insert(resource.name.clone(), resource.version.clone());
    }
    for name in &removed {
        state.known.remove(name);
    }
    let version = snapshot.version_string();
    let nonce = conn.shared.next_nonce();
    state.pending = false;
    state.nonce = Some(nonce.clone());
    state.version = Some(version.clone());
    conn.record_sent(type_url, &version, &nonce);
    tracing::debug!(
        node = %conn.node_id(),
        type_url,
        version,
        nonce,
        updated = resources.len(),
        removed = removed.len(),
        "delta xDS response"
    );
    let response = DeltaDiscoveryResponse {
        system_version_info: version,
        resources,
        type_url: type_url.to_owned(),
        removed_resources: removed,
        nonce,
        ..Default::default()
    };
    tx.send(Ok(response)).await.is_ok()
}
