//! Errors and warnings that name the file, the document and the field path.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where an object came from: its file, its 1-based document index and, for a Kubernetes
/// `List`, its item index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub document: usize,
    pub item: Option<usize>,
}

impl Origin {
    pub fn new(file: &Path, document: usize) -> Self {
        Origin {
            file: file.to_path_buf(),
            document,
            item: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(i) = self.item {
            write!(f, " item {i}")?;
        }
        Ok(())
    }
}

/// One precise error: `file: document N (Kind ns/name): field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `file: document N` (absent for errors that concern a whole directory).
    pub origin: Option<Origin>,
    /// `Kind ns/name`, when the object's identity is known.
    pub object: Option<String>,
    /// Field path inside the document (`spec.routes[0].route`), possibly empty.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(o) = &self.origin {
            write!(f, "{o}")?;
            sep = ": ";
        }
        if let Some(obj) = &self.object {
            if self.origin.is_some() {
                write!(f, " ({obj})")?;
            } else {
                write!(f, "{obj}")?;
            }
            sep = ": ";
        }
        if !self.path.is_empty() {
            write!(f, "{sep}{}", self.path)?;
            sep = ": ";
        }
        write!(f, "{sep}{}", self.message)
    }
}

/// Every error found in one pass; `Display` prints one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
    pub fn len(&self) -> usize {
        self.errors.len()
    }
    /// An error that concerns no particular document (I/O on a directory, say).
    pub fn single(message: impl Into<String>) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                origin: None,
                object: None,
                path: String::new(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors and warnings about one object, under one field-path prefix.
#[derive(Debug)]
pub struct Diag<'a> {
    origin: Option<&'a Origin>,
    object: Option<String>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl<'a> Diag<'a> {
    pub fn new(origin: Option<&'a Origin>, object: Option<String>) -> Self {
        Diag {
            origin,
            object,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error at `path`.
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.cloned(),
            object: self.object.clone(),
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a warning at `path` (formatted like an error).
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let e = ConfigError {
            origin: self.origin.cloned(),
            object: self.object.clone(),
            path: path.into(),
            message: message.into(),
        };
        self.warnings.push(e.to_string());
    }
}
