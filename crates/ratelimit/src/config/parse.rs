//! YAML text → validated [`Level`] trees, with every error naming its source and field path.

use serde_json::{Map, Value};

use super::ConfigError;
use super::tree::{Level, Limit, Node, Unit};

/// Fields of envoyproxy/ratelimit's format that this service does not implement: refused with
/// their path rather than ignored.
const UNSUPPORTED: &[&str] = &[
    "quota_mode",
    "replaces",
    "value_to_metric",
    "share_threshold",
    "metadata",
];

/// Splits `text` into its YAML documents and parses each. A ConfigMap document contributes
/// every entry of its `data` as a config text of its own (source `name data[key]`).
pub(super) fn documents(
    name: &str,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, Value)> {
    let chunks = split_documents(text);
    let many = chunks.len() > 1;
    let mut out = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let source = if many {
            format!("{name} document {}", i + 1)
        } else {
            name.to_string()
        };
        let value = match parse_yaml(chunk) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(err(&source, "", format!("invalid YAML: {e}")));
                continue;
            }
        };
        match value.get("kind").and_then(Value::as_str) {
            Some("ConfigMap") => config_map(&source, &value, errors, &mut out),
            Some(kind) => errors.push(err(
                &source,
                "kind",
                format!("a Kubernetes {kind} is not a rate-limit config (only a ConfigMap's data is read)"),
            )),
            None => out.push((source, value)),
        }
    }
    out
}

fn config_map(
    source: &str,
    value: &Value,
    errors: &mut Vec<ConfigError>,
    out: &mut Vec<(String, Value)>,
) {
    if value.get("binaryData").is_some_and(|b| !b.is_null()) {
        errors.push(err(
            source,
            "binaryData",
            "binary ConfigMap data is not supported".into(),
        ));
    }
    let Some(data) = value.get("data").and_then(Value::as_object) else {
        errors.push(err(
            source,
            "data",
            "a ConfigMap needs a `data` mapping holding the config".into(),
        ));
        return;
    };
    for (key, text) in data {
        let Some(text) = text.as_str() else {
            errors.push(err(
                source,
                &format!("data[{key}]"),
                "must be a string".into(),
            ));
            continue;
        };
        out.extend(documents(&format!("{source} data[{key}]"), text, errors));
    }
}

/// Splits at lines that are exactly `---` (optionally followed by a comment), dropping
/// documents that hold only blank lines and comments.
fn split_documents(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let is_separator = line.strip_prefix("---").is_some_and(|rest| {
            let rest = rest.trim();
            rest.is_empty() || rest.starts_with('#')
        });
        if is_separator {
            out.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    out.push(&text[start..]);
    out.retain(|chunk| {
        chunk.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        })
    });
    out
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut opts = serde_saphyr::Options::default();
    opts.strict_booleans = true;
    opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options::<Value>(text, opts)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

fn err(source: &str, path: &str, message: String) -> ConfigError {
    ConfigError {
        source: source.to_string(),
        path: path.to_string(),
        message,
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks that `value` is a mapping whose keys are all in `allowed`.
fn mapping<'v>(
    source: &str,
    path: &str,
    value: &'v Value,
    allowed: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<&'v Map<String, Value>> {
    let Some(map) = value.as_object() else {
        errors.push(err(
            source,
            path,
            format!("must be a mapping, found {}", kind_of(value)),
        ));
        return None;
    };
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let message = if UNSUPPORTED.contains(&key.as_str()) {
            format!("`{key}` is not supported by this rate-limit service")
        } else {
            format!(
                "unknown field `{key}` (expected one of: {})",
                allowed.join(", ")
            )
        };
        errors.push(err(source, &join(path, key), message));
    }
    Some(map)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A scalar read as text (YAML `value: 200` is the string "200", as in the Go service).
fn scalar(source: &str, path: &str, v: &Value, errors: &mut Vec<ConfigError>) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            errors.push(err(
                source,
                path,
                format!("must be a string, found {}", kind_of(other)),
            ));
            None
        }
    }
}

fn boolean(source: &str, path: &str, v: Option<&Value>, errors: &mut Vec<ConfigError>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(err(
                source,
                path,
                format!("must be true or false, found {}", kind_of(other)),
            ));
            false
        }
    }
}

