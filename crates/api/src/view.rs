//! A read-only view of a `DynamicMessage` that knows its field path, so every accessor and
//! every refusal can name the exact field.

use std::borrow::Cow;
use std::time::Duration;

use prost_reflect::{DynamicMessage, ReflectMessage, Value};

use crate::error::{ConfigError, join};
use crate::json::{is_typed_struct_url, message_by_type_url, to_message};

/// A message and the path it was found at.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) msg: DynamicMessage,
    pub(crate) path: String,
}

impl View {
    pub(crate) fn new(msg: DynamicMessage, path: impl Into<String>) -> Self {
        Self {
            msg,
            path: path.into(),
        }
    }

    /// Path of field `f` of this message.
    pub(crate) fn at(&self, f: &str) -> String {
        join(&self.path, f)
    }

    /// Refuses the first field set (to a non-default value) that is not in `allowed`.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        for (field, _) in self.msg.fields() {
            if !allowed.contains(&field.name()) {
                return Err(ConfigError::unsupported(self.at(field.name())));
            }
        }
        Ok(())
    }

    pub(crate) fn has(&self, f: &str) -> bool {
        self.msg
            .descriptor()
            .get_field_by_name(f)
            .is_some_and(|fd| self.msg.has_field(&fd))
    }

    fn get(&self, f: &str) -> Option<Cow<'_, Value>> {
        self.msg.get_field_by_name(f)
    }

    pub(crate) fn str(&self, f: &str) -> String {
        self.get(f)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub(crate) fn u32(&self, f: &str) -> u32 {
        self.get(f).and_then(|v| v.as_u32()).unwrap_or_default()
    }

    pub(crate) fn i64(&self, f: &str) -> i64 {
        self.get(f).and_then(|v| v.as_i64()).unwrap_or_default()
    }

    pub(crate) fn bool(&self, f: &str) -> bool {
        self.get(f).and_then(|v| v.as_bool()).unwrap_or_default()
    }

    pub(crate) fn enum_num(&self, f: &str) -> i32 {
        self.get(f)
            .and_then(|v| v.as_enum_number())
            .unwrap_or_default()
    }

    /// The enum value's name, e.g. `ROUND_ROBIN`.
    pub(crate) fn enum_name(&self, f: &str) -> String {
        let n = self.enum_num(f);
        self.msg
            .descriptor()
            .get_field_by_name(f)
            .and_then(|fd| fd.kind().as_enum().cloned())
            .and_then(|e| e.get_value(n).map(|v| v.name().to_owned()))
            .unwrap_or_else(|| n.to_string())
    }

    /// A set message field.
    pub(crate) fn msg(&self, f: &str) -> Option<View> {
        if !self.has(f) {
            return None;
        }
        match self.get(f)?.as_ref() {
            Value::Message(m) => Some(View::new(m.clone(), self.at(f))),
            _ => None,
        }
    }

    /// A repeated message field.
    pub(crate) fn list(&self, f: &str) -> Vec<View> {
        let path = self.at(f);
        match self.get(f).as_deref() {
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.as_message()
                        .map(|m| View::new(m.clone(), format!("{path}[{i}]")))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A repeated string field.
    pub(crate) fn strs(&self, f: &str) -> Vec<String> {
        match self.get(f).as_deref() {
            Some(Value::List(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A `google.protobuf.Duration` field, if set.
    pub(crate) fn duration(&self, f: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(d) = self.msg(f) else {
            return Ok(None);
        };
        let (secs, nanos) = (d.i64("seconds"), d.get("nanos").and_then(|v| v.as_i32()));
        let nanos = nanos.unwrap_or_default();
        if secs < 0 || nanos < 0 {
            return Err(ConfigError::new(d.path, "must not be negative"));
        }
        Ok(Some(
            Duration::from_secs(secs.unsigned_abs())
                + Duration::from_nanos(nanos.unsigned_abs().into()),
        ))
    }

    /// A wrapper (`google.protobuf.UInt32Value`) field, if set.
    pub(crate) fn wrapped_u32(&self, f: &str) -> Option<u32> {
        self.msg(f).map(|w| w.u32("value"))
    }

    /// A wrapper (`google.protobuf.UInt64Value`) field, if set.
    pub(crate) fn wrapped_u64(&self, f: &str) -> Option<u64> {
        self.msg(f)
            .map(|w| w.get("value").and_then(|v| v.as_u64()).unwrap_or_default())
    }

    /// A `map<string, Message>` field as (key, view) pairs sorted by key; each view's path is
    /// `field[key]`.
    pub(crate) fn map_msgs(&self, f: &str) -> Vec<(String, View)> {
        let path = self.at(f);
        let mut out: Vec<(String, View)> = match self.get(f).as_deref() {
            Some(Value::Map(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    let k = k.as_str()?.to_owned();
                    let msg = v.as_message()?.clone();
                    let at = format!("{path}[{k}]");
                    Some((k, View::new(msg, at)))
                })
                .collect(),
            _ => Vec::new(),
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Unpacks a set `google.protobuf.Any` field into its message.
    pub(crate) fn any(&self, f: &str) -> Result<Option<(String, View)>, ConfigError> {
        let Some(any) = self.msg(f) else {
            return Ok(None);
        };
        any.unpack().map(Some)
    }

    /// Unpacks this `google.protobuf.Any` into its message.
    pub(crate) fn unpack(self) -> Result<(String, View), ConfigError> {
        let any = self;
        let url = any.str("type_url");
        let bytes = any
            .get("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        let desc = message_by_type_url(&url)
            .ok_or_else(|| ConfigError::new(any.path.clone(), format!("unknown type '{url}'")))?;
        let msg = DynamicMessage::decode(desc, bytes).map_err(|e| {
            ConfigError::new(any.path.clone(), format!("cannot decode '{url}': {e}"))
        })?;
        if is_typed_struct_url(&url) {
            // Bytes from a control plane: read the Struct as JSON into the message it names.
            let ts = View::new(msg, any.path);
            let inner_url = ts.str("type_url");
            let desc = message_by_type_url(&inner_url).ok_or_else(|| {
                ConfigError::new(ts.at("type_url"), format!("unknown type '{inner_url}'"))
            })?;
            let value = match ts.msg("value") {
                Some(s) => serde_json::to_value(&s.msg)
                    .map_err(|e| ConfigError::new(ts.at("value"), e.to_string()))?,
                None => serde_json::Value::Object(serde_json::Map::new()),
            };
            let inner = to_message(value, &desc, &ts.path)?;
            return Ok((inner_url, View::new(inner, ts.path)));
        }
        Ok((url, View::new(msg, any.path)))
    }
}
