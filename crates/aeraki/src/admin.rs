//! The control plane's admin HTTP server: `/status` (JSON: config state and connected proxies),
//! `/ready` (200 once a valid config has been published), `/render?envoy=1` (the resources
//! currently served, as JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::controller::Shared;

/// What `/status` returns (and `aeraki status` reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub config: ConfigState,
    pub proxies: Vec<ProxyReport>,
}

/// The config side: the last good version and the last refused change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigState {
    /// Config directory being served.
    pub dir: String,
    /// Number of valid config generations published so far (0: none yet).
    pub version: u64,
    /// Services (host × port) in the served view.
    pub services: usize,
    /// Why the latest change on disk was refused (None when the disk state is what we serve).
    pub last_error: Option<String>,
    /// Warnings of the served config (things a flavour cannot express, unreachable routes…).
    pub warnings: Vec<String>,
}

/// One connected proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyReport {
    pub node: String,
    pub flavor: String,
    pub peer: String,
    pub types: Vec<TypeReport>,
}

/// ACK/NACK state of one resource type for one proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeReport {
    pub type_url: String,
    pub sent: Option<String>,
    pub acked: Option<String>,
    pub nack: Option<NackReport>,
}

/// The last NACK of a type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NackReport {
    pub version: String,
    pub error: String,
}

impl TypeReport {
    /// `LDS`, `CDS`, `RDS`, `EDS` or the message name.
    pub fn short_type(&self) -> &str {
        match self.type_url.rsplit('.').next().unwrap_or_default() {
            "Listener" => "LDS",
            "Cluster" => "CDS",
            "RouteConfiguration" => "RDS",
            "ClusterLoadAssignment" => "EDS",
            other => other,
        }
    }

    /// True when the latest version sent for this type was rejected.
    pub fn nacked_after_ack(&self) -> bool {
        self.nack
            .as_ref()
            .is_some_and(|n| Some(&n.version) == self.sent.as_ref())
    }
}

#[derive(Debug, Deserialize)]
struct RenderQuery {
    envoy: Option<String>,
}

/// Serves the admin endpoints until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/status", get(status))
        .route("/ready", get(ready))
        .route("/render", get(render))
        .with_state(shared);
    axum::serve(listener, app).await
}

/// Binds the admin address with a precise error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin address {addr}: {e}"))
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<StatusReport> {
    Json(shared.report())
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.report().config.version > 0 {
        (StatusCode::OK, "LIVE\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no valid configuration yet\n",
        )
    }
}

async fn render(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<RenderQuery>,
) -> Json<serde_json::Value> {
    let envoy = q.envoy.is_some_and(|v| v != "0" && v != "false");
    Json(shared.render(envoy))
}