/// Reads one config document: its domain name and descriptor tree.
pub(super) fn domain(
    source: &str,
    doc: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<(String, Level)> {
    let before = errors.len();
    let map = mapping(source, "", doc, &["domain", "descriptors"], errors)?;
    let domain = match map.get("domain") {
        None | Some(Value::Null) => {
            errors.push(err(source, "domain", "is required".into()));
            None
        }
        Some(v) => match scalar(source, "domain", v, errors) {
            Some(d) if d.is_empty() => {
                errors.push(err(source, "domain", "must not be empty".into()));
                None
            }
            other => other,
        },
    };
    let name = domain.clone().unwrap_or_default();
    let root = descriptors(source, "", &name, map.get("descriptors"), errors);
    (errors.len() == before).then_some((domain?, root))
}

fn descriptors(
    source: &str,
    parent_path: &str,
    parent_key: &str,
    value: Option<&Value>,
    errors: &mut Vec<ConfigError>,
) -> Level {
    let mut level = Level::default();
    let list_path = join(parent_path, "descriptors");
    let items = match value {
        None | Some(Value::Null) => return level,
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(err(
                source,
                &list_path,
                format!("must be a list, found {}", kind_of(other)),
            ));
            return level;
        }
    };
    let mut first_at: std::collections::HashMap<String, usize> = Default::default();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{list_path}[{i}]");
        let allowed = [
            "key",
            "value",
            "rate_limit",
            "descriptors",
            "shadow_mode",
            "detailed_metric",
        ];
        let Some(map) = mapping(source, &path, item, &allowed, errors) else {
            continue;
        };
        let key = match map.get("key") {
            None | Some(Value::Null) => {
                errors.push(err(source, &join(&path, "key"), "is required".into()));
                None
            }
            Some(v) => scalar(source, &join(&path, "key"), v, errors).filter(|k| {
                let ok = !k.is_empty();
                if !ok {
                    errors.push(err(source, &join(&path, "key"), "must not be empty".into()));
                }
                ok
            }),
        };
        let value = match map.get("value") {
            None | Some(Value::Null) => Some(String::new()),
            Some(v) => scalar(source, &join(&path, "value"), v, errors),
        };
        let (Some(key), Some(value)) = (key, value) else {
            continue;
        };
        let composite = if value.is_empty() {
            key.clone()
        } else {
            format!("{key}_{value}")
        };
        let full_key = format!("{parent_key}.{composite}");
        if let Some(first) = first_at.get(&composite) {
            errors.push(err(
                source,
                &path,
                format!("duplicate descriptor `{full_key}` (also at {list_path}[{first}])"),
            ));
            continue;
        }
        first_at.insert(composite.clone(), i);
        let shadow_mode = boolean(
            source,
            &join(&path, "shadow_mode"),
            map.get("shadow_mode"),
            errors,
        );
        let detailed_metric = boolean(
            source,
            &join(&path, "detailed_metric"),
            map.get("detailed_metric"),
            errors,
        );
        let limit = match map.get("rate_limit") {
            None | Some(Value::Null) => None,
            Some(v) => rate_limit(source, &join(&path, "rate_limit"), v, errors).map(|mut l| {
                l.full_key = full_key.clone();
                l.shadow_mode = shadow_mode;
                l.detailed_metric = detailed_metric;
                l
            }),
        };
        let children = descriptors(source, &path, &full_key, map.get("descriptors"), errors);
        if composite.contains('*') {
            let parts = composite.split('*').map(str::to_string).collect();
            level.wildcards.push((composite.clone(), parts));
        }
        level.nodes.insert(composite, Node { limit, children });
    }
    level
}

fn rate_limit(
    source: &str,
    path: &str,
    value: &Value,
    errors: &mut Vec<ConfigError>,
) -> Option<Limit> {
    let allowed = ["unit", "requests_per_unit", "name", "unlimited"];
    let map = mapping(source, path, value, &allowed, errors)?;
    let before = errors.len();
    let unlimited = boolean(
        source,
        &join(path, "unlimited"),
        map.get("unlimited"),
        errors,
    );
    let unit_path = join(path, "unit");
    let unit = match map.get("unit") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let text = scalar(source, &unit_path, v, errors)?;
            match Unit::parse(&text) {
                Some(u) => Some(u),
                None => {
                    errors.push(err(
                        source,
                        &unit_path,
                        format!("invalid unit '{text}' (expected second, minute, hour or day)"),
                    ));
                    return None;
                }
            }
        }
    };
    let rpu_path = join(path, "requests_per_unit");
    let requests_per_unit = match map.get("requests_per_unit") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                errors.push(err(
                    source,
                    &rpu_path,
                    format!("must be an integer from 0 to {}", u32::MAX),
                ));
                return None;
            }
        },
    };
    if unlimited {
        if unit.is_some() {
            errors.push(err(
                source,
                &unit_path,
                "must not be set when `unlimited` is true".into(),
            ));
        }
    } else {
        if unit.is_none() {
            errors.push(err(
                source,
                &unit_path,
                "is required (second, minute, hour or day)".into(),
            ));
        }
        if requests_per_unit.is_none() {
            errors.push(err(source, &rpu_path, "is required".into()));
        }
    }
    let name = match map.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(v) => scalar(source, &join(path, "name"), v, errors)?,
    };
    (errors.len() == before).then(|| Limit {
        full_key: String::new(),
        requests_per_unit: requests_per_unit.unwrap_or(0),
        unit,
        name,
        unlimited,
        shadow_mode: false,
        detailed_metric: false,
    })
}
