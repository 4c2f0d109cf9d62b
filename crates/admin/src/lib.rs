//! The meta-proxy admin HTTP server (Envoy's admin interface, reduced to what a sidecar needs).
//!
//! This crate owns the admin endpoints and their formats; it knows nothing about the engine:
//! the binary hands it closures ([`AdminState`]) that render metrics, dump the configuration and
//! report readiness.
//!
//! | path                | answer                                                              |
//! |---------------------|---------------------------------------------------------------------|
//! | `/`                 | the list of endpoints (text)                                        |
//! | `/metrics`          | metrics, Prometheus text 0.0.4 or OpenMetrics 1.0¹                  |
//! | `/stats/prometheus` | same as `/metrics` (Envoy's path, which Istio/Aeraki scrape)        |
//! | `/ready`            | `200 LIVE` when ready, `503 NOT_READY` otherwise                    |
//! | `/config_dump`      | the effective configuration, pretty JSON                            |
//! | anything else       | `404` with the list of endpoints                                    |
//!
//! ¹ Content negotiation, as Prometheus client libraries do: a client whose `Accept` names
//! `application/openmetrics-text` (Prometheus' scraper) gets OpenMetrics 1.0 as prometheus-client
//! renders it ([`OPENMETRICS_CONTENT_TYPE`]); any other client (curl, `promtool check metrics`,
//! older scrapers) gets the classic text format 0.0.4 ([`PROMETHEUS_TEXT_CONTENT_TYPE`]),
//! converted by [`openmetrics_to_prometheus`]: OpenMetrics counters (`# TYPE x counter` with
//! samples `x_total`) fail promtool's 0.0.4 lint.
//!
//! With [`AdminState::access_log_path`] set, one line per request is appended to that file
//! (Envoy's `admin.access_log_path`):
//! `[2026-01-02T03:04:05.678Z] "GET /ready HTTP/1.1" 200 5 0 "127.0.0.1:53412" "curl/8.0"`
//! (start time, request line, status, body bytes, duration in ms, peer address, user agent).

mod access_log;
mod textformat;

pub use textformat::{PROMETHEUS_TEXT_CONTENT_TYPE, openmetrics_to_prometheus};

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// Content type of the metrics endpoints: prometheus-client renders OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Endpoints and their help text, served by `/` and on 404.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("/", "this list of admin endpoints"),
    ("/config_dump", "dump the effective configuration (JSON)"),
    ("/metrics", "metrics in OpenMetrics / Prometheus text"),
    ("/ready", "readiness: 200 LIVE when serving, 503 otherwise"),
    ("/stats/prometheus", "alias of /metrics (Envoy's path)"),
];

/// Renders the metrics text.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;
/// Renders the configuration dump.
pub type ConfigDumpFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;
/// Tells whether the proxy is ready to serve.
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the admin server serves: closures over the running proxy.
#[derive(Clone)]
pub struct AdminState {
    /// Metrics in OpenMetrics text (e.g. `Engine::metrics_text`).
    pub metrics: MetricsFn,
    /// The effective configuration (e.g. `Engine::config_dump`).
    pub config_dump: ConfigDumpFn,
    /// Readiness (e.g. `Engine::is_ready`).
    pub ready: ReadyFn,
    /// File to append one access-log line per admin request to, if any.
    pub access_log_path: Option<PathBuf>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("access_log_path", &self.access_log_path)
            .finish_non_exhaustive()
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes, then finishes the
/// requests in progress and returns.
///
/// Fails if the access log file cannot be opened for appending, or on an accept error that the
/// server cannot recover from.
pub async fn serve<F>(listener: TcpListener, state: AdminState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_router(listener, router(state)?, shutdown).await
}

/// [`serve`] with a router built beforehand by [`router`] (so that a bad access log path fails
/// at startup, before the server task is spawned).
pub async fn serve_router<F>(listener: TcpListener, app: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The admin router, access log included when configured.
pub fn router(state: AdminState) -> std::io::Result<Router> {
    let log = match &state.access_log_path {
        Some(path) => Some(access_log::AccessLog::open(path)?),
        None => None,
    };
    let mut app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/stats/prometheus", get(metrics))
        .route("/ready", get(ready))
        .route("/config_dump", get(config_dump))
        .fallback(not_found)
        .with_state(state);
    if let Some(log) = log {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(log),
            access_log::log_request,
        ));
    }
    Ok(app)
}

fn endpoint_list() -> String {
    let mut out = String::from("admin commands are:\n");
    for (path, help) in ENDPOINTS {
        out.push_str(&format!("  {path}: {help}\n"));
    }
    out
}

async fn index() -> Response {
    endpoint_list().into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, endpoint_list()).into_response()
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let text = (state.metrics)();
    if accepts_openmetrics(&headers) {
        ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response()
    } else {
        let text = openmetrics_to_prometheus(&text);
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)], text).into_response()
    }
}

/// Whether the client's `Accept` names OpenMetrics (Prometheus' scraper does).
fn accepts_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.to_ascii_lowercase()
                .contains("application/openmetrics-text")
        })
}

async fn ready(State(state): State<AdminState>) -> Response {
    if (state.ready)() {
        (StatusCode::OK, "LIVE\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_READY\n").into_response()
    }
}

async fn config_dump(State(state): State<AdminState>) -> Response {
    let value = (state.config_dump)();
    match serde_json::to_string_pretty(&value) {
        Ok(mut text) => {
            text.push('\n');
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the configuration: {e}\n"),
        )
            .into_response(),
    }
}
