//! Control-plane scale benchmark (issue 5, "Control plane scale").
//!
//! [`run`] generates a mesh of `services` services ([`gen`]: ServiceEntry with 2–4 endpoints,
//! DestinationRule with two subsets, MetaRouter with 2–3 routes), loads and resolves it through
//! [`aeraki_config::load_str`], translates it for both proxy flavours with
//! [`aeraki_translate::translate`], and publishes it on a real [`aeraki_xds::XdsServer`] bound to
//! 127.0.0.1. Then `clients` simulated meta-proxies ([`client`]) connect, each on its own HTTP/2
//! connection, and sync. Finally one route of one MetaRouter is edited; the mesh is reloaded,
//! re-translated and published, and the benchmark measures when every client has received the
//! new RouteConfiguration version and when the server has recorded every client's ACK of it.
//!
//! The clients run in a child process ([`child`], what the `cp-bench` binary does) or in this
//! process ([`Options::clients_process`] `None`, what the small test does). With a child, this
//! process's RSS is the control plane's alone and the child's is reported separately; in
//! one process, the RSS before the clients connect is the server's alone. Results and method:
//! `docs/benchmarks.md`.

pub mod child;
pub mod client;
pub mod mesh;
pub mod sys;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeraki_model::resources::{ENDPOINT, Flavor, ROUTE, ResourceSet};
use aeraki_xds::XdsServer;
use anyhow::{Context, bail};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use prost::Message;
use serde::Serialize;
use tokio::sync::mpsc;

use client::{Event, Subscription};

/// Benchmark sizes and limits.
#[derive(Debug, Clone)]
pub struct Options {
    pub services: usize,
    pub clients: usize,
    /// Bound on the initial sync and on the push.
    pub timeout: Duration,
    /// Run the clients in a child process started from this `cp-bench` binary
    /// ([`child`]), so that this process's memory is the control plane's alone; `None`: in
    /// this process.
    pub clients_process: Option<std::path::PathBuf>,
}

/// Timings in milliseconds, memory in MiB.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub services: usize,
    pub clients: usize,
    /// Resources per type of the meta-proxy flavour.
    pub resources: BTreeMap<String, usize>,
    /// Bytes of every serialised resource of both flavours.
    pub resource_bytes: usize,
    /// Parse, validate and resolve the generated YAML.
    pub load_ms: f64,
    pub translate_meta_ms: f64,
    pub translate_envoy_ms: f64,
    /// Both flavours, as `aeraki serve` does on every change.
    pub translate_ms: f64,
    /// `XdsServer::publish` of the initial snapshot.
    pub publish_ms: f64,
    /// Connect every client and deliver every type to all of them.
    pub initial_sync_ms: f64,
    /// After the edit: reload + translate (both flavours) of the edited mesh.
    pub edit_load_ms: f64,
    pub edit_translate_ms: f64,
    pub edit_publish_ms: f64,
    /// From the start of the edit's publish until the last client received the new version.
    pub push_all_ms: f64,
    /// From the start of the edit's publish until every client had sent its ACK (client
    /// side; the server's status is then checked to have recorded all of them, untimed).
    pub acked_all_ms: f64,
    /// Per-client delivery time of the new RouteConfiguration after the publish started.
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    pub delivery_max_ms: f64,
    /// Responses of each type (CDS, EDS, LDS, RDS) the clients received after the edit (a
    /// one-route change should cause RDS responses only).
    pub responses_after_edit: [usize; 4],
    /// Clients whose new RouteConfiguration carries the edited weights.
    pub clients_with_edit: usize,
    /// RSS after load + translate (before the server holds anything).
    pub rss_translated_mib: f64,
    /// RSS after the first publish: the server's snapshot added.
    pub rss_published_mib: f64,
    /// RSS with every client connected and synced (the control plane alone when the clients
    /// run in a child process, else server + clients).
    pub rss_synced_mib: f64,
    /// Peak RSS of this process over the whole run (the control plane's, with a child).
    pub peak_rss_mib: f64,
    /// Whether the clients ran in a child process.
    pub clients_in_child: bool,
    /// The child's RSS when synced and its peak (0 without a child).
    pub clients_rss_synced_mib: f64,
    pub clients_peak_rss_mib: f64,
    pub open_files_limit: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn translate_both(
    view: &aeraki_model::MeshView,
) -> (BTreeMap<Flavor, ResourceSet>, Duration, Duration) {
    let t = Instant::now();
    let meta = aeraki_translate::translate(view, Flavor::MetaProxy).resources;
    let meta_time = t.elapsed();
    let t = Instant::now();
    let envoy = aeraki_translate::translate(view, Flavor::Envoy).resources;
    let envoy_time = t.elapsed();
    (
        BTreeMap::from([(Flavor::MetaProxy, meta), (Flavor::Envoy, envoy)]),
        meta_time,
        envoy_time,
    )
}

