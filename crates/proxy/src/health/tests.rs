//! Circuit breakers, ejection and return, max ejection percent, panic threshold, priority
//! failover.

use std::net::SocketAddr;
use std::time::Duration;

use meta_config::{Cluster, Endpoint, OutlierDetection, RetryBudget};

use super::{HostResult, Overflow};
use crate::cluster::ClusterState;
use crate::lb::LbContext;
use crate::metrics::Metrics;

fn config(ports: &[(u16, u32)]) -> Cluster {
    let endpoints = ports.iter().map(|(port, priority)| Endpoint {
        priority: *priority,
        ..Endpoint::at(addr(*port))
    });
    Cluster::fixed("c", endpoints)
}

fn with_outlier(ports: &[(u16, u32)], f: impl FnOnce(&mut OutlierDetection)) -> Cluster {
    let mut od = OutlierDetection {
        consecutive_5xx: 3,
        base_ejection_time: Duration::from_secs(30),
        interval: Duration::from_secs(10),
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    };
    f(&mut od);
    Cluster {
        outlier_detection: Some(od),
        ..config(ports)
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Ports picked over `n` round-robin picks, sorted and deduplicated.
fn picked(c: &ClusterState, n: usize) -> Vec<u16> {
    let mut out: Vec<u16> = (0..n)
        .filter_map(|_| c.pick(&LbContext::default()).map(|p| p.addr.port()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn fail(c: &ClusterState, port: u16, n: usize, r: HostResult) {
    for _ in 0..n {
        c.report(addr(port), r);
    }
}

fn metric(m: &Metrics, line_start: &str) -> String {
    m.encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn max_requests_overflows_and_frees_on_drop() {
    let m = Metrics::new();
    let mut cfg = config(&[(1, 0)]);
    cfg.circuit_breakers.max_requests = 2;
    let c = ClusterState::new(cfg, &m).unwrap();
    let a = c.admit_request().unwrap();
    let _b = c.admit_request().unwrap();
    assert_eq!(c.admit_request().unwrap_err(), Overflow::MaxRequests);
    assert_eq!(
        metric(&m, "meta_protocol_upstream_rq_pending_overflow_total"),
        "meta_protocol_upstream_rq_pending_overflow_total{cluster=\"c\"} 1"
    );
    assert!(
        m.encode()
            .contains("circuit_breaker_open{cluster=\"c\",resource=\"rq\"} 1")
    );
    drop(a);
    assert!(
        c.admit_request().is_ok(),
        "a dropped admission frees its slot"
    );
    assert!(
        m.encode()
            .contains("circuit_breaker_open{cluster=\"c\",resource=\"rq\"} 0")
    );
}

#[test]
fn pending_requests_are_limited_until_a_connection_is_ready() {
    let m = Metrics::new();
    let mut cfg = config(&[(1, 0)]);
    cfg.circuit_breakers.max_pending_requests = 1;
    let c = ClusterState::new(cfg, &m).unwrap();
    let first = c.admit_request().unwrap();
    assert_eq!(c.admit_request().unwrap_err(), Overflow::MaxPending);
    let mut slot = c.reserve_connection().unwrap();
    slot.ready();
    // Connected: requests are no longer pending, and the earlier one's release is harmless.
    let more: Vec<_> = (0..5).map(|_| c.admit_request().unwrap()).collect();
    drop(first);
    drop(slot);
    // No connection again: pending counts afresh from zero.
    let again = c.admit_request().unwrap();
    assert_eq!(c.admit_request().unwrap_err(), Overflow::MaxPending);
    drop((more, again));
}

#[test]
fn max_connections_and_retries() {
    let m = Metrics::new();
    let mut cfg = config(&[(1, 0)]);
    cfg.circuit_breakers.max_connections = 1;
    cfg.circuit_breakers.max_retries = 2;
    let c = ClusterState::new(cfg, &m).unwrap();
    let slot = c.reserve_connection().unwrap();
    assert!(c.reserve_connection().is_none());
    drop(slot);
    assert!(c.reserve_connection().is_some());
    let r1 = c.admit_retry().unwrap();
    let _r2 = c.admit_retry().unwrap();
    assert!(c.admit_retry().is_none());
    drop(r1);
    assert!(c.admit_retry().is_some());
    let text = m.encode();
    assert!(text.contains("meta_protocol_upstream_cx_overflow_total{cluster=\"c\"} 1"));
    assert!(text.contains("meta_protocol_upstream_rq_retry_overflow_total{cluster=\"c\"} 1"));
}

#[test]
fn retry_budget_scales_with_active_requests() {
    let mut cfg = config(&[(1, 0)]);
    cfg.circuit_breakers.retry_budget = Some(RetryBudget {
        budget_percent: 50.0,
        min_retry_concurrency: 1,
    });
    let c = ClusterState::new(cfg, &Metrics::new()).unwrap();
    let _one = c.admit_retry().unwrap();
    assert!(
        c.admit_retry().is_none(),
        "min_retry_concurrency 1 with no requests"
    );
    let reqs: Vec<_> = (0..6).map(|_| c.admit_request().unwrap()).collect();
    let more: Vec<_> = (0..2).map(|_| c.admit_retry().unwrap()).collect();
    assert!(c.admit_retry().is_none(), "50% of 6 active requests is 3");
    drop((reqs, more));
}

#[tokio::test(start_paused = true)]
async fn consecutive_errors_eject_then_the_endpoint_returns() {
    let m = Metrics::new();
    let c = ClusterState::new(with_outlier(&[(1, 0), (2, 0)], |_| {}), &m).unwrap();
    fail(&c, 1, 2, HostResult::ErrorResponse);
    c.report(addr(1), HostResult::Success);
    fail(&c, 1, 2, HostResult::ErrorResponse);
    assert_eq!(picked(&c, 4), [1, 2], "a success resets the run");
    fail(&c, 1, 1, HostResult::ErrorResponse);
    assert_eq!(c.hosts.ejected(), [addr(1)]);
    assert_eq!(picked(&c, 4), [2]);
    let text = m.encode();
    assert!(text.contains(
        "outlier_ejections_enforced_total{cluster=\"c\",detector=\"consecutive_5xx\"} 1"
    ));
    assert!(text.contains("outlier_ejections_active{cluster=\"c\"} 1"));
    // Back after base_ejection_time (30 s), on the interval (10 s) tick.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(picked(&c, 4), [2]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(picked(&c, 4), [1, 2]);
    assert!(
        m.encode()
            .contains("outlier_ejections_active{cluster=\"c\"} 0")
    );
    // Ejected again at once: twice the base time (60 s).
    fail(&c, 1, 3, HostResult::Refused);
    assert_eq!(picked(&c, 4), [2]);
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(picked(&c, 4), [2], "second ejection lasts longer");
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(picked(&c, 4), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn gateway_and_local_origin_detectors() {
    // Gateway errors only (5xx detector off): an error response breaks the run.
    let c = ClusterState::new(
        with_outlier(&[(1, 0), (2, 0)], |od| {
            od.consecutive_5xx = 0;
            od.consecutive_gateway_failure = 2;
            od.enforcing_consecutive_gateway_failure = 100;
        }),
        &Metrics::new(),
    )
    .unwrap();
    c.report(addr(1), HostResult::Timeout);
    c.report(addr(1), HostResult::ErrorResponse);
    c.report(addr(1), HostResult::Reset);
    assert!(c.hosts.ejected().is_empty());
    c.report(addr(1), HostResult::ConnectFailure);
    assert_eq!(c.hosts.ejected(), [addr(1)]);
    // Split: local-origin errors count apart; error responses do not feed them.
    let c = ClusterState::new(
        with_outlier(&[(1, 0), (2, 0)], |od| {
            od.consecutive_5xx = 0;
            od.split_external_local_origin_errors = true;
            od.consecutive_local_origin_failure = 2;
        }),
        &Metrics::new(),
    )
    .unwrap();
    fail(&c, 1, 5, HostResult::ErrorResponse);
    c.report(addr(1), HostResult::ConnectFailure);
    assert!(c.hosts.ejected().is_empty());
    c.report(addr(1), HostResult::Timeout);
    assert_eq!(c.hosts.ejected(), [addr(1)]);
}

#[test]
fn enforcing_zero_detects_but_never_ejects() {
    let c = ClusterState::new(
        with_outlier(&[(1, 0), (2, 0)], |od| od.enforcing_consecutive_5xx = 0),
        &Metrics::new(),
    )
    .unwrap();
    fail(&c, 1, 10, HostResult::ErrorResponse);
    assert!(c.hosts.ejected().is_empty());
}

#[test]
fn max_ejection_percent_caps_ejections_but_one_is_always_allowed() {
    let ports: Vec<(u16, u32)> = (1..=4).map(|p| (p, 0)).collect();
    let c = ClusterState::new(
        with_outlier(&ports, |od| od.max_ejection_percent = 50),
        &Metrics::new(),
    )
    .unwrap();
    for p in 1..=4 {
        fail(&c, p, 3, HostResult::ErrorResponse);
    }
    assert_eq!(c.hosts.ejected(), [addr(1), addr(2)], "50% of 4");
    let c = ClusterState::new(
        with_outlier(&ports, |od| od.max_ejection_percent = 0),
        &Metrics::new(),
    )
    .unwrap();
    for p in 1..=4 {
        fail(&c, p, 3, HostResult::ErrorResponse);
    }
    assert_eq!(c.hosts.ejected(), [addr(1)]);
}

#[test]
fn panic_threshold_uses_every_endpoint() {
    let ports: Vec<(u16, u32)> = (1..=4).map(|p| (p, 0)).collect();
    let mut cfg = with_outlier(&ports, |_| {});
    cfg.healthy_panic_threshold = 60.0;
    let c = ClusterState::new(cfg, &Metrics::new()).unwrap();
    fail(&c, 1, 3, HostResult::ErrorResponse);
    assert_eq!(picked(&c, 8), [2, 3, 4], "75% healthy");
    fail(&c, 2, 3, HostResult::ErrorResponse);
    assert_eq!(picked(&c, 8), [1, 2, 3, 4], "50% healthy < 60%: panic");
    // Threshold 0: no panic, and with everything ejected nothing is picked.
    let mut cfg = with_outlier(&[(1, 0)], |_| {});
    cfg.healthy_panic_threshold = 0.0;
    let c = ClusterState::new(cfg, &Metrics::new()).unwrap();
    fail(&c, 1, 3, HostResult::ErrorResponse);
    assert!(c.pick(&LbContext::default()).is_none());
}

#[test]
fn priority_levels_fail_over_and_back() {
    let cfg = with_outlier(&[(1, 0), (2, 0), (3, 1), (4, 1)], |_| {});
    let c = ClusterState::new(cfg, &Metrics::new()).unwrap();
    assert_eq!(picked(&c, 8), [1, 2], "priority 0 only");
    fail(&c, 1, 3, HostResult::ErrorResponse);
    assert_eq!(picked(&c, 8), [2], "one healthy endpoint keeps level 0");
    fail(&c, 2, 3, HostResult::ErrorResponse);
    assert_eq!(picked(&c, 8), [3, 4], "level 0 all ejected: level 1");
    // A new endpoint list keeps the ejections of the endpoints that stay.
    c.set_static_endpoints(&config(&[(1, 0), (2, 0), (3, 1), (5, 1)]).endpoints)
        .unwrap();
    assert_eq!(picked(&c, 8), [3, 5]);
}

#[test]
fn outcomes_map_to_host_results() {
    use meta_protocol::{ErrorKind, Frame, LocalReply, MessageKind, Metadata, ResponseStatus};
    let response = |status, key: Option<&str>| {
        let mut meta = Metadata::of_kind(MessageKind::Response);
        meta.status = status;
        if let Some(v) = key {
            meta.set("x-meta-protocol-status", v);
        }
        Ok(Frame {
            meta,
            bytes: Default::default(),
        })
    };
    let of = HostResult::of;
    assert_eq!(
        of(&response(ResponseStatus::Ok, None)),
        Some(HostResult::Success)
    );
    assert_eq!(
        of(&response(ResponseStatus::Error, Some("SERVICE_ERROR"))),
        Some(HostResult::ErrorResponse)
    );
    assert_eq!(
        of(&response(
            ResponseStatus::Error,
            Some("SERVER_THREADPOOL_EXHAUSTED")
        )),
        Some(HostResult::Refused)
    );
    let local = |kind| Err(LocalReply::new(kind, "x"));
    assert_eq!(
        of(&local(ErrorKind::ConnectFailure)),
        Some(HostResult::ConnectFailure)
    );
    assert_eq!(
        of(&local(ErrorKind::UpstreamReset)),
        Some(HostResult::Reset)
    );
    assert_eq!(of(&local(ErrorKind::Timeout)), Some(HostResult::Timeout));
    assert_eq!(of(&local(ErrorKind::OverLimit)), None, "our own overflow");
}

#[tokio::test(start_paused = true)]
async fn a_replaced_cluster_takes_its_ejections_out_of_the_gauge() {
    let m = Metrics::new();
    let c = ClusterState::new(with_outlier(&[(1, 0), (2, 0)], |_| {}), &m).unwrap();
    fail(&c, 1, 3, HostResult::ErrorResponse);
    assert!(
        m.encode()
            .contains("outlier_ejections_active{cluster=\"c\"} 1")
    );
    drop(c);
    assert!(
        m.encode()
            .contains("outlier_ejections_active{cluster=\"c\"} 0")
    );
}
