//! Unit tests of `dynamic_resources` and the xDS resource conversions.

use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::config::{cluster::v3 as cl, core::v3 as core, endpoint::v3 as ep};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use meta_config::{Destination, DiscoveryType, MatchSpec};

use super::*;

const DYNAMIC: &str = r"
node: {id: sidecar~1.2.3.4~a.b~b.svc.cluster.local, cluster: a, metadata: {LABELS: {app: x}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}}
static_resources:
  listeners:
  - name: l1
    address: {socket_address: {address: 127.0.0.1, port_value: 9090}}
    filter_chains:
    - filters:
      - name: meta
        typed_config:
          '@type': type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy
          stat_prefix: s
          protocol: {name: dubbo, codec: {name: aeraki.meta_protocol.codec.dubbo}}
          rds: {route_config_name: svc_9090, config_source: {ads: {}}}
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]
  - name: eds
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}}
";

fn load(text: &str) -> Result<meta_config::Bootstrap, ConfigError> {
    parse_bootstrap(text, Format::Yaml)
}

fn err(from: &str, to: &str) -> String {
    let text = DYNAMIC.replace(from, to);
    assert_ne!(text, DYNAMIC, "replacement of '{from}' did nothing");
    load(&text).unwrap_err().to_string()
}

#[test]
fn dynamic_resources_load() {
    let b = load(DYNAMIC).unwrap();
    let x = b.xds.unwrap();
    assert_eq!(x.node_id, "sidecar~1.2.3.4~a.b~b.svc.cluster.local");
    assert_eq!(x.node_cluster, "a");
    assert_eq!(x.server_cluster, "xds");
    assert!(x.lds && x.cds);
    let md: serde_json::Value = serde_json::from_str(x.node_metadata.as_deref().unwrap()).unwrap();
    assert_eq!(md, serde_json::json!({"LABELS": {"app": "x"}}));
    let l = &b.listeners[0];
    assert_eq!(l.proxy.rds.as_deref(), Some("svc_9090"));
    assert!(l.proxy.route_config.routes.is_empty());
    let eds = &b.clusters[1];
    assert_eq!(eds.discovery, DiscoveryType::Eds);
    assert_eq!(eds.eds_service_name.as_deref(), Some("eds"));
}

#[test]
fn dynamic_resources_refusals_name_their_path() {
    assert_eq!(
        err("api_type: GRPC", "api_type: DELTA_GRPC"),
        "dynamic_resources.ads_config.api_type: DELTA_GRPC not supported yet (use GRPC)"
    );
    assert_eq!(
        err("api_type: GRPC", "api_type: REST"),
        "dynamic_resources.ads_config.api_type: REST not supported (GRPC)"
    );
    assert_eq!(
        err("cluster_name: xds}", "cluster_name: nope}"),
        "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: no static \
         cluster named 'nope' (the control plane's address)"
    );
    assert_eq!(
        err(
            "  - name: xds\n    type: STATIC\n",
            "  - name: xds\n    type: STATIC\n    typed_extension_protocol_options:\n      \
             envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions:\n        \
             '@type': type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions\n        \
             idle_timeout: 5s\n"
        ),
        "static_resources.clusters[0].typed_extension_protocol_options: cluster 'xds' carries \
         the ADS stream, which keeps one connection open: max_requests_per_connection and \
         idle_timeout cannot apply to it"
    );
    assert_eq!(
        err("transport_api_version: V3\n    ", ""),
        "dynamic_resources.ads_config.transport_api_version: must be V3"
    );
    assert_eq!(
        err(
            "cds_config: {ads: {}}",
            "cds_config: {api_config_source: {api_type: GRPC}}"
        ),
        "dynamic_resources.cds_config.api_config_source: not supported (only ads{} is; \
         Aeraki's plain RDS service is not)"
    );
    assert_eq!(
        err(
            "node: {id: sidecar~1.2.3.4~a.b~b.svc.cluster.local,",
            "node: {"
        ),
        "node.id: required with dynamic_resources (the control plane identifies the proxy by it)"
    );
    assert_eq!(
        err("rds: {route_config_name: svc_9090, ", "rds: {"),
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.rds.\
         route_config_name: required"
    );
    assert_eq!(
        err("{eds_config: {ads: {}}}", "{eds_config: {path: /x}}"),
        "static_resources.clusters[1].eds_cluster_config.eds_config.path: not supported"
    );
}

