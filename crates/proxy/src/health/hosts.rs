//! A cluster's endpoints with their health: outlier detection (consecutive-error detectors,
//! ejection and timed return), priority levels and the panic threshold, and the endpoint set
//! the balancer picks from.
//!
//! The balancer is built over the endpoints in use only: the lowest priority level that has a
//! non-ejected endpoint, without its ejected endpoints. It is rebuilt when an endpoint is
//! ejected or returns (rare), so a pick stays one balancer call. Outcome reports only touch
//! the endpoint's atomics; the host list lock is taken to eject, on the interval timer and on
//! endpoint updates, never across an await.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use meta_config::{LbPolicy, OutlierDetection};
use rand::Rng;
use tokio::time::Instant;

use super::HostResult;
use crate::lb::{self, ActiveCounters, LbContext, LoadBalancer, WeightedAddr};
use crate::metrics::ClusterMetrics;

/// One endpoint as configured or resolved, with its priority level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSpec {
    /// Address and weight.
    pub ep: WeightedAddr,
    /// Priority level (0 highest).
    pub priority: u32,
}

/// Lock-free per-endpoint state: active requests and consecutive-error counters.
#[derive(Default)]
pub(crate) struct HostState {
    pub(crate) active: Arc<AtomicUsize>,
    ejected: AtomicBool,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
}

/// Detectors, in the order of [`crate::metrics::DETECTORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detector {
    Consecutive5xx = 0,
    ConsecutiveGateway = 1,
    ConsecutiveLocalOrigin = 2,
}

impl HostState {
    /// Counts one outcome; returns the detectors whose threshold this outcome reached.
    fn record(&self, result: HostResult, od: &OutlierDetection) -> [Option<Detector>; 2] {
        use HostResult as R;
        let bump = |c: &AtomicU32, threshold: u32, d: Detector| {
            let n = c.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            (threshold > 0 && n == threshold).then_some(d)
        };
        let reset = |c: &AtomicU32| c.store(0, Ordering::Relaxed);
        let five = |s: &Self| {
            bump(
                &s.consecutive_5xx,
                od.consecutive_5xx,
                Detector::Consecutive5xx,
            )
        };
        let gateway = |s: &Self| {
            bump(
                &s.consecutive_gateway,
                od.consecutive_gateway_failure,
                Detector::ConsecutiveGateway,
            )
        };
        let local_origin = matches!(result, R::ConnectFailure | R::Reset | R::Timeout);
        match result {
            R::Success => {
                reset(&self.consecutive_5xx);
                reset(&self.consecutive_gateway);
                reset(&self.consecutive_local);
                [None, None]
            }
            R::ErrorResponse => {
                // An error that is not a gateway error breaks a run of gateway errors.
                reset(&self.consecutive_gateway);
                [five(self), None]
            }
            _ if local_origin && od.split_external_local_origin_errors => [
                bump(
                    &self.consecutive_local,
                    od.consecutive_local_origin_failure,
                    Detector::ConsecutiveLocalOrigin,
                ),
                None,
            ],
            // Refused, and (not split) connect failure, reset, timeout: a gateway error.
            _ => [gateway(self), five(self)],
        }
    }

    fn clear(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.consecutive_local.store(0, Ordering::Relaxed);
    }
}

/// One endpoint in the host list, with its ejection bookkeeping (under the list lock).
struct Host {
    spec: HostSpec,
    state: Arc<HostState>,
    ejected_at: Option<Instant>,
    times_ejected: u32,
}

/// The endpoints the balancer picks from (indices into `endpoints`).
pub(crate) struct EndpointSet {
    pub(crate) endpoints: Vec<WeightedAddr>,
    pub(crate) active: ActiveCounters,
    pub(crate) lb: Box<dyn LoadBalancer>,
}

impl EndpointSet {
    /// A pick: the address and its active-request counter.
    pub(crate) fn pick(&self, ctx: &LbContext) -> Option<(SocketAddr, Arc<AtomicUsize>)> {
        let i = self.lb.pick(ctx)?;
        Some((self.endpoints.get(i)?.addr, self.active.get(i)?.clone()))
    }
}

