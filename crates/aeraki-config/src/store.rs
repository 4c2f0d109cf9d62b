//! Loading documents into a [`Store`]: every managed object keyed by kind/namespace/name,
//! with the file and document it came from. Kinds we do not manage are counted and skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrors, Origin};
use crate::types::{Body, ObjectMeta};

/// One managed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub origin: Origin,
    /// Namespace with the default applied (`default`; empty for cluster-scoped kinds).
    pub namespace: String,
    pub meta: ObjectMeta,
    pub body: Body,
}

impl Object {
    /// `Kind ns/name` (or `Kind name` when cluster-scoped).
    pub fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.body.kind(), self.meta.name)
        } else {
            format!("{} {}/{}", self.body.kind(), self.namespace, self.meta.name)
        }
    }
}

/// Counts of what was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files read.
    pub files: usize,
    /// Managed objects per kind.
    pub kinds: BTreeMap<String, usize>,
    /// Skipped (unmanaged) objects per `apiVersion/kind`.
    pub skipped: BTreeMap<String, usize>,
}

/// Every managed object, keyed by (kind, namespace, name): iteration is sorted, so lookups
/// that take "the first" are deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    pub objects: BTreeMap<(String, String, String), Object>,
    pub stats: Stats,
    /// Namespace of objects that name none (`kubectl apply -n`); `default` when empty.
    pub default_namespace: String,
}

/// Istio networking kinds we manage, in every served version.
const ISTIO_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];

