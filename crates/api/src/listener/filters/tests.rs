//! Rate-limit filter configs: accepted shapes (YAML, TypedStruct, LDS bytes) and every refusal
//! with its exact path.

use std::time::Duration;

use meta_config::{FilterConfig, GlobalRateLimit, LocalRateLimit, MatchSpec};
use prost::Message;

use crate::{Format, parse_bootstrap};

const FP: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.\
                  meta_protocol_filters";

/// A bootstrap whose proxy runs `filters` (YAML flow list items, without the router).
fn doc(filters: &str) -> String {
    format!(
        r"
static_resources:
  listeners:
  - name: l1
    address:
      socket_address: {{address: 127.0.0.1, port_value: 9090}}
    filter_chains:
    - filters:
      - name: meta
        typed_config:
          '@type': type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy
          stat_prefix: sp
          protocol: {{name: dubbo, codec: {{name: aeraki.meta_protocol.codec.dubbo}}}}
          route_config: {{name: rc, routes: [{{name: r, route: {{cluster: c1}}}}]}}
          meta_protocol_filters:
{filters}
          - name: aeraki.meta_protocol.filters.router
"
    )
}

const LOCAL: &str = "
          - name: aeraki.meta_protocol.filters.local_ratelimit
            config:
              '@type': type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit
              stat_prefix: hello
              token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 60s}
              conditions:
              - match: {metadata: [{name: method, exact_match: sayHello}]}
                token_bucket: {max_tokens: 2, fill_interval: 0.05s}";

const GLOBAL: &str = "
          - name: aeraki.meta_protocol.filters.ratelimit
            config:
              '@type': type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit
              domain: production
              failure_mode_deny: true
              rate_limit_service:
                grpc_service: {envoy_grpc: {cluster_name: rls}}
                transport_api_version: V3
              descriptors: [{property: method, descriptor_key: method}]";

