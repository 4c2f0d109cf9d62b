//! proto3-JSON leniencies for YAML scalars: integers written as strings, durations as
//! `"1s"`/`"500ms"`/`"1m30s"`.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error};
use serde_json::Value;

/// Parses a duration: a sequence of `<number><unit>` with units `h`, `m`, `s`, `ms`, `us`
/// (or `µs`), `ns`; proto3 JSON's `"1.5s"` is one such case.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. \"1s\", \"500ms\", \"1m30s\")");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// `Option<Duration>` from a string (or `{seconds, nanos}` as the proto object form).
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(&s).map(Some).map_err(D::Error::custom),
        Some(Value::Object(m)) => {
            let mut secs = 0u64;
            let mut nanos = 0u32;
            for (k, v) in m {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| D::Error::custom(format!("invalid duration field {k}")))?;
                match k.as_str() {
                    "seconds" => secs = n,
                    "nanos" => {
                        nanos = u32::try_from(n)
                            .ok()
                            .filter(|n| *n < 1_000_000_000)
                            .ok_or_else(|| D::Error::custom("duration nanos out of range"))?
                    }
                    other => {
                        return Err(D::Error::custom(format!(
                            "unknown duration field `{other}` (expected seconds, nanos)"
                        )));
                    }
                }
            }
            Ok(Some(Duration::new(secs, nanos)))
        }
        Some(other) => Err(D::Error::custom(format!(
            "invalid duration {other} (expected a string such as \"1s\")"
        ))),
    }
}

fn int_from(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn ranged<E: Error, T: TryFrom<i64>>(v: &Value, what: &str) -> Result<T, E> {
    let n = int_from(v)
        .ok_or_else(|| E::custom(format!("invalid {what} {v} (expected an integer)")))?;
    T::try_from(n).map_err(|_| E::custom(format!("{n} is out of range for {what}")))
}

/// `Option<u32>` from a number or a numeric string (`null` → `None`).
pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => ranged(&v, "an unsigned 32-bit integer").map(Some),
    }
}

/// `u32` from a number or a numeric string.
pub fn u32_<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(opt_u32(d)?.unwrap_or(0))
}

/// `Option<i64>` from a number or a numeric string; range checks are left to validation so
/// that the message can name the allowed range.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => ranged(&v, "an integer").map(Some),
    }
}

/// `i64` from a number or numeric string (absent → 0).
pub fn i64_<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_i64(d)?.unwrap_or(0))
}

/// `Option<f64>` from a number or a numeric string.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("invalid number {s:?}"))),
        Some(other) => Err(D::Error::custom(format!("invalid number {other}"))),
    }
}

/// `bool` from a boolean or `"true"`/`"false"`.
pub fn bool_<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(D::Error::custom(format!("invalid boolean {other}"))),
    }
}

/// A string-or-integer (Kubernetes `IntOrString`, e.g. `targetPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_i64()
                .map(IntOrString::Int)
                .ok_or_else(|| D::Error::custom(format!("invalid port {n}"))),
            Value::String(s) => Ok(match s.parse() {
                Ok(n) => IntOrString::Int(n),
                Err(_) => IntOrString::Str(s),
            }),
            other => Err(D::Error::custom(format!(
                "invalid value {other} (expected an integer or a string)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "10", "1x", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
