//! MetaProtocol route configuration (Aeraki route protos + Envoy HeaderMatcher) → model.

use meta_config::{
    DEFAULT_ROUTE_TIMEOUT, Destination, MatchSpec, MetadataMatcher, MirrorPolicy, Pattern, Route,
    RouteConfig, StringMatch, StringMatchKind, WeightedCluster,
};

use crate::error::ConfigError;
use crate::view::View;

pub(crate) fn route_config(rc: &View) -> Result<RouteConfig, ConfigError> {
    rc.only(&["name", "routes"])?;
    let routes = rc
        .list("routes")
        .iter()
        .map(route)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteConfig {
        name: rc.str("name"),
        routes,
    })
}

fn route(r: &View) -> Result<Route, ConfigError> {
    r.only(&[
        "name",
        "match",
        "route",
        "request_mutation",
        "response_mutation",
    ])?;
    let matchers = match r.msg("match") {
        Some(m) => {
            m.only(&["metadata"])?;
            m.list("metadata")
                .iter()
                .map(header_matcher)
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let action = route_action(r, &[])?;
    Ok(Route {
        name: r.str("name"),
        matchers,
        destination: action.destination,
        request_mutation: key_values(r, "request_mutation")?,
        response_mutation: key_values(r, "response_mutation")?,
        timeout: action.timeout,
        hash_policy: action.view.strs("hash_policy"),
        mirrors: action.mirrors,
        retry: None,
        fault: None,
    })
}

/// A route's `route` action, the part shared by Aeraki's RouteAction and the tunnelled HTTP
/// RouteAction of Aeraki's RDS: destination, timeout (default [`DEFAULT_ROUTE_TIMEOUT`], 0
/// disables) and mirrors. `hash_policy` differs in shape between the two and is left to the
/// caller (through `view`), as are the `extra` fields the caller allows (the tunnelled form's
/// `retry_policy`).
pub(crate) struct RouteAction {
    pub(crate) view: View,
    pub(crate) destination: Destination,
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) mirrors: Vec<MirrorPolicy>,
}

pub(crate) fn route_action(r: &View, extra: &[&str]) -> Result<RouteAction, ConfigError> {
    let action = r
        .msg("route")
        .ok_or_else(|| ConfigError::new(r.at("route"), "required"))?;
    let mut allowed = vec![
        "cluster",
        "weighted_clusters",
        "hash_policy",
        "request_mirror_policies",
        "timeout",
    ];
    allowed.extend_from_slice(extra);
    action.only(&allowed)?;
    let destination = if let Some(wc) = action.msg("weighted_clusters") {
        weighted(&wc)?
    } else if !action.str("cluster").is_empty() {
        Destination::Cluster(action.str("cluster"))
    } else {
        return Err(ConfigError::new(
            action.path.clone(),
            "cluster or weighted_clusters required",
        ));
    };
    let timeout = match action.duration("timeout")? {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let mirrors = action
        .list("request_mirror_policies")
        .iter()
        .map(mirror)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteAction {
        view: action,
        destination,
        timeout,
        mirrors,
    })
}

fn key_values(r: &View, f: &str) -> Result<Vec<(String, String)>, ConfigError> {
    r.list(f)
        .iter()
        .map(|kv| {
            kv.only(&["key", "value"])?;
            let key = kv.str("key");
            if key.is_empty() {
                return Err(ConfigError::new(kv.at("key"), "required"));
            }
            Ok((key, kv.str("value")))
        })
        .collect()
}

pub(crate) fn weighted(wc: &View) -> Result<Destination, ConfigError> {
    wc.only(&["clusters"])?;
    let list = wc.list("clusters");
    if list.is_empty() {
        return Err(ConfigError::new(
            wc.at("clusters"),
            "at least one cluster required",
        ));
    }
    let mut out = Vec::new();
    for c in &list {
        c.only(&["name", "weight"])?;
        let name = c.str("name");
        if name.is_empty() {
            return Err(ConfigError::new(c.at("name"), "required"));
        }
        let weight = c.wrapped_u32("weight").unwrap_or_default();
        if weight == 0 {
            return Err(ConfigError::new(c.at("weight"), "must be > 0"));
        }
        out.push(WeightedCluster { name, weight });
    }
    Ok(Destination::WeightedClusters(out))
}

pub(crate) fn mirror(m: &View) -> Result<MirrorPolicy, ConfigError> {
    m.only(&["cluster", "runtime_fraction"])?;
    let cluster = m.str("cluster");
    if cluster.is_empty() {
        return Err(ConfigError::new(m.at("cluster"), "required"));
    }
    let fraction_per_million = match m.msg("runtime_fraction") {
        None => 1_000_000,
        Some(rf) => {
            rf.only(&["default_value"])?;
            match rf.msg("default_value") {
                None => 0,
                Some(fp) => {
                    fp.only(&["numerator", "denominator"])?;
                    let scale: u64 = match fp.enum_num("denominator") {
                        0 => 10_000, // HUNDRED
                        1 => 100,    // TEN_THOUSAND
                        _ => 1,      // MILLION
                    };
                    let ppm = u64::from(fp.u32("numerator")).saturating_mul(scale);
                    u32::try_from(ppm.min(1_000_000)).unwrap_or(1_000_000)
                }
            }
        }
    };
    Ok(MirrorPolicy {
        cluster,
        fraction_per_million,
    })
}

/// An Envoy `HeaderMatcher` applied to metadata.
pub(crate) fn header_matcher(h: &View) -> Result<MetadataMatcher, ConfigError> {
    h.only(&[
        "name",
        "exact_match",
        "safe_regex_match",
        "range_match",
        "present_match",
        "prefix_match",
        "suffix_match",
        "contains_match",
        "string_match",
        "invert_match",
        "treat_missing_header_as_empty",
    ])?;
    let name = h.str("name");
    if name.is_empty() {
        return Err(ConfigError::new(h.at("name"), "required"));
    }
    let plain = |kind| {
        MatchSpec::String(StringMatch {
            kind,
            ignore_case: false,
        })
    };
    let spec = if h.has("exact_match") {
        plain(StringMatchKind::Exact(h.str("exact_match")))
    } else if let Some(re) = h.msg("safe_regex_match") {
        plain(StringMatchKind::Regex(regex(&re)?))
    } else if let Some(r) = h.msg("range_match") {
        r.only(&["start", "end"])?;
        MatchSpec::Range {
            start: r.i64("start"),
            end: r.i64("end"),
        }
    } else if h.has("present_match") {
        MatchSpec::Present(h.bool("present_match"))
    } else if h.has("prefix_match") {
        plain(StringMatchKind::Prefix(h.str("prefix_match")))
    } else if h.has("suffix_match") {
        plain(StringMatchKind::Suffix(h.str("suffix_match")))
    } else if h.has("contains_match") {
        plain(StringMatchKind::Contains(h.str("contains_match")))
    } else if let Some(sm) = h.msg("string_match") {
        MatchSpec::String(string_matcher(&sm)?)
    } else {
        // Envoy: no specifier means "the key is present".
        MatchSpec::Present(true)
    };
    Ok(MetadataMatcher {
        name,
        spec,
        invert: h.bool("invert_match"),
        treat_missing_as_empty: h.bool("treat_missing_header_as_empty"),
    })
}

fn regex(re: &View) -> Result<Pattern, ConfigError> {
    re.only(&["regex", "google_re2"])?;
    let src = re.str("regex");
    Pattern::new(&src)
        .map_err(|e| ConfigError::new(re.at("regex"), format!("invalid regex '{src}': {e}")))
}

fn string_matcher(sm: &View) -> Result<StringMatch, ConfigError> {
    sm.only(&[
        "exact",
        "prefix",
        "suffix",
        "safe_regex",
        "contains",
        "ignore_case",
    ])?;
    let kind = if sm.has("exact") {
        StringMatchKind::Exact(sm.str("exact"))
    } else if sm.has("prefix") {
        StringMatchKind::Prefix(sm.str("prefix"))
    } else if sm.has("suffix") {
        StringMatchKind::Suffix(sm.str("suffix"))
    } else if sm.has("contains") {
        StringMatchKind::Contains(sm.str("contains"))
    } else if let Some(re) = sm.msg("safe_regex") {
        StringMatchKind::Regex(regex(&re)?)
    } else {
        return Err(ConfigError::new(
            sm.path.clone(),
            "one of exact, prefix, suffix, contains, safe_regex required",
        ));
    };
    Ok(StringMatch {
        kind,
        ignore_case: sm.bool("ignore_case"),
    })
}