fn filters(text: &str) -> Vec<FilterConfig> {
    parse_bootstrap(text, Format::Yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .listeners
        .remove(0)
        .proxy
        .filters
}

fn err(filters: &str) -> String {
    match parse_bootstrap(&doc(filters), Format::Yaml) {
        Ok(_) => panic!("expected an error for {filters}"),
        Err(e) => e.to_string(),
    }
}

fn local(f: &[FilterConfig]) -> &LocalRateLimit {
    match f.first() {
        Some(FilterConfig::LocalRateLimit(l)) => l,
        other => panic!("not a local rate limit: {other:?}"),
    }
}

fn global(f: &[FilterConfig]) -> &GlobalRateLimit {
    f.iter()
        .find_map(|c| match c {
            FilterConfig::RateLimit(g) => Some(g),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no global rate limit in {f:?}"))
}

#[test]
fn both_rate_limit_filters_load_from_yaml() {
    let f = filters(&doc(&format!("{LOCAL}{GLOBAL}")));
    assert_eq!(f.len(), 3);
    assert!(matches!(f[2], FilterConfig::Router));
    let l = local(&f);
    assert_eq!(l.stat_prefix, "hello");
    let b = l.token_bucket.expect("bucket");
    assert_eq!(
        (b.max_tokens, b.tokens_per_fill, b.fill_interval),
        (5, 5, Duration::from_secs(60))
    );
    assert_eq!(l.conditions.len(), 1);
    let c = &l.conditions[0];
    assert_eq!(c.matchers[0].name, "method");
    assert!(matches!(c.matchers[0].spec, MatchSpec::String(_)));
    // tokens_per_fill defaults to 1; 50 ms is the smallest interval accepted.
    assert_eq!(c.token_bucket.tokens_per_fill, 1);
    assert_eq!(c.token_bucket.fill_interval, Duration::from_millis(50));

    let g = global(&f);
    assert_eq!(g.domain, "production");
    assert_eq!(g.cluster, "rls");
    assert!(g.failure_mode_deny);
    assert_eq!(g.timeout, Duration::from_millis(20));
    assert!(g.matchers.is_empty());
    assert_eq!(
        (
            g.descriptors[0].property.as_str(),
            g.descriptors[0].descriptor_key.as_str()
        ),
        ("method", "method")
    );
}

#[test]
fn global_with_match_and_timeout() {
    let text = GLOBAL.replace(
        "domain: production",
        "domain: production\n              timeout: 0.1s\n              match: {metadata: [{name: interface, prefix_match: org.}]}",
    );
    let f = filters(&doc(&text));
    let g = global(&f);
    assert_eq!(g.timeout, Duration::from_millis(100));
    assert_eq!(g.matchers.len(), 1);
}

#[test]
fn local_refusals_name_their_path() {
    let p = format!("{FP}[0].config");
    let cases = [
        (
            "fill_interval: 0.05s",
            "fill_interval: 0.049s",
            format!(
                "{p}.conditions[0].token_bucket.fill_interval: local rate limit token bucket fill timer must be >= 50ms"
            ),
        ),
        (
            "max_tokens: 5,",
            "max_tokens: 0,",
            format!("{p}.token_bucket.max_tokens: must be > 0"),
        ),
        (
            "tokens_per_fill: 5,",
            "tokens_per_fill: 0,",
            format!("{p}.token_bucket.tokens_per_fill: must be > 0"),
        ),
        (
            ", fill_interval: 60s",
            "",
            format!("{p}.token_bucket.fill_interval: required"),
        ),
        (
            "stat_prefix: hello",
            "stat_prefix: ''",
            format!("{p}.stat_prefix: required"),
        ),
        (
            "- match: {metadata: [{name: method, exact_match: sayHello}]}\n                token_bucket",
            "- token_bucket",
            format!("{p}.conditions[0].match: required"),
        ),
        (
            "match: {metadata: [{name: method, exact_match: sayHello}]}",
            "match: {metadata: [{exact_match: sayHello}]}",
            format!("{p}.conditions[0].match.metadata[0].name: required"),
        ),
    ];
    for (from, to, want) in cases {
        assert!(LOCAL.contains(from), "{from}");
        assert_eq!(err(&LOCAL.replacen(from, to, 1)), want);
    }
    // A condition without its bucket.
    let no_bucket = LOCAL.replace(
        "\n                token_bucket: {max_tokens: 2, fill_interval: 0.05s}",
        "",
    );
    assert_eq!(
        err(&no_bucket),
        format!("{p}.conditions[0].token_bucket: required")
    );
    // Unknown fields of the token bucket are impossible in YAML (the message has three), but
    // a config without a body is refused.
    assert_eq!(
        err("\n          - name: aeraki.meta_protocol.filters.local_ratelimit"),
        format!("{FP}[0].config: required")
    );
}

#[test]
fn global_refusals_name_their_path() {
    let p = format!("{FP}[0].config");
    let cases = [
        (
            "domain: production",
            "domain: ''",
            format!("{p}.domain: required"),
        ),
        (
            "descriptors: [{property: method, descriptor_key: method}]",
            "descriptors: []",
            format!("{p}.descriptors: at least one descriptor is required"),
        ),
        (
            "{property: method, descriptor_key: method}",
            "{descriptor_key: method}",
            format!("{p}.descriptors[0].property: required"),
        ),
        (
            "{property: method, descriptor_key: method}",
            "{property: method}",
            format!("{p}.descriptors[0].descriptor_key: required"),
        ),
        (
            "domain: production",
            "domain: production\n              timeout: 0s",
            format!("{p}.timeout: must be > 0 (omit it for the 20ms default)"),
        ),
        (
            "{envoy_grpc: {cluster_name: rls}}",
            "{envoy_grpc: {cluster_name: ''}}",
            format!("{p}.rate_limit_service.grpc_service.envoy_grpc.cluster_name: required"),
        ),
        (
            "{envoy_grpc: {cluster_name: rls}}",
            "{google_grpc: {target_uri: x, stat_prefix: y}}",
            format!("{p}.rate_limit_service.grpc_service.google_grpc: not supported"),
        ),
        (
            "{envoy_grpc: {cluster_name: rls}}",
            "{envoy_grpc: {cluster_name: rls, authority: a}}",
            format!("{p}.rate_limit_service.grpc_service.envoy_grpc.authority: not supported"),
        ),
        (
            "transport_api_version: V3",
            "transport_api_version: V2",
            format!("{p}.rate_limit_service.transport_api_version: only V3 is supported"),
        ),
    ];
    for (from, to, want) in cases {
        assert!(GLOBAL.contains(from), "{from}");
        assert_eq!(err(&GLOBAL.replacen(from, to, 1)), want);
    }
    let no_service = GLOBAL.replace(
        "              rate_limit_service:\n                grpc_service: {envoy_grpc: {cluster_name: rls}}\n                transport_api_version: V3\n",
        "",
    );
    assert_eq!(
        err(&no_service),
        format!("{p}.rate_limit_service: required")
    );
    // The wrong message type for the filter.
    let wrong = "
          - name: aeraki.meta_protocol.filters.ratelimit
            config:
              '@type': type.googleapis.com/aeraki.meta_protocol_proxy.filters.router.v1alpha.Router";
    assert!(
        err(wrong).starts_with(&format!(
            "{FP}[0].config: expected type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit"
        )),
        "{}",
        err(wrong)
    );
}

#[test]
fn istio_filters_stay_refused() {
    for name in [
        "aeraki.meta_protocol.filters.metadata_exchange",
        "aeraki.meta_protocol.filters.istio_stats",
    ] {
        assert_eq!(
            err(&format!("\n          - name: {name}")),
            format!("{FP}[0]: filter '{name}' is not supported yet")
        );
    }
}

#[test]
fn typed_struct_wrapped_filter_config() {
    let text = "
          - name: aeraki.meta_protocol.filters.local_ratelimit
            config:
              '@type': type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit
              value:
                stat_prefix: ts
                tokenBucket: {maxTokens: 3, tokensPerFill: 1, fillInterval: 1s}";
    let f = filters(&doc(text));
    let l = local(&f);
    assert_eq!(l.stat_prefix, "ts");
    assert_eq!(l.token_bucket.map(|b| b.max_tokens), Some(3));
    // The same validation applies inside a TypedStruct.
    let bad = text.replace("fillInterval: 1s", "fillInterval: 0.01s");
    assert_eq!(
        err(&bad),
        format!(
            "{FP}[0].config.token_bucket.fill_interval: local rate limit token bucket fill timer must be >= 50ms"
        )
    );
}

#[test]
fn lds_listener_carries_rate_limit_filters() {
    use crate::pb::aeraki::meta_protocol_proxy::filters::ratelimit::v1alpha as rl;
    use crate::pb::aeraki::meta_protocol_proxy::v1alpha as mpp;
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
    use envoy_types::pb::google::protobuf::Any;

    let rate_limit = rl::RateLimit {
        domain: "production".into(),
        timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 0,
            nanos: 100_000_000,
        }),
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(core::GrpcService {
                target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                    core::grpc_service::EnvoyGrpc {
                        cluster_name: "outbound|8081||rls.example".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: core::ApiVersion::V3 as i32,
        }),
        descriptors: vec![rl::rate_limit::Descriptor {
            property: "method".into(),
            descriptor_key: "method".into(),
        }],
        ..Default::default()
    };
    let any = |url: &str, bytes: Vec<u8>| Any {
        type_url: format!("type.googleapis.com/{url}"),
        value: bytes,
    };
    let proxy = mpp::MetaProtocolProxy {
        stat_prefix: "lds".into(),
        application_protocol: "dubbo".into(),
        codec: Some(mpp::Codec {
            name: "aeraki.meta_protocol.codec.dubbo".into(),
            ..Default::default()
        }),
        route_specifier: Some(mpp::meta_protocol_proxy::RouteSpecifier::RouteConfig(
            Default::default(),
        )),
        meta_protocol_filters: vec![
            mpp::MetaProtocolFilter {
                name: super::RATELIMIT_FILTER.into(),
                config: Some(any(super::RATELIMIT_TYPE, rate_limit.encode_to_vec())),
            },
            mpp::MetaProtocolFilter {
                name: meta_config::ROUTER_FILTER.into(),
                config: None,
            },
        ],
        ..Default::default()
    };
    let text = "
name: l1
address: {socket_address: {address: 127.0.0.1, port_value: 9090}}
filter_chains: [{filters: [{name: meta}]}]";
    let value = crate::json::parse_text(text, Format::Yaml).unwrap_or_default();
    let desc = crate::pb::pool()
        .get_message_by_name("envoy.config.listener.v3.Listener")
        .expect("listener descriptor");
    let msg = crate::json::to_message(value, &desc, "").unwrap_or_else(|e| panic!("{e}"));
    let mut l: envoy_types::pb::envoy::config::listener::v3::Listener =
        msg.transcode_to().unwrap_or_else(|e| panic!("{e}"));
    l.filter_chains[0].filters[0].config_type = Some(
        envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any(
            "aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
            proxy.encode_to_vec(),
        )),
    );
    let conv = crate::listener_from_proto(&l, "lds[l1]").unwrap_or_else(|e| panic!("{e}"));
    let g = global(&conv.proxy.filters);
    assert_eq!(g.cluster, "outbound|8081||rls.example");
    assert_eq!(g.timeout, Duration::from_millis(100));
    assert!(!g.failure_mode_deny);
}
