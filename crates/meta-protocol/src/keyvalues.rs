//! An ordered string map with ASCII-case-insensitive keys, small and allocation-light.

use compact_str::CompactString;

/// Ordered key/value strings; keys match ASCII-case-insensitively, as Envoy header maps do.
///
/// Lookups are linear: messages carry a handful of keys, where a scan beats hashing. Keys and
/// values up to 24 bytes are stored inline, without a heap allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues {
    pairs: Vec<(CompactString, CompactString)>,
}

impl KeyValues {
    /// An empty map.
    pub const fn new() -> Self {
        Self { pairs: Vec::new() }
    }

    /// Value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present (case-insensitively).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing an existing value of the same key (keeping its position).
    pub fn set(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match self
            .pairs
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some((_, v)) => *v = CompactString::from(value),
            None => self
                .pairs
                .push((CompactString::from(key), CompactString::from(value))),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<CompactString> {
        let at = self
            .pairs
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        Some(self.pairs.remove(at).1)
    }

    /// Pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Removes every pair, keeping the allocation.
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    /// Applies every pair of `other` with [`KeyValues::set`], in order.
    pub fn extend_from(&mut self, other: &KeyValues) {
        for (k, v) in other.iter() {
            self.set(k, v);
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for KeyValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut kv = KeyValues::new();
        for (k, v) in iter {
            kv.set(k, v);
        }
        kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_set_replaces_in_place() {
        let mut kv = KeyValues::new();
        kv.set("Interface", "a.B");
        kv.set("method", "sayHello");
        kv.set("INTERFACE", "c.D");
        assert_eq!(kv.len(), 2);
        assert_eq!(kv.get("interface"), Some("c.D"));
        assert_eq!(kv.iter().next(), Some(("Interface", "c.D")));
        assert_eq!(kv.remove("METHOD").as_deref(), Some("sayHello"));
        assert!(!kv.contains("method"));
    }

    #[test]
    fn extend_from_overrides_and_appends() {
        let mut a: KeyValues = [("x", "1"), ("y", "2")].into_iter().collect();
        let b: KeyValues = [("Y", "3"), ("z", "4")].into_iter().collect();
        a.extend_from(&b);
        let got: Vec<_> = a.iter().collect();
        assert_eq!(got, vec![("x", "1"), ("y", "3"), ("z", "4")]);
    }
}
