//! Routes: metadata matchers, destinations and mutations.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::policy::{FaultPolicy, RetryPolicy};

/// Default per-route request timeout, as Envoy's route timeout (0 in config disables it).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// An ordered list of routes; the first whose matchers all hold wins.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RouteConfig {
    /// Route table name.
    pub name: String,
    /// Routes in order.
    pub routes: Vec<Route>,
}

/// One route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Route name (metric label `route`).
    pub name: String,
    /// All must hold; empty matches every request.
    pub matchers: Vec<MetadataMatcher>,
    /// Where matching requests go.
    pub destination: Destination,
    /// Key/values written into the request before it is sent upstream.
    pub request_mutation: Vec<(String, String)>,
    /// Key/values written into the response before it is sent downstream.
    pub response_mutation: Vec<(String, String)>,
    /// Time allowed for the whole request; `None` disables the timeout.
    pub timeout: Option<Duration>,
    /// Metadata keys whose values are hashed for consistent-hash load balancing.
    pub hash_policy: Vec<String>,
    /// Requests copied to other clusters (responses discarded).
    pub mirrors: Vec<MirrorPolicy>,
    /// Retries of failed attempts; `None`: one attempt only.
    pub retry: Option<RetryPolicy>,
    /// Fault injection; `None`: none.
    pub fault: Option<FaultPolicy>,
}

/// Where a route sends requests.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A single cluster.
    Cluster(String),
    /// Several clusters, each taking `weight / total` of the requests.
    WeightedClusters(Vec<WeightedCluster>),
}

/// One cluster of a weighted split.
#[derive(Debug, Clone, Serialize)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Relative weight.
    pub weight: u32,
}

/// A request mirror.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorPolicy {
    /// Cluster receiving the copies.
    pub cluster: String,
    /// Share of requests mirrored, in parts per million (1_000_000 = all).
    pub fraction_per_million: u32,
}

/// An Envoy `HeaderMatcher` applied to request metadata.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataMatcher {
    /// Metadata key (case-insensitive).
    pub name: String,
    /// What the value must satisfy.
    pub spec: MatchSpec,
    /// Negates the result.
    pub invert: bool,
    /// A missing key is treated as an empty value instead of not matching.
    pub treat_missing_as_empty: bool,
}

/// How a metadata value is tested.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchSpec {
    /// A string comparison.
    String(StringMatch),
    /// Present (`true`) or absent (`false`).
    Present(bool),
    /// The value parses as an integer in `[start, end)`.
    Range {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
}

/// An Envoy `StringMatcher`.
#[derive(Debug, Clone, Serialize)]
pub struct StringMatch {
    /// Comparison.
    pub kind: StringMatchKind,
    /// Compare ASCII-case-insensitively (not applicable to regex).
    pub ignore_case: bool,
}

/// String comparisons.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatchKind {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// Whole value matches the RE2-syntax regex.
    Regex(Pattern),
}

/// A compiled regex that serialises as its pattern. It matches the whole value, as Envoy's
/// `safe_regex` does.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source` anchored at both ends.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl MetadataMatcher {
    /// A matcher that holds when key `name` is exactly `value` (case-sensitive).
    pub fn exact(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            spec: MatchSpec::String(StringMatch {
                kind: StringMatchKind::Exact(value.into()),
                ignore_case: false,
            }),
            invert: false,
            treat_missing_as_empty: false,
        }
    }

    /// A matcher that holds when key `name` is present, whatever its value.
    pub fn present(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            spec: MatchSpec::Present(true),
            invert: false,
            treat_missing_as_empty: false,
        }
    }

    /// Whether this matcher holds for `value` (the metadata value of [`MetadataMatcher::name`]).
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = match value {
            Some(v) => Some(v),
            None if self.treat_missing_as_empty => Some(""),
            None => None,
        };
        let hit = match (&self.spec, value) {
            (MatchSpec::Present(want), v) => v.is_some() == *want,
            // Envoy: a missing key fails every non-presence matcher, inverted or not.
            (_, None) => return false,
            (MatchSpec::String(m), Some(v)) => m.matches(v),
            (MatchSpec::Range { start, end }, Some(v)) => {
                v.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
        };
        hit != self.invert
    }
}

impl StringMatch {
    /// Whether `value` satisfies this string matcher.
    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            StringMatchKind::Exact(s) if ic => value.eq_ignore_ascii_case(s),
            StringMatchKind::Exact(s) => value == s,
            StringMatchKind::Prefix(s) if ic => starts_with_ic(value, s),
            StringMatchKind::Prefix(s) => value.starts_with(s.as_str()),
            StringMatchKind::Suffix(s) if ic => ends_with_ic(value, s),
            StringMatchKind::Suffix(s) => value.ends_with(s.as_str()),
            StringMatchKind::Contains(s) if ic => {
                value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
            }
            StringMatchKind::Contains(s) => value.contains(s.as_str()),
            StringMatchKind::Regex(p) => p.is_match(value),
        }
    }
}

fn starts_with_ic(value: &str, prefix: &str) -> bool {
    value.len() >= prefix.len()
        && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ic(value: &str, suffix: &str) -> bool {
    value.len() >= suffix.len()
        && value.as_bytes()[value.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(spec: MatchSpec, invert: bool) -> MetadataMatcher {
        MetadataMatcher {
            name: "k".into(),
            spec,
            invert,
            treat_missing_as_empty: false,
        }
    }

    fn s(kind: StringMatchKind, ignore_case: bool) -> MatchSpec {
        MatchSpec::String(StringMatch { kind, ignore_case })
    }

    #[test]
    fn string_matchers() {
        let exact = m(s(StringMatchKind::Exact("sayHello".into()), false), false);
        assert!(exact.matches(Some("sayHello")));
        assert!(!exact.matches(Some("sayhello")));
        assert!(!exact.matches(None));
        let ic = m(s(StringMatchKind::Prefix("SAY".into()), true), false);
        assert!(ic.matches(Some("sayHello")));
        let suffix = m(s(StringMatchKind::Suffix("Hello".into()), false), false);
        assert!(suffix.matches(Some("sayHello")) && !suffix.matches(Some("Hello!")));
        let contains = m(s(StringMatchKind::Contains("yHe".into()), false), false);
        assert!(contains.matches(Some("sayHello")));
        let re = m(
            s(
                StringMatchKind::Regex(Pattern::new("say.*").unwrap()),
                false,
            ),
            false,
        );
        assert!(re.matches(Some("sayHello")) && !re.matches(Some("xsayHello")));
    }

    #[test]
    fn missing_keys_follow_envoy() {
        let inverted_exact = m(s(StringMatchKind::Exact("a".into()), false), true);
        assert!(!inverted_exact.matches(None), "missing fails even inverted");
        assert!(inverted_exact.matches(Some("b")));
        assert!(m(MatchSpec::Present(false), false).matches(None));
        assert!(m(MatchSpec::Present(true), true).matches(None));
        assert!(!m(MatchSpec::Present(true), false).matches(None));
        let mut empty = m(s(StringMatchKind::Exact(String::new()), false), false);
        empty.treat_missing_as_empty = true;
        assert!(empty.matches(None));
    }

    #[test]
    fn range_is_half_open() {
        let r = m(MatchSpec::Range { start: 1, end: 3 }, false);
        assert!(r.matches(Some("1")) && r.matches(Some("2")));
        assert!(!r.matches(Some("3")) && !r.matches(Some("x")));
    }
}
