//! `--mode serve`: the runtime, the engine, the admin server and signal handling.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meta_protocol::CodecFactory;
use meta_proxy_engine::{CodecRegistry, Engine, Extensions, UpstreamLimits};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long the admin server may take to finish its requests after shutdown.
const ADMIN_DRAIN: Duration = Duration::from_secs(5);

/// Runs the proxy until SIGINT or SIGTERM: with one worker on a current-thread runtime (the
/// whole proxy on the main thread), with more on a multi-thread runtime of `workers` threads.
///
/// One worker as a multi-thread runtime would be two threads (the main thread waiting in
/// `block_on`, the worker running every task), with the multi-thread scheduler's cross-thread
/// wake-up and parking machinery on every idle period; the current-thread scheduler runs the
/// same tasks with less of it (measured in docs/benchmarks.md, profile of 2026-12-06).
pub(crate) fn serve(
    bootstrap: meta_config::Bootstrap,
    factories: Vec<Arc<dyn CodecFactory>>,
    workers: usize,
) -> anyhow::Result<()> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers).thread_name("meta-proxy-worker");
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(bootstrap, factories, workers))
}

async fn run(
    bootstrap: meta_config::Bootstrap,
    factories: Vec<Arc<dyn CodecFactory>>,
    workers: usize,
) -> anyhow::Result<()> {
    // Install the handlers first: a signal that arrives during startup is not lost.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;

    let mut registry = CodecRegistry::new();
    for factory in factories {
        registry.register(factory);
    }
    let admin_config = bootstrap.admin.clone();
    // With dynamic_resources, listeners using RDS wait for their routes (the xDS client binds
    // them); everything else starts now.
    // The global rate-limit filter's RLS v3 client (gRPC lives here, not in the engine).
    let extensions = Extensions {
        rate_limit_client: Some(Arc::new(meta_ratelimit_client::GrpcRateLimitClient::new())),
    };
    let engine = Engine::start_with_extensions(
        meta_xds_client::engine_bootstrap(&bootstrap),
        registry,
        UpstreamLimits::default(),
        extensions,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(workers, "meta-proxy started");
    for (name, addr) in engine.listener_addrs() {
        tracing::info!("listener '{name}' listening on {addr}");
    }
    let xds = meta_xds_client::XdsClient::spawn(engine.clone(), &bootstrap).map(Arc::new);
    if let Some(x) = &bootstrap.xds {
        tracing::info!(server_cluster = %x.server_cluster, node = %x.node_id, "xDS (ADS) client started");
    }

    let admin = match admin_config {
        Some(admin) => Some(start_admin(&engine, xds.clone(), admin).await?),
        None => None,
    };

    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for SIGINT")?;
            tracing::info!("SIGINT received, shutting down");
        }
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
    }

    drop(xds);
    engine.shutdown().await;
    if let Some((stop, task)) = admin {
        let _ = stop.send(());
        match tokio::time::timeout(ADMIN_DRAIN, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("admin server: {e}"),
            Ok(Err(e)) => tracing::warn!("admin server task: {e}"),
            Err(_) => tracing::warn!("admin server did not stop within {ADMIN_DRAIN:?}"),
        }
    }
    tracing::info!("meta-proxy stopped");
    Ok(())
}

type AdminHandle = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

/// Binds the admin address and serves it with closures over the engine.
async fn start_admin(
    engine: &Arc<Engine>,
    xds: Option<Arc<meta_xds_client::XdsClient>>,
    admin: meta_config::Admin,
) -> anyhow::Result<AdminHandle> {
    let listener = TcpListener::bind(admin.address)
        .await
        .with_context(|| format!("cannot bind the admin address {}", admin.address))?;
    let addr = listener.local_addr().context("admin listener address")?;
    let (metrics, dump, ready) = (engine.clone(), engine.clone(), engine.clone());
    let state = meta_admin::AdminState {
        metrics: Arc::new(move || metrics.metrics_text()),
        config_dump: Arc::new(move || {
            let mut v = dump.config_dump();
            if let (Some(x), Some(obj)) = (&xds, v.as_object_mut()) {
                obj.insert("dynamic".into(), x.status());
            }
            v
        }),
        ready: Arc::new(move || ready.is_ready()),
        access_log_path: admin.access_log_path.map(PathBuf::from),
    };
    // Opens the access log now: a bad path fails startup, not a background task.
    let router = meta_admin::router(state).with_context(|| format!("admin server on {addr}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = meta_admin::serve_router(listener, router, async move {
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = &result {
            tracing::error!("admin server failed: {e}");
        }
        result
    });
    tracing::info!("admin listening on {addr}");
    Ok((stop, task))
}
