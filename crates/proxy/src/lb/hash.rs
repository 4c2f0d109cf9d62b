//! Consistent-hash balancers: ring hash (ketama-style) and maglev.
//!
//! Both hash an endpoint by its address text (`ip:port`) with xxHash64, so an endpoint keeps
//! its place when others come and go: removing one of N endpoints remaps only the keys it
//! owned (≈ 1/N). A request without a hash gets a weighted random endpoint.

use std::fmt::Write as _;

use twox_hash::XxHash64;

use super::{LbContext, LoadBalancer, Random, WeightedAddr, weight};

/// Largest ring Envoy allows (and its default maximum).
const MAX_RING: u64 = 8 * 1024 * 1024;

/// A sorted ring of virtual nodes `(hash, endpoint index)`; a key goes to the first node at
/// or after its hash (wrapping).
pub struct RingHash {
    ring: Vec<(u64, u32)>,
    random: Random,
}

impl RingHash {
    /// Builds the ring: each endpoint gets virtual nodes in proportion to its weight, scaled
    /// so that the lightest gets at least its share of `min_size`, the whole ring staying
    /// within `max_size` (Envoy's sizing).
    pub fn new(endpoints: &[WeightedAddr], min_size: u64, max_size: u64) -> Self {
        let random = Random::new(endpoints);
        if endpoints.is_empty() {
            return Self {
                ring: Vec::new(),
                random,
            };
        }
        let max_size = max_size.clamp(1, MAX_RING);
        let min_size = min_size.clamp(1, max_size);
        let total: u64 = endpoints.iter().map(weight).sum();
        let min_norm = endpoints.iter().map(weight).min().unwrap_or(1) as f64 / total as f64;
        let scale = ((min_norm * min_size as f64).ceil() / min_norm).min(max_size as f64);
        let mut ring = Vec::new();
        let mut name = String::new();
        for (i, e) in endpoints.iter().enumerate() {
            let share = weight(e) as f64 / total as f64;
            let count = ((share * scale).round() as u64).max(1);
            for k in 0..count {
                name.clear();
                let _ = write!(name, "{}_{k}", e.addr);
                ring.push((XxHash64::oneshot(0, name.as_bytes()), i as u32));
            }
        }
        ring.sort_unstable();
        Self { ring, random }
    }

    /// Virtual nodes on the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty (no endpoints).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

impl LoadBalancer for RingHash {
    fn pick(&self, ctx: &LbContext) -> Option<usize> {
        let Some(h) = ctx.hash else {
            return self.random.index();
        };
        let first = self.ring.first()?;
        let at = self.ring.partition_point(|(node, _)| *node < h);
        let (_, i) = self.ring.get(at).unwrap_or(first);
        Some(*i as usize)
    }
}

/// A Maglev lookup table: `table[hash % size]` is the endpoint. Endpoints fill the table in
/// turns, each claiming the next free slot of its own permutation of slots; an endpoint of
/// weight w claims w/max_weight slots per turn.
pub struct Maglev {
    table: Vec<u32>,
    random: Random,
}

impl Maglev {
    /// Builds the table; `table_size` must be prime (config validation checks it; a non-prime
    /// here is raised to the next prime so that every permutation covers the table).
    pub fn new(endpoints: &[WeightedAddr], table_size: u64) -> Self {
        let random = Random::new(endpoints);
        if endpoints.is_empty() {
            return Self {
                table: Vec::new(),
                random,
            };
        }
        let m = next_prime(table_size.max(2));
        let mut name = String::new();
        let mut perm: Vec<(u64, u64)> = endpoints
            .iter()
            .map(|e| {
                name.clear();
                let _ = write!(name, "{}", e.addr);
                let offset = XxHash64::oneshot(0, name.as_bytes()) % m;
                let skip = XxHash64::oneshot(1, name.as_bytes()) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = endpoints.iter().map(weight).collect();
        let max_w = weights.iter().copied().max().unwrap_or(1);
        let mut claimed = vec![0u64; endpoints.len()];
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        let mut turn = 0u64;
        'fill: loop {
            turn += 1;
            for (i, (pos, skip)) in perm.iter_mut().enumerate() {
                if claimed[i] * max_w >= turn * weights[i] {
                    continue;
                }
                // The permutation visits every slot (m prime), and a free one exists.
                while table[*pos as usize] != u32::MAX {
                    *pos = (*pos + *skip) % m;
                }
                table[*pos as usize] = i as u32;
                claimed[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self { table, random }
    }

    /// Size of the lookup table.
    pub fn table_size(&self) -> usize {
        self.table.len()
    }
}

impl LoadBalancer for Maglev {
    fn pick(&self, ctx: &LbContext) -> Option<usize> {
        let Some(h) = ctx.hash else {
            return self.random.index();
        };
        if self.table.is_empty() {
            return None;
        }
        let slot = (h % self.table.len() as u64) as usize;
        self.table.get(slot).map(|i| *i as usize)
    }
}

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}
