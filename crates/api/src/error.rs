//! The error every loading step returns: where (file, field path) and what.

use std::fmt;

/// A bootstrap that cannot be used, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the config came from, if any.
    pub file: Option<String>,
    /// Field path, e.g. `static_resources.clusters[0].lb_policy` (empty for whole-document errors).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// `<path>: not supported`.
    pub fn unsupported(path: impl Into<String>) -> Self {
        Self::new(path, "not supported")
    }

    /// Attaches the file name.
    #[must_use]
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Joins a field name onto a path.
pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}
