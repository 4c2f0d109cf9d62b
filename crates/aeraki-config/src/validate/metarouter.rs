//! MetaRouter validation (at least Aeraki's webhook rules) and conversion to [`RouterView`].

use aeraki_model::{
    DestinationView, GlobalRateLimit, LocalRateLimit, MirrorView, RateLimitCondition, RouteView,
    RouterView, TokenBucket,
};

use super::common::{attribute_matches, export_to, fqdn_problem, is_dns1123_label, port};
use super::route_policy;
use crate::error::Diag;
use crate::types::aeraki::{self as t, MetaRouter};

/// Validates a MetaRouter spec and converts it (the result is meaningful only when `d`
/// recorded no error).
pub fn metarouter(d: &mut Diag, source: &str, spec: &MetaRouter) -> RouterView {
    match spec.hosts.as_slice() {
        [] => d.err("spec.hosts", "exactly one host is required, found none"),
        [h] => {
            if let Some(p) = fqdn_problem(h) {
                d.err("spec.hosts[0]", p);
            }
        }
        hs => d.err(
            "spec.hosts",
            format!("exactly one host is required, found {}", hs.len()),
        ),
    }
    if spec.routes.is_empty() && spec.local_rate_limit.is_none() && spec.global_rate_limit.is_none()
    {
        d.err(
            "spec",
            "at least one of routes, localRateLimit or globalRateLimit is required",
        );
    }
    if export_to(d, "spec.exportTo", &spec.export_to) {
        d.warn(
            "spec.exportTo",
            "exportTo is not applied in file mode: every proxy receives this router",
        );
    }
    for (i, g) in spec.gateways.iter().enumerate() {
        let p = format!("spec.gateways[{i}]");
        let name = g.split_once('/').map_or(g.as_str(), |(ns, n)| {
            if !is_dns1123_label(ns) {
                d.err(
                    &p,
                    format!("{g:?}: namespace {ns:?} is not a DNS-1123 label"),
                );
            }
            n
        });
        if name.is_empty() {
            d.err(&p, "gateway name must not be empty");
        }
    }
    if !spec.gateways.is_empty() {
        d.warn(
            "spec.gateways",
            "ingress gateways are not supported yet: the routes apply to sidecars only",
        );
    }

    let n = spec.routes.len();
    let routes = spec
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = format!("spec.routes[{i}]");
            let catch_all = r.match_.as_ref().is_none_or(|m| m.attributes.is_empty());
            if catch_all && i + 1 < n {
                d.warn(
                    &p,
                    format!(
                        "MetaRouterUnreachableRule: this route matches every request, so the {} route(s) after it are unreachable",
                        n - i - 1
                    ),
                );
            }
            route(d, &p, r)
        })
        .collect();

    RouterView {
        source: source.to_owned(),
        routes,
        local_rate_limit: spec
            .local_rate_limit
            .as_ref()
            .map(|l| local_rate_limit(d, "spec.localRateLimit", l)),
        global_rate_limit: spec
            .global_rate_limit
            .as_ref()
            .map(|g| global_rate_limit(d, "spec.globalRateLimit", g)),
    }
}

fn route(d: &mut Diag, p: &str, r: &t::MetaRoute) -> RouteView {
    let matches = attribute_matches(d, &format!("{p}.match"), r.match_.as_ref());
    if r.route.is_empty() {
        d.err(format!("{p}.route"), "at least one destination is required");
    }
    let several = r.route.len() > 1;
    let mut sum = 0i64;
    let mut destinations = Vec::new();
    for (j, rd) in r.route.iter().enumerate() {
        let dp = format!("{p}.route[{j}]");
        let w = rd.weight.unwrap_or(0);
        if !(0..=100).contains(&w) {
            d.err(
                format!("{dp}.weight"),
                format!("weight {w} must be between 0 and 100"),
            );
        }
        sum += w;
        let Some(dest) = &rd.destination else {
            d.err(format!("{dp}.destination"), "required");
            continue;
        };
        let mut v = destination(d, &format!("{dp}.destination"), dest);
        v.weight = if several {
            u32::try_from(w.clamp(0, 100)).unwrap_or(0)
        } else {
            100
        };
        destinations.push(v);
    }
    if several && sum != 100 {
        d.err(
            format!("{p}.route"),
            format!("weights sum to {sum}, must be 100"),
        );
    }

    let mirror = match (&r.mirror, &r.mirror_percentage) {
        (None, None) => None,
        (None, Some(_)) => {
            d.err(
                format!("{p}.mirrorPercentage"),
                "mirrorPercentage requires mirror",
            );
            None
        }
        (Some(m), pct) => {
            let percentage = match pct.as_ref().map(|x| x.value.unwrap_or(0.0)) {
                None => 100.0,
                Some(v) if v > 0.0 && v <= 100.0 => v,
                Some(v) => {
                    d.err(
                        format!("{p}.mirrorPercentage.value"),
                        format!("{v} must be in (0, 100]"),
                    );
                    100.0
                }
            };
            Some(MirrorView {
                destination: destination(d, &format!("{p}.mirror"), m),
                percentage,
            })
        }
    };

    RouteView {
        name: r.name.clone(),
        matches,
        destinations,
        mirror,
        request_mutation: mutations(d, &format!("{p}.requestMutation"), &r.request_mutation),
        response_mutation: mutations(d, &format!("{p}.responseMutation"), &r.response_mutation),
        timeout: r.timeout,
        retries: r
            .retries
            .as_ref()
            .and_then(|x| route_policy::retries(d, p, x, r.timeout)),
        fault: r.fault.as_ref().map(|f| route_policy::fault(d, p, f)),
    }
}