fn header(name: &str, exact: &str) -> rt::HeaderMatcher {
    rt::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::StringMatch(
            envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
                match_pattern: Some(
                    envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                        exact.into(),
                    ),
                ),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn add(key: &str, value: &str) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Aeraki's tunnelled form, as its RDS server builds it.
fn tunnelled() -> rt::RouteConfiguration {
    use rt::route_action::ClusterSpecifier;
    let weighted = rt::WeightedCluster {
        clusters: ["v1", "v2"]
            .iter()
            .zip([20, 80])
            .map(|(n, w)| rt::weighted_cluster::ClusterWeight {
                name: (*n).into(),
                weight: Some(UInt32Value { value: w }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let r1 = rt::Route {
        name: "by-method".into(),
        r#match: Some(rt::RouteMatch {
            path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
            headers: vec![header("method", "sayHello")],
            ..Default::default()
        }),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(weighted)),
            request_mirror_policies: vec![rt::route_action::RequestMirrorPolicy {
                cluster: "shadow".into(),
                ..Default::default()
            }],
            hash_policy: vec![rt::route_action::HashPolicy {
                policy_specifier: Some(rt::route_action::hash_policy::PolicySpecifier::Header(
                    rt::route_action::hash_policy::Header {
                        header_name: "user".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            timeout: Some(PbDuration {
                seconds: 2,
                nanos: 0,
            }),
            ..Default::default()
        })),
        request_headers_to_add: vec![add("foo", "bar")],
        response_headers_to_add: vec![add("x", "y")],
        ..Default::default()
    };
    let r2 = rt::Route {
        name: "default".into(),
        r#match: Some(rt::RouteMatch {
            path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster("v1".into())),
            ..Default::default()
        })),
        ..Default::default()
    };
    rt::RouteConfiguration {
        name: "svc_9090".into(),
        virtual_hosts: vec![rt::VirtualHost {
            name: "dummy".into(),
            domains: vec!["*".into()],
            routes: vec![r1, r2],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn tunnelled_route_configuration_converts() {
    let rc = route_configuration_from_proto(&tunnelled(), "rds[svc_9090]").unwrap();
    assert_eq!(rc.name, "svc_9090");
    assert_eq!(rc.routes.len(), 2);
    let r = &rc.routes[0];
    assert_eq!(r.matchers.len(), 1);
    assert_eq!(r.matchers[0].name, "method");
    assert!(matches!(r.matchers[0].spec, MatchSpec::String(_)));
    assert!(r.matchers[0].matches(Some("sayHello")));
    let Destination::WeightedClusters(w) = &r.destination else {
        panic!("expected weighted clusters");
    };
    assert_eq!((w[1].name.as_str(), w[1].weight), ("v2", 80));
    assert_eq!(r.mirrors[0].cluster, "shadow");
    assert_eq!(r.mirrors[0].fraction_per_million, 1_000_000);
    assert_eq!(r.hash_policy, ["user"]);
    assert_eq!(r.timeout, Some(std::time::Duration::from_secs(2)));
    assert_eq!(r.request_mutation, [("foo".to_owned(), "bar".to_owned())]);
    assert_eq!(r.response_mutation, [("x".to_owned(), "y".to_owned())]);
    assert!(rc.routes[1].matchers.is_empty());
}

#[test]
fn tunnelled_route_configuration_refusals() {
    let conv = |rc: &rt::RouteConfiguration| {
        route_configuration_from_proto(rc, "rds[svc_9090]")
            .unwrap_err()
            .to_string()
    };
    let mut rc = tunnelled();
    rc.virtual_hosts.push(rc.virtual_hosts[0].clone());
    assert_eq!(
        conv(&rc),
        "rds[svc_9090].virtual_hosts: exactly one virtual host expected (got 2)"
    );
    let mut rc = tunnelled();
    rc.virtual_hosts[0].domains = vec!["a.com".into()];
    assert!(conv(&rc).starts_with("rds[svc_9090].virtual_hosts[0].domains: only"));
    let mut rc = tunnelled();
    if let Some(rt::route::Action::Route(a)) = &mut rc.virtual_hosts[0].routes[1].action {
        a.retry_policy = Some(rt::RetryPolicy {
            retry_back_off: Some(rt::retry_policy::RetryBackOff::default()),
            ..Default::default()
        });
    }
    assert_eq!(
        conv(&rc),
        "rds[svc_9090].virtual_hosts[0].routes[1].route.retry_policy.retry_back_off: not supported"
    );
    let mut rc = tunnelled();
    rc.virtual_hosts[0].routes[0].r#match = Some(rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::Path("/x".into())),
        ..Default::default()
    });
    assert_eq!(
        conv(&rc),
        "rds[svc_9090].virtual_hosts[0].routes[0].match.path: not supported"
    );
}

fn any<M: prost::Name + prost::Message>(m: &M) -> envoy_types::pb::google::protobuf::Any {
    envoy_types::pb::google::protobuf::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn per_million(n: u32) -> Option<envoy_types::pb::envoy::r#type::v3::FractionalPercent> {
    Some(envoy_types::pb::envoy::r#type::v3::FractionalPercent {
        numerator: n,
        denominator: 2, // MILLION
    })
}

/// The retry policy and fault config of contract §2, as aeraki-translate emits them.
fn resilient() -> rt::RouteConfiguration {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as cf;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as hf;
    use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
    let mut rc = tunnelled();
    let r = &mut rc.virtual_hosts[0].routes[0];
    if let Some(rt::route::Action::Route(a)) = &mut r.action {
        a.retry_policy = Some(rt::RetryPolicy {
            retry_on: "connect-failure,reset,status:SERVER_TIMEOUT".into(),
            num_retries: Some(UInt32Value { value: 2 }),
            per_try_timeout: Some(PbDuration {
                seconds: 0,
                nanos: 500_000_000,
            }),
            retry_host_predicate: vec![rt::retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.previous_hosts".into(),
                config_type: Some(
                    rt::retry_policy::retry_host_predicate::ConfigType::TypedConfig(any(
                        &PreviousHostsPredicate {},
                    )),
                ),
            }],
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        });
    }
    let fault = hf::HttpFault {
        delay: Some(cf::FaultDelay {
            fault_delay_secifier: Some(cf::fault_delay::FaultDelaySecifier::FixedDelay(
                PbDuration {
                    seconds: 1,
                    nanos: 0,
                },
            )),
            percentage: per_million(500_000),
        }),
        abort: Some(hf::FaultAbort {
            error_type: Some(hf::fault_abort::ErrorType::HttpStatus(429)),
            percentage: per_million(100_000),
            ..Default::default()
        }),
        ..Default::default()
    };
    r.typed_per_filter_config
        .insert("envoy.filters.http.fault".into(), any(&fault));
    rc
}

