//! Fault injection (abort, delay) of the router, over real TCP against scripted backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use custom_codec_example::request;
use meta_config::{FaultAbort, FaultDelay, FaultError, FaultPolicy, Route};

fn aborting(mut r: Route, per_million: u32) -> Route {
    r.fault = Some(FaultPolicy {
        delay: None,
        abort: Some(FaultAbort {
            error: FaultError::OverLimit,
            per_million,
        }),
    });
    r
}

fn delaying(mut r: Route, ms: u64, per_million: u32) -> Route {
    r.fault = Some(FaultPolicy {
        delay: Some(FaultDelay {
            delay: Duration::from_millis(ms),
            per_million,
        }),
        abort: None,
    });
    r
}

fn faults(engine: &meta_proxy_engine::Engine, kind: &str) -> f64 {
    metric(
        engine,
        &format!(r#"meta_protocol_faults_total{{listener="l",route="r",kind="{kind}"}}"#),
    )
}

async fn aborted_of(per_million: u32, calls: u32) -> (u32, f64, usize) {
    let (a, seen) = backend("a", 0).await;
    let r = aborting(route("r", vec![], to("a")), per_million);
    let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
    let mut c = Client::connect(addr).await;
    let mut aborted = 0;
    for i in 0..calls {
        let (err, msg) = c.call(i, 1, b"x").await;
        if err {
            assert!(msg.contains("fault injected: abort"), "{msg}");
            aborted += 1;
        } else {
            assert_eq!(msg, "a:x");
        }
    }
    let over_limit = metric(
        &engine,
        r#"meta_protocol_local_replies_total{listener="l",reason="over_limit"}"#,
    );
    assert_eq!(
        over_limit,
        f64::from(aborted),
        "abort answers with its error kind"
    );
    (
        aborted,
        faults(&engine, "abort"),
        seen.requests.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_all_none_and_half() {
    bounded(async {
        let (n, m, upstream) = aborted_of(1_000_000, 20).await;
        assert_eq!((n, m, upstream), (20, 20.0, 0));
        let (n, m, upstream) = aborted_of(0, 20).await;
        assert_eq!((n, m, upstream), (0, 0.0, 20));
        // Binomial(400, 0.5): sd 10, accept 6 sd either side.
        let (n, m, upstream) = aborted_of(500_000, 400).await;
        assert!((140..=260).contains(&n), "{n} of 400 aborted");
        assert_eq!(m, f64::from(n));
        assert_eq!(upstream, 400 - n as usize);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_all_and_none() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let r = delaying(route("r", vec![], to("a")), 300, 1_000_000);
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..3 {
            let t = Instant::now();
            assert_eq!(c.call(i, 1, b"x").await, (false, "a:x".into()));
            assert!(t.elapsed() >= Duration::from_millis(300), "delayed");
        }
        assert_eq!(faults(&engine, "delay"), 3.0);

        let (a, _) = backend("a", 0).await;
        let r = delaying(route("r", vec![], to("a")), 60_000, 0);
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..20 {
            // A delay of a minute would trip the test's bound.
            assert_eq!(c.call(i, 1, b"x").await, (false, "a:x".into()));
        }
        assert_eq!(faults(&engine, "delay"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_half_within_binomial_tolerance() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let r = delaying(route("r", vec![], to("a")), 1, 500_000);
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..400 {
            assert_eq!(c.call(i, 1, b"x").await, (false, "a:x".into()));
        }
        let n = faults(&engine, "delay");
        assert!((140.0..=260.0).contains(&n), "{n} of 400 delayed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_does_not_block_other_requests_on_the_connection() {
    bounded(async {
        let (a, _) = backend("a", 0).await;
        let slow = delaying(route("r", vec![cmd_is("1")], to("a")), 60_000, 1_000_000);
        let fast = route("fast", vec![], to("a"));
        let (_engine, addr) =
            start(bootstrap(proxy(vec![slow, fast]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        c.send(&request(1, 1, b"slow")).await;
        for i in 2..12 {
            // Answered while request 1 is still delayed (a minute: the test bound is 30 s).
            assert_eq!(c.call(i, 5, b"x").await, (false, "a:x".into()));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_then_abort_as_envoy_does() {
    bounded(async {
        let (a, seen) = backend("a", 0).await;
        let mut r = route("r", vec![], to("a"));
        r.fault = Some(FaultPolicy {
            delay: Some(FaultDelay {
                delay: Duration::from_millis(200),
                per_million: 1_000_000,
            }),
            abort: Some(FaultAbort {
                error: FaultError::Timeout,
                per_million: 1_000_000,
            }),
        });
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("a", &[a])])).await;
        let mut c = Client::connect(addr).await;
        let t = Instant::now();
        let (err, msg) = c.call(1, 1, b"x").await;
        assert!(err && msg.contains("fault injected: abort"), "{msg}");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "aborted after the delay"
        );
        assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
        assert_eq!(
            (faults(&engine, "delay"), faults(&engine, "abort")),
            (1.0, 1.0)
        );
        let timeouts = metric(
            &engine,
            r#"meta_protocol_local_replies_total{listener="l",reason="timeout"}"#,
        );
        assert_eq!(timeouts, 1.0);
    })
    .await;
}
