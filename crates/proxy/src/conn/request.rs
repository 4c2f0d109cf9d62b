//! One decoded request's way through the filter chain, the route and the cluster to an upstream
//! connection (and its mirrors); what the connection's reader hands over ([`on_request`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meta_protocol::{
    Codec, CodecFactory, ErrorKind, Frame, LocalReply, MessageKind, Metadata, Mutation,
    ResponseStatus, keys,
};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{Conn, InFlight};
use crate::filter::{self, ChainStatus, RequestContext};
use crate::lb::LbContext;
use crate::listener::{ListenerRt, RouteRt};
use crate::router::{self, Exchange};
use crate::upstream::Waiter;

/// How long a mirrored request's answer is awaited when its route has no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// A decoded request on its way through the filters and the router.
struct Request {
    frame: Frame,
    /// Key/values the filters add; the route's request mutation is applied over them.
    mutation: Mutation,
    start: Instant,
    /// Held by two-way requests until their outcome; `None` for one-way requests.
    guard: Option<InFlight>,
}

impl Request {
    /// Answers the request locally in its protocol (a one-way request is only counted).
    fn fail(&self, conn: &Conn, codec: &mut dyn Codec, kind: ErrorKind, msg: String) {
        let reply = LocalReply::new(kind, msg);
        conn.reject(codec, &self.frame.meta, self.guard.is_some(), &reply);
    }

    /// Runs the filter chain from position `from`.
    fn run_filters(&mut self, rt: &ListenerRt, listener: &str, from: usize) -> ChainStatus {
        let mut ctx = RequestContext {
            listener,
            meta: &mut self.frame.meta,
            mutation: &mut self.mutation,
        };
        filter::run_request(&rt.filters, from, &mut ctx)
    }
}

/// Filters, routes and forwards one request; answers locally on any failure. A filter that
/// waits moves the rest of the request into a task of the connection ([`resume`]).
pub(super) fn on_request(
    conn: &Arc<Conn>,
    rt: &Arc<ListenerRt>,
    codec: &mut dyn Codec,
    mut frame: Frame,
    tasks: &mut JoinSet<()>,
) {
    let start = Instant::now();
    let two_way = frame.meta.kind != MessageKind::OneWay;
    let guard = two_way.then(|| InFlight::new(conn));
    frame
        .meta
        .set(keys::APPLICATION_PROTOCOL, conn.l.factory.protocol());
    let mut req = Request {
        frame,
        mutation: Mutation::new(),
        start,
        guard,
    };
    if !rt.filters.is_empty() {
        match req.run_filters(rt, &conn.l.name, 0) {
            ChainStatus::Continue => {}
            ChainStatus::LocalReply(r) => return req.fail(conn, codec, r.kind, r.message),
            ChainStatus::Wait { index, future } => {
                tasks.spawn(resume(conn.clone(), rt.clone(), req, index, future));
                return;
            }
        }
    }
    if let Some(wait) = dispatch(conn, rt, codec, req) {
        tasks.spawn(wait);
    }
}

/// Finishes a request whose filter `index` had to wait: awaits it, runs the rest of the chain
/// (waiting again if needed), then routes and forwards.
async fn resume(
    conn: Arc<Conn>,
    rt: Arc<ListenerRt>,
    mut req: Request,
    mut index: usize,
    mut future: filter::FilterFuture,
) {
    loop {
        if let Err(r) = filter::settle(future).await {
            req.fail(&conn, conn.codec().as_mut(), r.kind, r.message);
            return;
        }
        match req.run_filters(&rt, &conn.l.name, index + 1) {
            ChainStatus::Continue => break,
            ChainStatus::LocalReply(r) => {
                req.fail(&conn, conn.codec().as_mut(), r.kind, r.message);
                return;
            }
            ChainStatus::Wait {
                index: i,
                future: f,
            } => (index, future) = (i, f),
        }
    }
    let wait = dispatch(&conn, &rt, conn.codec().as_mut(), req);
    if let Some(wait) = wait {
        wait.await;
    }
}

