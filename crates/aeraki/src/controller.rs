//! The control loop: watch the config directory, validate, translate for every proxy flavour,
//! publish to the xDS server; plus the one-shot `validate` and `render` commands.
//!
//! An invalid change is refused with its precise messages (logged, and shown by `/status` and
//! `aeraki status`) and the last good config keeps being served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use aeraki_config::LoadedConfig;
use aeraki_model::resources::{Flavor, ResourceSet};
use aeraki_xds::XdsServer;

use crate::admin::{ConfigState, NackReport, ProxyReport, StatusReport, TypeReport};

/// State shared by the control loop and the admin server.
#[derive(Debug)]
pub struct Shared {
    pub xds: XdsServer,
    state: Mutex<Served>,
}

#[derive(Debug, Default)]
struct Served {
    config: ConfigState,
    resources: BTreeMap<Flavor, ResourceSet>,
    /// The mesh view behind `resources`.
    view: Arc<aeraki_model::MeshView>,
}

impl Shared {
    pub fn new(xds: XdsServer, dir: &Path) -> Self {
        Shared {
            xds,
            state: Mutex::new(Served {
                config: ConfigState {
                    dir: dir.display().to_string(),
                    ..ConfigState::default()
                },
                resources: BTreeMap::new(),
                view: Arc::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Served> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Translates a valid config for every flavour and publishes it.
    pub fn apply(&self, loaded: &LoadedConfig) -> String {
        let mut warnings = loaded.warnings.clone();
        let mut resources = BTreeMap::new();
        for flavor in [Flavor::MetaProxy, Flavor::Envoy] {
            let t = aeraki_translate::translate(&loaded.view, flavor);
            warnings.extend(
                t.warnings
                    .into_iter()
                    .map(|w| format!("{}: {w}", flavor_name(flavor))),
            );
            resources.insert(flavor, t.resources);
        }
        let version = self.xds.publish(resources.clone());
        let mut s = self.lock();
        s.config.version += 1;
        s.config.services = loaded.view.services.len();
        s.config.last_error = None;
        s.config.warnings = warnings;
        s.resources = resources;
        s.view = Arc::new(loaded.view.clone());
        version
    }

    /// The mesh view currently served (empty before the first valid config).
    pub fn view(&self) -> Arc<aeraki_model::MeshView> {
        self.lock().view.clone()
    }

    /// Records a refused change (the served config is unchanged).
    pub fn refuse(&self, error: String) {
        self.lock().config.last_error = Some(error);
    }

    /// The `/status` report.
    pub fn report(&self) -> StatusReport {
        let config = self.lock().config.clone();
        let proxies = self
            .xds
            .status()
            .into_iter()
            .map(|p| ProxyReport {
                node: p.node_id,
                flavor: flavor_name(p.flavor).to_owned(),
                peer: p.peer.map(|a| a.to_string()).unwrap_or_default(),
                types: p
                    .types
                    .into_iter()
                    .map(|(type_url, t)| TypeReport {
                        type_url,
                        sent: t.last_sent_version,
                        acked: t.last_acked_version,
                        nack: t.last_nack.map(|n| NackReport {
                            version: n.version,
                            error: n.message,
                        }),
                    })
                    .collect(),
            })
            .collect();
        StatusReport { config, proxies }
    }

    /// The served resources of one flavour, as JSON.
    pub fn render(&self, envoy: bool) -> serde_json::Value {
        let flavor = if envoy {
            Flavor::Envoy
        } else {
            Flavor::MetaProxy
        };
        let s = self.lock();
        s.resources
            .get(&flavor)
            .map(aeraki_translate::to_json)
            .unwrap_or(serde_json::Value::Null)
    }
}

pub fn flavor_name(f: Flavor) -> &'static str {
    match f {
        Flavor::MetaProxy => "meta-proxy",
        Flavor::Envoy => "envoy",
    }
}

/// A running control plane (used by `serve` and by the demo).
#[derive(Debug)]
pub struct ControlPlane {
    pub shared: Arc<Shared>,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Loads the directory (refusing to start on an invalid one), binds both servers and
    /// starts watching.
    pub async fn start(
        dir: PathBuf,
        xds_address: SocketAddr,
        admin_address: SocketAddr,
    ) -> anyhow::Result<Self> {
        let initial = aeraki_config::load_dir(&dir)
            .map_err(|e| anyhow::anyhow!("{} is not a valid mesh config:\n{e}", dir.display()))?;
        let xds = XdsServer::new();
        let shared = Arc::new(Shared::new(xds.clone(), &dir));
        let version = shared.apply(&initial);
        tracing::info!(
            dir = %dir.display(),
            services = initial.view.services.len(),
            version,
            "config loaded"
        );
        for w in &shared.report().config.warnings {
            tracing::warn!("{w}");
        }

        let xds_listener = tokio::net::TcpListener::bind(xds_address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the xDS address {xds_address}: {e}"))?;
        let xds_address = xds_listener.local_addr()?;
        let admin_listener = crate::admin::bind(admin_address).await?;
        let admin_address = admin_listener.local_addr()?;

        let mut tasks = Vec::new();
        let serve = xds.serve(xds_listener);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("xDS server stopped: {e}");
            }
        }));
        let admin_shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::admin::serve(admin_listener, admin_shared).await {
                tracing::error!("admin server stopped: {e}");
            }
        }));
        let watch_shared = shared.clone();
        let mut watcher = aeraki_config::watch_dir(&dir)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
        tasks.push(tokio::spawn(async move {
            while let Some(event) = watcher.recv().await {
                match event {
                    Ok(loaded) => {
                        let version = watch_shared.apply(&loaded);
                        tracing::info!(
                            services = loaded.view.services.len(),
                            version,
                            "config change applied"
                        );
                    }
                    Err(errors) => {
                        let text = errors.to_string();
                        for line in text.lines() {
                            tracing::error!("config change refused: {line}");
                        }
                        watch_shared.refuse(text);
                    }
                }
            }
        }));
        tracing::info!(%xds_address, %admin_address, "control plane serving");
        Ok(ControlPlane {
            shared,
            xds_address,
            admin_address,
            tasks,
        })
    }

    /// Stops every task.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `aeraki serve`: runs until SIGINT/SIGTERM.
