//! Token bucket refill (tokio paused time), concurrency, condition selection and the reply.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use meta_config::{LocalRateLimit, LocalRateLimitCondition, MetadataMatcher};
use meta_protocol::{ErrorKind, MessageKind, Metadata, Mutation, ReadKeys};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use super::{LocalRateLimitFilter, TokenBucket};
use crate::filter::{Filter, FilterStatus, RequestContext};

fn bucket(max: u32, per_fill: u32, interval_ms: u64) -> meta_config::TokenBucket {
    meta_config::TokenBucket {
        max_tokens: max,
        tokens_per_fill: per_fill,
        fill_interval: Duration::from_millis(interval_ms),
    }
}

fn takes(b: &TokenBucket, n: usize) -> usize {
    (0..n).filter(|_| b.try_take(Instant::now())).count()
}

#[tokio::test(start_paused = true)]
async fn bucket_starts_full_and_refills_per_whole_interval() {
    let b = TokenBucket::new(bucket(5, 2, 1000), Instant::now());
    assert_eq!(takes(&b, 10), 5);
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(takes(&b, 10), 0, "no refill before a whole interval");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.available(Instant::now()), 2);
    assert_eq!(takes(&b, 10), 2);
    // A long pause refills up to max_tokens only.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(takes(&b, 10), 5);
    // Periods are counted from the start, not from the last take: 0.5 s into period 62 ...
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(takes(&b, 1), 0);
    // ... so the next fill comes 0.5 s later.
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(takes(&b, 10), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stale_clock_reading_does_not_refill_twice() {
    let start = Instant::now();
    let b = TokenBucket::new(bucket(3, 1, 100), start);
    assert_eq!(takes(&b, 3), 3);
    // One caller refills for period 2 and takes the two tokens ...
    assert!(b.try_take(start + Duration::from_millis(200)));
    assert!(b.try_take(start + Duration::from_millis(200)));
    // ... another one that read the clock earlier (period 1) must not add again.
    assert!(!b.try_take(start + Duration::from_millis(150)));
    assert_eq!(b.available(start + Duration::from_millis(150)), 0);
}

#[test]
fn concurrent_takes_never_exceed_the_bucket() {
    let b = Arc::new(TokenBucket::new(bucket(1000, 1, 3_600_000), Instant::now()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || (0..600).filter(|_| b.try_take(Instant::now())).count())
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
}

fn method_is(value: &str) -> MetadataMatcher {
    MetadataMatcher::exact("method", value)
}

/// Runs the filter on a request with `method`; true if it passed.
fn run(f: &LocalRateLimitFilter, method: &str, id: u64) -> Result<(), meta_protocol::LocalReply> {
    let mut meta = Metadata::of_kind(MessageKind::Request);
    meta.request_id = id;
    meta.set("method", method);
    let mut mutation = Mutation::new();
    let mut ctx = RequestContext {
        listener: "l",
        meta: &mut meta,
        mutation: &mut mutation,
    };
    match f.on_request(&mut ctx) {
        FilterStatus::Continue => Ok(()),
        FilterStatus::LocalReply(r) => Err(r),
        FilterStatus::Wait(_) => panic!("the local filter never waits"),
    }
}

fn passed(f: &LocalRateLimitFilter, method: &str, n: u64) -> usize {
    (0..n).filter(|i| run(f, method, *i).is_ok()).count()
}

#[tokio::test(start_paused = true)]
async fn first_matching_condition_takes_from_its_own_bucket() {
    let config = LocalRateLimit {
        stat_prefix: "s".into(),
        token_bucket: Some(bucket(5, 5, 60_000)),
        conditions: vec![
            LocalRateLimitCondition {
                matchers: vec![method_is("sayHello")],
                token_bucket: bucket(2, 2, 60_000),
            },
            // Never reached for sayHello: the first matching condition wins.
            LocalRateLimitCondition {
                matchers: vec![],
                token_bucket: bucket(100, 1, 60_000),
            },
        ],
    };
    let (ok, limited) = (Counter::default(), Counter::default());
    let f = LocalRateLimitFilter::new(&config, (ok.clone(), limited.clone()));
    assert_eq!(passed(&f, "sayHello", 10), 2);
    // Other methods match the catch-all second condition, not the global bucket.
    assert_eq!(passed(&f, "other", 10), 10);
    assert_eq!((ok.get(), limited.get()), (12, 8));
    let reply = run(&f, "sayHello", 42).unwrap_err();
    assert_eq!(reply.kind, ErrorKind::OverLimit);
    assert_eq!(
        reply.message,
        "meta protocol local rate limit: request '42' has been rate limited"
    );
    // After a fill interval the condition's bucket is full again.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(passed(&f, "sayHello", 10), 2);
}

#[tokio::test(start_paused = true)]
async fn unmatched_requests_use_the_global_bucket_or_pass() {
    let mut config = LocalRateLimit {
        stat_prefix: "s".into(),
        token_bucket: Some(bucket(5, 5, 60_000)),
        conditions: vec![LocalRateLimitCondition {
            matchers: vec![method_is("sayHello")],
            token_bucket: bucket(2, 2, 60_000),
        }],
    };
    let counters = || (Counter::default(), Counter::default());
    let f = LocalRateLimitFilter::new(&config, counters());
    // The Aeraki scenario: 2 of 10 sayHello, 5 of 10 others; the buckets are independent.
    assert_eq!(passed(&f, "sayHello", 10), 2);
    assert_eq!(passed(&f, "other", 10), 5);
    config.token_bucket = None;
    let f = LocalRateLimitFilter::new(&config, counters());
    assert_eq!(passed(&f, "sayHello", 10), 2);
    assert_eq!(
        passed(&f, "other", 10),
        10,
        "no global bucket: unmatched pass"
    );
}

#[test]
fn reads_the_keys_of_its_conditions_and_no_response_key() {
    let mut user = method_is("bob");
    user.name = "User".into();
    let config = LocalRateLimit {
        stat_prefix: "s".into(),
        token_bucket: Some(bucket(5, 5, 60_000)),
        conditions: vec![
            LocalRateLimitCondition {
                matchers: vec![method_is("sayHello"), user],
                token_bucket: bucket(2, 2, 60_000),
            },
            LocalRateLimitCondition {
                matchers: vec![method_is("other")],
                token_bucket: bucket(2, 2, 60_000),
            },
        ],
    };
    let f = LocalRateLimitFilter::new(&config, (Counter::default(), Counter::default()));
    assert_eq!(f.request_keys(), ReadKeys::only(["method", "user"]));
    assert_eq!(f.response_keys(), ReadKeys::none());
    // Only a global bucket: no key at all.
    let global = LocalRateLimit {
        conditions: vec![],
        ..config
    };
    let f = LocalRateLimitFilter::new(&global, (Counter::default(), Counter::default()));
    assert_eq!(f.request_keys(), ReadKeys::none());
}
