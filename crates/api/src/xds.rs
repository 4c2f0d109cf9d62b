//! `dynamic_resources`, config sources, and the resources that arrive over xDS: Aeraki's
//! tunnelled RDS `RouteConfiguration` and EDS `ClusterLoadAssignment`.

use meta_config::{Cluster, Endpoint, Route, RouteConfig, XdsConfig};

use crate::error::ConfigError;
use crate::view::View;

/// `envoy.config.core.v3.ApiVersion.V3`.
const V3: i32 = 2;

/// `dynamic_resources` → [`XdsConfig`].
pub(crate) fn dynamic_resources(
    dr: &View,
    node_id: &str,
    node_cluster: &str,
    node_metadata: Option<String>,
) -> Result<XdsConfig, ConfigError> {
    dr.only(&["ads_config", "lds_config", "cds_config"])?;
    let ads = dr.msg("ads_config").ok_or_else(|| {
        ConfigError::new(
            dr.at("ads_config"),
            "required (only ADS is supported for dynamic resources)",
        )
    })?;
    ads.only(&["api_type", "transport_api_version", "grpc_services"])?;
    match ads.enum_num("api_type") {
        2 => {}
        3 => {
            return Err(ConfigError::new(
                ads.at("api_type"),
                "DELTA_GRPC not supported yet (use GRPC)",
            ));
        }
        _ => {
            return Err(ConfigError::new(
                ads.at("api_type"),
                format!("{} not supported (GRPC)", ads.enum_name("api_type")),
            ));
        }
    }
    if ads.enum_num("transport_api_version") != V3 {
        return Err(ConfigError::new(
            ads.at("transport_api_version"),
            "must be V3",
        ));
    }
    let services = ads.list("grpc_services");
    let [service] = services.as_slice() else {
        return Err(ConfigError::new(
            ads.at("grpc_services"),
            format!("exactly one grpc service required (got {})", services.len()),
        ));
    };
    service.only(&["envoy_grpc", "timeout"])?;
    let eg = service.msg("envoy_grpc").ok_or_else(|| {
        ConfigError::new(
            service.at("envoy_grpc"),
            "required (google_grpc not supported)",
        )
    })?;
    eg.only(&["cluster_name"])?;
    let server_cluster = eg.str("cluster_name");
    if server_cluster.is_empty() {
        return Err(ConfigError::new(eg.at("cluster_name"), "required"));
    }
    if node_id.is_empty() {
        return Err(ConfigError::new(
            "node.id",
            "required with dynamic_resources (the control plane identifies the proxy by it)",
        ));
    }
    let mut lds = false;
    if let Some(cs) = dr.msg("lds_config") {
        ads_source(&cs)?;
        lds = true;
    }
    let mut cds = false;
    if let Some(cs) = dr.msg("cds_config") {
        ads_source(&cs)?;
        cds = true;
    }
    Ok(XdsConfig {
        node_id: node_id.to_owned(),
        node_cluster: node_cluster.to_owned(),
        node_metadata,
        node_locality: None,
        server_cluster,
        lds,
        cds,
    })
}