fn destination(d: &mut Diag, p: &str, dest: &t::Destination) -> DestinationView {
    if let Some(e) = fqdn_problem(&dest.host) {
        d.err(format!("{p}.host"), e);
    }
    if !dest.subset.is_empty() && !is_dns1123_label(&dest.subset) {
        d.err(
            format!("{p}.subset"),
            format!(
                "{:?} is not a valid subset name (a DNS-1123 label)",
                dest.subset
            ),
        );
    }
    let port = dest
        .port
        .as_ref()
        .and_then(|ps| port(d, &format!("{p}.port.number"), ps.number));
    DestinationView {
        host: dest.host.clone(),
        subset: (!dest.subset.is_empty()).then(|| dest.subset.clone()),
        port,
        weight: 100,
    }
}

fn mutations(d: &mut Diag, p: &str, kvs: &[t::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .enumerate()
        .map(|(i, kv)| {
            if kv.key.is_empty() {
                d.err(format!("{p}[{i}].key"), "must not be empty");
            }
            if kv.value.is_empty() {
                d.err(format!("{p}[{i}].value"), "must not be empty");
            }
            (kv.key.clone(), kv.value.clone())
        })
        .collect()
}

/// Smallest token-bucket fill interval meta-protocol-proxy accepts.
const MIN_FILL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

fn bucket(d: &mut Diag, p: &str, b: &t::TokenBucket) -> TokenBucket {
    let mut positive = |field: &str, v: Option<i64>| -> u32 {
        match v {
            Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
            Some(n) => {
                d.err(format!("{p}.{field}"), format!("{n} must be at least 1"));
                0
            }
            None => {
                d.err(format!("{p}.{field}"), "required (at least 1)");
                0
            }
        }
    };
    let max_tokens = positive("maxTokens", b.max_tokens);
    let tokens_per_fill = positive("tokensPerFill", b.tokens_per_fill);
    let fill_interval = match b.fill_interval {
        Some(f) if f >= MIN_FILL_INTERVAL => f,
        Some(f) if !f.is_zero() => {
            d.err(
                format!("{p}.fillInterval"),
                format!("local rate limit token bucket fill timer must be >= 50ms (got {f:?})"),
            );
            Default::default()
        }
        Some(_) => {
            d.err(format!("{p}.fillInterval"), "must be greater than 0");
            Default::default()
        }
        None => {
            d.err(format!("{p}.fillInterval"), "required");
            Default::default()
        }
    };
    TokenBucket {
        max_tokens,
        tokens_per_fill,
        fill_interval,
    }
}

fn local_rate_limit(d: &mut Diag, p: &str, l: &t::LocalRateLimit) -> LocalRateLimit {
    if l.token_bucket.is_none() && l.conditions.is_empty() {
        d.err(p, "a tokenBucket or at least one condition is required");
    }
    let token_bucket = l
        .token_bucket
        .as_ref()
        .map(|b| bucket(d, &format!("{p}.tokenBucket"), b));
    let conditions = l
        .conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cp = format!("{p}.conditions[{i}]");
            if c.match_.is_none() {
                d.err(format!("{cp}.match"), "required");
            }
            let matches = attribute_matches(d, &format!("{cp}.match"), c.match_.as_ref());
            let token_bucket = match &c.token_bucket {
                Some(b) => bucket(d, &format!("{cp}.tokenBucket"), b),
                None => {
                    d.err(format!("{cp}.tokenBucket"), "required");
                    TokenBucket {
                        max_tokens: 0,
                        tokens_per_fill: 0,
                        fill_interval: Default::default(),
                    }
                }
            };
            RateLimitCondition {
                matches,
                token_bucket,
            }
        })
        .collect();
    LocalRateLimit {
        token_bucket,
        conditions,
    }
}

fn global_rate_limit(d: &mut Diag, p: &str, g: &t::GlobalRateLimit) -> GlobalRateLimit {
    if g.domain.is_empty() {
        d.err(format!("{p}.domain"), "required");
    }
    if g.rate_limit_service.is_empty() {
        d.err(format!("{p}.rateLimitService"), "required");
    }
    if g.descriptors.is_empty() {
        d.err(
            format!("{p}.descriptors"),
            "at least one descriptor is required",
        );
    }
    let descriptors = g
        .descriptors
        .iter()
        .enumerate()
        .map(|(i, ds)| {
            if ds.property.is_empty() {
                d.err(format!("{p}.descriptors[{i}].property"), "required");
            }
            if ds.descriptor_key.is_empty() {
                d.err(format!("{p}.descriptors[{i}].descriptorKey"), "required");
            }
            (ds.property.clone(), ds.descriptor_key.clone())
        })
        .collect();
    GlobalRateLimit {
        matches: attribute_matches(d, &format!("{p}.match"), g.match_.as_ref()),
        domain: g.domain.clone(),
        request_timeout: g.request_timeout,
        deny_on_fail: g.deny_on_fail,
        rate_limit_service: g.rate_limit_service.clone(),
        descriptors,
    }
}
