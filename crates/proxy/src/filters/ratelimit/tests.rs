//! Matching, descriptor building and failure modes of the global filter, with a scripted
//! client (the real RLS service is exercised in crates/ratelimit-client's tests).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use meta_config::{
    Cluster, Endpoint, GlobalRateLimit, MetadataMatcher, RateLimitDescriptor as DescriptorConfig,
};
use meta_protocol::{ErrorKind, LocalReply, MessageKind, Metadata, Mutation, ReadKeys};

use super::GlobalRateLimitFilter;
use crate::cluster::{ClusterMap, ClusterState};
use crate::filter::{Filter, FilterStatus, RequestContext, settle};
use crate::filters::{
    RateLimitClient, RateLimitDecision, RateLimitError, RateLimitFuture, RateLimitRequest,
};
use crate::metrics::Metrics;

/// Answers with a fixed script; `None` never answers. Records what it was asked.
struct Scripted {
    answer: Option<Result<RateLimitDecision, RateLimitError>>,
    seen: Mutex<Vec<RateLimitRequest>>,
    calls: AtomicUsize,
}

impl RateLimitClient for Scripted {
    fn should_rate_limit(&self, request: RateLimitRequest) -> RateLimitFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(request);
        match self.answer.clone() {
            Some(a) => Box::pin(async move { a }),
            None => Box::pin(std::future::pending()),
        }
    }
}

fn scripted(answer: Option<Result<RateLimitDecision, RateLimitError>>) -> Arc<Scripted> {
    Arc::new(Scripted {
        answer,
        seen: Mutex::new(Vec::new()),
        calls: AtomicUsize::new(0),
    })
}

fn config(deny: bool) -> GlobalRateLimit {
    GlobalRateLimit {
        matchers: vec![],
        domain: "production".into(),
        timeout: Duration::from_millis(20),
        failure_mode_deny: deny,
        cluster: "rls".into(),
        descriptors: vec![
            DescriptorConfig {
                property: "method".into(),
                descriptor_key: "method".into(),
            },
            DescriptorConfig {
                property: "interface".into(),
                descriptor_key: "service".into(),
            },
        ],
    }
}

fn clusters(metrics: &Metrics, with_rls: bool) -> Arc<ArcSwap<ClusterMap>> {
    let mut map = HashMap::new();
    if with_rls {
        let c = Cluster::fixed(
            "rls",
            [Endpoint::at(SocketAddr::from(([127, 0, 0, 1], 8081)))],
        );
        map.insert(
            "rls".to_owned(),
            Arc::new(ClusterState::new(c, metrics).unwrap()),
        );
    }
    Arc::new(ArcSwap::from_pointee(map))
}

struct Setup {
    filter: GlobalRateLimitFilter,
    client: Arc<Scripted>,
    metrics: Metrics,
}

fn setup(
    cfg: GlobalRateLimit,
    answer: Option<Result<RateLimitDecision, RateLimitError>>,
    with_rls: bool,
) -> Setup {
    let metrics = Metrics::new();
    let client = scripted(answer);
    let filter = GlobalRateLimitFilter::new(
        cfg,
        clusters(&metrics, with_rls),
        Some(client.clone()),
        metrics.global_rate_limit("l", "production"),
    );
    Setup {
        filter,
        client,
        metrics,
    }
}

async fn run(f: &GlobalRateLimitFilter, strings: &[(&str, &str)]) -> Result<(), LocalReply> {
    let mut meta = Metadata::of_kind(MessageKind::Request);
    meta.request_id = 7;
    for (k, v) in strings {
        meta.set(k, v);
    }
    let mut mutation = Mutation::new();
    let mut ctx = RequestContext {
        listener: "l",
        meta: &mut meta,
        mutation: &mut mutation,
    };
    match f.on_request(&mut ctx) {
        FilterStatus::Continue => Ok(()),
        FilterStatus::LocalReply(r) => Err(r),
        FilterStatus::Wait(w) => settle(w).await,
    }
}

