//! Shared checks: host names, DNS-1123 labels, exportTo, ports, addresses, attribute matches.

use std::net::IpAddr;

use aeraki_model::{AttributeMatch, StringMatchKind};

use crate::error::Diag;
use crate::types::aeraki::MetaRouteMatch;

/// A DNS-1123 label as Istio checks it (letters of either case, digits, `-` inside; ≤ 63).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Why `host` is not a valid FQDN (Aeraki's check: ≤ 255 characters, DNS-1123 labels, a
/// top-level domain that is not all digits), or `None`.
pub fn fqdn_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("required".into());
    }
    if host.len() > 255 {
        return Some(format!("host {host:?} is longer than 255 characters"));
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = trimmed.split('.').collect();
    if let Some(bad) = labels.iter().find(|l| !is_dns1123_label(l)) {
        return Some(format!(
            "{host:?} is not a valid FQDN: label {bad:?} is not a DNS-1123 label"
        ));
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()))
    {
        return Some(format!(
            "{host:?} is not a valid FQDN: the top-level domain is all digits"
        ));
    }
    None
}

/// Istio's host check: an FQDN, optionally starting with a `*` wildcard label (`*.example.com`
/// or `*`); short names are allowed (they are namespace-relative).
pub fn istio_host_problem(host: &str) -> Option<String> {
    if host == "*" {
        return None;
    }
    match host.strip_prefix("*.") {
        Some(rest) => {
            fqdn_problem(rest).map(|p| p.replace(&format!("{rest:?}"), &format!("{host:?}")))
        }
        None if host.starts_with('*') => {
            // `*foo.com` is allowed by Istio: the label after `*` must be a valid suffix.
            fqdn_problem(&host[1..]).map(|_| format!("{host:?} is not a valid host"))
        }
        None => fqdn_problem(host),
    }
}

/// A port number in 1–65535.
pub fn port(d: &mut Diag, path: &str, n: i64) -> Option<u16> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            d.err(path, format!("port number {n} is out of range 1-65535"));
            None
        }
    }
}

/// An IP address (not a CIDR range).
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `exportTo`: `.`, `*`, `~` or namespace names; no duplicates; `*` and `~` alone. Returns
/// whether the list restricts visibility (anything but empty or `["*"]`).
pub fn export_to(d: &mut Diag, path: &str, list: &[String]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(e.as_str()) {
            d.err(&p, format!("duplicate entry {e:?}"));
        }
        match e.as_str() {
            "*" | "~" if list.len() > 1 => {
                d.err(&p, format!("{e:?} must be the only entry"));
            }
            "." | "*" | "~" => {}
            ns if is_dns1123_label(ns) => {}
            other => d.err(
                &p,
                format!("{other:?} is not `.`, `*`, `~` or a namespace name"),
            ),
        }
    }
    !(list.is_empty() || list == ["*"])
}

/// Validates a `match.attributes` map and converts it, sorted by attribute name (the map is
/// already sorted). An empty match, `regex: "*"` or an empty `exact`/`prefix` mean "present".
pub fn attribute_matches(
    d: &mut Diag,
    path: &str,
    m: Option<&MetaRouteMatch>,
) -> Vec<AttributeMatch> {
    let Some(m) = m else { return Vec::new() };
    let mut out = Vec::new();
    for (name, sm) in &m.attributes {
        let p = format!("{path}.attributes.{name}");
        if name.trim().is_empty() {
            d.err(
                format!("{path}.attributes"),
                "attribute name must not be empty",
            );
            continue;
        }
        let kind = match sm {
            None => StringMatchKind::Present,
            Some(sm) => {
                let set = [&sm.exact, &sm.prefix, &sm.regex]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if set > 1 {
                    d.err(&p, "only one of exact, prefix, regex may be set");
                    continue;
                }
                if let Some(v) = &sm.exact {
                    if v.is_empty() {
                        StringMatchKind::Present
                    } else {
                        StringMatchKind::Exact(v.clone())
                    }
                } else if let Some(v) = &sm.prefix {
                    if v.is_empty() {
                        StringMatchKind::Present
                    } else {
                        StringMatchKind::Prefix(v.clone())
                    }
                } else if let Some(v) = &sm.regex {
                    if v.is_empty() {
                        d.err(format!("{p}.regex"), "regex must not be empty");
                        continue;
                    } else if v == "*" {
                        StringMatchKind::Present
                    } else if let Err(e) = regex::Regex::new(v) {
                        let first = e.to_string();
                        let last = first.lines().last().unwrap_or_default().trim().to_owned();
                        d.err(format!("{p}.regex"), format!("invalid regex {v:?}: {last}"));
                        continue;
                    } else {
                        StringMatchKind::Regex(v.clone())
                    }
                } else {
                    StringMatchKind::Present
                }
            }
        };
        out.push(AttributeMatch {
            attribute: name.clone(),
            kind,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdns() {
        assert_eq!(
            fqdn_problem("org.apache.dubbo.samples.basic.api.demoservice"),
            None
        );
        assert_eq!(fqdn_problem("a.b.svc.cluster.local."), None);
        assert_eq!(fqdn_problem("Thrift.Example"), None);
        assert_eq!(
            fqdn_problem("a..b"),
            Some("\"a..b\" is not a valid FQDN: label \"\" is not a DNS-1123 label".into())
        );
        assert_eq!(
            fqdn_problem("10.0.0.1"),
            Some("\"10.0.0.1\" is not a valid FQDN: the top-level domain is all digits".into())
        );
        assert!(fqdn_problem("a_b.com").is_some());
        assert!(fqdn_problem("-a.com").is_some());
        assert!(fqdn_problem(&format!("{}.com", "a".repeat(64))).is_some());
        assert_eq!(istio_host_problem("*.example.com"), None);
        assert_eq!(istio_host_problem("*"), None);
        assert!(istio_host_problem("*.").is_some());
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("v1"));
        assert!(is_dns1123_label("batch-job"));
        assert!(!is_dns1123_label("v1_beta"));
        assert!(!is_dns1123_label("-v1"));
        assert!(!is_dns1123_label(""));
    }
}
