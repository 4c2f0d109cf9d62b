//! Retry policies and fault injection of Aeraki's tunnelled RDS routes (`route.retry_policy`,
//! `typed_per_filter_config["envoy.filters.http.fault"]`). Static Aeraki route protos carry
//! neither; they come through the control plane only.

use meta_config::{
    DEFAULT_HOST_SELECTION_MAX_ATTEMPTS, FaultAbort, FaultDelay, FaultError, FaultPolicy,
    PER_MILLION, RetryOn, RetryPolicy,
};

use crate::error::ConfigError;
use crate::view::View;

/// Name of the previous-hosts retry host predicate.
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
/// Filter name keying the fault config in `typed_per_filter_config`.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
const HTTP_FAULT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// An Envoy `RetryPolicy` restricted to the fields Aeraki's translation emits. Without the
/// previous-hosts predicate each retry is a single ordinary pick (it may hit a tried host).
pub(crate) fn retry_policy(rp: &View) -> Result<RetryPolicy, ConfigError> {
    rp.only(&[
        "retry_on",
        "num_retries",
        "per_try_timeout",
        "retry_host_predicate",
        "host_selection_retry_max_attempts",
    ])?;
    let retry_on =
        RetryOn::parse(&rp.str("retry_on")).map_err(|e| ConfigError::new(rp.at("retry_on"), e))?;
    let mut previous_hosts = false;
    for p in rp.list("retry_host_predicate") {
        p.only(&["name", "typed_config"])?;
        let name = p.str("name");
        if name != PREVIOUS_HOSTS {
            return Err(ConfigError::new(
                p.at("name"),
                format!("'{name}' not supported (only {PREVIOUS_HOSTS})"),
            ));
        }
        if let Some((url, v)) = p.any("typed_config")? {
            if url != PREVIOUS_HOSTS_TYPE {
                return Err(ConfigError::new(
                    p.at("typed_config"),
                    format!("'{url}' not supported (only {PREVIOUS_HOSTS_TYPE})"),
                ));
            }
            v.only(&[])?;
        }
        previous_hosts = true;
    }
    let host_selection_max_attempts = if previous_hosts {
        match rp.i64("host_selection_retry_max_attempts") {
            n if n <= 0 => DEFAULT_HOST_SELECTION_MAX_ATTEMPTS,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        }
    } else {
        1
    };
    Ok(RetryPolicy {
        // Envoy's default when unset.
        num_retries: rp.wrapped_u32("num_retries").unwrap_or(1),
        per_try_timeout: rp.duration("per_try_timeout")?.filter(|d| !d.is_zero()),
        retry_on,
        host_selection_max_attempts,
    })
}

/// The route's `typed_per_filter_config`: only the fault filter's HTTPFault is accepted.
pub(crate) fn fault(route: &View) -> Result<Option<FaultPolicy>, ConfigError> {
    let mut out = None;
    for (name, any) in route.map_msgs("typed_per_filter_config") {
        if name != FAULT_FILTER {
            return Err(ConfigError::new(
                any.path.clone(),
                format!("not supported (only {FAULT_FILTER})"),
            ));
        }
        let (url, f) = any.unpack()?;
        if url != HTTP_FAULT_TYPE {
            return Err(ConfigError::new(
                f.path.clone(),
                format!("'{url}' not supported (only {HTTP_FAULT_TYPE})"),
            ));
        }
        out = Some(http_fault(&f)?);
    }
    Ok(out)
}

fn http_fault(f: &View) -> Result<FaultPolicy, ConfigError> {
    f.only(&["delay", "abort"])?;
    let delay = match f.msg("delay") {
        None => None,
        Some(d) => {
            d.only(&["fixed_delay", "percentage"])?;
            let delay = d
                .duration("fixed_delay")?
                .ok_or_else(|| ConfigError::new(d.at("fixed_delay"), "required"))?;
            Some(FaultDelay {
                delay,
                per_million: percentage(&d)?,
            })
        }
    };
    let abort = match f.msg("abort") {
        None => None,
        Some(a) => {
            a.only(&["http_status", "percentage"])?;
            let code = a.u32("http_status");
            let error = FaultError::from_http_status(code).ok_or_else(|| {
                ConfigError::new(
                    a.at("http_status"),
                    format!(
                        "{code} not supported (503 unspecified, 429 over limit, 504 timeout, \
                         502 upstream reset, 404 route not found, 400 bad request)"
                    ),
                )
            })?;
            Some(FaultAbort {
                error,
                per_million: percentage(&a)?,
            })
        }
    };
    Ok(FaultPolicy { delay, abort })
}

/// A required `FractionalPercent` → parts per million (capped at 100 %).
fn percentage(v: &View) -> Result<u32, ConfigError> {
    let fp = v
        .msg("percentage")
        .ok_or_else(|| ConfigError::new(v.at("percentage"), "required"))?;
    fp.only(&["numerator", "denominator"])?;
    let scale: u64 = match fp.enum_num("denominator") {
        0 => 10_000, // HUNDRED
        1 => 100,    // TEN_THOUSAND
        _ => 1,      // MILLION
    };
    let ppm = u64::from(fp.u32("numerator")).saturating_mul(scale);
    Ok(u32::try_from(ppm.min(u64::from(PER_MILLION))).unwrap_or(PER_MILLION))
}
