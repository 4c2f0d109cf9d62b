//! Builders of the xDS resources the control plane sends to meta-proxy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{self as cl, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, AggregatedConfigSource, ConfigSource, config_source::ConfigSourceSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3 as ep;
use envoy_types::pb::envoy::config::listener::v3 as lis;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::google::protobuf::Any;
use meta_api::pb::aeraki::meta_protocol_proxy::v1alpha as mpp;
use meta_xds_client::{CDS, EDS, LDS, RDS};
use prost::Message;

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.into(),
        value: m.encode_to_vec(),
    }
}

pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub fn address(a: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// The MetaProtocolProxy config of a listener using the example custom codec and RDS.
pub fn proxy(rds: &str) -> mpp::MetaProtocolProxy {
    mpp::MetaProtocolProxy {
        stat_prefix: "outbound|9000||svc".into(),
        protocol: Some(mpp::ApplicationProtocol {
            name: "custom".into(),
            codec: Some(mpp::Codec {
                name: "example.codec.custom".into(),
                config: None,
            }),
            multiplexing: true,
        }),
        route_specifier: Some(mpp::meta_protocol_proxy::RouteSpecifier::Rds(mpp::Rds {
            config_source: Some(ads()),
            route_config_name: rds.into(),
        })),
        ..Default::default()
    }
}

/// An LDS listener `name` on `addr` running `p`.
pub fn listener_with(name: &str, addr: SocketAddr, p: &mpp::MetaProtocolProxy) -> (String, Any) {
    let l = lis::Listener {
        name: name.into(),
        address: Some(address(addr)),
        filter_chains: vec![lis::FilterChain {
            filters: vec![lis::Filter {
                name: "envoy.filters.network.meta_protocol_proxy".into(),
                config_type: Some(lis::filter::ConfigType::TypedConfig(any(
                    meta_api::META_PROTOCOL_PROXY_TYPE_URL,
                    p,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.into(), any(LDS, &l))
}

pub fn listener(name: &str, addr: SocketAddr, rds: &str) -> (String, Any) {
    listener_with(name, addr, &proxy(rds))
}

pub fn eds_cluster(name: &str) -> (String, Any) {
    let c = cl::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        ..Default::default()
    };
    (name.into(), any(CDS, &c))
}

pub fn cluster_raw(c: &cl::Cluster) -> (String, Any) {
    (c.name.clone(), any(CDS, c))
}

pub fn static_cluster(name: &str, addrs: &[SocketAddr]) -> (String, Any) {
    let c = cl::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(cla_of(name, addrs)),
        ..Default::default()
    };
    (name.into(), any(CDS, &c))
}

fn cla_of(name: &str, addrs: &[SocketAddr]) -> ep::ClusterLoadAssignment {
    ep::ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![ep::LocalityLbEndpoints {
            lb_endpoints: addrs
                .iter()
                .map(|a| ep::LbEndpoint {
                    host_identifier: Some(ep::lb_endpoint::HostIdentifier::Endpoint(
                        ep::Endpoint {
                            address: Some(address(*a)),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn cla(name: &str, addrs: &[SocketAddr]) -> (String, Any) {
    (name.into(), any(EDS, &cla_of(name, addrs)))
}

/// Aeraki's tunnelled route configuration: `routes` are (metadata key `cmd` exact value or
/// None for catch-all, cluster).
pub fn route_config(name: &str, routes: &[(Option<&str>, &str)]) -> (String, Any) {
    let routes = routes
        .iter()
        .enumerate()
        .map(|(i, (cmd, cluster))| rt::Route {
            name: format!("r{i}"),
            r#match: Some(rt::RouteMatch {
                path_specifier: Some(rt::route_match::PathSpecifier::Prefix("/".into())),
                headers: cmd
                    .iter()
                    .map(|v| rt::HeaderMatcher {
                        name: "cmd".into(),
                        header_match_specifier: Some(
                            rt::header_matcher::HeaderMatchSpecifier::StringMatch(exact(v)),
                        ),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            action: Some(rt::route::Action::Route(rt::RouteAction {
                cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster(
                    (*cluster).into(),
                )),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    let rc = rt::RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![rt::VirtualHost {
            name: "dummy".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.into(), any(RDS, &rc))
}

/// A route configuration with a field meta-proxy refuses (a retry policy).
pub fn bad_route_config(name: &str) -> (String, Any) {
    let (n, a) = route_config(name, &[(None, "a")]);
    let mut rc = rt::RouteConfiguration::decode(a.value.as_slice()).unwrap();
    if let Some(rt::route::Action::Route(r)) = &mut rc.virtual_hosts[0].routes[0].action {
        // Retries are honoured, but not Envoy's back-off settings.
        r.retry_policy = Some(rt::RetryPolicy {
            retry_on: "connect-failure".into(),
            retry_back_off: Some(rt::retry_policy::RetryBackOff::default()),
            ..Default::default()
        });
    }
    (n, any(RDS, &rc))
}

fn exact(v: &str) -> envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        StringMatcher, string_matcher::MatchPattern,
    };
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(v.into())),
        ..Default::default()
    }
}