/// Every endpoint of a cluster, their health and the set in use.
pub(crate) struct Hosts {
    policy: LbPolicy,
    outlier: Option<OutlierDetection>,
    panic_threshold: f64,
    metrics: ClusterMetrics,
    all: Mutex<Vec<Host>>,
    states: ArcSwap<HashMap<SocketAddr, Arc<HostState>>>,
    pub(crate) set: ArcSwap<EndpointSet>,
    timer: AtomicBool,
}

impl Hosts {
    pub(crate) fn new(
        policy: LbPolicy,
        outlier: Option<OutlierDetection>,
        panic_threshold: f64,
        metrics: ClusterMetrics,
    ) -> Self {
        Self {
            set: ArcSwap::from_pointee(EndpointSet {
                endpoints: Vec::new(),
                active: Vec::new(),
                lb: lb::build(policy, Vec::new()),
            }),
            policy,
            outlier,
            panic_threshold,
            metrics,
            all: Mutex::new(Vec::new()),
            states: ArcSwap::default(),
            timer: AtomicBool::new(false),
        }
    }

    fn all(&self) -> MutexGuard<'_, Vec<Host>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every endpoint (ejected or not), in configuration order.
    pub(crate) fn specs(&self) -> Vec<HostSpec> {
        self.all().iter().map(|h| h.spec).collect()
    }

    /// Replaces the endpoint list if it changed; an endpoint that stays keeps its counters
    /// and ejection.
    pub(crate) fn set_specs(&self, specs: Vec<HostSpec>) {
        let mut all = self.all();
        if all.len() == specs.len() && all.iter().zip(&specs).all(|(h, s)| h.spec == *s) {
            return;
        }
        let mut old: HashMap<SocketAddr, Host> =
            all.drain(..).map(|h| (h.spec.ep.addr, h)).collect();
        for spec in specs {
            let host = match old.remove(&spec.ep.addr) {
                Some(h) => Host { spec, ..h },
                None => Host {
                    spec,
                    state: Arc::default(),
                    ejected_at: None,
                    times_ejected: 0,
                },
            };
            all.push(host);
        }
        let gone_ejected = old.values().filter(|h| h.ejected_at.is_some()).count();
        self.metrics.ejections_active.dec_by(gone_ejected as i64);
        self.states.store(Arc::new(
            all.iter()
                .map(|h| (h.spec.ep.addr, h.state.clone()))
                .collect(),
        ));
        self.rebuild(&all);
    }

    /// Rebuilds the set in use from `all`: the lowest priority level with a non-ejected
    /// endpoint, its non-ejected endpoints; in panic (the health summed over the levels, each
    /// level's share of non-ejected endpoints, below the threshold) every endpoint of the
    /// lowest level.
    fn rebuild(&self, all: &[Host]) {
        let mut levels: Vec<u32> = all.iter().map(|h| h.spec.priority).collect();
        levels.sort_unstable();
        levels.dedup();
        let usable = |h: &Host| h.ejected_at.is_none();
        let mut health = 0.0;
        for p in &levels {
            let (total, ok) = all
                .iter()
                .filter(|h| h.spec.priority == *p)
                .fold((0u32, 0u32), |(t, o), h| (t + 1, o + u32::from(usable(h))));
            health += 100.0 * f64::from(ok) / f64::from(total.max(1));
        }
        let panic = !all.is_empty() && health.min(100.0) < self.panic_threshold;
        let chosen: Vec<&Host> = if panic {
            let lowest = levels.first().copied().unwrap_or_default();
            all.iter().filter(|h| h.spec.priority == lowest).collect()
        } else {
            let level = levels
                .iter()
                .find(|p| all.iter().any(|h| h.spec.priority == **p && usable(h)));
            all.iter()
                .filter(|h| Some(&h.spec.priority) == level && usable(h))
                .collect()
        };
        let endpoints: Vec<WeightedAddr> = chosen.iter().map(|h| h.spec.ep).collect();
        let active: ActiveCounters = chosen.iter().map(|h| h.state.active.clone()).collect();
        self.set.store(Arc::new(EndpointSet {
            lb: lb::build_with(self.policy, endpoints.clone(), active.clone()),
            endpoints,
            active,
        }));
    }

