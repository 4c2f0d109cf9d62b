//! The rate-limit configuration: envoyproxy/ratelimit's YAML format, loaded from files, a
//! directory of files, or the `data` of a Kubernetes ConfigMap, validated into a tree of
//! [`Domain`]s that the service matches descriptors against (see [`Config::lookup`]).

mod parse;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tree::Level;
pub use tree::{Limit, Lookup, Unit};

/// One configuration problem: where (file, document, field path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (plus `document N` / `data[key]` when the file holds several configs).
    pub source: String,
    /// The field path inside the document, e.g. `descriptors[0].rate_limit.unit`; empty for
    /// problems with the document as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration. A configuration with any error is
/// refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One rate-limit domain: the tree of descriptors of one config document.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Where the domain was defined (for error messages and `dump`).
    pub source: String,
    pub(crate) root: Level,
}

/// A validated set of domains.
#[derive(Debug, Clone, Default)]
pub struct Config {
    domains: BTreeMap<String, Domain>,
}

impl Config {
    /// Loads `path`: a YAML file, or a directory whose `*.yaml` / `*.yml` files (not hidden,
    /// not recursive, in name order) are each loaded, like the Go service's runtime directory.
    /// Each file may hold several `---` documents; a document that is a Kubernetes ConfigMap
    /// contributes every `data` entry whose key ends in `.yaml` or `.yml`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let io_err = |p: &Path, e: std::io::Error| {
            ConfigErrors(vec![ConfigError {
                source: p.display().to_string(),
                path: String::new(),
                message: format!("cannot read: {e}"),
            }])
        };
        let mut files: Vec<PathBuf> = Vec::new();
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| io_err(path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_err(path, e))?;
                let p = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
                if yaml && !name.starts_with('.') && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut texts = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| io_err(f, e))?;
            texts.push((f.display().to_string(), text));
        }
        Self::from_sources(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Builds a configuration from named YAML texts (each as a file would be read).
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut config = Config::default();
        for (name, text) in sources {
            for (source, doc) in parse::documents(name, text, &mut errors) {
                let Some((domain, root)) = parse::domain(&source, &doc, &mut errors) else {
                    continue;
                };
                if let Some(first) = config.domains.get(&domain) {
                    errors.push(ConfigError {
                        source: source.clone(),
                        path: "domain".into(),
                        message: format!(
                            "duplicate domain '{domain}' (already defined in {})",
                            first.source
                        ),
                    });
                    continue;
                }
                config.domains.insert(domain, Domain { source, root });
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Builds a configuration from one YAML text named `name`.
    pub fn from_yaml(name: &str, text: &str) -> Result<Config, ConfigErrors> {
        Self::from_sources([(name, text)])
    }

    /// The configured domain names, sorted.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// Finds the limit for one request descriptor (its entries as key/value pairs), with
    /// envoyproxy/ratelimit's semantics:
    ///
    /// - entries walk the tree one level each; at each level a `key`+`value` node (or a
    ///   wildcard value such as `foo*`) takes precedence over a key-only node, which matches
    ///   any value;
    /// - the limit of the node matched by the request's *last* entry decides (a request with
    ///   more entries than the config's depth, or ending on a node without `rate_limit`, is
    ///   not limited);
    /// - an unknown domain is [`Lookup::UnknownDomain`].
    pub fn lookup<'a>(&'a self, domain: &str, entries: &[(&str, &str)]) -> Lookup<'a> {
        match self.domains.get(domain) {
            None => Lookup::UnknownDomain,
            Some(d) => d.root.lookup(entries),
        }
    }

    /// A human-readable listing of every limit (`domain.key_value.key2: 10/minute ...`).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for d in self.domains.values() {
            d.root.dump(&mut out);
        }
        out
    }
}