/// Runs the whole benchmark (see the crate docs). Fails when a client fails, when the clients
/// do not sync or receive the edit within `timeout`, or when the configuration is refused.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.services >= 1 && opts.clients >= 1,
        "need ≥ 1 service and client"
    );
    let open_files_limit = sys::ensure_open_files(2 * opts.clients as u64 + 256)?;
    let edited = opts.services / 2;
    let watched_route = aeraki_model::route_config_name(&mesh::host(edited), mesh::port(edited));

    let yaml = mesh::mesh_yaml(opts.services, None);
    let t = Instant::now();
    let loaded = aeraki_config::load_str("cp-bench.yaml", &yaml)
        .map_err(|e| anyhow::anyhow!("generated mesh refused: {e}"))?;
    let load_ms = ms(t.elapsed());
    drop(yaml);
    let (sets, meta_time, envoy_time) = translate_both(&loaded.view);
    drop(loaded);
    let rss_translated_mib = sys::rss_mib();

    let meta = &sets[&Flavor::MetaProxy];
    let resources = meta
        .by_type
        .iter()
        .map(|(t, r)| (t.rsplit('.').next().unwrap_or(t).to_owned(), r.len()))
        .collect();
    let resource_bytes = sets
        .values()
        .flat_map(|s| s.by_type.values())
        .flat_map(|r| r.values())
        .map(|a| a.value.len())
        .sum();
    let names = |t: &str| meta.of_type(t).map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let sub = Arc::new(Subscription {
        rds: names(ROUTE),
        eds: names(ENDPOINT),
        watched_route: watched_route.clone(),
    });

    let xds = XdsServer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(xds.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let t = Instant::now();
    let first = xds.publish(sets);
    let publish_ms = ms(t.elapsed());
    let rss_published_mib = sys::rss_mib();

    // Connect and sync every client.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let t = Instant::now();
    let child = match &opts.clients_process {
        Some(bin) => Some(child::spawn(bin, addr, opts.clients, &sub, events_tx)?),
        None => {
            for id in 0..opts.clients {
                tokio::spawn(client::run(id, addr, sub.clone(), events_tx.clone()));
            }
            None
        }
    };
    let mut synced = vec![[false; 4]; opts.clients];
    let mut left = opts.clients;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    while left > 0 {
        match next(&mut events, deadline).await? {
            Event::Response {
                client,
                kind,
                version,
                ..
            } if version == first => {
                let got = &mut synced[client];
                let before = got.iter().all(|g| *g);
                got[kind] = true;
                if !before && got.iter().all(|g| *g) {
                    left -= 1;
                }
            }
            Event::Response { .. } => {}
            Event::Failed { client, error } => bail!("client {client} failed: {error}"),
        }
    }
    let initial_sync_ms = ms(t.elapsed());
    let rss_synced_mib = sys::rss_mib();
    let clients_rss_synced_mib = child.as_ref().map_or(0.0, |c| c.memory_mib().0);

    // The edit: one route of one MetaRouter.
    let yaml = mesh::mesh_yaml(opts.services, Some(edited));
    let t = Instant::now();
    let loaded = aeraki_config::load_str("cp-bench.yaml", &yaml)
        .map_err(|e| anyhow::anyhow!("edited mesh refused: {e}"))?;
    let edit_load_ms = ms(t.elapsed());
    drop(yaml);
    let t = Instant::now();
    let (sets, _, _) = translate_both(&loaded.view);
    let edit_translate_ms = ms(t.elapsed());
    drop(loaded);
    let t0 = Instant::now();
    let version = xds.publish(sets);
    let edit_publish_ms = ms(t0.elapsed());

    let mut delivered: Vec<Option<Duration>> = vec![None; opts.clients];
    let mut acked_all = Duration::ZERO;
    let mut clients_with_edit = 0;
    let mut responses_after_edit = [0usize; 4];
    let mut left = opts.clients;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    while left > 0 {
        match next(&mut events, deadline).await? {
            Event::Response {
                client,
                kind,
                version: v,
                at,
                acked,
                watched,
            } if v == version => {
                responses_after_edit[kind] += 1;
                if let Some(edited) = watched
                    && delivered[client].is_none()
                {
                    delivered[client] = Some(at.saturating_duration_since(t0));
                    acked_all = acked_all.max(acked.saturating_duration_since(t0));
                    left -= 1;
                    if edited {
                        clients_with_edit += 1;
                    }
                }
            }
            Event::Response { .. } => {}
            Event::Failed { client, error } => bail!("client {client} failed: {error}"),
        }
    }
    let push_all = delivered
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    wait_acked(&xds, &version, opts.clients, deadline).await?;
    // Responses of other types would have arrived by now (they are pushed before RDS).
    while let Ok(Event::Response {
        kind, version: v, ..
    }) = events.try_recv()
    {
        if v == version {
            responses_after_edit[kind] += 1;
        }
    }
    let mut times: Vec<Duration> = delivered.into_iter().flatten().collect();
    times.sort();
    let pct =
        |p: f64| ms(times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]);
    let clients_peak_rss_mib = child.as_ref().map_or(0.0, |c| c.memory_mib().1);
    drop(child);
    let _ = stop.send(());
    Ok(Report {
        services: opts.services,
        clients: opts.clients,
        resources,
        resource_bytes,
        load_ms,
        translate_meta_ms: ms(meta_time),
        translate_envoy_ms: ms(envoy_time),
        translate_ms: ms(meta_time + envoy_time),
        publish_ms,
        initial_sync_ms,
        edit_load_ms,
        edit_translate_ms,
        edit_publish_ms,
        push_all_ms: ms(push_all),
        acked_all_ms: ms(acked_all),
        delivery_p50_ms: pct(0.50),
        delivery_p99_ms: pct(0.99),
        delivery_max_ms: pct(1.0),
        responses_after_edit,
        clients_with_edit,
        rss_translated_mib,
        rss_published_mib,
        rss_synced_mib,
        peak_rss_mib: sys::peak_rss_mib(),
        clients_in_child: opts.clients_process.is_some(),
        clients_rss_synced_mib,
        clients_peak_rss_mib,
        open_files_limit,
    })
}

