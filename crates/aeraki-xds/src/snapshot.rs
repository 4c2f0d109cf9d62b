//! Published snapshots: the resources of every flavour at one version, converted once to the
//! wire `Any` type and fingerprinted per resource.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aeraki_model::resources::{CLUSTER, ENDPOINT, Flavor, LISTENER, ROUTE, ResourceSet};
use envoy_types::pb::google::protobuf::Any;

/// One resource as served: its body and its content version (a hash of the body's bytes).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) any: Any,
    pub(crate) version: String,
}

/// Resources of one type, by name (sorted).
pub(crate) type TypeResources = BTreeMap<String, Entry>;

/// Names added, changed or removed since the previous snapshot, by type URL (a type absent
/// from the map had no change).
pub(crate) type Changes = BTreeMap<String, BTreeSet<String>>;

/// Resources of one flavour, by type URL.
#[derive(Debug, Default)]
pub(crate) struct FlavorSet {
    pub(crate) by_type: BTreeMap<String, TypeResources>,
}

impl FlavorSet {
    /// Converts `set`; a resource whose bytes equal those in `prev` keeps its version without
    /// hashing again. Also returns, per type, the names added, changed or removed since `prev`.
    fn from_model(set: ResourceSet, prev: Option<&FlavorSet>) -> (Self, Changes) {
        let mut changes = Changes::new();
        let by_type: BTreeMap<String, TypeResources> = set
            .by_type
            .into_iter()
            .map(|(type_url, resources)| {
                let old = prev.and_then(|p| p.of_type(&type_url));
                let mut changed = BTreeSet::new();
                if let Some(old) = old {
                    changed.extend(old.keys().filter(|n| !resources.contains_key(*n)).cloned());
                }
                let entries = resources
                    .into_iter()
                    .map(|(name, body)| {
                        let same = old.and_then(|o| o.get(&name)).filter(|e| {
                            e.any.type_url == body.type_url && e.any.value == body.value
                        });
                        let version = match same {
                            Some(e) => e.version.clone(),
                            None => {
                                changed.insert(name.clone());
                                content_version(&body.type_url, &body.value)
                            }
                        };
                        let entry = Entry {
                            version,
                            any: Any {
                                type_url: body.type_url,
                                value: body.value,
                            },
                        };
                        (name, entry)
                    })
                    .collect();
                changes.insert(type_url.clone(), changed);
                (type_url, entries)
            })
            .collect();
        if let Some(prev) = prev {
            for (type_url, old) in &prev.by_type {
                if !by_type.contains_key(type_url) {
                    changes.insert(type_url.clone(), old.keys().cloned().collect());
                }
            }
        }
        (FlavorSet { by_type }, changes)
    }

    /// Resources of one type (`None` when the type has none).
    pub(crate) fn of_type(&self, type_url: &str) -> Option<&TypeResources> {
        self.by_type.get(type_url)
    }
}

/// Everything published at one version.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// 0 = nothing published yet (streams wait); then 1, 2, … never reused.
    pub(crate) version: u64,
    pub(crate) flavors: BTreeMap<Flavor, Arc<FlavorSet>>,
    /// Per flavour, what changed since version `version - 1`; `None` for the first snapshot.
    /// Lets a stream that was up to date at `version - 1` push only what changed instead of
    /// recomputing its whole subscription.
    pub(crate) changes: Option<BTreeMap<Flavor, Changes>>,
    /// SotW resource lists of this snapshot as encoded once for every stream selecting them.
    pub(crate) encoded: crate::encoded::EncodedCache,
}

