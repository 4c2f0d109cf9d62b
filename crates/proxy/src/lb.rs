//! Load balancers: pick one endpoint of a cluster per request.
//!
//! A balancer is built for one endpoint set and rebuilt when the set changes (DNS refresh, xDS),
//! so it may precompute freely. New policies (ring hash, maglev, least request) implement
//! [`LoadBalancer`]; [`LbContext`] carries what they may need from the request.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use meta_config::LbPolicy;
use rand::Rng;

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
    /// The chosen endpoint, or `None` if there is none.
    fn pick(&self, ctx: &LbContext) -> Option<SocketAddr>;
}

/// A balancer of `policy` over `endpoints`.
pub fn build(policy: LbPolicy, endpoints: Vec<WeightedAddr>) -> Box<dyn LoadBalancer> {
    match policy {
        LbPolicy::RoundRobin => Box::new(RoundRobin::new(endpoints)),
        LbPolicy::Random => Box::new(Random::new(endpoints)),
    }
}

/// Weighted round robin. Equal weights: a lock-free counter. Unequal weights: smooth weighted
/// round robin (nginx's algorithm), which interleaves picks instead of sending bursts.
pub struct RoundRobin {
    endpoints: Vec<WeightedAddr>,
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
            endpoints,
            uniform,
            next: AtomicUsize::new(0),
            current,
        }
    }
}

impl LoadBalancer for RoundRobin {
    fn pick(&self, _ctx: &LbContext) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        if self.uniform {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
            return Some(self.endpoints[i].addr);
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best = 0usize;
        for (cur, ep) in current.iter_mut().zip(&self.endpoints) {
            let w = i64::from(ep.weight.max(1));
            *cur += w;
            total += w;
        }
        for (i, v) in current.iter().enumerate() {
            if *v > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        Some(self.endpoints[best].addr)
    }
}

/// Uniform (weight-proportional) random choice.
pub struct Random {
    endpoints: Vec<WeightedAddr>,
    total: u64,
}

impl Random {
    /// A random balancer over `endpoints`.
    pub fn new(endpoints: Vec<WeightedAddr>) -> Self {
        let total = endpoints.iter().map(|e| u64::from(e.weight.max(1))).sum();
        Self { endpoints, total }
    }
}

impl LoadBalancer for Random {
    fn pick(&self, _ctx: &LbContext) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let mut r = rand::rng().random_range(0..self.total);
        for ep in &self.endpoints {
            let w = u64::from(ep.weight.max(1));
            if r < w {
                return Some(ep.addr);
            }
            r -= w;
        }
        self.endpoints.last().map(|e| e.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<WeightedAddr> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| WeightedAddr {
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                weight: *w,
            })
            .collect()
    }

    fn counts(lb: &dyn LoadBalancer, n: usize) -> Vec<usize> {
        let mut c = vec![0; 3];
        for _ in 0..n {
            let a = lb.pick(&LbContext::default()).unwrap();
            c[usize::from(a.port() - 1000)] += 1;
        }
        c
    }

    #[test]
    fn round_robin_uniform_and_weighted() {
        assert_eq!(
            counts(&RoundRobin::new(eps(&[1, 1, 1])), 300),
            [100, 100, 100]
        );
        assert_eq!(
            counts(&RoundRobin::new(eps(&[5, 1, 1])), 700),
            [500, 100, 100]
        );
        // Smooth: the heavy endpoint is not picked 5 times in a row.
        let lb = RoundRobin::new(eps(&[5, 1, 1]));
        let seq: Vec<u16> = (0..7)
            .map(|_| lb.pick(&LbContext::default()).unwrap().port() - 1000)
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        assert!(
            RoundRobin::new(vec![])
                .pick(&LbContext::default())
                .is_none()
        );
    }

    #[test]
    fn random_honours_weights() {
        let c = counts(&Random::new(eps(&[8, 1, 1])), 10_000);
        assert!(c[0] > 7_000 && c[1] > 500 && c[2] > 500, "{c:?}");
        assert!(Random::new(vec![]).pick(&LbContext::default()).is_none());
    }
}
