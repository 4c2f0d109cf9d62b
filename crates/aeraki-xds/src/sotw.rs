//! State-of-the-world streams (ADS `StreamAggregatedResources`, RDS `StreamRoutes`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::mpsc;
use tonic::Status;

use crate::encoded::Outgoing;
use crate::snapshot::{Entry, Fnv, Snapshot, TypeResources, is_wildcard_type};
use crate::stream::{Conn, Exchange};

/// Responses go out pre-encoded (see [`crate::encoded`]).
pub(crate) type Tx = mpsc::Sender<Result<Outgoing, Status>>;

/// The exchange for one type URL.
#[derive(Debug, Default)]
pub(crate) struct TypeState {
    /// Everything of the type is wanted.
    wildcard: bool,
    /// The first request had no names (LDS/CDS): an empty list keeps meaning "everything".
    legacy_wildcard: bool,
    /// Interned: streams with the same names share one set ([`crate::status::Interner`]).
    names: Arc<BTreeSet<String>>,
    /// Nonce and version of the last response sent.
    nonce: Option<String>,
    version: Option<String>,
    /// Fingerprint of the last response's content, to skip identical pushes.
    fingerprint: Option<u64>,
    /// A request must be answered (even with unchanged content) once a snapshot exists.
    pending: bool,
    /// The snapshot version whose content (for the current subscription) the client has been
    /// sent, in full or as changes; `None` after a subscription change.
    synced: Option<u64>,
}

/// SotW streams for [`crate::stream::run`].
pub(crate) struct Sotw;

impl Exchange for Sotw {
    type Request = DiscoveryRequest;
    type Response = Outgoing;
    type State = TypeState;
    const NAME: &'static str = "xDS";

