//! `aeraki ratelimit`: runs the global rate-limit service of `aeraki-ratelimit` (Envoy's RLS v3
//! gRPC API, envoyproxy/ratelimit's YAML) with its `/metrics` endpoint, reloads the config when
//! the file or directory changes (an invalid edit keeps the last good config), and stops
//! gracefully on SIGTERM/SIGINT. See docs/ratelimit-service.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aeraki_ratelimit::{Config, MemoryBackend, RedisBackend, RedisOptions, Service};
use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

/// Quiet period after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Exit code for a configuration that does not load.
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Command-line arguments of `aeraki ratelimit`.
#[derive(Debug, clap::Args)]
pub struct RatelimitArgs {
    /// envoyproxy/ratelimit YAML: a file, or a directory whose *.yaml/*.yml files are loaded.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Address of the gRPC server (envoy.service.ratelimit.v3.RateLimitService).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Address of the HTTP server serving GET /metrics (Prometheus text).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6070")]
    metrics: SocketAddr,
    /// Redis URL (`redis://host:port[/db]` or `host:port`) for counters shared by every
    /// instance; without it, counters are in memory (one instance).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

/// Loads the config, serves until a signal, reloading on changes. Exit code 2 when the config
/// does not load at start (every error printed, one per line).
pub async fn run(args: RatelimitArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config).await {
        Ok(c) => c,
        Err(errors) => {
            for line in errors.lines() {
                eprintln!("aeraki: error: {line}");
            }
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    let domains: Vec<String> = config.domains().map(str::to_owned).collect();
    let mut builder = Service::builder(config);
    builder = match &args.redis {
        Some(url) => builder.backend(Arc::new(
            RedisBackend::new(RedisOptions::new(url.clone()))
                .map_err(|e| anyhow::anyhow!("--redis {url}: {e}"))?,
        )),
        None => builder.backend(Arc::new(MemoryBackend::new())),
    };
    let service = builder.build();

    let grpc = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let http = tokio::net::TcpListener::bind(args.metrics)
        .await
        .with_context(|| format!("cannot listen on {} (--metrics)", args.metrics))?;
    let _watcher = watch_config(&args.config, service.clone())?;
    tracing::info!(
        grpc = %args.listen,
        metrics = %args.metrics,
        backend = if args.redis.is_some() { "redis" } else { "memory" },
        domains = ?domains,
        "rate-limit service ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_app = aeraki_ratelimit::metrics_router(service.metrics());
    let metrics_task = tokio::spawn(
        axum::serve(http, metrics_app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let grpc_task = tokio::spawn(aeraki_ratelimit::serve_with_shutdown(
        grpc,
        service,
        stopped(stop_rx),
    ));
    crate::controller::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    grpc_task.await.context("gRPC server task")??;
    metrics_task.await.context("metrics server task")??;
    Ok(ExitCode::SUCCESS)
}

/// Loads `path` off the async threads; the error text is the library's, one error per line.
async fn load(path: &Path) -> Result<Config, String> {
    let p = path.to_path_buf();
    match tokio::task::spawn_blocking(move || Config::load(&p)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("{}: config load failed: {e}", path.display())),
    }
}

/// Watches the config file (through its directory, so editors that replace the file are seen)
/// or directory; after each burst of changes, reloads and swaps the service's config.
fn watch_config(path: &Path, service: Service) -> anyhow::Result<notify::RecommendedWatcher> {
    let watched = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !matches!(ev.kind, notify::EventKind::Access(_)) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("config watch error: {e}"),
        })
        .context("cannot watch the config")?;
    watcher
        .watch(&watched, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", watched.display()))?;
    let path = path.to_path_buf();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match load(&path).await {
                Ok(config) => {
                    let domains: Vec<&str> = config.domains().collect();
                    tracing::info!(?domains, "config reloaded");
                    service.set_config(config);
                }
                Err(errors) => {
                    for line in errors.lines() {
                        tracing::warn!(
                            "config reload refused, keeping the last good config: {line}"
                        );
                    }
                }
            }
        }
    });
    Ok(watcher)
}
