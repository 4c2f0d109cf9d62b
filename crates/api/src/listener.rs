//! Bootstrap, admin, listeners and the MetaProtocolProxy filter → model.

use std::net::{IpAddr, SocketAddr};

mod filters;

use meta_config::{Admin, Listener, MetaProtocolProxy};

use crate::error::ConfigError;
use crate::view::View;

/// Type URL of the MetaProtocolProxy network filter config.
pub const META_PROTOCOL_PROXY_TYPE_URL: &str =
    "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy";

/// Default `max_message_size` (8 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

pub(crate) fn bootstrap(b: &View) -> Result<meta_config::Bootstrap, ConfigError> {
    b.only(&["node", "admin", "static_resources", "dynamic_resources"])?;
    let node_locality = match b.msg("node").and_then(|n| n.msg("locality")) {
        Some(l) => Some(crate::cluster::locality::locality(&l)?),
        None => None,
    };
    let (node_id, node_cluster, node_metadata) = match b.msg("node") {
        Some(node) => {
            node.only(&["id", "cluster", "metadata", "locality"])?;
            let metadata = match node.msg("metadata") {
                Some(m) => Some(
                    serde_json::to_string(&m.msg)
                        .map_err(|e| ConfigError::new(m.path.clone(), e.to_string()))?,
                ),
                None => None,
            };
            (node.str("id"), node.str("cluster"), metadata)
        }
        None => (String::new(), String::new(), None),
    };
    let xds = match b.msg("dynamic_resources") {
        Some(dr) => Some(crate::xds::dynamic_resources(
            &dr,
            &node_id,
            &node_cluster,
            node_metadata,
        )?),
        None => None,
    };
    let xds = xds.map(|x| meta_config::XdsConfig {
        node_locality: node_locality.clone(),
        ..x
    });
    let ads = xds.is_some();
    let admin = b.msg("admin").map(|a| admin(&a)).transpose()?;
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    if let Some(sr) = b.msg("static_resources") {
        sr.only(&["listeners", "clusters"])?;
        for l in sr.list("listeners") {
            let converted = listener(&l, ads)?;
            if listeners
                .iter()
                .any(|x: &Listener| x.name == converted.name)
            {
                return Err(ConfigError::new(
                    l.at("name"),
                    format!("duplicate listener name '{}'", converted.name),
                ));
            }
            listeners.push(converted);
        }
        for c in sr.list("clusters") {
            let converted = crate::cluster::cluster(&c, ads)?;
            if clusters
                .iter()
                .any(|x: &meta_config::Cluster| x.name == converted.name)
            {
                return Err(ConfigError::new(
                    c.at("name"),
                    format!("duplicate cluster name '{}'", converted.name),
                ));
            }
            clusters.push(converted);
        }
    }
    if let (Some(x), Some(dr)) = (&xds, b.msg("dynamic_resources")) {
        crate::xds::check_server_cluster(x, &clusters, &dr)?;
    }
    Ok(meta_config::Bootstrap {
        node_id: Some(node_id).filter(|s| !s.is_empty()),
        node_locality,
        admin,
        listeners,
        clusters,
        xds,
    })
}

fn admin(a: &View) -> Result<Admin, ConfigError> {
    a.only(&["access_log_path", "address"])?;
    let address = a
        .msg("address")
        .ok_or_else(|| ConfigError::new(a.at("address"), "required"))?;
    Ok(Admin {
        address: ip_socket_address(&address)?,
        access_log_path: Some(a.str("access_log_path")).filter(|s| !s.is_empty()),
    })
}

/// An `envoy.config.core.v3.Address` holding an IP `socket_address`; returns (host, port) checked.
pub(crate) fn socket_address(addr: &View) -> Result<(String, u16), ConfigError> {
    addr.only(&["socket_address"])?;
    let sa = addr
        .msg("socket_address")
        .ok_or_else(|| ConfigError::new(addr.at("socket_address"), "required"))?;
    sa.only(&["address", "port_value", "protocol"])?;
    if sa.enum_num("protocol") != 0 {
        return Err(ConfigError::new(sa.at("protocol"), "only TCP is supported"));
    }
    let host = sa.str("address");
    if host.is_empty() {
        return Err(ConfigError::new(sa.at("address"), "required"));
    }
    let port = u16::try_from(sa.u32("port_value"))
        .map_err(|_| ConfigError::new(sa.at("port_value"), "must be <= 65535"))?;
    Ok((host, port))
}