impl Store {
    /// Objects of one kind, sorted by namespace then name.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects
            .range((kind.to_owned(), String::new(), String::new())..)
            .take_while(move |((k, _, _), _)| k == kind)
            .map(|(_, o)| o)
    }

    /// Parses one file's text (YAML, multi-document; or JSON when `file` ends in `.json`)
    /// and adds its objects. Errors are appended to `errors`. Each YAML document is parsed
    /// on its own, so a syntax error names its document and does not hide the others.
    pub fn add_text(&mut self, file: &Path, text: &str, errors: &mut Vec<ConfigError>) {
        self.stats.files += 1;
        let is_json = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_json {
            match serde_json::from_str::<Value>(text) {
                Ok(v) => self.add_value(Origin::new(file, 1), v, errors),
                Err(e) => errors.push(ConfigError {
                    origin: Some(Origin::new(file, 1)),
                    object: None,
                    path: String::new(),
                    message: format!("invalid JSON: {e}"),
                }),
            }
            return;
        }
        for (i, (first_line, chunk)) in split_documents(text).into_iter().enumerate() {
            let origin = Origin::new(file, i + 1);
            match parse_yaml(chunk, first_line) {
                Ok(v) => self.add_value(origin, v, errors),
                Err((message, lenient)) => {
                    // A duplicate key in a kind we do not manage (Aeraki's own CRD file has
                    // one) is not our business: parse it leniently and let it be skipped.
                    let skip = lenient.as_ref().is_some_and(|v| {
                        let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
                        !api.is_empty() && !kind.is_empty() && !is_managed(api, kind)
                    });
                    match lenient {
                        Some(v) if skip => self.add_value(origin, v, errors),
                        _ => errors.push(ConfigError {
                            origin: Some(origin),
                            object: None,
                            path: String::new(),
                            message: format!("invalid YAML: {message}"),
                        }),
                    }
                }
            }
        }
    }

    /// Adds one document (a Kubernetes `List` adds each item).
    pub fn add_value(&mut self, origin: Origin, doc: Value, errors: &mut Vec<ConfigError>) {
        let err = |path: &str, message: String| ConfigError {
            origin: Some(origin.clone()),
            object: None,
            path: path.to_owned(),
            message,
        };
        let map = match doc {
            Value::Null => return,
            Value::Object(m) => m,
            other => {
                errors.push(err(
                    "",
                    format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        kind_of(&other)
                    ),
                ));
                return;
            }
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version.is_empty() && kind.is_empty() {
            // Not a Kubernetes object (e.g. a rate-limit server's own config file).
            tracing::debug!(%origin, "skipping a document that is not a Kubernetes object");
            *self
                .stats
                .skipped
                .entry("(not a Kubernetes object)".into())
                .or_default() += 1;
            return;
        }
        if api_version.is_empty() || kind.is_empty() {
            let field = if api_version.is_empty() {
                "apiVersion"
            } else {
                "kind"
            };
            errors.push(err(field, "required".to_owned()));
            return;
        }
        if api_version == "v1" && kind == "List" {
            let items = map
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                let mut o = origin.clone();
                o.item = Some(j);
                self.add_value(o, item, errors);
            }
            return;
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let managed = is_managed(api_version, kind);
        if managed {
            match (group, kind) {
                (
                    "networking.istio.io",
                    "ServiceEntry" | "DestinationRule" | "VirtualService" | "WorkloadEntry",
                ) if !ISTIO_VERSIONS.contains(&version) => {
                    errors.push(err(
                        "apiVersion",
                        format!("unsupported version {api_version:?} for {kind} (expected v1alpha3, v1beta1 or v1)"),
                    ));
                    return;
                }
                ("metaprotocol.aeraki.io", "MetaRouter" | "ApplicationProtocol")
                | ("redis.aeraki.io", "RedisService" | "RedisDestination")
                | ("dubbo.aeraki.io", "DubboAuthorizationPolicy")
                    if version != "v1alpha1" =>
                {
                    errors.push(err(
                        "apiVersion",
                        format!("unsupported version {api_version:?} for {kind} (expected {group}/v1alpha1)"),
                    ));
                    return;
                }
                _ => {}
            }
        }
        if !managed {
            tracing::debug!(%origin, api_version, kind, "skipping a kind we do not manage");
            *self
                .stats
                .skipped
                .entry(format!("{api_version}/{kind}"))
                .or_default() += 1;
            return;
        }

        let meta: ObjectMeta = match decode(
            map.get("metadata").cloned().unwrap_or(Value::Null),
            "metadata",
        ) {
            Ok(m) => m,
            Err((path, msg)) => {
                errors.push(err(&path, msg));
                return;
            }
        };
        let namespace = if kind == "ApplicationProtocol" {
            String::new()
        } else {
            meta.namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| {
                    if self.default_namespace.is_empty() {
                        "default".into()
                    } else {
                        self.default_namespace.clone()
                    }
                })
        };
        let object = match (meta.name.is_empty(), namespace.is_empty()) {
            (true, _) => None,
            (false, true) => Some(format!("{kind} {}", meta.name)),
            (false, false) => Some(format!("{kind} {namespace}/{}", meta.name)),
        };
        let mut local: Vec<ConfigError> = Vec::new();
        let mut push = |path: String, message: String| {
            local.push(ConfigError {
                origin: Some(origin.clone()),
                object: object.clone(),
                path,
                message,
            })
        };
        if meta.name.is_empty() {
            push("metadata.name".into(), "required".into());
        }
        let crd = !matches!(kind, "Service" | "EndpointSlice");
        if crd {
            for key in map.keys() {
                if !matches!(
                    key.as_str(),
                    "apiVersion" | "kind" | "metadata" | "spec" | "status"
                ) {
                    push(key.clone(), format!("unknown field `{key}`"));
                }
            }
        }
        let spec = || map.get("spec").cloned().unwrap_or(Value::Null);
        let body = match kind {
            "ServiceEntry" => decode(spec(), "spec").map(Body::ServiceEntry),
            "DestinationRule" => decode(spec(), "spec").map(Body::DestinationRule),
            "VirtualService" => decode(spec(), "spec").map(Body::VirtualService),
            "WorkloadEntry" => decode(spec(), "spec").map(Body::WorkloadEntry),
            "MetaRouter" => decode(spec(), "spec").map(Body::MetaRouter),
            "ApplicationProtocol" => decode(spec(), "spec").map(Body::ApplicationProtocol),
            "RedisService" => decode(spec(), "spec").map(Body::RedisService),
            "RedisDestination" => decode(spec(), "spec").map(Body::RedisDestination),
            "DubboAuthorizationPolicy" => {
                decode(spec(), "spec").map(Body::DubboAuthorizationPolicy)
            }
            "Service" => decode(spec(), "spec").map(Body::Service),
            _ => decode(Value::Object(map.clone()), "").map(Body::EndpointSlice),
        };
        let body = match body {
            Ok(b) => b,
            Err((path, msg)) => {
                push(path, msg);
                errors.append(&mut local);
                return;
            }
        };
        if !local.is_empty() {
            errors.append(&mut local);
            return;
        }
        let key = (kind.to_owned(), namespace.clone(), meta.name.clone());
        if let Some(first) = self.objects.get(&key) {
            let obj = Object {
                origin: origin.clone(),
                namespace,
                meta,
                body,
            };
            errors.push(ConfigError {
                origin: Some(origin.clone()),
                object: Some(obj.describe()),
                path: "metadata.name".into(),
                message: format!("duplicate object: {} already defines it", first.origin),
            });
            return;
        }
        *self.stats.kinds.entry(kind.to_owned()).or_default() += 1;
        self.objects.insert(
            key,
            Object {
                origin,
                namespace,
                meta,
                body,
            },
        );
    }
}