/// Routes, picks an endpoint and forwards the request. Returns what must be awaited for a
/// two-way request's outcome (the caller spawns or awaits it); `None` when the request is done
/// (one-way, or answered locally).
fn dispatch(
    conn: &Arc<Conn>,
    rt: &Arc<ListenerRt>,
    codec: &mut dyn Codec,
    req: Request,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let l = &conn.l;
    let meta = &req.frame.meta;
    let Some(route) = rt.routes.iter().find(|r| r.matches(meta)) else {
        let msg = format!(
            "meta protocol router: no matched route for request '{}'",
            meta.request_id
        );
        req.fail(conn, codec, ErrorKind::RouteNotFound, msg);
        return None;
    };
    let Some(target) = route.pick() else {
        let msg = format!("route '{}' has no cluster", route.route.name);
        req.fail(conn, codec, ErrorKind::ClusterNotFound, msg);
        return None;
    };
    let clusters = l.clusters.load();
    let Some(cluster) = clusters.get(&target.cluster) else {
        let msg = format!("unknown cluster '{}'", target.cluster);
        req.fail(conn, codec, ErrorKind::ClusterNotFound, msg);
        return None;
    };
    // Envoy's order: the delay first, then the abort (decided now, applied after the delay).
    let fault = route.route.fault.as_ref();
    let delay = fault
        .and_then(|f| f.delay.as_ref())
        .filter(|d| router::roll(d.per_million))
        .map(|d| d.delay);
    if delay.is_some() {
        route.faults.delay.inc();
    }
    let abort = fault
        .and_then(|f| f.abort.as_ref())
        .filter(|a| router::roll(a.per_million))
        .map(|a| router::abort_kind(a.error));
    if let Some(kind) = abort {
        route.faults.abort.inc();
        if delay.is_none() {
            req.fail(conn, codec, kind, router::ABORT_MESSAGE.to_owned());
            return None;
        }
    }
    let hash = crate::lb::hash_keys(&route.route.hash_policy, meta);
    let Request {
        mut frame,
        mut mutation,
        start,
        guard,
    } = req;
    mutation.extend_from(&route.request_mutation);
    if !mutation.is_empty()
        && let Err(e) = codec.encode(&mut frame, &mutation)
    {
        l.metrics.mutation_failures_request.inc();
        tracing::debug!(listener = %l.name, "request mutation not applied: {e}");
    }
    if !route.mirrors.is_empty() {
        mirror(conn, rt, route, codec, &frame);
    }
    let exchange = Exchange {
        conn: conn.clone(),
        rt: rt.clone(),
        route_ix: route_index(rt, route),
        target_ix: route
            .targets
            .iter()
            .position(|t| std::ptr::eq(t, target))
            .unwrap_or(0),
        cluster: cluster.clone(),
        meta: if guard.is_some() {
            frame.meta.clone()
        } else {
            Metadata::default()
        },
        frame: Some(frame),
        hash,
        variant: codec.connection_variant(),
        start,
        guard,
        admission: None,
        abort,
        tried: Vec::new(),
    };
    exchange.start(codec, delay)
}

/// Sends a copy of `frame` to each mirror cluster of `route` that takes it; answers are
/// discarded and failures ignored (counted only as upstream metrics).
fn mirror(
    conn: &Arc<Conn>,
    rt: &ListenerRt,
    route: &RouteRt,
    codec: &mut dyn Codec,
    frame: &Frame,
) {
    let l = &conn.l;
    let clusters = l.clusters.load();
    let two_way = frame.meta.kind != MessageKind::OneWay;
    for target in route.mirrors_to_use() {
        let Some(cluster) = clusters.get(&target.cluster) else {
            tracing::debug!(cluster = %target.cluster, "mirror cluster unknown");
            continue;
        };
        let ctx = LbContext {
            hash: crate::lb::hash_keys(&route.route.hash_policy, &frame.meta),
        };
        let Some(picked) = cluster.pick(&ctx) else {
            continue;
        };
        let addr = picked.addr;
        let Ok(up) = l.upstream(
            cluster,
            addr,
            codec.connection_variant(),
            rt.codec_options(),
        ) else {
            continue;
        };
        target.metrics.upstream_requests.inc();
        let copy = frame.clone();
        if !two_way {
            let _ = up.forward(copy, None, &mut |_, _| Ok(()));
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            original_id: frame.meta.request_id,
            tx,
            response_mutation: None,
        };
        if up
            .forward(copy, Some(waiter), &mut |f, id| codec.set_request_id(f, id))
            .is_ok()
        {
            // Keep the waiter alive until the answer (or a bound), then discard it.
            let bound = route.route.timeout.unwrap_or(MIRROR_TIMEOUT);
            let metrics = target.metrics.clone();
            tokio::spawn(async move {
                let _picked = picked;
                if let Ok(Ok(Ok(f))) = tokio::time::timeout(bound, rx).await {
                    match f.meta.status {
                        ResponseStatus::Ok => metrics.responses_ok.inc(),
                        ResponseStatus::Error => metrics.responses_error.inc(),
                    };
                }
            });
        }
    }
}

fn route_index(rt: &ListenerRt, route: &RouteRt) -> usize {
    rt.routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .unwrap_or(0)
}
