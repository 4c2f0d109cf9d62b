//! OpenMetrics text (what prometheus-client renders) → classic Prometheus text format 0.0.4, for
//! clients that ask for `text/plain` (older scrapers, `promtool check metrics`).
//!
//! The two formats share sample lines; they differ in metadata: an OpenMetrics counter family `x`
//! has samples `x_total` (0.0.4 names the family `x_total`), `# UNIT` and `# EOF` do not exist
//! in 0.0.4, `unknown` is `untyped`, `info` is a gauge named `x_info`, exemplars are not allowed
//! and `_created` samples are not part of the counter/histogram/summary.

use std::collections::HashMap;

/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    // Family name → OpenMetrics type, from the TYPE lines (HELP precedes TYPE, hence two passes).
    let types: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, tail) = (parts.next(), parts.next(), parts.next());
            match (keyword, name) {
                (Some("HELP"), Some(name)) => {
                    let Some((renamed, _)) = classic(name, types.get(name).copied()) else {
                        continue;
                    };
                    out.push_str(&format!("# HELP {renamed} {}\n", tail.unwrap_or("")));
                }
                (Some("TYPE"), Some(name)) => {
                    if let Some((renamed, kind)) = classic(name, tail) {
                        out.push_str(&format!("# TYPE {renamed} {kind}\n"));
                    }
                }
                // UNIT, EOF and other comments have no 0.0.4 counterpart.
                _ => {}
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        // Exemplars (` # {...} value`) are OpenMetrics-only.
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        let name = sample.split(['{', ' ']).next().unwrap_or("");
        if let Some(family) = name.strip_suffix("_created")
            && matches!(
                types.get(family).copied(),
                Some("counter" | "histogram" | "summary")
            )
        {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// The 0.0.4 family name and type of an OpenMetrics family; `None` drops its metadata.
fn classic(name: &str, kind: Option<&str>) -> Option<(String, &'static str)> {
    match kind? {
        "counter" => Some((format!("{name}_total"), "counter")),
        "gauge" => Some((name.to_owned(), "gauge")),
        "histogram" => Some((name.to_owned(), "histogram")),
        "summary" => Some((name.to_owned(), "summary")),
        "info" => Some((format!("{name}_info"), "gauge")),
        "stateset" => Some((name.to_owned(), "gauge")),
        "unknown" => Some((name.to_owned(), "untyped")),
        // gaugehistogram samples (_gcount, _gsum) have no 0.0.4 family: leave them untyped.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_counters_and_drops_openmetrics_only_lines() {
        let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\n# UNIT x_requests \n\
                  x_requests_total{a=\"1\"} 3 # {trace=\"t\"} 1.0\nx_requests_created 1.5\n\
                  # HELP g Gauge.\n# TYPE g gauge\ng 2\n# TYPE u unknown\nu 1\n\
                  # TYPE b info\nb_info{v=\"1\"} 1\n# EOF\n";
        let classic = openmetrics_to_prometheus(om);
        assert_eq!(
            classic,
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total{a=\"1\"} 3\n# HELP g Gauge.\n# TYPE g gauge\ng 2\n\
             # TYPE u untyped\nu 1\n# TYPE b_info gauge\nb_info{v=\"1\"} 1\n"
        );
    }

    #[test]
    fn histograms_pass_through() {
        let om = "# HELP d D.\n# TYPE d histogram\nd_sum 1.0\nd_count 1\n\
                  d_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let classic = openmetrics_to_prometheus(om);
        assert_eq!(classic, om.trim_end_matches("# EOF\n"));
    }
}
