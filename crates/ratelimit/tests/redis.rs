//! The Redis backend against a real redis-server: shared counts across instances, the Go
//! service's key format, UNAVAILABLE (quickly) when Redis is down, automatic reconnection.

#![allow(clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeraki_ratelimit::{Config, RedisBackend, RedisOptions, Service};
use common::{RedisServer, client, manual_clock, request, start};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;

const CONFIG: &str = "domain: shared\ndescriptors:\n  - key: method\n    value: sayHello\n    rate_limit: {unit: hour, requests_per_unit: 5}\n";

const NOW: u64 = 36_000_000 + 42;
const WINDOW: u64 = 36_000_000;

fn redis_service(url: &str) -> Service {
    let backend = RedisBackend::new(RedisOptions::new(url)).expect("backend");
    let (_, clock) = manual_clock(NOW);
    Service::builder(Config::from_yaml("redis.yaml", CONFIG).expect("valid"))
        .backend(Arc::new(backend))
        .clock(clock)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_agree_on_the_count() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = start(redis_service(&redis.url())).await;
    let b = start(redis_service(&redis.url())).await;
    let mut ca = client(a.addr).await;
    let mut cb = client(b.addr).await;
    let mut allowed = 0;
    let mut remaining = Vec::new();
    for i in 0..12 {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        let r = c
            .should_rate_limit(request("shared", &[&[("method", "sayHello")]]))
            .await
            .expect("rpc")
            .into_inner();
        if r.overall_code == Code::Ok as i32 {
            allowed += 1;
            remaining.push(r.statuses[0].limit_remaining);
        }
    }
    assert_eq!(allowed, 5, "exactly the limit passes across both instances");
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let key = format!("shared_method_sayHello_{WINDOW}");
    assert_eq!(
        redis.get(&key),
        Some(12),
        "the Go service's key format, every hit counted"
    );
    let ttl = redis.ttl(&key).expect("ttl");
    assert!(
        (3500..=3600).contains(&ttl),
        "EXPIRE set to the unit: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_quickly_then_reconnects() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let service = redis_service(&redis.url());
    let running = start(service.clone()).await;
    let mut c = client(running.addr).await;
    let ask = request("shared", &[&[("method", "sayHello")]]);
    let r = c
        .should_rate_limit(ask.clone())
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(r.statuses[0].limit_remaining, 4);

    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = c
            .should_rate_limit(ask.clone())
            .await
            .expect_err("redis is down");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.message().contains("redis"), "{}", err.message());
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "took {:?}",
            started.elapsed()
        );
    }
    assert!(
        service
            .metrics()
            .encode()
            .contains("ratelimit_backend_errors_total{backend=\"redis\"} 3")
    );

    // A fresh redis-server (empty) on the same port: the backend reconnects by itself.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let remaining = loop {
        match c.should_rate_limit(ask.clone()).await {
            Ok(r) => break r.into_inner().statuses[0].limit_remaining,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable);
                assert!(Instant::now() < deadline, "no reconnection: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(remaining, 4, "the new server started counting from zero");
}

#[tokio::test]
async fn unreachable_redis_at_startup_is_unavailable_not_a_hang() {
    if RedisServer::start().is_none() {
        return;
    }
    let port = common::free_port();
    let service = redis_service(&format!("127.0.0.1:{port}"));
    let started = Instant::now();
    let err = service
        .check(request("shared", &[&[("method", "sayHello")]]))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "took {:?}",
        started.elapsed()
    );
    // Requests that match no limit never touch Redis.
    let r = service
        .check(request("shared", &[&[("method", "other")]]))
        .await
        .expect("no counting");
    assert_eq!(r.overall_code, Code::Ok as i32);
}

#[test]
fn a_malformed_url_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err =
        rt.block_on(async { RedisBackend::new(RedisOptions::new("redis://[bad")).map(|_| ()) });
    assert!(err.is_err());
}
