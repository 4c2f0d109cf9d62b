//! DestinationRule `connectionPool` → cluster circuit breakers, connect timeout, and the
//! lifetime of upstream connections (`maxRequestsPerConnection`, `idleTimeout`) in
//! `typed_extension_protocol_options`.
//!
//! Lifetime, as Istio writes it for HTTP clusters: `HttpProtocolOptions.common_http_protocol_
//! options{max_requests_per_connection, idle_timeout}`. meta-proxy reads exactly that for its
//! multiplexed meta-protocol connections. Stock Envoy's dubbo_proxy/thrift_proxy use the TCP
//! connection pool, whose only lifetime option is `TcpProtocolOptions.idle_timeout`; it has no
//! request budget, so `maxRequestsPerConnection` is a warning there. gRPC clusters (rate-limit
//! services) are HTTP/2 clusters for Envoy and get the HTTP options; meta-proxy's rate-limit
//! client keeps its own channel, so for the MetaProxy flavour they are a warning.

use aeraki_model::resources::Flavor;
use aeraki_model::{ConnectionPool, Protocol, ServiceView};
use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster};
use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions as CommonHttpOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::tcp::v3::TcpProtocolOptions;

use crate::common::{any, duration, u32v};
use crate::{Cx, svc_id};

/// Key of the upstream HTTP options in `typed_extension_protocol_options`.
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Key of the upstream TCP options in `typed_extension_protocol_options`.
pub(crate) const TCP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions";

/// Explicit HTTP/2 upstream (gRPC clusters for stock Envoy), with the common options if any.
pub(crate) fn http2_only(common: Option<CommonHttpOptions>) -> HttpProtocolOptions {
    HttpProtocolOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Default::default())),
            },
        )),
        ..Default::default()
    }
}

pub(crate) fn connection_pool(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    name: &str,
    c: &mut Cluster,
    pool: &ConnectionPool,
) {
    if let Some(t) = pool.connect_timeout {
        c.connect_timeout = Some(duration(t));
    }
    let limits = [
        pool.max_connections,
        pool.max_pending_requests,
        pool.max_requests,
        pool.max_retries,
    ];
    if limits.iter().any(Option::is_some) {
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: pool.max_connections.map(u32v),
                max_pending_requests: pool.max_pending_requests.map(u32v),
                max_requests: pool.max_requests.map(u32v),
                max_retries: pool.max_retries.map(u32v),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    lifetime(cx, svc, name, c, pool);
}

/// `maxRequestsPerConnection` (0 is Istio's "no limit": nothing written) and `idleTimeout`
/// (the http one over the tcp one, resolved by aeraki-config; 0 disables it).
fn lifetime(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    name: &str,
    c: &mut Cluster,
    pool: &ConnectionPool,
) {
    let max_requests = pool.max_requests_per_connection.filter(|n| *n > 0);
    let idle = pool.idle_timeout;
    if max_requests.is_none() && idle.is_none() {
        return;
    }
    let common = CommonHttpOptions {
        max_requests_per_connection: max_requests.map(u32v),
        idle_timeout: idle.map(duration),
        ..Default::default()
    };
    let options = &mut c.typed_extension_protocol_options;
    let rate_limit_channel = matches!(svc.protocol, Protocol::Grpc | Protocol::Tcp);
    match cx.flavor {
        Flavor::MetaProxy if rate_limit_channel => cx.warn(format!(
            "{}: cluster {name}: connectionPool maxRequestsPerConnection/idleTimeout apply to \
             meta-protocol upstream connections; meta-proxy's rate-limit client keeps its own \
             channel; not applied",
            svc_id(svc)
        )),
        Flavor::MetaProxy => {
            let http = HttpProtocolOptions {
                common_http_protocol_options: Some(common),
                ..Default::default()
            };
            options.insert(HTTP_PROTOCOL_OPTIONS.to_owned(), any(&http));
        }
        Flavor::Envoy if svc.protocol == Protocol::Grpc => {
            options.insert(
                HTTP_PROTOCOL_OPTIONS.to_owned(),
                any(&http2_only(Some(common))),
            );
        }
        Flavor::Envoy => {
            if let Some(t) = idle {
                let tcp = TcpProtocolOptions {
                    idle_timeout: Some(duration(t)),
                };
                options.insert(TCP_PROTOCOL_OPTIONS.to_owned(), any(&tcp));
            }
            if max_requests.is_some() {
                cx.warn(format!(
                    "{}: cluster {name}: connectionPool.http.maxRequestsPerConnection has no \
                     equivalent in Envoy's TCP connection pool (dubbo_proxy/thrift_proxy); not \
                     applied",
                    svc_id(svc)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
