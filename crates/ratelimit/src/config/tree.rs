//! The validated descriptor tree and the matching walk.

use std::collections::HashMap;
use std::fmt::Write as _;

/// A rate-limit window unit. Windows are aligned to the unit (a minute window starts at
/// second 0 of the minute, UTC), like the Go service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    /// Parses `second|minute|hour|day`, case-insensitively.
    pub fn parse(s: &str) -> Option<Unit> {
        match s.to_ascii_lowercase().as_str() {
            "second" => Some(Unit::Second),
            "minute" => Some(Unit::Minute),
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            _ => None,
        }
    }

    /// The window length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }

    /// The lower-case name used in YAML and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }
}

/// The `rate_limit` of one descriptor node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `domain.key_value.key2` — the node's path, used as the `descriptor` metric label.
    pub full_key: String,
    /// Allowed hits per window (0 when `unlimited`).
    pub requests_per_unit: u32,
    /// The window unit (`None` only when `unlimited`).
    pub unit: Option<Unit>,
    /// `rate_limit.name`, reported back in `current_limit.name`.
    pub name: String,
    /// `rate_limit.unlimited`: always OK, never counted.
    pub unlimited: bool,
    /// `shadow_mode`: counted and reported in metrics, but always answered OK.
    pub shadow_mode: bool,
    /// `detailed_metric`: the metric label carries the request's values, not the node path.
    pub detailed_metric: bool,
}

/// The result of matching one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The request's domain is not configured.
    UnknownDomain,
    /// No node with a `rate_limit` matched the descriptor.
    NoLimit,
    /// This limit applies.
    Limited(&'a Limit),
}

/// One level of the tree: the nodes under a domain or under a descriptor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Level {
    /// Keyed like the Go service: `key` for key-only nodes, `key_value` otherwise.
    pub(crate) nodes: HashMap<String, Node>,
    /// `key_value` patterns containing `*`, in config order, pre-split on `*`.
    pub(crate) wildcards: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub(crate) limit: Option<Limit>,
    pub(crate) children: Level,
}

impl Level {
    pub(crate) fn lookup<'a>(&'a self, entries: &[(&str, &str)]) -> Lookup<'a> {
        let mut level = self;
        let mut found = Lookup::NoLimit;
        for (i, (key, value)) in entries.iter().enumerate() {
            let composite = format!("{key}_{value}");
            let node = level
                .nodes
                .get(&composite)
                .or_else(|| {
                    level
                        .wildcards
                        .iter()
                        .find(|(_, parts)| wildcard_match(parts, &composite))
                        .and_then(|(k, _)| level.nodes.get(k))
                })
                .or_else(|| level.nodes.get(*key));
            let Some(node) = node else { break };
            if let Some(limit) = &node.limit
                && i + 1 == entries.len()
            {
                found = Lookup::Limited(limit);
            }
            if node.children.nodes.is_empty() {
                break;
            }
            level = &node.children;
        }
        found
    }

    pub(crate) fn dump(&self, out: &mut String) {
        let mut keys: Vec<&String> = self.nodes.keys().collect();
        keys.sort();
        for k in keys {
            let node = &self.nodes[k];
            if let Some(l) = &node.limit {
                let rate = match l.unit {
                    Some(u) if !l.unlimited => format!("{}/{}", l.requests_per_unit, u.name()),
                    _ => "unlimited".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{}: {rate}{}",
                    l.full_key,
                    if l.shadow_mode { " (shadow mode)" } else { "" }
                );
            }
            node.children.dump(out);
        }
    }
}

/// Whether `value` matches a pattern split on `*` (each `*` matches any run of characters).
pub(crate) fn wildcard_match(parts: &[String], value: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return first == value;
    }
    let fixed: usize = parts.iter().map(String::len).sum();
    if value.len() < fixed || !value.starts_with(first.as_str()) || !value.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle.as_str()) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<String> {
        p.split('*').map(str::to_string).collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(&parts("path_/foo*"), "path_/foo/bar"));
        assert!(wildcard_match(&parts("path_/foo*"), "path_/foo"));
        assert!(!wildcard_match(&parts("path_/foo*"), "path_/fo"));
        assert!(wildcard_match(&parts("path_a*b*c"), "path_aXbYc"));
        assert!(!wildcard_match(&parts("path_a*b*c"), "path_aXcYb"));
        assert!(!wildcard_match(&parts("path_ab*ba"), "path_aba"));
        assert!(wildcard_match(&parts("k_v"), "k_v"));
        assert!(!wildcard_match(&parts("k_v"), "k_w"));
    }

    #[test]
    fn units_parse_case_insensitively() {
        assert_eq!(Unit::parse("MINUTE"), Some(Unit::Minute));
        assert_eq!(Unit::parse("Hour"), Some(Unit::Hour));
        assert_eq!(Unit::parse("week"), None);
        assert_eq!(Unit::Day.seconds(), 86_400);
    }
}