#[test]
fn tunnelled_retry_policy_and_fault_convert() {
    use meta_config::FaultError;
    let rc = route_configuration_from_proto(&resilient(), "rds[svc_9090]").unwrap();
    let r = &rc.routes[0];
    let retry = r.retry.as_ref().unwrap();
    assert_eq!(retry.num_retries, 2);
    assert_eq!(
        retry.per_try_timeout,
        Some(std::time::Duration::from_millis(500))
    );
    assert!(retry.retry_on.connect_failure && retry.retry_on.reset);
    assert!(!retry.retry_on.timeout && !retry.retry_on.error_response);
    assert_eq!(retry.retry_on.statuses, ["SERVER_TIMEOUT"]);
    assert_eq!(retry.host_selection_max_attempts, 5);
    let fault = r.fault.as_ref().unwrap();
    let delay = fault.delay.as_ref().unwrap();
    assert_eq!(delay.delay, std::time::Duration::from_secs(1));
    assert_eq!(delay.per_million, 500_000);
    let abort = fault.abort.as_ref().unwrap();
    assert_eq!(
        (abort.error, abort.per_million),
        (FaultError::OverLimit, 100_000)
    );
    assert!(rc.routes[1].retry.is_none() && rc.routes[1].fault.is_none());
}

#[test]
fn tunnelled_retry_policy_and_fault_refusals() {
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as hf;
    let conv = |rc: &rt::RouteConfiguration| {
        route_configuration_from_proto(rc, "rds[x]")
            .unwrap_err()
            .to_string()
    };
    fn policy(rc: &mut rt::RouteConfiguration) -> &mut rt::RetryPolicy {
        match &mut rc.virtual_hosts[0].routes[0].action {
            Some(rt::route::Action::Route(a)) => a.retry_policy.as_mut().unwrap(),
            _ => unreachable!(),
        }
    }
    let mut rc = resilient();
    policy(&mut rc).retry_on = "reset,retriable-4xx".into();
    assert!(
        conv(&rc).starts_with(
            "rds[x].virtual_hosts[0].routes[0].route.retry_policy.retry_on: unknown retry_on \
             token 'retriable-4xx'"
        ),
        "{}",
        conv(&rc)
    );
    let mut rc = resilient();
    policy(&mut rc).retry_priority = Some(rt::retry_policy::RetryPriority::default());
    assert_eq!(
        conv(&rc),
        "rds[x].virtual_hosts[0].routes[0].route.retry_policy.retry_priority: not supported"
    );
    let mut rc = resilient();
    policy(&mut rc).retry_host_predicate[0].name =
        "envoy.retry_host_predicates.omit_canary_hosts".into();
    assert!(conv(&rc).starts_with(
        "rds[x].virtual_hosts[0].routes[0].route.retry_policy.retry_host_predicate[0].name: \
         'envoy.retry_host_predicates.omit_canary_hosts' not supported"
    ));
    let fault_of = |rc: &mut rt::RouteConfiguration, f: &hf::HttpFault| {
        rc.virtual_hosts[0].routes[0]
            .typed_per_filter_config
            .insert("envoy.filters.http.fault".into(), any(f));
    };
    let mut rc = resilient();
    fault_of(
        &mut rc,
        &hf::HttpFault {
            abort: Some(hf::FaultAbort {
                error_type: Some(hf::fault_abort::ErrorType::HttpStatus(500)),
                percentage: per_million(1),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert!(conv(&rc).starts_with(
        "rds[x].virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault].\
         abort.http_status: 500 not supported"
    ));
    let mut rc = resilient();
    fault_of(
        &mut rc,
        &hf::HttpFault {
            abort: Some(hf::FaultAbort {
                error_type: Some(hf::fault_abort::ErrorType::GrpcStatus(14)),
                percentage: per_million(1),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert_eq!(
        conv(&rc),
        "rds[x].virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault].\
         abort.grpc_status: not supported"
    );
    let mut rc = resilient();
    fault_of(
        &mut rc,
        &hf::HttpFault {
            abort: Some(hf::FaultAbort {
                error_type: Some(hf::fault_abort::ErrorType::HttpStatus(503)),
                percentage: None,
                ..Default::default()
            }),
            max_active_faults: Some(UInt32Value { value: 3 }),
            ..Default::default()
        },
    );
    assert_eq!(
        conv(&rc),
        "rds[x].virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault].\
         max_active_faults: not supported"
    );
    let mut rc = resilient();
    fault_of(
        &mut rc,
        &hf::HttpFault {
            abort: Some(hf::FaultAbort {
                error_type: Some(hf::fault_abort::ErrorType::HttpStatus(503)),
                percentage: None,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert_eq!(
        conv(&rc),
        "rds[x].virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault].\
         abort.percentage: required"
    );
    let mut rc = resilient();
    rc.virtual_hosts[0].routes[0]
        .typed_per_filter_config
        .insert(
            "envoy.filters.http.cors".into(),
            any(&hf::HttpFault::default()),
        );
    assert_eq!(
        conv(&rc),
        "rds[x].virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.cors]: \
         not supported (only envoy.filters.http.fault)"
    );
}

fn lb_endpoint(ip: &str, port: u32) -> ep::LbEndpoint {
    ep::LbEndpoint {
        host_identifier: Some(ep::lb_endpoint::HostIdentifier::Endpoint(ep::Endpoint {
            address: Some(core::Address {
                address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value { value: 3 }),
        ..Default::default()
    }
}

#[test]
fn eds_cluster_and_load_assignment() {
    let ads = core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    };
    let mut c = cl::Cluster {
        name: "outbound|9090||svc".into(),
        cluster_discovery_type: Some(cl::cluster::ClusterDiscoveryType::Type(
            cl::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cl::cluster::EdsClusterConfig {
            eds_config: Some(ads),
            service_name: "svc-eds".into(),
        }),
        ..Default::default()
    };
    let conv = cluster_from_proto(&c, "cds[x]").unwrap();
    assert_eq!(conv.discovery, DiscoveryType::Eds);
    assert_eq!(conv.eds_service_name.as_deref(), Some("svc-eds"));
    c.lb_policy = cl::cluster::LbPolicy::ClusterProvided as i32;
    assert_eq!(
        cluster_from_proto(&c, "cds[x]").unwrap_err().to_string(),
        "cds[x].lb_policy: CLUSTER_PROVIDED not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)"
    );
    c.lb_policy = 0;
    c.circuit_breakers = Some(cl::CircuitBreakers {
        thresholds: vec![cl::circuit_breakers::Thresholds {
            max_requests: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let conv = cluster_from_proto(&c, "cds[x]").unwrap();
    assert_eq!(conv.circuit_breakers.max_requests, 1);
    assert_eq!(conv.circuit_breakers.max_connections, 1024, "Envoy default");
    c.circuit_breakers.as_mut().unwrap().thresholds[0].priority =
        core::RoutingPriority::High as i32;
    assert_eq!(
        cluster_from_proto(&c, "cds[x]").unwrap_err().to_string(),
        "cds[x].circuit_breakers.thresholds[0].priority: HIGH not supported (DEFAULT only)"
    );

    let mut la = ep::ClusterLoadAssignment {
        cluster_name: "svc-eds".into(),
        endpoints: vec![ep::LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint("10.0.0.1", 9090), lb_endpoint("10.0.0.2", 9090)],
            ..Default::default()
        }],
        ..Default::default()
    };
    la.endpoints.push(ep::LocalityLbEndpoints {
        lb_endpoints: vec![lb_endpoint("10.0.0.3", 9090)],
        priority: 1,
        ..Default::default()
    });
    let (name, eps) = cluster_load_assignment_from_proto(&la, "eds[svc-eds]").unwrap();
    assert_eq!(name, "svc-eds");
    assert_eq!(eps.len(), 3);
    assert_eq!(
        eps.iter().map(|e| e.priority).collect::<Vec<_>>(),
        [0, 0, 1],
        "priority per locality group"
    );
    la.endpoints.pop();
    assert_eq!(
        (eps[1].host.as_str(), eps[1].port, eps[1].weight),
        ("10.0.0.2", 9090, 3)
    );
    la.endpoints[0]
        .lb_endpoints
        .push(lb_endpoint("svc.local", 9090));
    assert_eq!(
        cluster_load_assignment_from_proto(&la, "eds[svc-eds]")
            .unwrap_err()
            .to_string(),
        "eds[svc-eds].endpoints[0].lb_endpoints[2].endpoint.address.socket_address.address: \
         'svc.local' is not an IP address (EDS endpoints must be IP addresses)"
    );
}