impl Snapshot {
    /// The snapshot of `sets` at `version`, published right after `prev` (version - 1).
    pub(crate) fn new(
        version: u64,
        sets: BTreeMap<Flavor, ResourceSet>,
        prev: Option<&Snapshot>,
    ) -> Self {
        let prev = prev.filter(|p| p.version > 0 && p.version + 1 == version);
        let mut flavors = BTreeMap::new();
        let mut changes = BTreeMap::new();
        for (flavor, set) in sets {
            let old = prev.and_then(|p| p.flavors.get(&flavor)).map(|f| &**f);
            let (converted, changed) = FlavorSet::from_model(set, old);
            flavors.insert(flavor, Arc::new(converted));
            changes.insert(flavor, changed);
        }
        if let Some(prev) = prev {
            for (flavor, old) in &prev.flavors {
                if !flavors.contains_key(flavor) {
                    let gone = old
                        .by_type
                        .iter()
                        .map(|(t, r)| (t.clone(), r.keys().cloned().collect()))
                        .collect();
                    changes.insert(*flavor, gone);
                }
            }
        }
        Snapshot {
            version,
            flavors,
            changes: prev.map(|_| changes),
            encoded: Default::default(),
        }
    }

    /// Names of one type changed since `version - 1` for `flavor` (`None`: unknown, i.e. the
    /// first snapshot; an empty set: nothing changed).
    pub(crate) fn changed(
        &self,
        flavor: Flavor,
        type_url: &str,
    ) -> Option<Option<&BTreeSet<String>>> {
        let changes = self.changes.as_ref()?;
        Some(
            changes
                .get(&flavor)
                .and_then(|c| c.get(type_url))
                .filter(|c| !c.is_empty()),
        )
    }

    /// Resources of one type for one flavour (`None` when the flavour or type has none).
    pub(crate) fn resources(&self, flavor: Flavor, type_url: &str) -> Option<&TypeResources> {
        self.flavors
            .get(&flavor)
            .and_then(|set| set.of_type(type_url))
    }

    pub(crate) fn version_string(&self) -> String {
        self.version.to_string()
    }
}

/// Content version of one resource: FNV-1a 64 over the type URL and the serialised bytes,
/// plus the byte length. Stable across processes and releases (unlike `DefaultHasher`), so a
/// delta client reconnecting to a restarted server is not resent unchanged resources.
pub(crate) fn content_version(type_url: &str, bytes: &[u8]) -> String {
    let mut hash = Fnv::new();
    hash.write(type_url.as_bytes());
    hash.write(&[0]);
    hash.write(bytes);
    format!("{:x}-{:016x}", bytes.len(), hash.finish())
}

/// FNV-1a, 64 bit. Used for resource versions and response fingerprints.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether an empty subscription to this type means "everything" (Envoy's legacy wildcard for
/// LDS and CDS).
pub(crate) fn is_wildcard_type(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

/// Push order for several types changed at once: clusters before their endpoints, listeners
/// before their routes (Envoy warms clusters, then listeners), anything else after.
pub(crate) fn push_rank(type_url: &str) -> u8 {
    match type_url {
        CLUSTER => 0,
        ENDPOINT => 1,
        LISTENER => 2,
        ROUTE => 3,
        _ => 4,
    }
}

/// Which flavour a node gets: stock Envoy by its user agent, anything else is our meta-proxy.
pub(crate) fn flavor_of(user_agent_name: &str) -> Flavor {
    if user_agent_name == "envoy" {
        Flavor::Envoy
    } else {
        Flavor::MetaProxy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_version_is_stable_and_sensitive() {
        let a = content_version(CLUSTER, b"abc");
        assert_eq!(a, content_version(CLUSTER, b"abc"));
        assert_ne!(a, content_version(CLUSTER, b"abd"));
        assert_ne!(a, content_version(LISTENER, b"abc"));
        // FNV-1a of the empty input is the offset basis: pins the algorithm.
        assert_eq!(Fnv::new().finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn ordering_and_flavours() {
        let mut types = vec![ROUTE, LISTENER, ENDPOINT, CLUSTER, "x"];
        types.sort_by_key(|t| push_rank(t));
        assert_eq!(types, vec![CLUSTER, ENDPOINT, LISTENER, ROUTE, "x"]);
        assert_eq!(flavor_of("envoy"), Flavor::Envoy);
        assert_eq!(flavor_of("meta-proxy"), Flavor::MetaProxy);
        assert_eq!(flavor_of(""), Flavor::MetaProxy);
        assert!(is_wildcard_type(LISTENER) && !is_wildcard_type(ROUTE));
    }
}