/// The ADS server cluster must be a static cluster of the bootstrap.
pub(crate) fn check_server_cluster(
    x: &XdsConfig,
    clusters: &[Cluster],
    dr: &View,
) -> Result<(), ConfigError> {
    let path = format!(
        "{}.ads_config.grpc_services[0].envoy_grpc.cluster_name",
        dr.path
    );
    let found = clusters
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == x.server_cluster);
    match found {
        None => Err(ConfigError::new(
            path,
            format!(
                "no static cluster named '{}' (the control plane's address)",
                x.server_cluster
            ),
        )),
        Some((_, c)) if c.endpoints.is_empty() => Err(ConfigError::new(
            path,
            format!("cluster '{}' has no endpoints", x.server_cluster),
        )),
        // The ADS channel is one long-lived gRPC connection, not the proxy's request pool.
        Some((i, c))
            if c.max_requests_per_connection.is_some()
                || c.idle_timeout != Some(Cluster::DEFAULT_IDLE_TIMEOUT) =>
        {
            Err(ConfigError::new(
                format!("static_resources.clusters[{i}].typed_extension_protocol_options"),
                format!(
                    "cluster '{}' carries the ADS stream, which keeps one connection open: \
                     max_requests_per_connection and idle_timeout cannot apply to it",
                    c.name
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// A `ConfigSource` that must be `ads{}`.
pub(crate) fn ads_source(cs: &View) -> Result<(), ConfigError> {
    if cs.has("api_config_source") {
        return Err(ConfigError::new(
            cs.at("api_config_source"),
            "not supported (only ads{} is; Aeraki's plain RDS service is not)",
        ));
    }
    cs.only(&["ads", "resource_api_version"])?;
    if !cs.has("ads") {
        return Err(ConfigError::new(cs.at("ads"), "required"));
    }
    if !matches!(cs.enum_num("resource_api_version"), 0 | V3) {
        return Err(ConfigError::new(
            cs.at("resource_api_version"),
            "must be V3",
        ));
    }
    Ok(())
}

/// A MetaProtocolProxy `rds`: returns the route config name.
pub(crate) fn rds(rds: &View, ads: bool) -> Result<String, ConfigError> {
    if !ads {
        return Err(ConfigError::new(
            rds.path.clone(),
            "needs dynamic_resources.ads_config in the bootstrap (or use route_config)",
        ));
    }
    rds.only(&["config_source", "route_config_name"])?;
    let cs = rds
        .msg("config_source")
        .ok_or_else(|| ConfigError::new(rds.at("config_source"), "required"))?;
    ads_source(&cs)?;
    let name = rds.str("route_config_name");
    if name.is_empty() {
        return Err(ConfigError::new(rds.at("route_config_name"), "required"));
    }
    Ok(name)
}

/// Aeraki's tunnelled `envoy.config.route.v3.RouteConfiguration` → [`RouteConfig`].
pub(crate) fn route_configuration(rc: &View) -> Result<RouteConfig, ConfigError> {
    rc.only(&["name", "virtual_hosts"])?;
    let name = rc.str("name");
    if name.is_empty() {
        return Err(ConfigError::new(rc.at("name"), "required"));
    }
    let vhosts = rc.list("virtual_hosts");
    let routes = match vhosts.as_slice() {
        [] => Vec::new(),
        [vh] => {
            vh.only(&["name", "domains", "routes"])?;
            let domains = vh.strs("domains");
            if !domains.is_empty() && domains != ["*"] {
                return Err(ConfigError::new(
                    vh.at("domains"),
                    "only [\"*\"] is supported (MetaProtocol routes are not per host)",
                ));
            }
            vh.list("routes")
                .iter()
                .map(route)
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => {
            return Err(ConfigError::new(
                rc.at("virtual_hosts"),
                format!("exactly one virtual host expected (got {})", vhosts.len()),
            ));
        }
    };
    Ok(RouteConfig { name, routes })
}

fn route(r: &View) -> Result<Route, ConfigError> {
    r.only(&[
        "name",
        "match",
        "route",
        "request_headers_to_add",
        "response_headers_to_add",
        "typed_per_filter_config",
    ])?;
    let matchers = match r.msg("match") {
        Some(m) => {
            m.only(&["prefix", "headers"])?;
            let prefix = m.str("prefix");
            if !m.has("prefix") || !(prefix.is_empty() || prefix == "/") {
                return Err(ConfigError::new(m.at("prefix"), "must be \"/\""));
            }
            m.list("headers")
                .iter()
                .map(crate::route::header_matcher)
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let action = crate::route::route_action(r, &["retry_policy"])?;
    let retry = match action.view.msg("retry_policy") {
        Some(rp) => Some(crate::resilience::retry_policy(&rp)?),
        None => None,
    };
    let fault = crate::resilience::fault(r)?;
    let hash_policy = action
        .view
        .list("hash_policy")
        .iter()
        .map(|h| {
            h.only(&["header"])?;
            let header = h
                .msg("header")
                .ok_or_else(|| ConfigError::new(h.at("header"), "required (only header)"))?;
            header.only(&["header_name"])?;
            let name = header.str("header_name");
            if name.is_empty() {
                return Err(ConfigError::new(header.at("header_name"), "required"));
            }
            Ok(name)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Route {
        name: r.str("name"),
        matchers,
        destination: action.destination,
        request_mutation: headers_to_add(r, "request_headers_to_add")?,
        response_mutation: headers_to_add(r, "response_headers_to_add")?,
        timeout: action.timeout,
        hash_policy,
        mirrors: action.mirrors,
        retry,
        fault,
    })
}

fn headers_to_add(r: &View, f: &str) -> Result<Vec<(String, String)>, ConfigError> {
    r.list(f)
        .iter()
        .map(|hv| {
            hv.only(&["header", "append", "append_action"])?;
            let h = hv
                .msg("header")
                .ok_or_else(|| ConfigError::new(hv.at("header"), "required"))?;
            h.only(&["key", "value"])?;
            let key = h.str("key");
            if key.is_empty() {
                return Err(ConfigError::new(h.at("key"), "required"));
            }
            Ok((key, h.str("value")))
        })
        .collect()
}

/// `ClusterLoadAssignment` → (cluster or service name, endpoints).
pub(crate) fn cluster_load_assignment(la: &View) -> Result<(String, Vec<Endpoint>), ConfigError> {
    let name = la.str("cluster_name");
    if name.is_empty() {
        return Err(ConfigError::new(la.at("cluster_name"), "required"));
    }
    let endpoints = crate::cluster::load_assignment(la, meta_config::DiscoveryType::Eds)?;
    Ok((name, endpoints))
}