async fn next(
    events: &mut mpsc::UnboundedReceiver<Event>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Event> {
    match tokio::time::timeout_at(deadline, events.recv()).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => bail!("every client stopped"),
        Err(_) => bail!("timed out waiting for the clients"),
    }
}

/// Polls the server (every 50 ms) until every stream ACKed `version` for RDS.
async fn wait_acked(
    xds: &XdsServer,
    version: &str,
    clients: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    loop {
        let acked = xds.acked_count(ROUTE, version);
        if acked >= clients {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("only {acked} of {clients} clients ACKed version {version} in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a tunnelled RouteConfiguration's first route splits with the edited weights.
pub fn has_edited_weights(body: &[u8]) -> bool {
    let Ok(rc) = RouteConfiguration::decode(body).context("decode") else {
        return false;
    };
    let first = rc.virtual_hosts.first().and_then(|v| v.routes.first());
    let Some(Action::Route(action)) = first.and_then(|r| r.action.as_ref()) else {
        return false;
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action.cluster_specifier else {
        return false;
    };
    let weights: Vec<u32> = w
        .clusters
        .iter()
        .map(|c| c.weight.as_ref().map_or(0, |v| v.value))
        .collect();
    weights == [mesh::EDITED_WEIGHTS.0, mesh::EDITED_WEIGHTS.1]
}
