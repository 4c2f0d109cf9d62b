//! Live listener and endpoint changes (xDS LDS/EDS): add, replace in place, remove with drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use meta_config::{Endpoint, Listener};
use meta_protocol::CodecFactory;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::listener::{ListenerRt, ListenerShared};
use crate::{Engine, EngineError, ListenerEntry};

/// What [`Engine::apply_listener`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerChange {
    /// A new listener was bound and serves.
    Added,
    /// Same address and codec: routes, filters and proxy settings were swapped in place; open
    /// connections keep working and use the new routes for their next request.
    UpdatedInPlace,
    /// Address or codec changed: the old listener was drained and a new one bound.
    Replaced,
    /// Nothing changed.
    Unchanged,
}

/// A bound, not yet accepting listener.
pub(crate) struct Bound {
    shared: Arc<ListenerShared>,
    addr: SocketAddr,
    socket: TcpListener,
    stop: watch::Sender<bool>,
}

impl Engine {
    /// Binds `l`'s address; the listener does not accept until [`Engine::spawn_listener`].
    pub(crate) async fn bind(
        &self,
        l: &Listener,
        factory: Arc<dyn CodecFactory>,
    ) -> Result<Bound, EngineError> {
        let socket = TcpListener::bind(l.address)
            .await
            .map_err(|source| EngineError::Bind {
                listener: l.name.clone(),
                address: l.address,
                source,
            })?;
        let addr = socket.local_addr().unwrap_or(l.address);
        let lm = self.metrics.listener(&l.name, factory.protocol());
        let filters = self.build_filters(&l.name, &l.proxy.filters, None);
        let rt = ListenerRt::build(&l.name, l.proxy.clone(), filters, &self.metrics, &lm);
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(ListenerShared::new(
            l.name.clone(),
            factory,
            lm,
            rt,
            self.clusters.clone(),
            stop_rx,
            self.limits,
        ));
        Ok(Bound {
            shared,
            addr,
            socket,
            stop,
        })
    }

    /// Starts the accept loop of a bound listener and registers it.
    pub(crate) fn spawn_listener(&self, b: Bound) {
        tracing::info!(listener = %b.shared.name, addr = %b.addr, "listening");
        let accept = tokio::spawn(b.shared.clone().accept_loop(b.socket));
        self.listeners().push(ListenerEntry {
            shared: b.shared,
            bound: b.addr,
            stop: b.stop,
            accept,
        });
    }

    /// Adds listener `l`, or changes the listener of that name (xDS LDS). Same address and
    /// codec: updated in place. Otherwise the old one is removed (stops accepting, drains) and
    /// the new one bound. The engine's config dump follows.
    pub async fn apply_listener(&self, l: Listener) -> Result<ListenerChange, EngineError> {
        let _guard = self.update.lock().await;
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(EngineError::ShuttingDown { listener: l.name });
        }
        let factory = self
            .codecs
            .get(&l.proxy.codec)
            .ok_or_else(|| EngineError::UnknownCodec {
                listener: l.name.clone(),
                codec: l.proxy.codec.clone(),
            })?;
        let cfg = self.config.load_full();
        let old = cfg.listeners.iter().find(|x| x.name == l.name);
        let change = match old {
            None => ListenerChange::Added,
            Some(o) if o.address == l.address && o.proxy.codec == l.proxy.codec => {
                if serde_json::to_value(o).ok() == serde_json::to_value(&l).ok() {
                    return Ok(ListenerChange::Unchanged);
                }
                ListenerChange::UpdatedInPlace
            }
            Some(_) => ListenerChange::Replaced,
        };
        match change {
            ListenerChange::UpdatedInPlace => {
                if let Some(shared) = self.find_listener(&l.name) {
                    let current = shared.rt();
                    // Filters whose config is unchanged keep their state (token buckets).
                    let previous = old.map(|o| (o.proxy.filters.as_slice(), &current.filters[..]));
                    let filters = self.build_filters(&l.name, &l.proxy.filters, previous);
                    let (proxy, metrics) = (l.proxy.clone(), &shared.metrics);
                    let rt = ListenerRt::build(&l.name, proxy, filters, &self.metrics, metrics);
                    shared.set_rt(rt);
                }
            }
            ListenerChange::Replaced => {
                self.stop_listener(&l.name).await;
                let b = self.bind(&l, factory).await?;
                self.spawn_listener(b);
            }
            _ => {
                let b = self.bind(&l, factory).await?;
                self.spawn_listener(b);
            }
        }
        let mut cfg = (*cfg).clone();
        match cfg.listeners.iter_mut().find(|x| x.name == l.name) {
            Some(slot) => *slot = l,
            None => cfg.listeners.push(l),
        }
        self.config.store(Arc::new(cfg));
        Ok(change)
    }

    /// Removes listener `name` (xDS LDS): its port is closed when this returns; its open
    /// connections finish their in-flight requests (at most 5 s), then close. Returns false if
    /// there was no such listener.
    pub async fn remove_listener(&self, name: &str) -> bool {
        let _guard = self.update.lock().await;
        let found = self.stop_listener(name).await;
        let mut cfg = (**self.config.load()).clone();
        cfg.listeners.retain(|l| l.name != name);
        self.config.store(Arc::new(cfg));
        found
    }

    /// Signals the listener to stop, waits for its accept loop (and so its socket) to end.
    async fn stop_listener(&self, name: &str) -> bool {
        let entry = {
            let mut all = self.listeners();
            let Some(i) = all.iter().position(|e| e.shared.name == name) else {
                return false;
            };
            all.remove(i)
        };
        let _ = entry.stop.send(true);
        let _ = entry.accept.await;
        tracing::info!(listener = %name, "listener removed; draining its connections");
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|l| l.metrics.cx_active.get() > 0);
        draining.push(entry.shared);
        true
    }

    /// Replaces the endpoints of the STATIC or EDS cluster `cluster` (xDS EDS) in place: its
    /// balancer is rebuilt, upstream connections to endpoints still present stay. Returns
    /// false if there is no such cluster.
    pub async fn update_endpoints(
        &self,
        cluster: &str,
        mut endpoints: Vec<Endpoint>,
    ) -> Result<bool, EngineError> {
        let _guard = self.update.lock().await;
        let Some(state) = self.clusters.load().get(cluster).cloned() else {
            return Ok(false);
        };
        crate::locality::assign(
            self.config.load().node_locality.as_ref(),
            state.config.locality_lb.as_ref(),
            &mut endpoints,
        );
        state.set_static_endpoints(&endpoints)?;
        let mut cfg = (**self.config.load()).clone();
        if let Some(c) = cfg.clusters.iter_mut().find(|c| c.name == cluster) {
            c.endpoints = endpoints;
        }
        self.config.store(Arc::new(cfg));
        Ok(true)
    }
}
