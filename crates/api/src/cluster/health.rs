//! A cluster's `circuit_breakers`, `outlier_detection` and `common_lb_config` → model.
//!
//! Only what the engine honours is accepted: thresholds of priority DEFAULT, the
//! consecutive-error detectors, and the panic threshold. Success-rate and failure-percentage
//! detection are refused by path; since Envoy enforces success-rate ejection by default,
//! `enforcing_success_rate` must be given as 0 (Aeraki's translation does so).

use meta_config::{CircuitBreakers, OutlierDetection, RetryBudget};

use crate::error::ConfigError;
use crate::view::View;

/// `circuit_breakers`; absent: Envoy's defaults.
pub(crate) fn circuit_breakers(cb: Option<View>) -> Result<CircuitBreakers, ConfigError> {
    let mut out = CircuitBreakers::default();
    let Some(cb) = cb else {
        return Ok(out);
    };
    cb.only(&["thresholds"])?;
    let thresholds = cb.list("thresholds");
    if thresholds.len() > 1 {
        return Err(ConfigError::new(
            cb.at("thresholds"),
            "only one entry (priority DEFAULT) is supported",
        ));
    }
    let Some(t) = thresholds.first() else {
        return Ok(out);
    };
    t.only(&[
        "priority",
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
        "retry_budget",
    ])?;
    if t.enum_num("priority") != 0 {
        return Err(ConfigError::new(
            t.at("priority"),
            format!("{} not supported (DEFAULT only)", t.enum_name("priority")),
        ));
    }
    for (field, value) in [
        ("max_connections", &mut out.max_connections),
        ("max_pending_requests", &mut out.max_pending_requests),
        ("max_requests", &mut out.max_requests),
        ("max_retries", &mut out.max_retries),
    ] {
        if let Some(n) = t.wrapped_u32(field) {
            *value = n;
        }
    }
    if let Some(rb) = t.msg("retry_budget") {
        rb.only(&["budget_percent", "min_retry_concurrency"])?;
        let mut budget = RetryBudget::default();
        if let Some(p) = percent(&rb, "budget_percent")? {
            budget.budget_percent = p;
        }
        if let Some(n) = rb.wrapped_u32("min_retry_concurrency") {
            budget.min_retry_concurrency = n;
        }
        out.retry_budget = Some(budget);
    }
    Ok(out)
}

/// `outlier_detection`, if set.
pub(crate) fn outlier_detection(od: Option<View>) -> Result<Option<OutlierDetection>, ConfigError> {
    let Some(od) = od else {
        return Ok(None);
    };
    od.only(&[
        "consecutive_5xx",
        "consecutive_gateway_failure",
        "consecutive_local_origin_failure",
        "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_success_rate",
        "enforcing_local_origin_success_rate",
        "split_external_local_origin_errors",
        "interval",
        "base_ejection_time",
        "max_ejection_time",
        "max_ejection_percent",
    ])?;
    let mut out = OutlierDetection {
        split_external_local_origin_errors: od.bool("split_external_local_origin_errors"),
        ..OutlierDetection::default()
    };
    // Success-rate ejection (enforced at 100% by default in Envoy) is not implemented.
    let mut success_rate = vec!["enforcing_success_rate"];
    if out.split_external_local_origin_errors {
        success_rate.push("enforcing_local_origin_success_rate");
    }
    for field in success_rate {
        match od.wrapped_u32(field) {
            Some(0) => {}
            Some(n) => {
                return Err(ConfigError::new(
                    od.at(field),
                    format!("{n}: success-rate ejection not supported (set 0)"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    od.at(field),
                    "required and 0: success-rate ejection (Envoy's default 100) not supported",
                ));
            }
        }
    }
    for (field, value) in [
        ("consecutive_5xx", &mut out.consecutive_5xx),
        (
            "consecutive_gateway_failure",
            &mut out.consecutive_gateway_failure,
        ),
        (
            "consecutive_local_origin_failure",
            &mut out.consecutive_local_origin_failure,
        ),
    ] {
        if let Some(n) = od.wrapped_u32(field) {
            *value = n;
        }
    }
    for (field, value) in [
        (
            "enforcing_consecutive_5xx",
            &mut out.enforcing_consecutive_5xx,
        ),
        (
            "enforcing_consecutive_gateway_failure",
            &mut out.enforcing_consecutive_gateway_failure,
        ),
        (
            "enforcing_consecutive_local_origin_failure",
            &mut out.enforcing_consecutive_local_origin_failure,
        ),
        ("max_ejection_percent", &mut out.max_ejection_percent),
    ] {
        if let Some(n) = od.wrapped_u32(field) {
            if n > 100 {
                return Err(ConfigError::new(od.at(field), "must be in 0..=100"));
            }
            *value = n;
        }
    }
    for (field, value) in [
        ("interval", &mut out.interval),
        ("base_ejection_time", &mut out.base_ejection_time),
        ("max_ejection_time", &mut out.max_ejection_time),
    ] {
        if let Some(d) = od.duration(field)? {
            if d.is_zero() {
                return Err(ConfigError::new(od.at(field), "must be > 0"));
            }
            *value = d;
        }
    }
    if !od.has("max_ejection_time") {
        // Envoy: 300 s or base_ejection_time, whichever is larger.
        out.max_ejection_time = out.max_ejection_time.max(out.base_ejection_time);
    } else if out.max_ejection_time < out.base_ejection_time {
        return Err(ConfigError::new(
            od.at("max_ejection_time"),
            "must not be less than base_ejection_time",
        ));
    }
    Ok(Some(out))
}

/// `common_lb_config`: the healthy panic threshold in percent (Envoy's default 50).
pub(crate) fn healthy_panic_threshold(common: Option<View>) -> Result<f64, ConfigError> {
    let default = meta_config::Cluster::DEFAULT_HEALTHY_PANIC_THRESHOLD;
    let Some(common) = common else {
        return Ok(default);
    };
    common.only(&["healthy_panic_threshold", "zone_aware_lb_config"])?;
    Ok(percent(&common, "healthy_panic_threshold")?.unwrap_or(default))
}

/// An `envoy.type.v3.Percent` field (0..=100), if set.
fn percent(v: &View, f: &str) -> Result<Option<f64>, ConfigError> {
    let Some(p) = v.msg(f) else {
        return Ok(None);
    };
    let value = p
        .msg
        .get_field_by_name("value")
        .and_then(|x| x.as_f64())
        .unwrap_or_default();
    if !(0.0..=100.0).contains(&value) {
        return Err(ConfigError::new(p.at("value"), "must be in 0..=100"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests;
