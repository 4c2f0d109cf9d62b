//! Which metadata string keys the core may read: lets a codec skip decoding what nobody reads.

use std::fmt;

use compact_str::CompactString;

/// The metadata string keys the core may read from the messages a codec decodes
/// ([`crate::Codec::set_read_keys`]).
///
/// Either every key ([`ReadKeys::all`], the default and the safe choice) or a fixed set of
/// names. Names compare ASCII-case-insensitively, like [`crate::Metadata::get`]; they are kept
/// lower-cased, sorted and without duplicates, so two sets naming the same keys are equal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadKeys {
    /// `None`: every key.
    only: Option<Vec<CompactString>>,
}

impl ReadKeys {
    /// Every key may be read: a codec decodes everything it can.
    pub const fn all() -> Self {
        Self { only: None }
    }

    /// No string key is read (typed fields only).
    pub const fn none() -> Self {
        Self {
            only: Some(Vec::new()),
        }
    }

    /// Exactly the keys in `names`.
    pub fn only<I, K>(names: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let mut keys = Self::none();
        for name in names {
            keys.insert(name.as_ref());
        }
        keys
    }

    /// Whether every key may be read.
    pub fn is_all(&self) -> bool {
        self.only.is_none()
    }

    /// Whether `key` may be read (case-insensitive); always true for [`ReadKeys::all`].
    pub fn contains(&self, key: &str) -> bool {
        match &self.only {
            None => true,
            Some(names) => names.iter().any(|n| n.eq_ignore_ascii_case(key)),
        }
    }

    /// Whether a key other than those in `known` may be read (case-insensitive); always true
    /// for [`ReadKeys::all`]. A codec asks this with the keys it fills cheaply: `true` means
    /// it must decode the rest.
    pub fn contains_other_than(&self, known: &[&str]) -> bool {
        match &self.only {
            None => true,
            Some(names) => names
                .iter()
                .any(|n| !known.iter().any(|k| n.eq_ignore_ascii_case(k))),
        }
    }

    /// Adds `key` (nothing changes for [`ReadKeys::all`]).
    pub fn insert(&mut self, key: &str) {
        let Some(names) = &mut self.only else {
            return;
        };
        let mut key = CompactString::from(key);
        key.make_ascii_lowercase();
        if let Err(at) = names.binary_search(&key) {
            names.insert(at, key);
        }
    }

    /// Removes `key` (case-insensitive; nothing changes for [`ReadKeys::all`]).
    pub fn remove(&mut self, key: &str) {
        if let Some(names) = &mut self.only {
            names.retain(|n| !n.eq_ignore_ascii_case(key));
        }
    }

    /// Adds every key of `other`: the result may read what either may.
    pub fn union_with(&mut self, other: &ReadKeys) {
        match &other.only {
            None => self.only = None,
            Some(names) => {
                for n in names {
                    self.insert(n);
                }
            }
        }
    }

    /// The names, lower-cased and sorted; `None` for [`ReadKeys::all`].
    pub fn names(&self) -> Option<impl ExactSizeIterator<Item = &str>> {
        self.only
            .as_ref()
            .map(|names| names.iter().map(CompactString::as_str))
    }
}

/// `all`, or the names in braces: `{method, user}`.
impl fmt::Display for ReadKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(names) = self.names() else {
            return f.write_str("all");
        };
        f.write_str("{")?;
        for (i, n) in names.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_the_default_and_contains_everything() {
        let all = ReadKeys::default();
        assert!(all.is_all());
        assert_eq!(all, ReadKeys::all());
        assert!(all.contains("anything"));
        assert!(all.contains_other_than(&["method"]));
        assert!(all.names().is_none());
        assert_eq!(all.to_string(), "all");
    }

    #[test]
    fn only_is_case_insensitive_sorted_and_deduplicated() {
        let k = ReadKeys::only(["User", "method", "USER"]);
        assert!(!k.is_all());
        assert!(k.contains("user") && k.contains("METHOD"));
        assert!(!k.contains("interface"));
        assert_eq!(k.names().unwrap().collect::<Vec<_>>(), ["method", "user"]);
        assert_eq!(k, ReadKeys::only(["user", "Method"]));
        assert_eq!(k.to_string(), "{method, user}");
    }

    #[test]
    fn contains_other_than() {
        let method = ReadKeys::only(["Method"]);
        assert!(!method.contains_other_than(&["method"]));
        assert!(method.contains_other_than(&[]));
        assert!(!ReadKeys::none().contains_other_than(&[]));
        let two = ReadKeys::only(["method", "x-user"]);
        assert!(two.contains_other_than(&["METHOD"]));
        assert!(!two.contains_other_than(&["method", "X-User"]));
    }

    #[test]
    fn insert_remove_and_union() {
        let mut k = ReadKeys::none();
        k.insert("B");
        k.insert("a");
        k.union_with(&ReadKeys::only(["c", "b"]));
        assert_eq!(k, ReadKeys::only(["a", "b", "c"]));
        k.remove("B");
        assert_eq!(k, ReadKeys::only(["a", "c"]));
        k.union_with(&ReadKeys::all());
        assert!(k.is_all());
        k.insert("x");
        k.remove("x");
        assert!(k.is_all(), "all stays all");
    }
}