fn count(s: &Setup, result: &str) -> f64 {
    let needle = format!(
        "meta_protocol_global_rate_limit_total{{listener=\"l\",domain=\"production\",result=\"{result}\"}} "
    );
    s.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).map(|v| v.parse().unwrap()))
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn descriptors_come_from_metadata_and_missing_ones_are_not_sent() {
    let s = setup(config(true), Some(Ok(RateLimitDecision::Ok)), true);
    run(
        &s.filter,
        &[("method", "sayHello"), ("interface", "org.Demo")],
    )
    .await
    .unwrap();
    run(&s.filter, &[("method", "sayHello")]).await.unwrap();
    // No descriptor can be built: no call, the request passes.
    run(&s.filter, &[("other", "x")]).await.unwrap();
    let seen = s.client.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].domain, "production");
    assert_eq!(seen[0].endpoint.to_string(), "127.0.0.1:8081");
    assert_eq!(seen[0].timeout, Duration::from_millis(20));
    let entries = |r: &RateLimitRequest| -> Vec<Vec<(String, String)>> {
        r.descriptors.iter().map(|d| d.entries.clone()).collect()
    };
    assert_eq!(
        entries(&seen[0]),
        vec![
            vec![("method".to_owned(), "sayHello".to_owned())],
            vec![("service".to_owned(), "org.Demo".to_owned())],
        ]
    );
    assert_eq!(
        entries(&seen[1]),
        vec![vec![("method".to_owned(), "sayHello".to_owned())]]
    );
    drop(seen);
    assert_eq!(count(&s, "ok"), 2.0);
}

#[tokio::test]
async fn only_matching_requests_are_checked() {
    let mut cfg = config(true);
    cfg.matchers = vec![MetadataMatcher::present("method")];
    cfg.descriptors.reverse(); // interface first: present on both requests
    let s = setup(cfg, Some(Ok(RateLimitDecision::OverLimit)), true);
    run(&s.filter, &[("interface", "org.Demo")]).await.unwrap();
    assert_eq!(s.client.calls.load(Ordering::SeqCst), 0);
    let reply = run(&s.filter, &[("interface", "org.Demo"), ("method", "m")])
        .await
        .unwrap_err();
    assert_eq!(reply.kind, ErrorKind::OverLimit);
    assert_eq!(
        reply.message,
        "meta protocol global ratelimit: request '7' has been rate limited"
    );
    assert_eq!(count(&s, "over_limit"), 1.0);
}

#[tokio::test]
async fn failures_follow_the_failure_mode() {
    let failing = || Some(Err(RateLimitError("unavailable".into())));
    let deny = setup(config(true), failing(), true);
    let reply = run(&deny.filter, &[("method", "m")]).await.unwrap_err();
    assert_eq!(reply.kind, ErrorKind::OverLimit);
    assert!(reply.message.contains("(unavailable)"), "{}", reply.message);
    assert_eq!(count(&deny, "error"), 1.0);

    let allow = setup(config(false), failing(), true);
    run(&allow.filter, &[("method", "m")]).await.unwrap();
    assert_eq!(count(&allow, "failure_mode_allowed"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_service_times_out_into_the_failure_mode() {
    let deny = setup(config(true), None, true);
    let reply = run(&deny.filter, &[("method", "m")]).await.unwrap_err();
    assert!(
        reply.message.contains("no answer within 20ms"),
        "{}",
        reply.message
    );
    let allow = setup(config(false), None, true);
    run(&allow.filter, &[("method", "m")]).await.unwrap();
    assert_eq!(count(&allow, "failure_mode_allowed"), 1.0);
}

#[tokio::test]
async fn a_missing_cluster_or_client_is_a_service_failure() {
    let deny = setup(config(true), Some(Ok(RateLimitDecision::Ok)), false);
    let reply = run(&deny.filter, &[("method", "m")]).await.unwrap_err();
    assert!(
        reply.message.contains("unknown rate-limit cluster 'rls'"),
        "{}",
        reply.message
    );
    assert_eq!(deny.client.calls.load(Ordering::SeqCst), 0);
    let allow = setup(config(false), Some(Ok(RateLimitDecision::Ok)), false);
    run(&allow.filter, &[("method", "m")]).await.unwrap();

    let metrics = Metrics::new();
    let no_client = GlobalRateLimitFilter::new(
        config(true),
        clusters(&metrics, true),
        None,
        metrics.global_rate_limit("l", "production"),
    );
    let reply = run(&no_client, &[("method", "m")]).await.unwrap_err();
    assert!(
        reply.message.contains("without a rate-limit client"),
        "{}",
        reply.message
    );
}

#[test]
fn reads_its_matchers_and_descriptor_properties_and_no_response_key() {
    let mut cfg = config(true);
    cfg.matchers = vec![MetadataMatcher::present("Zone")];
    let s = setup(cfg, Some(Ok(RateLimitDecision::Ok)), true);
    assert_eq!(
        s.filter.request_keys(),
        ReadKeys::only(["zone", "method", "interface"])
    );
    assert_eq!(s.filter.response_keys(), ReadKeys::none());
}