    /// Feeds outlier detection with one outcome on `addr`.
    pub(crate) fn report(self: &Arc<Self>, addr: SocketAddr, result: HostResult) {
        let Some(od) = &self.outlier else {
            return;
        };
        let states = self.states.load();
        let Some(state) = states.get(&addr) else {
            return;
        };
        if state.ejected.load(Ordering::Relaxed) {
            return;
        }
        for detector in state.record(result, od).into_iter().flatten() {
            self.try_eject(addr, detector, od);
        }
    }

    fn try_eject(self: &Arc<Self>, addr: SocketAddr, detector: Detector, od: &OutlierDetection) {
        let enforcing = match detector {
            Detector::Consecutive5xx => od.enforcing_consecutive_5xx,
            Detector::ConsecutiveGateway => od.enforcing_consecutive_gateway_failure,
            Detector::ConsecutiveLocalOrigin => od.enforcing_consecutive_local_origin_failure,
        };
        if enforcing == 0 || (enforcing < 100 && rand::rng().random_range(0..100) >= enforcing) {
            return;
        }
        let mut all = self.all();
        let total = all.len();
        let ejected = all.iter().filter(|h| h.ejected_at.is_some()).count();
        // Envoy's rule: eject while the share already ejected is below the maximum; one
        // endpoint may always be ejected.
        if ejected > 0 && ejected * 100 >= od.max_ejection_percent as usize * total {
            return;
        }
        let Some(host) = all.iter_mut().find(|h| h.spec.ep.addr == addr) else {
            return;
        };
        if host.ejected_at.is_some() {
            return;
        }
        host.ejected_at = Some(Instant::now());
        host.times_ejected = host.times_ejected.saturating_add(1);
        host.state.ejected.store(true, Ordering::Relaxed);
        host.state.clear();
        tracing::info!(%addr, detector = crate::metrics::DETECTORS[detector as usize], "outlier detection: endpoint ejected");
        self.metrics.ejections_enforced[detector as usize].inc();
        self.metrics.ejections_active.inc();
        self.rebuild(&all);
        drop(all);
        self.start_timer(od);
    }

    /// Starts the interval timer (once); it stops when the cluster is dropped.
    fn start_timer(self: &Arc<Self>, od: &OutlierDetection) {
        if self.timer.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.timer.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = od.interval;
        rt.spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tick.tick().await;
                let Some(hosts) = weak.upgrade() else {
                    return;
                };
                hosts.on_interval(Instant::now());
            }
        });
    }

    /// The interval: an ejected endpoint returns after `base_ejection_time × times ejected`
    /// (at most `max_ejection_time`); an endpoint in use lowers its multiplier by one.
    pub(crate) fn on_interval(&self, now: Instant) {
        let Some(od) = &self.outlier else {
            return;
        };
        let mut all = self.all();
        let mut changed = false;
        for h in all.iter_mut() {
            match h.ejected_at {
                Some(at) => {
                    let time = od
                        .base_ejection_time
                        .saturating_mul(h.times_ejected)
                        .min(od.max_ejection_time);
                    if now >= at + time {
                        h.ejected_at = None;
                        h.state.clear();
                        h.state.ejected.store(false, Ordering::Relaxed);
                        self.metrics.ejections_active.dec();
                        tracing::info!(addr = %h.spec.ep.addr, "outlier detection: endpoint returned");
                        changed = true;
                    }
                }
                None => h.times_ejected = h.times_ejected.saturating_sub(1),
            }
        }
        if changed {
            self.rebuild(&all);
        }
    }

    /// Addresses currently ejected.
    #[cfg(test)]
    pub(crate) fn ejected(&self) -> Vec<SocketAddr> {
        self.all()
            .iter()
            .filter(|h| h.ejected_at.is_some())
            .map(|h| h.spec.ep.addr)
            .collect()
    }
}

impl Drop for Hosts {
    /// A replaced cluster (new configuration) takes its ejections out of the shared gauge.
    fn drop(&mut self) {
        let all = self.all.get_mut().unwrap_or_else(|e| e.into_inner());
        let ejected = all.iter().filter(|h| h.ejected_at.is_some()).count();
        self.metrics.ejections_active.dec_by(ejected as i64);
    }
}
