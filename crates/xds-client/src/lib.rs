//! meta-proxy's xDS client: subscribes over ADS (LDS, CDS, RDS, EDS), converts resources to the
//! protobuf-free config model and applies them live to the engine; NACKs what it cannot honour.
//!
//! It owns the ADS state-of-the-world stream (tonic, `envoy-types`), the per-type versions,
//! nonces and subscriptions, and the reconnect loop. Conversion is `meta-api`'s (the same code
//! as a bootstrap file); running listeners and clusters is the engine's.
//!
//! - LDS and CDS are wildcard subscriptions; RDS names come from the listeners' `rds`, EDS
//!   names from the EDS clusters' service names.
//! - A response is applied resource by resource, like Envoy: valid ones take effect, invalid
//!   ones keep their previous version, and the response is NACKed with every reason (the
//!   `ConfigError` text with its field path, e.g. `lds[l1].filter_chains: ...`).
//! - A listener using RDS warms: it is not bound until its routes arrive.
//! - The stream reconnects forever with exponential backoff (250 ms → 5 s, jitter); the
//!   engine keeps serving the last applied config meanwhile; a new stream resends every
//!   subscription with the last ACKed version.
//! - Delta xDS is not implemented (refused by `meta-api` when the bootstrap asks for it).

mod client;
mod node;
mod state;

use std::sync::{Arc, Mutex};

use meta_config::Bootstrap;
use meta_proxy_engine::Engine;

pub use state::{CDS, EDS, LDS, RDS};

/// A running xDS client; dropping it stops the stream (the engine keeps its config).
pub struct XdsClient {
    shared: Arc<Mutex<client::Shared>>,
    task: tokio::task::JoinHandle<()>,
}

/// The bootstrap the engine starts with when xDS is on: listeners using RDS are left out
/// (the client binds them once their routes arrive).
pub fn engine_bootstrap(b: &Bootstrap) -> Bootstrap {
    let mut b = b.clone();
    b.listeners.retain(|l| l.proxy.rds.is_none());
    b
}

impl XdsClient {
    /// Starts the client for `bootstrap.xds` (None if the bootstrap has no
    /// `dynamic_resources`). `engine` must have been started with [`engine_bootstrap`]; it is
    /// marked not ready until the first LDS and CDS responses were applied.
    pub fn spawn(engine: Arc<Engine>, bootstrap: &Bootstrap) -> Option<XdsClient> {
        let x = bootstrap.xds.clone()?;
        let server = bootstrap
            .clusters
            .iter()
            .find(|c| c.name == x.server_cluster)?;
        let servers = server
            .endpoints
            .iter()
            .map(|e| (e.host.clone(), e.port))
            .collect();
        let connect_timeout = server.connect_timeout;
        if x.lds || x.cds {
            engine.set_ready(false);
        }
        let state = state::State::new(engine, x, bootstrap);
        let shared = Arc::new(Mutex::new(client::Shared::default()));
        let task = tokio::spawn(client::run(state, servers, connect_timeout, shared.clone()));
        Some(XdsClient { shared, task })
    }

    /// Whether the ADS stream is up.
    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// Versions, nonces, subscriptions, last NACK per type, warming listeners, connection
    /// state: the `dynamic` part of `/config_dump`.
    pub fn status(&self) -> serde_json::Value {
        let s = self.lock();
        let mut v = s.status.clone();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("connected".into(), s.connected.into());
            obj.insert(
                "last_stream_error".into(),
                s.last_error
                    .clone()
                    .map_or(serde_json::Value::Null, Into::into),
            );
        }
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, client::Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for XdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
