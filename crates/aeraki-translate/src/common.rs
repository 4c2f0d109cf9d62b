//! Pieces shared by both flavours: protobuf packing, names, matchers, destinations.

use std::time::Duration;

use aeraki_model::{
    AttributeMatch, DestinationView, LoadBalancer, RouteView, RouterView, ServiceView,
    StringMatchKind, outbound_cluster_name,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::HeaderMatcher;
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, regex_matcher};
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};

use crate::Cx;

/// Packs a message into the `Any` type of envoy-types.
pub(crate) fn any<M: prost::Message + prost::Name>(msg: &M) -> Any {
    any_with(&M::type_url(), msg)
}

/// Packs a message whose type URL is given explicitly.
pub(crate) fn any_with<M: prost::Message>(type_url: &str, msg: &M) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: msg.encode_to_vec(),
    }
}

pub(crate) fn duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn u32v(value: u32) -> UInt32Value {
    UInt32Value { value }
}

/// Names a route in warnings: `MetaRouter ns/name route "v1"` (or `route #2` when unnamed).
pub(crate) fn route_id(router: &RouterView, index: usize, route: &RouteView) -> String {
    if route.name.is_empty() {
        format!("MetaRouter {} route #{index}", router.source)
    } else {
        format!("MetaRouter {} route {:?}", router.source, route.name)
    }
}

/// The route name written into route tables: the MetaRoute's name, or `route-<index>`.
pub(crate) fn route_name(index: usize, route: &RouteView) -> String {
    if route.name.is_empty() {
        format!("route-{index}")
    } else {
        route.name.clone()
    }
}

/// The cluster a destination names; its port defaults to the routed service's port.
pub(crate) fn dest_cluster(svc: &ServiceView, dest: &DestinationView) -> String {
    outbound_cluster_name(
        dest.port.unwrap_or(svc.port),
        dest.subset.as_deref(),
        &dest.host,
    )
}

/// Mirror fraction: `percentage` of a million, rounded.
pub(crate) fn mirror_fraction(percentage: f64) -> RuntimeFractionalPercent {
    let numerator = (percentage * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32;
    RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator,
            denominator: DenominatorType::Million as i32,
        }),
        runtime_key: String::new(),
    }
}

/// Metadata keys to hash on for these destinations: each destination's DestinationRule load
/// balancer (the subset's policy when a subset is named, else the top-level one), when it is
/// `consistentHash`. In destination order, without duplicates.
pub(crate) fn hash_keys(cx: &Cx<'_>, svc: &ServiceView, dests: &[&DestinationView]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for dest in dests {
        let Some(target) = cx.service(&dest.host, dest.port.unwrap_or(svc.port)) else {
            continue;
        };
        if let Some(key) = consistent_hash_key(target, dest.subset.as_deref())
            && !keys.iter().any(|k| k == key)
        {
            keys.push(key.to_owned());
        }
    }
    keys
}

/// The consistent-hash key of a service (or of one of its subsets), if any.
pub(crate) fn consistent_hash_key<'s>(
    svc: &'s ServiceView,
    subset: Option<&str>,
) -> Option<&'s str> {
    let policy = match subset {
        Some(name) => svc
            .subsets
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.traffic_policy.as_ref())
            .or(svc.traffic_policy.as_ref()),
        None => svc.traffic_policy.as_ref(),
    }?;
    match policy.load_balancer.as_ref()? {
        LoadBalancer::ConsistentHash { key, .. } => Some(key),
        LoadBalancer::Simple(_) => None,
    }
}

/// An Envoy `StringMatcher` for an exact, prefix or regex match (`None` for presence).
pub(crate) fn string_matcher(kind: &StringMatchKind, google_re2: bool) -> Option<StringMatcher> {
    let pattern = match kind {
        StringMatchKind::Exact(v) => MatchPattern::Exact(v.clone()),
        StringMatchKind::Prefix(v) => MatchPattern::Prefix(v.clone()),
        StringMatchKind::Regex(v) => MatchPattern::SafeRegex(regex(v, google_re2)),
        StringMatchKind::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

/// A `RegexMatcher`; `google_re2` writes the (deprecated, default) engine field explicitly, as
/// Aeraki's tunnelled routes carry it.
#[allow(deprecated)]
pub(crate) fn regex(pattern: &str, google_re2: bool) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_owned(),
        engine_type: google_re2.then_some(regex_matcher::EngineType::GoogleRe2(
            regex_matcher::GoogleRe2::default(),
        )),
    }
}

/// A `HeaderMatcher` on one attribute: `string_match` for exact/prefix/regex,
/// `present_match: true` for presence.
pub(crate) fn header_matcher(m: &AttributeMatch, google_re2: bool) -> HeaderMatcher {
    let spec = match string_matcher(&m.kind, google_re2) {
        Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: m.attribute.clone(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}
