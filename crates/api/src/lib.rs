//! The protobuf edge of meta-proxy: our Aeraki `.proto` messages (prost, in [`pb`]), Envoy's
//! (via `envoy-types`), reading an Envoy v3 bootstrap from YAML/JSON (proto3 JSON mapping), and
//! converting it once into the protobuf-free [`meta_config::Bootstrap`].
//!
//! Anything not honoured is refused with its exact field path, never ignored: every message we
//! accept is checked against an allow-list of fields, so a field set to a non-default value that
//! the conversion does not read is an error.

mod cluster;
mod error;
mod json;
mod listener;
pub mod pb;
mod resilience;
mod route;
mod view;
mod xds;

use std::path::Path;

use prost::Message;
use prost_reflect::DynamicMessage;

pub use cluster::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_REFRESH_RATE};
pub use error::ConfigError;
pub use json::Format;
pub use listener::{DEFAULT_MAX_MESSAGE_SIZE, META_PROTOCOL_PROXY_TYPE_URL};

use crate::view::View;

const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// Reads and converts a bootstrap file: `.json` is JSON, anything else YAML. Errors carry the
/// file name.
pub fn load_bootstrap(path: &Path) -> Result<meta_config::Bootstrap, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read: {e}")).in_file(&file))?;
    let format = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        Format::Json
    } else {
        Format::Yaml
    };
    parse_bootstrap(&text, format).map_err(|e| e.in_file(file))
}

/// Parses and converts a bootstrap document.
pub fn parse_bootstrap(text: &str, format: Format) -> Result<meta_config::Bootstrap, ConfigError> {
    let value = json::parse_text(text, format)?;
    if !value.is_object() {
        return Err(ConfigError::new("", "a bootstrap must be a mapping"));
    }
    let desc = descriptor(BOOTSTRAP)?;
    let msg = json::to_message(value, &desc, "")?;
    listener::bootstrap(&View::new(msg, ""))
}

/// Reads a bootstrap document into Envoy's prost type (no conversion, no support checks).
pub fn parse_bootstrap_proto(
    text: &str,
    format: Format,
) -> Result<envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap, ConfigError> {
    let value = json::parse_text(text, format)?;
    let msg = json::to_message(value, &descriptor(BOOTSTRAP)?, "")?;
    msg.transcode_to()
        .map_err(|e| ConfigError::new("", format!("cannot transcode: {e}")))
}

/// Converts one Envoy listener received over LDS (so `rds` over ADS is allowed; its routes are
/// empty until [`route_configuration_from_proto`] delivers them); `path` prefixes error paths.
pub fn listener_from_proto(
    l: &envoy_types::pb::envoy::config::listener::v3::Listener,
    path: &str,
) -> Result<meta_config::Listener, ConfigError> {
    listener::listener(
        &view_of(l, "envoy.config.listener.v3.Listener", path)?,
        true,
    )
}

/// Converts one Envoy cluster received over CDS (so type EDS over ADS is allowed); `path`
/// prefixes error paths.
pub fn cluster_from_proto(
    c: &envoy_types::pb::envoy::config::cluster::v3::Cluster,
    path: &str,
) -> Result<meta_config::Cluster, ConfigError> {
    cluster::cluster(&view_of(c, "envoy.config.cluster.v3.Cluster", path)?, true)
}

/// Converts Aeraki's tunnelled RDS resource (one virtual host `*`, routes whose `headers` are
/// metadata matchers) into MetaProtocol routes; `path` prefixes error paths.
pub fn route_configuration_from_proto(
    rc: &envoy_types::pb::envoy::config::route::v3::RouteConfiguration,
    path: &str,
) -> Result<meta_config::RouteConfig, ConfigError> {
    xds::route_configuration(&view_of(
        rc,
        "envoy.config.route.v3.RouteConfiguration",
        path,
    )?)
}

/// Converts an EDS `ClusterLoadAssignment` into (its `cluster_name`, endpoints).
pub fn cluster_load_assignment_from_proto(
    la: &envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
    path: &str,
) -> Result<(String, Vec<meta_config::Endpoint>), ConfigError> {
    xds::cluster_load_assignment(&view_of(
        la,
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        path,
    )?)
}

/// Converts a MetaProtocolProxy config (e.g. decoded from a listener's `typed_config`).
pub fn proxy_from_proto(
    p: &pb::aeraki::meta_protocol_proxy::v1alpha::MetaProtocolProxy,
    path: &str,
) -> Result<meta_config::MetaProtocolProxy, ConfigError> {
    listener::proxy(
        &view_of(
            p,
            "aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy",
            path,
        )?,
        false,
    )
}

fn descriptor(name: &str) -> Result<prost_reflect::MessageDescriptor, ConfigError> {
    pb::pool()
        .get_message_by_name(name)
        .ok_or_else(|| ConfigError::new("", format!("internal: descriptor {name} missing")))
}

fn view_of<M: Message>(m: &M, name: &str, path: &str) -> Result<View, ConfigError> {
    let msg = DynamicMessage::decode(descriptor(name)?, m.encode_to_vec().as_slice())
        .map_err(|e| ConfigError::new(path, format!("cannot decode: {e}")))?;
    Ok(View::new(msg, path))
}

#[cfg(test)]
mod locality_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod xds_tests;