fn ip_socket_address(addr: &View) -> Result<SocketAddr, ConfigError> {
    let (host, port) = socket_address(addr)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        ConfigError::new(
            addr.at("socket_address.address"),
            format!("'{host}' is not an IP address"),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// Converts one `envoy.config.listener.v3.Listener`; `ads`: RDS over ADS is available.
pub(crate) fn listener(l: &View, ads: bool) -> Result<Listener, ConfigError> {
    l.only(&["name", "address", "filter_chains"])?;
    let name = l.str("name");
    if name.is_empty() {
        return Err(ConfigError::new(l.at("name"), "required"));
    }
    let address = l
        .msg("address")
        .ok_or_else(|| ConfigError::new(l.at("address"), "required"))?;
    let address = ip_socket_address(&address)?;
    let chains = l.list("filter_chains");
    let [chain] = chains.as_slice() else {
        return Err(ConfigError::new(
            l.at("filter_chains"),
            format!(
                "exactly one filter chain is supported (got {})",
                chains.len()
            ),
        ));
    };
    chain.only(&["filters"])?;
    let filters = chain.list("filters");
    let [filter] = filters.as_slice() else {
        return Err(ConfigError::new(
            chain.at("filters"),
            format!(
                "exactly one network filter (MetaProtocolProxy) is supported (got {})",
                filters.len()
            ),
        ));
    };
    filter.only(&["name", "typed_config"])?;
    let (url, cfg) = filter
        .any("typed_config")?
        .ok_or_else(|| ConfigError::new(filter.at("typed_config"), "required"))?;
    if url != META_PROTOCOL_PROXY_TYPE_URL {
        return Err(ConfigError::new(
            filter.at("typed_config"),
            format!("only {META_PROTOCOL_PROXY_TYPE_URL} is supported (got '{url}')"),
        ));
    }
    Ok(Listener {
        name,
        address,
        proxy: proxy(&cfg, ads)?,
    })
}

/// Converts a MetaProtocolProxy config; `ads`: `rds` over ADS is available.
pub(crate) fn proxy(p: &View, ads: bool) -> Result<MetaProtocolProxy, ConfigError> {
    p.only(&[
        "stat_prefix",
        "rds",
        "application_protocol",
        "route_config",
        "codec",
        "meta_protocol_filters",
        "idle_timeout",
        "protocol",
        "max_message_size",
    ])?;
    let stat_prefix = p.str("stat_prefix");
    if stat_prefix.is_empty() {
        return Err(ConfigError::new(p.at("stat_prefix"), "required"));
    }
    let (protocol, codec) = protocol_and_codec(p)?;
    let (route_config, rds) = match (p.msg("route_config"), p.msg("rds")) {
        (Some(rc), _) => (crate::route::route_config(&rc)?, None),
        (None, Some(rds)) => {
            let name = crate::xds::rds(&rds, ads)?;
            let empty = meta_config::RouteConfig {
                name: name.clone(),
                routes: Vec::new(),
            };
            (empty, Some(name))
        }
        (None, None) => return Err(ConfigError::new(p.at("route_config"), "required (or rds)")),
    };
    let filters = filters::filters(p)?;
    let max_message_size = match p.wrapped_u32("max_message_size") {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(0) => return Err(ConfigError::new(p.at("max_message_size"), "must be > 0")),
        Some(n) => n as usize,
    };
    Ok(MetaProtocolProxy {
        stat_prefix,
        protocol,
        codec,
        route_config,
        rds,
        filters,
        idle_timeout: p.duration("idle_timeout")?.filter(|d| !d.is_zero()),
        max_message_size,
    })
}

fn codec_name(c: &View) -> Result<String, ConfigError> {
    c.only(&["name", "config"])?;
    // The config, if any, must at least be a known message (all built-in ones are empty).
    c.any("config")?;
    Ok(c.str("name"))
}

/// `protocol{name, codec}` wins over the deprecated `application_protocol`/`codec` pair,
/// field by field, when non-empty.
fn protocol_and_codec(p: &View) -> Result<(String, String), ConfigError> {
    let (mut name, mut codec) = (String::new(), String::new());
    if let Some(proto) = p.msg("protocol") {
        // multiplexing is accepted: meta-proxy always multiplexes upstream requests.
        proto.only(&["name", "codec", "multiplexing"])?;
        name = proto.str("name");
        if let Some(c) = proto.msg("codec") {
            codec = codec_name(&c)?;
        }
    }
    if name.is_empty() {
        name = p.str("application_protocol");
    }
    if codec.is_empty()
        && let Some(c) = p.msg("codec")
    {
        codec = codec_name(&c)?;
    }
    if name.is_empty() {
        return Err(ConfigError::new(
            p.at("protocol.name"),
            "required (or the deprecated application_protocol)",
        ));
    }
    if codec.is_empty() {
        return Err(ConfigError::new(
            p.at("protocol.codec.name"),
            "required (or the deprecated codec.name)",
        ));
    }
    Ok((name, codec))
}
