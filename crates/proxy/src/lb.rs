//! Load balancers: pick one endpoint of a cluster per request.
//!
//! A balancer is built for one endpoint set and rebuilt when the set changes (DNS refresh, xDS),
//! so it precomputes freely (rings, lookup tables); a pick never allocates. A pick is an index
//! into the endpoint list the balancer was built with. [`LbContext`] carries what a balancer
//! may need from the request: the hash of the route's hash keys ([`hash_keys`]).
//!
//! Policies: weighted round robin and random (here), least request (power of N choices on
//! active requests, [`ActiveCounters`]) and the consistent-hash ring hash and maglev
//! ([`hash`]). Consistent-hash balancers fall back to a weighted random pick when a request has
//! no hash (none of the route's keys present), as Envoy does.

mod hash;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use meta_config::LbPolicy;
use meta_protocol::Metadata;
use rand::Rng;

pub use hash::{Maglev, RingHash};

/// One resolved endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedAddr {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight (0 is treated as 1).
    pub weight: u32,
}

/// What a balancer may look at for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext {
    /// Hash of the route's `hash_policy` values, for consistent-hash balancers.
    pub hash: Option<u64>,
}

/// Picks an endpoint for a request.
pub trait LoadBalancer: Send + Sync {
    /// Index of the chosen endpoint (in the list the balancer was built with), or `None` if
    /// there is none.
    fn pick(&self, ctx: &LbContext) -> Option<usize>;
}

/// Active (in-flight) requests per endpoint, aligned with an endpoint list. The cluster keeps
/// an endpoint's counter across rebuilds while the endpoint stays.
pub type ActiveCounters = Vec<Arc<AtomicUsize>>;

/// The hash of the values of `keys` in `meta`: every present key's value is hashed (xxHash64)
/// and combined in order as Envoy combines several hash policies (rotate left by one, xor).
/// `None` when no key is present.
pub fn hash_keys(keys: &[String], meta: &Metadata) -> Option<u64> {
    let mut out: Option<u64> = None;
    for key in keys {
        if let Some(v) = meta.get(key) {
            let h = twox_hash::XxHash64::oneshot(0, v.as_bytes());
            out = Some(out.map_or(h, |prev| prev.rotate_left(1) ^ h));
        }
    }
    out
}

/// A balancer of `policy` over `endpoints`, with fresh active-request counters.
pub fn build(policy: LbPolicy, endpoints: Vec<WeightedAddr>) -> Box<dyn LoadBalancer> {
    let active = endpoints.iter().map(|_| Arc::default()).collect();
    build_with(policy, endpoints, active)
}

/// A balancer of `policy` over `endpoints`; `active` (one counter per endpoint) is what least
/// request reads.
pub fn build_with(
    policy: LbPolicy,
    endpoints: Vec<WeightedAddr>,
    active: ActiveCounters,
) -> Box<dyn LoadBalancer> {
    match policy {
        LbPolicy::RoundRobin => Box::new(RoundRobin::new(endpoints)),
        LbPolicy::Random => Box::new(Random::new(&endpoints)),
        LbPolicy::LeastRequest { choice_count } => {
            Box::new(LeastRequest::new(&endpoints, active, choice_count))
        }
        LbPolicy::RingHash {
            minimum_ring_size,
            maximum_ring_size,
        } => Box::new(RingHash::new(
            &endpoints,
            minimum_ring_size,
            maximum_ring_size,
        )),
        LbPolicy::Maglev { table_size } => Box::new(Maglev::new(&endpoints, table_size)),
    }
}

fn weight(e: &WeightedAddr) -> u64 {
    u64::from(e.weight.max(1))
}

/// Weighted round robin. Equal weights: a lock-free counter. Unequal weights: smooth weighted
/// round robin (nginx's algorithm), which interleaves picks instead of sending bursts.
pub struct RoundRobin {
    weights: Vec<i64>,
    uniform: bool,
    next: AtomicUsize,
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    /// A round robin over `endpoints`.
    pub fn new(endpoints: Vec<WeightedAddr>) -> Self {
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let current = Mutex::new(vec![0; endpoints.len()]);
        Self {
            weights: endpoints.iter().map(|e| weight(e) as i64).collect(),
            uniform,
            next: AtomicUsize::new(0),
            current,
        }
    }
}

impl LoadBalancer for RoundRobin {
    fn pick(&self, _ctx: &LbContext) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        if self.uniform {
            return Some(self.next.fetch_add(1, Ordering::Relaxed) % self.weights.len());
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best = 0usize;
        for (cur, w) in current.iter_mut().zip(&self.weights) {
            *cur += w;
            total += w;
        }
        for (i, v) in current.iter().enumerate() {
            if *v > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        Some(best)
    }
}

/// Weight-proportional random choice.
pub struct Random {
    /// Cumulative weights (uniform weights: empty, pick uniformly among `len`).
    cumulative: Vec<u64>,
    len: usize,
}

impl Random {
    /// A random balancer over `endpoints`.
    pub fn new(endpoints: &[WeightedAddr]) -> Self {
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = if uniform {
            Vec::new()
        } else {
            endpoints
                .iter()
                .scan(0u64, |acc, e| {
                    *acc += weight(e);
                    Some(*acc)
                })
                .collect()
        };
        Self {
            cumulative,
            len: endpoints.len(),
        }
    }

    fn index(&self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut rng = rand::rng();
        let Some(total) = self.cumulative.last() else {
            return Some(rng.random_range(0..self.len));
        };
        let r = rng.random_range(0..*total);
        Some(self.cumulative.partition_point(|c| *c <= r))
    }
}

impl LoadBalancer for Random {
    fn pick(&self, _ctx: &LbContext) -> Option<usize> {
        self.index()
    }
}

/// Least request, as Envoy does it. Equal weights: power of N choices, the endpoint with the
/// fewest active requests among `choice_count` random picks (ties: the first drawn). Unequal
/// weights: a random pick weighted by `weight / (active + 1)`, so idle endpoints share the load
/// by weight and busy ones get less.
pub struct LeastRequest {
    weights: Vec<u64>,
    uniform: bool,
    active: ActiveCounters,
    choices: u32,
}

impl LeastRequest {
    /// A least-request balancer over `endpoints` reading `active` (aligned with `endpoints`).
    pub fn new(endpoints: &[WeightedAddr], active: ActiveCounters, choice_count: u32) -> Self {
        Self {
            weights: endpoints.iter().map(weight).collect(),
            uniform: endpoints.windows(2).all(|w| w[0].weight == w[1].weight),
            active,
            choices: choice_count.max(1),
        }
    }

    fn active(&self, i: usize) -> usize {
        self.active.get(i).map_or(0, |a| a.load(Ordering::Relaxed))
    }
}

impl LoadBalancer for LeastRequest {
    fn pick(&self, _ctx: &LbContext) -> Option<usize> {
        let n = self.weights.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        let mut rng = rand::rng();
        if self.uniform {
            let mut best = rng.random_range(0..n);
            let mut best_active = self.active(best);
            for _ in 1..self.choices {
                let i = rng.random_range(0..n);
                let a = self.active(i);
                if a < best_active {
                    best = i;
                    best_active = a;
                }
            }
            return Some(best);
        }
        let effective = |i: usize| self.weights[i] as f64 / (self.active(i) + 1) as f64;
        let total: f64 = (0..n).map(effective).sum();
        let mut r = rng.random_range(0.0..total);
        for i in 0..n {
            let w = effective(i);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        Some(n - 1)
    }
}

#[cfg(test)]
mod tests;
