//! Proto3 JSON rendering of a [`ResourceSet`] through the reflection pool of `meta-api`.

use aeraki_model::resources::ResourceSet;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

/// Renders every resource in proto3 JSON with the protos' snake_case field names (as Envoy's
/// config_dump), nested `Any`s expanded with their `@type`:
/// `{"<type url>": {"<resource name>": {…}}}`, keys sorted.
///
/// A resource whose type is missing from the pool or whose bytes do not decode is rendered as
/// `{"@error": "<reason>"}` rather than dropped, so a golden test shows it.
pub fn to_json(set: &ResourceSet) -> Value {
    let mut out = Map::new();
    for (type_url, resources) in &set.by_type {
        let mut by_name = Map::new();
        for (name, any) in resources {
            by_name.insert(name.clone(), any_to_json(&any.type_url, &any.value));
        }
        out.insert(type_url.clone(), Value::Object(by_name));
    }
    Value::Object(out)
}

/// One message of type `type_url` (`type.googleapis.com/<full name>`) in proto3 JSON.
pub(crate) fn any_to_json(type_url: &str, bytes: &[u8]) -> Value {
    match render(type_url, bytes) {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "@error": e }),
    }
}

fn render(type_url: &str, bytes: &[u8]) -> Result<Value, String> {
    let full_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let desc = meta_api::pb::pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("message type {full_name} is not in the descriptor pool"))?;
    let msg = DynamicMessage::decode(desc, bytes)
        .map_err(|e| format!("cannot decode {full_name}: {e}"))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("cannot render {full_name}: {e}"))
}
