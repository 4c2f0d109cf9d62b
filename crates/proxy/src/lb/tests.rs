use std::collections::HashMap;

use meta_protocol::{MessageKind, Metadata};

use super::hash::is_prime;
use super::*;

fn eps(weights: &[u32]) -> Vec<WeightedAddr> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| WeightedAddr {
            addr: SocketAddr::from(([10, 0, (i / 200) as u8, (i % 200) as u8 + 1], 9000)),
            weight: *w,
        })
        .collect()
}

fn counts(lb: &dyn LoadBalancer, len: usize, n: usize) -> Vec<usize> {
    let mut c = vec![0; len];
    for _ in 0..n {
        c[lb.pick(&LbContext::default()).unwrap()] += 1;
    }
    c
}

fn ctx(key: u64) -> LbContext {
    LbContext {
        hash: Some(twox_hash::XxHash64::oneshot(0, &key.to_le_bytes())),
    }
}

const RING: LbPolicy = LbPolicy::RingHash {
    minimum_ring_size: LbPolicy::DEFAULT_MIN_RING_SIZE,
    maximum_ring_size: LbPolicy::DEFAULT_MAX_RING_SIZE,
};
const MAGLEV: LbPolicy = LbPolicy::Maglev {
    table_size: LbPolicy::DEFAULT_MAGLEV_TABLE_SIZE,
};

#[test]
fn round_robin_uniform_and_weighted() {
    assert_eq!(
        counts(&RoundRobin::new(eps(&[1, 1, 1])), 3, 300),
        [100, 100, 100]
    );
    assert_eq!(
        counts(&RoundRobin::new(eps(&[5, 1, 1])), 3, 700),
        [500, 100, 100]
    );
    // Smooth: the heavy endpoint is not picked 5 times in a row.
    let lb = RoundRobin::new(eps(&[5, 1, 1]));
    let seq: Vec<usize> = (0..7)
        .map(|_| lb.pick(&LbContext::default()).unwrap())
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    assert!(
        RoundRobin::new(vec![])
            .pick(&LbContext::default())
            .is_none()
    );
}

#[test]
fn random_uniform_and_weighted() {
    let c = counts(&Random::new(&eps(&[1, 1, 1])), 3, 30_000);
    assert!(c.iter().all(|n| (9_000..11_000).contains(n)), "{c:?}");
    let c = counts(&Random::new(&eps(&[8, 1, 1])), 3, 10_000);
    assert!(c[0] > 7_000 && c[1] > 500 && c[2] > 500, "{c:?}");
    assert!(Random::new(&[]).pick(&LbContext::default()).is_none());
}

fn least_request(weights: &[u32], choices: u32) -> (Box<dyn LoadBalancer>, ActiveCounters) {
    let endpoints = eps(weights);
    let active: ActiveCounters = endpoints.iter().map(|_| Arc::default()).collect();
    let lb = build_with(
        LbPolicy::LeastRequest {
            choice_count: choices,
        },
        endpoints,
        active.clone(),
    );
    (lb, active)
}

#[test]
fn least_request_spreads_idle_load_evenly() {
    let (lb, _) = least_request(&[1, 1, 1], 2);
    let c = counts(lb.as_ref(), 3, 30_000);
    assert!(c.iter().all(|n| (9_000..11_000).contains(n)), "{c:?}");
}

#[test]
fn least_request_prefers_an_idle_endpoint() {
    let (lb, active) = least_request(&[1, 1], 2);
    active[0].store(10, Ordering::Relaxed);
    let c = counts(lb.as_ref(), 2, 10_000);
    // Both draws hit the busy endpoint a quarter of the time: ≈ 75 % go to the idle one.
    assert!((7_000..8_000).contains(&c[1]), "{c:?}");
    // More choices: nearly always the idle one.
    let (lb, active) = least_request(&[1, 1], 10);
    active[0].store(10, Ordering::Relaxed);
    let c = counts(lb.as_ref(), 2, 10_000);
    assert!(c[1] > 9_900, "{c:?}");
    // Requests in flight steer new ones: holding every pick keeps the load even.
    let (lb, active) = least_request(&[1, 1, 1, 1], 2);
    for _ in 0..400 {
        let i = lb.pick(&LbContext::default()).unwrap();
        active[i].fetch_add(1, Ordering::Relaxed);
    }
    let loads: Vec<usize> = active.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    assert!(loads.iter().all(|n| (90..=110).contains(n)), "{loads:?}");
}

#[test]
fn least_request_honours_weights() {
    let c = counts(least_request(&[3, 1], 2).0.as_ref(), 2, 20_000);
    assert!((13_500..16_500).contains(&c[0]), "{c:?}");
    // Under load the heavy endpoint carries proportionally more active requests.
    let (lb, active) = least_request(&[3, 1], 2);
    for _ in 0..400 {
        let i = lb.pick(&LbContext::default()).unwrap();
        active[i].fetch_add(1, Ordering::Relaxed);
    }
    let heavy = active[0].load(Ordering::Relaxed);
    // Picks ∝ weight/(active+1) settle where a0·(a0+1) ≈ 3·a1·(a1+1): a0 ≈ √3·a1 ≈ 254.
    assert!((220..=290).contains(&heavy), "{heavy}");
    // A busy heavy endpoint loses its edge to an idle light one.
    let (lb, active) = least_request(&[3, 1], 2);
    active[0].store(11, Ordering::Relaxed);
    let c = counts(lb.as_ref(), 2, 10_000);
    assert!((7_000..8_600).contains(&c[1]), "{c:?}");
    assert!(
        least_request(&[], 2)
            .0
            .pick(&LbContext::default())
            .is_none()
    );
}

