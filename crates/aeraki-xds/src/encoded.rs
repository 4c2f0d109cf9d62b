//! SotW responses as wire bytes, with the resources encoded once and shared.
//!
//! A SotW response is `version_info` (field 1), the resources (field 2, repeated `Any`),
//! `type_url` (4) and `nonce` (5). Protobuf allows the fields in any order, so a response is
//! sent as a small per-stream head (gRPC prefix, version, type URL, nonce) followed by the
//! encoded resources, which are looked up in the snapshot's [`EncodedCache`] by the
//! fingerprint of what was selected (names and content versions): every stream that selects
//! the same resources of a snapshot sends the same `Bytes`, encoded once, and the bytes are
//! freed when the last stream has written them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use aeraki_model::resources::Flavor;
use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use prost::Message;

use crate::snapshot::Entry;

/// One SotW response ready for the wire: `head` starts with the 5-byte gRPC message prefix
/// and carries the per-stream fields, `resources` is shared between streams.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) head: Bytes,
    pub(crate) resources: Bytes,
}

impl Outgoing {
    pub(crate) fn new(version: &str, type_url: &str, nonce: &str, resources: Bytes) -> Self {
        let fields = DiscoveryResponse {
            version_info: version.to_owned(),
            type_url: type_url.to_owned(),
            nonce: nonce.to_owned(),
            ..Default::default()
        };
        let len = fields.encoded_len() + resources.len();
        let mut head = BytesMut::with_capacity(5 + fields.encoded_len());
        head.put_u8(0); // not compressed
        head.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        fields.encode_raw(&mut head);
        Outgoing {
            head: head.freeze(),
            resources,
        }
    }

    /// The response as a message (for the generated tonic services, which encode it again).
    pub(crate) fn to_message(&self) -> DiscoveryResponse {
        let mut bytes = Vec::with_capacity(self.head.len() - 5 + self.resources.len());
        bytes.extend_from_slice(&self.head[5..]);
        bytes.extend_from_slice(&self.resources);
        // Both halves were encoded here from valid messages.
        DiscoveryResponse::decode(bytes.as_slice()).unwrap_or_default()
    }
}

type Key = (Flavor, String, u64, usize);

/// Encoded resource lists of one snapshot, by (flavour, type, fingerprint, count). Holds them
/// weakly: an entry lives while some stream still has its bytes queued or in flight.
#[derive(Debug, Default)]
pub(crate) struct EncodedCache {
    map: Mutex<HashMap<Key, Weak<Vec<u8>>>>,
}

struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl EncodedCache {
    /// The encoded `selected` resources (field 2 of a response), encoding them only when no
    /// live copy for the same selection exists.
    pub(crate) fn get(
        &self,
        flavor: Flavor,
        type_url: &str,
        fingerprint: u64,
        selected: &[(&String, &Entry)],
    ) -> Bytes {
        if selected.is_empty() {
            return Bytes::new();
        }
        let key = (flavor, type_url.to_owned(), fingerprint, selected.len());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return Bytes::from_owner(Shared(live));
        }
        let len = selected
            .iter()
            .map(|(_, e)| prost::encoding::message::encoded_len(2, &e.any))
            .sum();
        let mut buf = Vec::with_capacity(len);
        for (_, entry) in selected {
            prost::encoding::message::encode(2, &entry.any, &mut buf);
        }
        let body = Arc::new(buf);
        if map.len() >= 64 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        map.insert(key, Arc::downgrade(&body));
        Bytes::from_owner(Shared(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;

    fn entry(value: &[u8]) -> Entry {
        Entry {
            any: Any {
                type_url: "t".to_owned(),
                value: value.to_vec(),
            },
            version: "v".to_owned(),
        }
    }

    #[test]
    fn one_encoding_shared_while_alive_and_a_valid_response() {
        let (a, b) = (entry(b"alpha"), entry(b"beta"));
        let (na, nb) = ("a".to_owned(), "b".to_owned());
        let selected = vec![(&na, &a), (&nb, &b)];
        let cache = EncodedCache::default();
        let first = cache.get(Flavor::MetaProxy, "t", 7, &selected);
        let second = cache.get(Flavor::MetaProxy, "t", 7, &selected);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "same selection: same bytes"
        );
        let other = cache.get(Flavor::Envoy, "t", 7, &selected);
        assert_ne!(first.as_ptr(), other.as_ptr(), "other flavour: own bytes");

        let out = Outgoing::new("3", "t", "9", second.clone());
        assert_eq!(out.head[0], 0);
        let len = u32::from_be_bytes([out.head[1], out.head[2], out.head[3], out.head[4]]);
        assert_eq!(len as usize, out.head.len() - 5 + out.resources.len());
        let message = out.to_message();
        assert_eq!(message.version_info, "3");
        assert_eq!(message.nonce, "9");
        assert_eq!(message.type_url, "t");
        let values: Vec<&[u8]> = message
            .resources
            .iter()
            .map(|r| r.value.as_slice())
            .collect();
        assert_eq!(values, vec![&b"alpha"[..], &b"beta"[..]]);

        drop((first, second, out));
        let again = cache.get(Flavor::MetaProxy, "t", 7, &selected);
        assert_eq!(again.len(), other.len(), "re-encoded once nobody holds it");
        assert!(cache.get(Flavor::MetaProxy, "t", 8, &[]).is_empty());
    }
}
