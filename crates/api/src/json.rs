//! Text → `DynamicMessage`: YAML/JSON parsing, Envoy's leniencies, strict field checking.
//!
//! The document is first walked against the message descriptors so that unknown fields and
//! unknown `@type`s are reported with their full path, a single object standing where a list
//! is expected is wrapped in a list (as Envoy accepts), and `TypedStruct` wrappers are unwrapped
//! into the `@type` they name. prost-reflect then reads the proto3 JSON mapping.

use prost_reflect::{DeserializeOptions, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::error::{ConfigError, join};
use crate::pb::pool;

/// Input syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (a superset of JSON in practice).
    Yaml,
    /// JSON.
    Json,
}

const TYPED_STRUCTS: &[&str] = &["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];

/// Parses `text` into a JSON value.
pub(crate) fn parse_text(text: &str, format: Format) -> Result<Value, ConfigError> {
    match format {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}"))),
        Format::Yaml => parse_yaml(text),
    }
}

/// YAML → JSON value. Booleans are YAML 1.2's (`n`, `no`, `on` stay strings: cluster names can
/// be anything). A key repeated in one mapping is refused, unless every repetition has the same
/// value (Envoy's YAML reader accepts those, and Aeraki's own tRPC test has one).
fn parse_yaml(text: &str) -> Result<Value, ConfigError> {
    let with = |dups| {
        let mut opts = serde_saphyr::Options::default();
        opts.strict_booleans = true;
        opts.duplicate_keys = dups;
        serde_saphyr::from_str_with_options::<Value>(text, opts)
    };
    use serde_saphyr::DuplicateKeyPolicy as Dup;
    match with(Dup::Error) {
        Ok(v) => Ok(v),
        Err(e) => match (with(Dup::FirstWins), with(Dup::LastWins)) {
            (Ok(first), Ok(last)) if first == last => Ok(first),
            _ => Err(ConfigError::new("", format!("invalid YAML: {e}"))),
        },
    }
}

/// Reads `value` as the message `desc` (full name), after normalising it.
pub(crate) fn to_message(
    mut value: Value,
    desc: &MessageDescriptor,
    path: &str,
) -> Result<DynamicMessage, ConfigError> {
    normalise(&mut value, desc, path)?;
    let opts = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc.clone(), de, &opts).map_err(|e| {
        let at = track.path().to_string();
        let full = if at == "?" || at == "." {
            path.to_owned()
        } else {
            join(path, &at)
        };
        ConfigError::new(full, e.to_string())
    })
}

/// Looks a message up by full name or type URL.
pub(crate) fn message_by_type_url(url: &str) -> Option<MessageDescriptor> {
    let name = url.rsplit('/').next().unwrap_or(url);
    pool().get_message_by_name(name)
}

fn normalise(value: &mut Value, desc: &MessageDescriptor, path: &str) -> Result<(), ConfigError> {
    let full = desc.full_name();
    if full == "google.protobuf.Any" {
        return normalise_any(value, path);
    }
    if full.starts_with("google.protobuf.") {
        return Ok(()); // well-known types have their own JSON forms
    }
    let Value::Object(obj) = value else {
        return Ok(()); // type errors are reported by the deserializer
    };
    // Keys are renamed to the proto field names, so every later error path reads the same
    // whichever spelling the document used.
    let mut renamed = Map::new();
    for (key, mut v) in std::mem::take(obj) {
        let Some(field) = desc
            .get_field_by_name(&key)
            .or_else(|| desc.get_field_by_json_name(&key))
        else {
            return Err(ConfigError::new(join(path, &key), "unknown field"));
        };
        let field_path = join(path, field.name());
        if renamed.contains_key(field.name()) {
            return Err(ConfigError::new(
                field_path,
                "set twice (snake_case and lowerCamelCase)",
            ));
        }
        normalise_field(&mut v, &field, &field_path)?;
        renamed.insert(field.name().to_owned(), v);
    }
    *obj = renamed;
    Ok(())
}

fn normalise_field(
    v: &mut Value,
    field: &prost_reflect::FieldDescriptor,
    field_path: &str,
) -> Result<(), ConfigError> {
    if field.is_map() {
        if let (Kind::Message(entry), Value::Object(m)) = (field.kind(), &mut *v)
            && let Some(vf) = entry.get_field_by_name("value")
            && let Kind::Message(vd) = vf.kind()
        {
            for (k, item) in m.iter_mut() {
                normalise(item, &vd, &join(field_path, k))?;
            }
        }
        return Ok(());
    }
    if field.is_list() && v.is_object() {
        let single = std::mem::take(v);
        *v = Value::Array(vec![single]);
    }
    let Kind::Message(md) = field.kind() else {
        return Ok(());
    };
    match v {
        Value::Array(items) if field.is_list() => {
            for (i, item) in items.iter_mut().enumerate() {
                normalise(item, &md, &format!("{field_path}[{i}]"))?;
            }
        }
        other => normalise(other, &md, field_path)?,
    }
    Ok(())
}

fn normalise_any(value: &mut Value, path: &str) -> Result<(), ConfigError> {
    let Value::Object(obj) = value else {
        return Ok(());
    };
    let type_path = join(path, "@type");
    let Some(url) = obj.get("@type").and_then(Value::as_str).map(str::to_owned) else {
        return Err(ConfigError::new(type_path, "missing"));
    };
    if is_typed_struct_url(&url) {
        return unwrap_typed_struct(value, path);
    }
    let Some(desc) = message_by_type_url(&url) else {
        return Err(ConfigError::new(type_path, format!("unknown type '{url}'")));
    };
    if desc.full_name().starts_with("google.protobuf.") {
        return Ok(());
    }
    let mut rest: Map<String, Value> = std::mem::take(obj);
    rest.remove("@type");
    let mut inner = Value::Object(rest);
    normalise(&mut inner, &desc, path)?;
    if let Value::Object(mut m) = inner {
        m.insert("@type".into(), Value::String(url));
        *value = Value::Object(m);
    }
    Ok(())
}

pub(crate) fn is_typed_struct_url(url: &str) -> bool {
    let name = url.rsplit('/').next().unwrap_or(url);
    TYPED_STRUCTS.contains(&name)
}

/// `{"@type": ".../TypedStruct", "type_url": U, "value": {...}}` → `{"@type": U, ...}`.
fn unwrap_typed_struct(value: &mut Value, path: &str) -> Result<(), ConfigError> {
    let Value::Object(obj) = value else {
        return Ok(());
    };
    let url = obj
        .get("type_url")
        .or_else(|| obj.get("typeUrl"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::new(join(path, "type_url"), "missing"))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "@type" | "type_url" | "typeUrl" | "value") {
            return Err(ConfigError::new(join(path, key), "unknown field"));
        }
    }
    let mut inner = match obj.remove("value") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ConfigError::new(join(path, "value"), "must be an object")),
    };
    inner.insert("@type".into(), Value::String(url));
    *value = Value::Object(inner);
    if is_typed_struct_url(value["@type"].as_str().unwrap_or_default()) {
        return Err(ConfigError::new(
            join(path, "type_url"),
            "nested TypedStruct",
        ));
    }
    normalise_any(value, path)
}
