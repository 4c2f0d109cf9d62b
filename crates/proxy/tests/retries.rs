//! Retries, per-try timeouts and retry limits (`max_retries`, retry budget) of the router, over
//! real TCP against scripted backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use meta_config::{RetryOn, RetryPolicy, Route};

fn retrying(mut r: Route, retries: u32, per_try_ms: Option<u64>, on: &str) -> Route {
    r.retry = Some(RetryPolicy {
        num_retries: retries,
        per_try_timeout: per_try_ms.map(Duration::from_millis),
        retry_on: RetryOn::parse(on).unwrap(),
        host_selection_max_attempts: 5,
    });
    r
}

fn retry_metric(engine: &meta_proxy_engine::Engine, name: &str) -> f64 {
    metric(
        engine,
        &format!(r#"meta_protocol_{name}_total{{listener="l",route="r",cluster="c"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_retried_on_the_other_host() {
    bounded(async {
        let (bad, bad_seen) = backend_forced("bad", 0, Some(CMD_CLOSE)).await;
        let (good, _) = backend("good", 0).await;
        let r = retrying(route("r", vec![], to("c")), 1, None, "reset");
        let (engine, addr) =
            start(bootstrap(proxy(vec![r]), vec![cluster("c", &[bad, good])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..20 {
            assert_eq!(c.call(i, 1, b"x").await, (false, "good:x".into()));
        }
        let bad_tries = bad_seen.requests.load(Ordering::SeqCst) as f64;
        assert!(
            bad_tries > 0.0,
            "round robin sent some first attempts to bad"
        );
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), bad_tries);
        assert_eq!(
            retry_metric(&engine, "upstream_rq_retry_success"),
            bad_tries
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retry_policy_failures_reach_the_client() {
    bounded(async {
        let (bad, _) = backend_forced("bad", 0, Some(CMD_CLOSE)).await;
        let (good, _) = backend("good", 0).await;
        let r = route("r", vec![], to("c"));
        let (engine, addr) =
            start(bootstrap(proxy(vec![r]), vec![cluster("c", &[bad, good])])).await;
        let mut c = Client::connect(addr).await;
        let mut failed = 0;
        for i in 0..20 {
            if c.call(i, 1, b"x").await.0 {
                failed += 1;
            }
        }
        assert!(failed > 0);
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_a_live_host() {
    bounded(async {
        let dead = dead_addr().await;
        let (good, _) = backend("good", 0).await;
        let r = retrying(route("r", vec![], to("c")), 2, None, "connect-failure");
        let (engine, addr) =
            start(bootstrap(proxy(vec![r]), vec![cluster("c", &[dead, good])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..10 {
            assert_eq!(c.call(i, 1, b"x").await, (false, "good:x".into()));
        }
        assert!(retry_metric(&engine, "upstream_rq_retry") > 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_requests_are_never_retried() {
    bounded(async {
        let dead = dead_addr().await;
        let (good, good_seen) = backend("good", 0).await;
        let r = retrying(
            route("r", vec![], to("c")),
            3,
            None,
            "connect-failure,reset",
        );
        let (engine, addr) =
            start(bootstrap(proxy(vec![r]), vec![cluster("c", &[dead, good])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..20 {
            c.send(&one_way(i, 1, b"x")).await;
        }
        // A two-way call after them lands on good (retried if it hits dead) and proves the
        // one-way requests before it were handled.
        assert_eq!(c.call(100, 1, b"y").await, (false, "good:y".into()));
        let mut n = 0;
        for _ in 0..50 {
            n = good_seen.one_way.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(n > 0 && n < 20, "{n} of 20 one-way requests reached good");
        assert!(
            retry_metric(&engine, "upstream_rq_retry") <= 1.0,
            "only the two-way call"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_then_success_on_another_host() {
    bounded(async {
        let (slow, slow_seen) = backend_forced("slow", 0, Some(CMD_NEVER)).await;
        let (good, _) = backend("good", 0).await;
        let r = retrying(route("r", vec![], to("c")), 1, Some(100), "gateway-error");
        let (engine, addr) =
            start(bootstrap(proxy(vec![r]), vec![cluster("c", &[slow, good])])).await;
        let mut c = Client::connect(addr).await;
        for i in 0..6 {
            assert_eq!(c.call(i, 1, b"x").await, (false, "good:x".into()));
        }
        let timeouts = slow_seen.requests.load(Ordering::SeqCst) as f64;
        assert!(timeouts > 0.0);
        assert_eq!(
            retry_metric(&engine, "upstream_rq_per_try_timeout"),
            timeouts
        );
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), timeouts);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_is_not_retried_without_gateway_error() {
    bounded(async {
        let (slow, _) = backend_forced("slow", 0, Some(CMD_NEVER)).await;
        let r = retrying(route("r", vec![], to("c")), 2, Some(100), "reset");
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("c", &[slow])])).await;
        let mut c = Client::connect(addr).await;
        let (err, msg) = c.call(1, 1, b"x").await;
        assert!(err && msg.contains("per-try timeout"), "{msg}");
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_attempts_are_exhausted() {
    bounded(async {
        let (a, a_seen) = backend_forced("a", 0, Some(CMD_ERROR)).await;
        let (b, b_seen) = backend_forced("b", 0, Some(CMD_ERROR)).await;
        let r = retrying(route("r", vec![], to("c")), 2, None, "error-response");
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("c", &[a, b])])).await;
        let mut c = Client::connect(addr).await;
        // The client gets the last error response itself.
        let (err, body) = c.call(1, 1, b"x").await;
        assert!(err && body.ends_with(":x"), "{body}");
        let tries = a_seen.requests.load(Ordering::SeqCst) + b_seen.requests.load(Ordering::SeqCst);
        assert_eq!(tries, 3, "first try and two retries");
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 2.0);
        assert_eq!(retry_metric(&engine, "upstream_rq_retry_success"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_bounds_all_attempts() {
    bounded(async {
        let (a, a_seen) = backend_forced("a", 0, Some(CMD_NEVER)).await;
        let mut r = retrying(route("r", vec![], to("c")), 10, Some(200), "gateway-error");
        r.timeout = Some(Duration::from_millis(500));
        let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![cluster("c", &[a])])).await;
        let mut c = Client::connect(addr).await;
        let (err, msg) = c.call(1, 1, b"x").await;
        assert!(err && msg.contains("timed out after 500 ms"), "{msg}");
        // 200 ms tries within 500 ms: the third is cut by the route timeout.
        assert_eq!(a_seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 2.0);
    })
    .await;
}

/// A cluster `c` over a backend answering every request with an error response and a good one,
/// behind a route retrying error responses once, with the given retry limits.
async fn error_then_good(
    max_retries: u32,
    budget: Option<meta_config::RetryBudget>,
) -> (
    std::sync::Arc<meta_proxy_engine::Engine>,
    std::net::SocketAddr,
    std::sync::Arc<Seen>,
) {
    let (bad, bad_seen) = backend_forced("bad", 0, Some(CMD_ERROR)).await;
    let (good, _) = backend("good", 0).await;
    let mut c = cluster("c", &[bad, good]);
    c.circuit_breakers.max_retries = max_retries;
    c.circuit_breakers.retry_budget = budget;
    let r = retrying(route("r", vec![], to("c")), 1, None, "error-response");
    let (engine, addr) = start(bootstrap(proxy(vec![r]), vec![c])).await;
    (engine, addr, bad_seen)
}

fn retry_overflow(engine: &meta_proxy_engine::Engine) -> f64 {
    metric(
        engine,
        r#"meta_protocol_upstream_rq_retry_overflow_total{cluster="c"}"#,
    )
}

/// Sends 10 calls; returns how many got the bad backend's error response.
async fn errors_of_ten(addr: std::net::SocketAddr) -> usize {
    let mut c = Client::connect(addr).await;
    let mut errors = 0;
    for i in 0..10 {
        match c.call(i, 1, b"x").await {
            (false, body) => assert_eq!(body, "good:x"),
            (true, body) => {
                assert_eq!(body, "bad:x", "the bad backend's own error response");
                errors += 1;
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_zero_leaves_retryable_failures_unretried_and_counted() {
    bounded(async {
        let (engine, addr, bad_seen) = error_then_good(0, None).await;
        let errors = errors_of_ten(addr).await;
        assert!(errors > 0, "round robin sent some first attempts to bad");
        assert_eq!(bad_seen.requests.load(Ordering::SeqCst), errors);
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 0.0);
        assert_eq!(retry_overflow(&engine), errors as f64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_retry_budget_leaves_retryable_failures_unretried_and_counted() {
    bounded(async {
        let budget = meta_config::RetryBudget {
            budget_percent: 0.0,
            min_retry_concurrency: 0,
        };
        // The budget replaces max_retries: a generous max_retries does not help.
        let (engine, addr, _) = error_then_good(100, Some(budget)).await;
        let errors = errors_of_ten(addr).await;
        assert!(errors > 0, "round robin sent some first attempts to bad");
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), 0.0);
        assert_eq!(retry_overflow(&engine), errors as f64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_budget_replaces_max_retries() {
    bounded(async {
        // 100 % of the one active request: one retry at a time, although max_retries is 0.
        let budget = meta_config::RetryBudget {
            budget_percent: 100.0,
            min_retry_concurrency: 0,
        };
        let (engine, addr, bad_seen) = error_then_good(0, Some(budget)).await;
        assert_eq!(errors_of_ten(addr).await, 0, "every error response retried");
        let bad_tries = bad_seen.requests.load(Ordering::SeqCst) as f64;
        assert!(bad_tries > 0.0);
        assert_eq!(retry_metric(&engine, "upstream_rq_retry"), bad_tries);
        assert_eq!(retry_overflow(&engine), 0.0);
    })
    .await;
}