    fn on_request(
        conn: &mut Conn,
        types: &mut BTreeMap<String, TypeState>,
        request: DiscoveryRequest,
    ) -> Result<Option<String>, Status> {
        on_request(conn, types, request)
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

/// Applies one request: ACK/NACK bookkeeping and the subscription. Returns the type URL
/// when a response may be due.
fn on_request(
    conn: &mut Conn,
    types: &mut BTreeMap<String, TypeState>,
    request: DiscoveryRequest,
) -> Result<Option<String>, Status> {
    let type_url = conn.type_url(&request.type_url)?;
    conn.identify(request.node.as_ref())?;
    if !request.resource_locators.is_empty() {
        return Err(Status::invalid_argument(format!(
            "resource_locators ({type_url}): xDS-TP resource locators are not supported"
        )));
    }
    let first = !types.contains_key(&type_url);
    let state = types.entry(type_url.clone()).or_default();
    let initial = request.response_nonce.is_empty();
    if !initial {
        if state.nonce.as_deref() != Some(request.response_nonce.as_str()) {
            tracing::debug!(
                node = %conn.node_id(),
                type_url,
                nonce = request.response_nonce,
                "ignoring a request with a stale nonce"
            );
            return Ok(None);
        }
        let sent = state.version.clone().unwrap_or_default();
        match &request.error_detail {
            Some(detail) => conn.record_nack(&type_url, &sent, detail),
            None => conn.record_ack(&type_url, &request.version_info),
        }
    }

    // An ACK normally repeats the subscription (in meta-proxy's and Envoy's sorted order):
    // compare in place before building a set, which costs O(n log n) for 10,000 names.
    let same = !first
        && request.resource_names.len() == state.names.len()
        && request
            .resource_names
            .iter()
            .zip(state.names.iter())
            .all(|(a, b)| a == b);
    let changed = if same {
        let wildcard = state.legacy_wildcard && state.names.is_empty();
        let changed = wildcard != state.wildcard;
        state.wildcard = wildcard;
        changed
    } else {
        let mut names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let explicit = names.remove("*");
        if first {
            state.legacy_wildcard = is_wildcard_type(&type_url) && names.is_empty() && !explicit;
        }
        let wildcard = explicit || (state.legacy_wildcard && names.is_empty());
        let changed = first || wildcard != state.wildcard || names != *state.names;
        state.wildcard = wildcard;
        if changed {
            state.names = conn.shared.interner.intern(names);
        }
        changed
    };
    if changed {
        state.synced = None;
        conn.record_subscription(&type_url, state.wildcard, state.names.clone());
    }
    if initial {
        state.pending = true;
    }
    Ok((initial || changed).then_some(type_url))
}

/// Sends the type's current response if one is pending or its content changed. Returns false
/// when the client has gone.
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
    if !state.pending && state.synced == Some(snapshot.version) {
        return true; // already answered from this snapshot
    }
    let all = snapshot.resources(flavor, type_url);
    if !state.pending && state.synced.is_some_and(|v| v + 1 == snapshot.version) {
        // Up to date with the previous snapshot: look only at what changed.
        if let Some(changed) = snapshot.changed(flavor, type_url) {
            let Some(changed) = changed.filter(|c| relevant(c, state)) else {
                state.synced = Some(snapshot.version);
                return true; // nothing this subscription sees changed
            };
            if !state.wildcard && !is_wildcard_type(type_url) {
                // RDS, EDS: a SotW response for these types need not repeat unchanged
                // resources (Envoy and meta-proxy keep what a response does not mention).
                let selected = select_changed(all, state, changed);
                state.synced = Some(snapshot.version);
                if selected.is_empty() {
                    return true; // only removals: SotW cannot say more for these types
                }
                state.fingerprint = None;
                let fingerprint = fingerprint(&selected);
                return send(conn, state, type_url, snapshot, selected, fingerprint, tx).await;
            }
        }
    }
    state.synced = Some(snapshot.version);
    let selected = select(all, state);
    let fingerprint = fingerprint(&selected);
    if !state.pending && state.fingerprint == Some(fingerprint) {
        return true;
    }
    state.fingerprint = Some(fingerprint);
    send(conn, state, type_url, snapshot, selected, fingerprint, tx).await
}

/// FNV over the names and content versions of a selection: equal selections of one snapshot
/// have equal responses.
fn fingerprint(selected: &[(&String, &Entry)]) -> u64 {
    let mut hash = Fnv::new();
    for (name, entry) in selected {
        hash.write(name.as_bytes());
        hash.write(&[0]);
        hash.write(entry.version.as_bytes());
        hash.write(&[0]);
    }
    hash.finish()
}

/// Sends `selected` as the type's response at the snapshot's version, its resources encoded
/// once per snapshot and selection (`fingerprint`) and shared with every other stream.
async fn send(
    conn: &Conn,
    state: &mut TypeState,
    type_url: &str,
    snapshot: &Snapshot,
    selected: Vec<(&String, &Entry)>,
    fingerprint: u64,
    tx: &Tx,
) -> bool {
    let version = snapshot.version_string();
    let nonce = conn.shared.next_nonce();
    let Some(flavor) = conn.flavor() else {
        return true;
    };
    let resources = snapshot
        .encoded
        .get(flavor, type_url, fingerprint, &selected);
    let response = Outgoing::new(&version, type_url, &nonce, resources);
    state.pending = false;
    state.nonce = Some(nonce.clone());
    state.version = Some(version.clone());
    conn.record_sent(type_url, &version, &nonce);
    tracing::debug!(node = %conn.node_id(), type_url, version, nonce, count = selected.len(), "xDS response");
    tx.send(Ok(response)).await.is_ok()
}

/// Whether a change touches what the subscription sees.
fn relevant(changed: &BTreeSet<String>, state: &TypeState) -> bool {
    state.wildcard || changed.iter().any(|n| state.names.contains(n))
}

/// The changed resources a (non-wildcard) subscription names and that still exist.
fn select_changed<'a>(
    all: Option<&'a TypeResources>,
    state: &TypeState,
    changed: &BTreeSet<String>,
) -> Vec<(&'a String, &'a Entry)> {
    let Some(all) = all else {
        return Vec::new();
    };
    changed
        .iter()
        .filter(|n| state.names.contains(*n))
        .filter_map(|n| all.get_key_value(n))
        .collect()
}

/// The resources a subscription selects: all for a wildcard, else the named ones that exist.
fn select<'a>(all: Option<&'a TypeResources>, state: &TypeState) -> Vec<(&'a String, &'a Entry)> {
    let Some(all) = all else {
        return Vec::new();
    };
    if state.wildcard {
        return all.iter().collect();
    }
    state
        .names
        .iter()
        .filter_map(|name| all.get_key_value(name))
        .collect()
}