pub async fn serve_until_signal(
    dir: PathBuf,
    xds_address: SocketAddr,
    admin_address: SocketAddr,
) -> anyhow::Result<()> {
    let cp = ControlPlane::start(dir, xds_address, admin_address).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    cp.stop();
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// `aeraki validate DIR`.
#[allow(clippy::print_stdout)] // the command's documented output
pub fn validate(dir: &Path) -> ExitCode {
    match aeraki_config::load_dir(dir) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            let mut warnings = 0;
            for flavor in [Flavor::MetaProxy, Flavor::Envoy] {
                for w in aeraki_translate::translate(&loaded.view, flavor).warnings {
                    println!("warning: {}: {w}", flavor_name(flavor));
                    warnings += 1;
                }
            }
            println!(
                "{}: valid ({} services, {} warnings)",
                dir.display(),
                loaded.view.services.len(),
                loaded.warnings.len() + warnings
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// `aeraki render DIR --node ID [--envoy]`.
#[allow(clippy::print_stdout)] // the command's documented output
pub fn render(dir: &Path, node: &str, envoy: bool) -> anyhow::Result<ExitCode> {
    let loaded = aeraki_config::load_dir(dir)
        .map_err(|e| anyhow::anyhow!("{} is not a valid mesh config:\n{e}", dir.display()))?;
    let flavor = if envoy {
        Flavor::Envoy
    } else {
        Flavor::MetaProxy
    };
    let t = aeraki_translate::translate(&loaded.view, flavor);
    for w in &t.warnings {
        eprintln!("warning: {w}");
    }
    let out = serde_json::json!({
        "node": node,
        "flavor": flavor_name(flavor),
        "resources": aeraki_translate::to_json(&t.resources),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