fn owners(lb: &dyn LoadBalancer, endpoints: &[WeightedAddr], keys: u64) -> Vec<SocketAddr> {
    (0..keys)
        .map(|k| endpoints[lb.pick(&ctx(k)).unwrap()].addr)
        .collect()
}

fn consistent(policy: LbPolicy) {
    let endpoints = eps(&[1; 5]);
    let lb = build(policy, endpoints.clone());
    // Same key → same endpoint, every time.
    for k in 0..20 {
        let first = lb.pick(&ctx(k)).unwrap();
        assert!((0..1000).all(|_| lb.pick(&ctx(k)) == Some(first)));
    }
    // Keys spread over the endpoints.
    let mut per: HashMap<SocketAddr, usize> = HashMap::new();
    for a in owners(lb.as_ref(), &endpoints, 10_000) {
        *per.entry(a).or_default() += 1;
    }
    assert_eq!(per.len(), 5, "{per:?}");
    assert!(per.values().all(|n| (1_400..2_600).contains(n)), "{per:?}");
    // No hash: a random endpoint, still spread.
    let c = counts(lb.as_ref(), 5, 5_000);
    assert!(c.iter().all(|n| *n > 700), "{c:?}");
    assert!(build(policy, vec![]).pick(&ctx(1)).is_none());
    assert!(build(policy, vec![]).pick(&LbContext::default()).is_none());
}

#[test]
fn ring_hash_is_consistent_and_spreads() {
    consistent(RING);
}

#[test]
fn maglev_is_consistent_and_spreads() {
    consistent(MAGLEV);
}

/// Removes one of `n` endpoints; the share of keys that change endpoint must stay < 2/n, and
/// only keys of the removed endpoint may move.
fn minimal_disruption(policy: LbPolicy, n: usize) {
    let before_eps = eps(&vec![1; n]);
    let mut after_eps = before_eps.clone();
    let removed = after_eps.remove(n / 2).addr;
    let keys = 20_000;
    let before = owners(
        build(policy, before_eps.clone()).as_ref(),
        &before_eps,
        keys,
    );
    let after = owners(build(policy, after_eps.clone()).as_ref(), &after_eps, keys);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let share = moved as f64 / keys as f64;
    assert!(share < 2.0 / n as f64, "{policy:?} n={n}: {share}");
    assert!(share > 0.5 / n as f64, "{policy:?} n={n}: {share}");
    // Every key of the removed endpoint moved; the others mostly stayed.
    let of_removed = before.iter().filter(|b| **b == removed).count();
    assert!(moved >= of_removed);
    // And adding it back restores the original mapping.
    let again = owners(
        build(policy, before_eps.clone()).as_ref(),
        &before_eps,
        keys,
    );
    assert_eq!(before, again);
}

#[test]
fn removing_an_endpoint_remaps_few_keys() {
    for n in [3, 5, 10, 20] {
        minimal_disruption(RING, n);
        minimal_disruption(MAGLEV, n);
    }
}

fn weighted_share(policy: LbPolicy) {
    let endpoints = eps(&[3, 1]);
    let lb = build(policy, endpoints.clone());
    let heavy = owners(lb.as_ref(), &endpoints, 20_000)
        .iter()
        .filter(|a| **a == endpoints[0].addr)
        .count();
    assert!((13_500..16_500).contains(&heavy), "{policy:?}: {heavy}");
}

#[test]
fn consistent_hash_honours_weights() {
    weighted_share(RING);
    weighted_share(MAGLEV);
}

#[test]
fn ring_and_table_sizes() {
    let ring = RingHash::new(&eps(&[1; 4]), 1024, 8 * 1024 * 1024);
    assert_eq!(ring.len(), 1024);
    // The lightest endpoint gets its share of the minimum; the ring stays under the maximum.
    let ring = RingHash::new(&eps(&[1, 9]), 1000, 5000);
    assert_eq!(ring.len(), 1000);
    let ring = RingHash::new(&eps(&[1, 1, 1]), 1000, 8 * 1024 * 1024);
    assert_eq!(ring.len(), 1002, "334 nodes each");
    let ring = RingHash::new(&eps(&[1, 1]), 10, 4);
    assert_eq!(ring.len(), 4);
    assert_eq!(Maglev::new(&eps(&[1; 3]), 65537).table_size(), 65537);
    assert_eq!(Maglev::new(&eps(&[1; 3]), 100).table_size(), 101);
    assert!(is_prime(65537) && is_prime(5_000_011) && !is_prime(65536) && !is_prime(1));
}

#[test]
fn hash_keys_combine_present_keys() {
    let mut m = Metadata::of_kind(MessageKind::Request);
    let keys = vec!["user".to_owned(), "tenant".to_owned()];
    assert_eq!(hash_keys(&keys, &m), None);
    m.set("user", "alice");
    let alice = hash_keys(&keys, &m);
    assert!(alice.is_some());
    assert_eq!(alice, hash_keys(&["user".to_owned()], &m));
    m.set("tenant", "t1");
    let both = hash_keys(&keys, &m);
    assert!(both.is_some() && both != alice);
    m.set("user", "bob");
    assert_ne!(hash_keys(&keys, &m), both);
}
