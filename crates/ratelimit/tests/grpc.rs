//! The gRPC service over real TCP with Envoy's generated RLS client, in-memory counters.

#![allow(clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aeraki_ratelimit::{Config, Service, metrics_router};
use common::{client, descriptor, manual_clock, request, start};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
domain: production
descriptors:
  - key: method
    value: sayHello
    rate_limit: {unit: hour, requests_per_unit: 3, name: hello}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: bulk
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: vip
    rate_limit: {unlimited: true}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: day, requests_per_unit: 1}
"#;

/// 10 000 hours after the epoch plus 100 s: the hour window started 100 s ago.
const T0: u64 = 36_000_000 + 100;

fn service() -> (std::sync::Arc<std::sync::atomic::AtomicU64>, Service) {
    let config = Config::from_yaml("grpc.yaml", CONFIG).expect("valid");
    let (now, clock) = manual_clock(T0);
    (now, Service::builder(config).clock(clock).build())
}

#[tokio::test]
async fn exactly_n_of_m_requests_are_allowed_in_a_window() {
    let (now, service) = service();
    let running = start(service.clone()).await;
    let mut c = client(running.addr).await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = c
            .should_rate_limit(request("production", &[&[("method", "sayHello")]]))
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(r.statuses.len(), 1);
        let s = &r.statuses[0];
        assert_eq!(r.overall_code, s.code, "request {i}");
        let limit = s.current_limit.as_ref().expect("current_limit");
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit, limit.unit),
            ("hello", 3, PbUnit::Hour as i32)
        );
        assert_eq!(
            s.duration_until_reset
                .as_ref()
                .map(|d| (d.seconds, d.nanos)),
            Some((3500, 0))
        );
        codes.push((s.code, s.limit_remaining));
    }
    let ok = (Code::Ok as i32, 0);
    let over = (Code::OverLimit as i32, 0);
    assert_eq!(&codes[..3], &[(ok.0, 2), (ok.0, 1), (ok.0, 0)]);
    assert!(codes[3..].iter().all(|c| *c == over), "{codes:?}");

    // The next hour is a new window (aligned to the hour, not to the first request).
    now.store(T0 - 100 + 3600, Ordering::SeqCst);
    let r = c
        .should_rate_limit(request("production", &[&[("method", "sayHello")]]))
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        (r.overall_code, r.statuses[0].limit_remaining),
        (Code::Ok as i32, 2)
    );
    assert_eq!(
        r.statuses[0]
            .duration_until_reset
            .as_ref()
            .map(|d| d.seconds),
        Some(3600)
    );

    let m = service.metrics();
    assert_eq!(
        m.requests("production", "production.method_sayHello", "ok"),
        4
    );
    assert_eq!(
        m.requests("production", "production.method_sayHello", "over_limit"),
        7
    );
}

#[tokio::test]
async fn key_only_nodes_count_each_value_and_overall_code_is_any_over_limit() {
    let (_, service) = service();
    let running = start(service).await;
    let mut c = client(running.addr).await;
    let mut ask = async |descs: &[&[(&str, &str)]]| {
        c.should_rate_limit(request("production", descs))
            .await
            .expect("rpc")
            .into_inner()
    };
    for _ in 0..2 {
        assert_eq!(
            ask(&[&[("user", "alice")]]).await.overall_code,
            Code::Ok as i32
        );
    }
    assert_eq!(
        ask(&[&[("user", "alice")]]).await.overall_code,
        Code::OverLimit as i32
    );
    // bob has his own counter
    let r = ask(&[&[("user", "bob")]]).await;
    assert_eq!(
        (r.overall_code, r.statuses[0].limit_remaining),
        (Code::Ok as i32, 1)
    );
    // several descriptors: one over → overall OVER_LIMIT, each status its own
    let r = ask(&[
        &[("user", "carol")],
        &[("user", "alice")],
        &[("nothing", "x")],
        &[("vip", "v")],
    ])
    .await;
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    let codes: Vec<i32> = r.statuses.iter().map(|s| s.code).collect();
    assert_eq!(
        codes,
        [
            Code::Ok as i32,
            Code::OverLimit as i32,
            Code::Ok as i32,
            Code::Ok as i32
        ]
    );
    assert!(r.statuses[2].current_limit.is_none(), "no limit matched");
    assert_eq!(r.statuses[3].limit_remaining, u32::MAX, "unlimited");
    assert!(r.statuses[3].current_limit.is_none());
}

