//! Locality-aware load balancing: the cluster marker `common_lb_config.zone_aware_lb_config {}`,
//! the failover list in `metadata.filter_metadata["aeraki.locality"]`, and
//! `envoy.config.core.v3.Locality` (endpoint groups and `node.locality`).

use meta_config::{Locality, LocalityLb};

use crate::error::ConfigError;
use crate::view::View;

/// Key of the failover list in a cluster's `metadata.filter_metadata`.
pub const LOCALITY_METADATA: &str = "aeraki.locality";

/// An `envoy.config.core.v3.Locality`.
pub(crate) fn locality(l: &View) -> Result<Locality, ConfigError> {
    l.only(&["region", "zone", "sub_zone"])?;
    Ok(Locality {
        region: l.str("region"),
        zone: l.str("zone"),
        sub_zone: l.str("sub_zone"),
    })
}

/// The cluster's locality setting: `Some` when `common_lb_config.zone_aware_lb_config` is set
/// (only empty: meta-proxy's own locality priorities, not Envoy's zone-aware routing).
pub(crate) fn locality_lb(c: &View) -> Result<Option<LocalityLb>, ConfigError> {
    let zone_aware = c
        .msg("common_lb_config")
        .and_then(|common| common.msg("zone_aware_lb_config"));
    if let Some(z) = &zone_aware {
        z.only(&[]).map_err(|e| {
            ConfigError::new(
                e.path,
                "not supported: an empty zone_aware_lb_config marks locality priorities computed \
                 from node.locality",
            )
        })?;
    }
    let mut failover = Vec::new();
    if let Some(md) = c.msg("metadata") {
        md.only(&["filter_metadata"])?;
        for (key, s) in md.map_msgs("filter_metadata") {
            if key != LOCALITY_METADATA {
                return Err(ConfigError::new(
                    s.path,
                    format!("unknown metadata namespace (only {LOCALITY_METADATA} is read)"),
                ));
            }
            if zone_aware.is_none() {
                return Err(ConfigError::new(
                    s.path,
                    "needs common_lb_config.zone_aware_lb_config (locality priorities)",
                ));
            }
            failover = failover_list(&s)?;
        }
    }
    Ok(zone_aware.map(|_| LocalityLb { failover }))
}

/// `{failover: [{from: REGION, to: REGION}]}`.
fn failover_list(s: &View) -> Result<Vec<(String, String)>, ConfigError> {
    let json = serde_json::to_value(&s.msg)
        .map_err(|e| ConfigError::new(s.path.clone(), e.to_string()))?;
    let serde_json::Value::Object(fields) = json else {
        return Err(ConfigError::new(s.path.clone(), "must be a struct"));
    };
    let mut out = Vec::new();
    for (k, v) in fields {
        let at = format!("{}.{k}", s.path);
        if k != "failover" {
            return Err(ConfigError::unsupported(at));
        }
        let serde_json::Value::Array(items) = v else {
            return Err(ConfigError::new(at, "must be a list of {from, to}"));
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{at}[{i}]");
            let serde_json::Value::Object(m) = item else {
                return Err(ConfigError::new(ip, "must be {from, to}"));
            };
            if let Some(extra) = m.keys().find(|k| *k != "from" && *k != "to") {
                return Err(ConfigError::unsupported(format!("{ip}.{extra}")));
            }
            let region = |name: &str| match m.get(name).and_then(|v| v.as_str()) {
                Some(r) if !r.is_empty() => Ok(r.to_owned()),
                _ => Err(ConfigError::new(
                    format!("{ip}.{name}"),
                    "required: a region name",
                )),
            };
            out.push((region("from")?, region("to")?));
        }
    }
    Ok(out)
}