/// Whether we manage `apiVersion`/`kind` (any version of a managed group; a wrong version
/// is then refused with a precise message).
pub fn is_managed(api_version: &str, kind: &str) -> bool {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    matches!(
        (group, kind),
        (
            "networking.istio.io",
            "ServiceEntry" | "DestinationRule" | "VirtualService" | "WorkloadEntry"
        ) | (
            "metaprotocol.aeraki.io",
            "MetaRouter" | "ApplicationProtocol"
        ) | ("redis.aeraki.io", "RedisService" | "RedisDestination")
            | ("dubbo.aeraki.io", "DubboAuthorizationPolicy")
    ) || (group.is_empty() && version == "v1" && kind == "Service")
        || (group == "discovery.k8s.io" && version == "v1" && kind == "EndpointSlice")
}

/// Splits YAML text into documents at `---` lines, returning each with its first line
/// number (1-based). Documents holding only comments and blank lines are dropped.
pub fn split_documents<'a>(text: &'a str) -> Vec<(usize, &'a str)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let push = |from: usize, to: usize, line: usize, out: &mut Vec<(usize, &'a str)>| {
        let chunk = &text[from..to];
        let meaningful = chunk.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        });
        if meaningful {
            out.push((line, chunk));
        }
    };
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let rest = line.strip_prefix("---");
        let separator = rest.is_some_and(|r| {
            let r = r.trim();
            r.is_empty() || r.starts_with('#')
        });
        if separator {
            push(start, offset, start_line, &mut out);
            start = offset + line.len();
            start_line = n + 2;
        }
        offset += line.len();
    }
    push(start, text.len(), start_line, &mut out);
    out
}

/// Parses one YAML document strictly (duplicate keys are errors). On failure returns the
/// message (line numbers made file-absolute) and, when the document is otherwise readable
/// (duplicate keys), its lenient parse.
fn parse_yaml(chunk: &str, first_line: usize) -> Result<Value, (String, Option<Value>)> {
    match serde_saphyr::from_str::<Value>(chunk) {
        Ok(v) => Ok(v),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            let msg = shift_lines(msg, first_line - 1);
            let lenient = if msg.contains("duplicate mapping key") {
                let mut opts = serde_saphyr::options::Options::default();
                opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
                serde_saphyr::from_str_with_options::<Value>(chunk, opts).ok()
            } else {
                None
            };
            Err((msg, lenient))
        }
    }
}

/// Adds `by` to every `line N` in a message.
fn shift_lines(msg: &str, by: usize) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Deserialises `v` (Null → an empty mapping) into `T`, turning serde's error into
/// (`prefix.path`, message).
fn decode<T: DeserializeOwned>(v: Value, prefix: &str) -> Result<T, (String, String)> {
    let v = if v.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        v
    };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (_, ".") => prefix.to_owned(),
            (true, p) => p.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        (path, e.into_inner().to_string())
    })
}

/// Files under `dir` (recursively) with extension yaml, yml or json, sorted; hidden files
/// and directories (names starting with `.`) are skipped, as editors write temporaries there.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
                stack.push(path);
            } else if is_config_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a path names a config file (`*.yaml`, `*.yml`, `*.json`).
pub fn is_config_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

/// Loads every config file under `dir` into a store. Documents that fail to parse are
/// reported in the returned errors; the others are in the store (so that validation can
/// report their problems in the same pass).
pub fn load_store(dir: &Path) -> Result<(Store, Vec<ConfigError>), ConfigErrors> {
    let files = config_files(dir).map_err(|e| {
        ConfigErrors::single(format!("{}: cannot read directory: {e}", dir.display()))
    })?;
    let mut store = Store::default();
    let mut errors = Vec::new();
    for file in files {
        let shown = file.strip_prefix(dir).unwrap_or(&file).to_path_buf();
        match std::fs::read_to_string(&file) {
            Ok(text) => store.add_text(&shown, &text, &mut errors),
            Err(e) => errors.push(ConfigError {
                origin: None,
                object: None,
                path: String::new(),
                message: format!("{}: cannot read: {e}", file.display()),
            }),
        }
    }
    Ok((store, errors))
}