#[tokio::test]
async fn hits_addend_is_honoured_and_zero_means_one() {
    let (_, service) = service();
    let running = start(service).await;
    let mut c = client(running.addr).await;
    let mut req = request("production", &[&[("bulk", "b")]]);
    req.hits_addend = 2;
    let remaining = |r: &envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse| {
        (r.overall_code, r.statuses[0].limit_remaining)
    };
    let r = c
        .should_rate_limit(req.clone())
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(remaining(&r), (Code::Ok as i32, 3));
    req.hits_addend = 0;
    let r = c
        .should_rate_limit(req.clone())
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(remaining(&r), (Code::Ok as i32, 2));
    // a per-descriptor hits_addend overrides the request's; 0 there only checks
    let mut check_only = req.clone();
    check_only.descriptors[0].hits_addend =
        Some(envoy_types::pb::google::protobuf::UInt64Value { value: 0 });
    let r = c
        .should_rate_limit(check_only)
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(remaining(&r), (Code::Ok as i32, 2));
    req.hits_addend = 3;
    let r = c.should_rate_limit(req).await.expect("rpc").into_inner();
    assert_eq!(remaining(&r), (Code::OverLimit as i32, 0));
}

#[tokio::test]
async fn unknown_domain_shadow_mode_and_bad_requests() {
    let (_, service) = service();
    let running = start(service.clone()).await;
    let mut c = client(running.addr).await;
    for _ in 0..2 {
        let req = request("staging", &[&[("method", "sayHello")], &[("user", "u")]]);
        let r = c.should_rate_limit(req).await.expect("rpc").into_inner();
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(r.statuses.len(), 2);
        assert!(
            r.statuses
                .iter()
                .all(|s| s.code == Code::Ok as i32 && s.current_limit.is_none())
        );
    }
    let text = service.metrics().encode();
    assert!(
        text.contains("ratelimit_unknown_domain_total{domain=\"staging\"} 2\n"),
        "{text}"
    );
    for i in 0..3 {
        let r = c
            .should_rate_limit(request("production", &[&[("trial", "t")]]))
            .await
            .expect("rpc");
        let s = &r.into_inner().statuses[0];
        assert_eq!(
            s.code,
            Code::Ok as i32,
            "shadow mode always answers OK ({i})"
        );
        assert!(s.current_limit.is_some());
    }
    let m = service.metrics();
    assert_eq!(m.requests("production", "production.trial", "ok"), 1);
    assert_eq!(m.requests("production", "production.trial", "shadow"), 2);

    let err = c
        .should_rate_limit(request("", &[&[("a", "b")]]))
        .await
        .expect_err("empty domain");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .should_rate_limit(RateLimitRequest {
            domain: "production".into(),
            ..Default::default()
        })
        .await
        .expect_err("no descriptors");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut negative = request("production", &[&[("user", "u")]]);
    negative.descriptors[0].is_negative_hits = true;
    let err = c
        .should_rate_limit(negative)
        .await
        .expect_err("negative hits");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("descriptors[0].is_negative_hits"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_descriptor_limit_override_is_applied() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
    let (_, service) = service();
    let running = start(service).await;
    let mut c = client(running.addr).await;
    let mut d = descriptor(&[("method", "sayHello")]);
    d.limit = Some(RateLimitOverride {
        requests_per_unit: 1,
        unit: 2,
    });
    let req = RateLimitRequest {
        domain: "production".into(),
        descriptors: vec![d],
        hits_addend: 0,
    };
    let r = c
        .should_rate_limit(req.clone())
        .await
        .expect("rpc")
        .into_inner();
    let limit = r.statuses[0].current_limit.clone().expect("limit");
    assert_eq!(
        (r.overall_code, limit.requests_per_unit, limit.unit),
        (Code::Ok as i32, 1, PbUnit::Minute as i32)
    );
    let r = c.should_rate_limit(req).await.expect("rpc").into_inner();
    assert_eq!(r.overall_code, Code::OverLimit as i32);
}

#[tokio::test]
async fn metrics_are_served_over_http() {
    let (_, service) = service();
    let running = start(service.clone()).await;
    let mut c = client(running.addr).await;
    for _ in 0..5 {
        c.should_rate_limit(request("production", &[&[("method", "sayHello")]]))
            .await
            .expect("rpc");
    }
    c.should_rate_limit(request("nowhere", &[&[("k", "v")]]))
        .await
        .expect("rpc");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, metrics_router(service.metrics())).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut body))
        .await
        .expect("in time")
        .expect("read");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    for line in [
        r#"ratelimit_requests_total{domain="production",descriptor="production.method_sayHello",result="ok"} 3"#,
        r#"ratelimit_requests_total{domain="production",descriptor="production.method_sayHello",result="over_limit"} 2"#,
        r#"ratelimit_hits_total{domain="production",descriptor="production.method_sayHello"} 5"#,
        r#"ratelimit_unknown_domain_total{domain="nowhere"} 1"#,
        r#"ratelimit_backend_duration_seconds_count{backend="memory"} 5"#,
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in\n{body}"
        );
    }
}
