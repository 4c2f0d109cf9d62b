//! A cluster's `typed_extension_protocol_options` → the lifetime of its upstream connections.
//!
//! Two keys are read, each only for what the engine honours:
//! - `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (what Istio writes for a
//!   DestinationRule's `maxRequestsPerConnection` and `idleTimeout`):
//!   `common_http_protocol_options{max_requests_per_connection, idle_timeout}`. The HTTP
//!   upstream protocol selection (`explicit_http_config`, ...) and every other field are refused
//!   by path: meta-proxy's upstreams speak the listener's own protocol, not HTTP.
//! - `envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions{idle_timeout}` (Envoy's option for
//!   TCP connection pools, which the control plane's Envoy flavour uses).
//!
//! Any other key is refused with its path. Envoy's meanings: `max_requests_per_connection` 0 or
//! absent is no limit; `idle_timeout` 0 disables the timeout, absent is the default
//! ([`Cluster::DEFAULT_IDLE_TIMEOUT`], meta-proxy's own).

use std::time::Duration;

use meta_config::Cluster;

use crate::error::ConfigError;
use crate::view::View;

/// Key (and message name) of the HTTP upstream options.
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Key (and message name) of the TCP upstream options.
pub(crate) const TCP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions";

/// What the protocol options set on the cluster's upstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLifetime {
    /// `None`: unlimited.
    pub(crate) max_requests_per_connection: Option<u32>,
    /// `None`: never.
    pub(crate) idle_timeout: Option<Duration>,
}

/// Reads `typed_extension_protocol_options` of cluster `c`.
pub(crate) fn conn_lifetime(c: &View) -> Result<ConnLifetime, ConfigError> {
    let mut max_requests = None;
    // (value, path) of the idle timeout, to refuse it given twice.
    let mut idle: Option<(Duration, String)> = None;
    for (key, any) in c.map_msgs("typed_extension_protocol_options") {
        if key != HTTP_PROTOCOL_OPTIONS && key != TCP_PROTOCOL_OPTIONS {
            return Err(ConfigError::new(
                any.path,
                format!(
                    "not supported (only {HTTP_PROTOCOL_OPTIONS} and {TCP_PROTOCOL_OPTIONS} are \
                     read)"
                ),
            ));
        }
        let path = any.path.clone();
        let (url, msg) = any.unpack()?;
        if url.rsplit('/').next() != Some(key.as_str()) {
            return Err(ConfigError::new(
                path,
                format!("key {key} needs type.googleapis.com/{key}, got '{url}'"),
            ));
        }
        let (timeout, field) = if key == HTTP_PROTOCOL_OPTIONS {
            msg.only(&["common_http_protocol_options"])?;
            let Some(common) = msg.msg("common_http_protocol_options") else {
                continue;
            };
            common.only(&["idle_timeout", "max_requests_per_connection"])?;
            max_requests = common
                .wrapped_u32("max_requests_per_connection")
                .filter(|n| *n > 0);
            (common.duration("idle_timeout")?, common.at("idle_timeout"))
        } else {
            msg.only(&["idle_timeout"])?;
            (msg.duration("idle_timeout")?, msg.at("idle_timeout"))
        };
        if let Some(t) = timeout {
            if let Some((_, first)) = &idle {
                return Err(ConfigError::new(
                    field,
                    format!("also set at {first}: give the idle timeout once"),
                ));
            }
            idle = Some((t, field));
        }
    }
    let idle_timeout = match idle {
        None => Some(Cluster::DEFAULT_IDLE_TIMEOUT),
        Some((t, _)) if t.is_zero() => None,
        Some((t, _)) => Some(t),
    };
    Ok(ConnLifetime {
        max_requests_per_connection: max_requests,
        idle_timeout,
    })
}

#[cfg(test)]
mod tests;
