//! Our MetaRoute extensions (Istio VirtualService style): `timeout`, `retries`, `fault`.
//! Contract with the data plane: docs/control-plane-config.md and docs/translation.md.

use std::time::Duration;

use aeraki_model::{AbortCode, Fault, FaultAbort, FaultDelay, RetryPolicy};

use crate::error::Diag;
use crate::types::aeraki as t;

/// The route timeout meta-proxy applies when a MetaRoute sets none (Envoy's route default).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// `retryOn` used when `retries` omits it: only failures where the upstream never processed
/// the request.
pub const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream";

const KNOWN_TOKENS: [&str; 6] = [
    "connect-failure",
    "refused-stream",
    "reset",
    "gateway-error",
    "5xx",
    "error-response",
];

fn known_tokens() -> String {
    let mut all: Vec<&str> = KNOWN_TOKENS.to_vec();
    all.push("status:<VALUE>");
    all.join(", ")
}

/// Validates `retryOn` (a comma list) and returns its tokens joined by commas, whitespace
/// around tokens removed.
fn retry_on(d: &mut Diag, p: &str, s: &str) -> String {
    let mut out = Vec::new();
    for raw in s.split(',') {
        let token = raw.trim();
        if token.is_empty() {
            d.err(p, format!("empty token in {s:?}"));
            continue;
        }
        let ok = KNOWN_TOKENS.contains(&token)
            || token
                .strip_prefix("status:")
                .is_some_and(|v| !v.is_empty() && !v.contains(char::is_whitespace));
        if !ok {
            d.err(
                p,
                format!("unknown token '{token}' (known: {})", known_tokens()),
            );
            continue;
        }
        out.push(token);
    }
    out.join(",")
}

/// `retries` of route `p` (`spec.routes[i]`); `timeout` is the route's own timeout.
pub fn retries(
    d: &mut Diag,
    p: &str,
    r: &t::Retries,
    timeout: Option<Duration>,
) -> Option<RetryPolicy> {
    let p = format!("{p}.retries");
    let attempts = match r.attempts {
        None => {
            d.err(format!("{p}.attempts"), "required (0 disables retries)");
            0
        }
        Some(n) => match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                d.err(
                    format!("{p}.attempts"),
                    format!("{n} must be between 0 and {}", u32::MAX),
                );
                0
            }
        },
    };
    if let Some(ptt) = r.per_try_timeout {
        let effective = timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
        if ptt.is_zero() {
            d.err(format!("{p}.perTryTimeout"), "must be greater than 0");
        } else if !effective.is_zero() && ptt > effective {
            d.err(
                format!("{p}.perTryTimeout"),
                format!(
                    "{ptt:?} is longer than the route timeout {effective:?}{}",
                    if timeout.is_none() { " (default)" } else { "" }
                ),
            );
        }
    }
    let retry_on = match &r.retry_on {
        Some(s) => retry_on(d, &format!("{p}.retryOn"), s),
        None => DEFAULT_RETRY_ON.to_owned(),
    };
    (attempts > 0).then_some(RetryPolicy {
        attempts,
        per_try_timeout: r.per_try_timeout,
        retry_on,
    })
}

/// A fault percentage in [0, 100]; absent means 100, `{}` means 0 (proto3 default).
fn percentage(d: &mut Diag, p: &str, pct: Option<&t::Percent>) -> f64 {
    let Some(pct) = pct else {
        return 100.0;
    };
    let v = pct.value.unwrap_or(0.0);
    if !(0.0..=100.0).contains(&v) {
        d.err(format!("{p}.value"), format!("{v} must be in [0, 100]"));
        return 0.0;
    }
    v
}

/// `fault` of route `p`.
pub fn fault(d: &mut Diag, p: &str, f: &t::Fault) -> Fault {
    let p = format!("{p}.fault");
    if f.delay.is_none() && f.abort.is_none() {
        d.err(&p, "a delay or an abort is required");
    }
    let delay = f.delay.as_ref().map(|dl| {
        let fixed_delay = match dl.fixed_delay {
            Some(x) if !x.is_zero() => x,
            Some(_) => {
                d.err(format!("{p}.delay.fixedDelay"), "must be greater than 0");
                Duration::ZERO
            }
            None => {
                d.err(format!("{p}.delay.fixedDelay"), "required");
                Duration::ZERO
            }
        };
        FaultDelay {
            fixed_delay,
            percentage: percentage(d, &format!("{p}.delay.percentage"), dl.percentage.as_ref()),
        }
    });
    let abort = f.abort.as_ref().map(|ab| {
        let error_code = match ab.error_code.as_deref() {
            None => AbortCode::Unspecified,
            Some(name) => match AbortCode::ALL.iter().find(|(_, n)| *n == name) {
                Some((code, _)) => *code,
                None => {
                    let known: Vec<&str> = AbortCode::ALL.iter().map(|(_, n)| *n).collect();
                    d.err(
                        format!("{p}.abort.errorCode"),
                        format!("unknown error code {name:?} (known: {})", known.join(", ")),
                    );
                    AbortCode::Unspecified
                }
            },
        };
        FaultAbort {
            percentage: percentage(d, &format!("{p}.abort.percentage"), ab.percentage.as_ref()),
            error_code,
        }
    });
    Fault { delay, abort }
}
