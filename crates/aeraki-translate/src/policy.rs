//! MetaProxy flavour: route policies (timeout, retries, fault) on tunnelled RDS routes and the
//! rate-limit filters of the MetaProtocol listener (contract §2, docs/translation.md).

use aeraki_model::{
    AttributeMatch, Fault, GlobalRateLimit, LocalRateLimit, Resolution, RetryPolicy, RouterView,
    ServiceView, TokenBucket, parse_outbound_cluster_name,
};
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::{ApiVersion, GrpcService};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::retry_policy::{
    RetryHostPredicate, retry_host_predicate,
};
use envoy_types::pb::envoy::config::route::v3::{RetryPolicy as PbRetryPolicy, Route};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::FaultDelay;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::fault_abort::ErrorType;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{FaultAbort, HttpFault};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::envoy::r#type::v3::TokenBucket as PbTokenBucket;
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use meta_api::pb::aeraki::meta_protocol_proxy::config::route::v1alpha::RouteMatch;
use meta_api::pb::aeraki::meta_protocol_proxy::filters::local_ratelimit::v1alpha::{
    LocalRateLimit as PbLocal, LocalRateLimitCondition,
};
use meta_api::pb::aeraki::meta_protocol_proxy::filters::ratelimit::v1alpha::{
    RateLimit as PbGlobal, rate_limit::Descriptor,
};
use meta_api::pb::aeraki::meta_protocol_proxy::v1alpha::MetaProtocolFilter;

use crate::common::{any, any_with, duration, header_matcher, u32v};
use crate::{Cx, svc_id};

/// HTTP fault filter name: the key of the fault in `typed_per_filter_config`.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(crate) const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
/// Host re-selections per retry to avoid hosts already tried.
const HOST_SELECTION_ATTEMPTS: i64 = 5;
pub(crate) const LOCAL_RATELIMIT_NAME: &str = "aeraki.meta_protocol.filters.local_ratelimit";
const LOCAL_RATELIMIT_TYPE: &str =
    "type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit";
pub(crate) const RATELIMIT_NAME: &str = "aeraki.meta_protocol.filters.ratelimit";
const RATELIMIT_TYPE: &str =
    "type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit";

/// Sets `timeout`, `retry_policy` and the fault `typed_per_filter_config` of a route.
pub(crate) fn apply(route: &mut Route, r: &aeraki_model::RouteView) {
    if let Some(envoy_types::pb::envoy::config::route::v3::route::Action::Route(action)) =
        route.action.as_mut()
    {
        action.timeout = r.timeout.map(duration);
        action.retry_policy = r.retries.as_ref().map(retry_policy);
    }
    if let Some(f) = &r.fault {
        route
            .typed_per_filter_config
            .insert(FAULT_FILTER.to_owned(), any(&http_fault(f)));
    }
}

pub(crate) fn retry_policy(r: &RetryPolicy) -> PbRetryPolicy {
    PbRetryPolicy {
        retry_on: r.retry_on.clone(),
        num_retries: Some(u32v(r.attempts)),
        per_try_timeout: r.per_try_timeout.map(duration),
        retry_host_predicate: vec![RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_owned(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(any(
                &PreviousHostsPredicate {},
            ))),
        }],
        host_selection_retry_max_attempts: HOST_SELECTION_ATTEMPTS,
        ..Default::default()
    }
}

/// A percentage as a fraction of a million, rounded.
fn million(percentage: f64) -> FractionalPercent {
    FractionalPercent {
        numerator: (percentage * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
        denominator: DenominatorType::Million as i32,
    }
}

pub(crate) fn http_fault(f: &Fault) -> HttpFault {
    HttpFault {
        delay: f.delay.as_ref().map(|d| FaultDelay {
            percentage: Some(million(d.percentage)),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(d.fixed_delay))),
        }),
        abort: f.abort.as_ref().map(|a| FaultAbort {
            percentage: Some(million(a.percentage)),
            error_type: Some(ErrorType::HttpStatus(a.error_code.http_status())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn route_match(matches: &[AttributeMatch]) -> RouteMatch {
    RouteMatch {
        metadata: matches.iter().map(|m| header_matcher(m, false)).collect(),
    }
}

fn bucket(b: &TokenBucket) -> PbTokenBucket {
    PbTokenBucket {
        max_tokens: b.max_tokens,
        tokens_per_fill: Some(u32v(b.tokens_per_fill)),
        fill_interval: Some(duration(b.fill_interval)),
    }
}

fn local(svc: &ServiceView, l: &LocalRateLimit) -> PbLocal {
    PbLocal {
        stat_prefix: svc.host.clone(),
        token_bucket: l.token_bucket.as_ref().map(bucket),
        conditions: l
            .conditions
            .iter()
            .map(|c| LocalRateLimitCondition {
                r#match: Some(route_match(&c.matches)),
                token_bucket: Some(bucket(&c.token_bucket)),
            })
            .collect(),
    }
}

fn global(g: &GlobalRateLimit) -> PbGlobal {
    PbGlobal {
        r#match: Some(route_match(&g.matches)),
        domain: g.domain.clone(),
        timeout: g.request_timeout.map(duration),
        failure_mode_deny: g.deny_on_fail,
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                    cluster_name: g.rate_limit_service.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        descriptors: g
            .descriptors
            .iter()
            .map(|(property, descriptor_key)| Descriptor {
                property: property.clone(),
                descriptor_key: descriptor_key.clone(),
            })
            .collect(),
    }
}

/// The rate-limit filters of a MetaRouter, in order (local, then global), to put before the
/// router. Warns when the rate-limit service names no cluster translation emits.
pub(crate) fn rate_limit_filters(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    router: &RouterView,
) -> Vec<MetaProtocolFilter> {
    let mut out = Vec::new();
    if let Some(l) = &router.local_rate_limit {
        out.push(MetaProtocolFilter {
            name: LOCAL_RATELIMIT_NAME.to_owned(),
            config: Some(any_with(LOCAL_RATELIMIT_TYPE, &local(svc, l))),
        });
    }
    if let Some(g) = &router.global_rate_limit {
        if !cluster_exists(cx, &g.rate_limit_service) {
            cx.warn(format!(
                "{}: MetaRouter {}: globalRateLimit.rateLimitService {:?} is not a cluster of \
                 this mesh (expected outbound|<port>||<host> of a declared service): the proxy \
                 cannot reach the rate-limit service unless its bootstrap defines that cluster",
                svc_id(svc),
                router.source,
                g.rate_limit_service
            ));
        }
        out.push(MetaProtocolFilter {
            name: RATELIMIT_NAME.to_owned(),
            config: Some(any_with(RATELIMIT_TYPE, &global(g))),
        });
    }
    out
}

/// Whether translation emits a cluster of this name.
fn cluster_exists(cx: &Cx<'_>, name: &str) -> bool {
    let Some((port, subset, host)) = parse_outbound_cluster_name(name) else {
        return false;
    };
    cx.service(host, port).is_some_and(|s| {
        s.resolution != Resolution::None
            && subset.is_none_or(|sub| s.subsets.iter().any(|x| x.name == sub))
    })
}
