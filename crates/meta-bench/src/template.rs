//! Requests encoded once and sent many times: what the load generator writes.
//!
//! A load connection sends the same call over and over; only the request id changes. A
//! [`RequestTemplate`] holds the request encoded once (per connection) and where its id sits;
//! [`RequestBatch::push`] copies the few bytes up to the id, writes the new id there and shares
//! the rest. The bytes on the wire are exactly what encoding each request anew would give (the
//! tests compare them for every protocol variant).
//!
//! - Dubbo: the id is bytes 4..12 of the header; the body (the 120 KB argument) is shared.
//! - Thrift binary (framed, buffered, THeader): the seqid is a fixed 4-byte field after the
//!   method name (and, in THeader, also bytes 8..12 of the frame); everything after it is shared.
//! - Thrift compact writes the seqid as a varint whose length depends on its value, so a
//!   template cannot patch it in place: those requests are encoded anew each time, as before.
//!
//! A request whose shared part is small (< [`SHARE_FROM`]) is copied whole into the batch's own
//! buffer, so a batch of small requests is one contiguous write as before; a large one is
//! written from the template's buffer with `writev`, never copied.

use std::ops::Range;

use bytes::Bytes;

use crate::client::{CallError, ClientOptions, request_bytes};
use crate::{Protocol, thrift};

/// Shared parts at least this long are written from the template instead of copied.
pub(crate) const SHARE_FROM: usize = 4096;

/// Where the id goes in a request's bytes.
#[derive(Debug, Clone)]
enum Slots {
    /// Dubbo: an 8-byte big-endian id at this offset.
    U64(usize),
    /// Thrift: a 4-byte big-endian seqid (`id & i32::MAX`) at each offset.
    I32(Vec<usize>),
    /// No fixed place: encode each request anew (Thrift compact).
    Encode {
        proto: Protocol,
        opts: ClientOptions,
        name: String,
        attachments: Vec<(String, String)>,
        oneway: bool,
    },
}

/// One request, encoded once; see the module docs.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    bytes: Bytes,
    /// `bytes[..head]` holds every id field: copied and patched per request.
    head: usize,
    slots: Slots,
}

impl RequestTemplate {
    /// `opts.method(name)` with `attachments`, as [`request_bytes`] encodes it.
    pub fn new(
        proto: Protocol,
        opts: &ClientOptions,
        name: &str,
        attachments: &[(&str, &str)],
        oneway: bool,
    ) -> Result<Self, CallError> {
        let bytes = request_bytes(proto, 1, opts, name, attachments, oneway)?;
        let slots = match proto {
            Protocol::Dubbo => Slots::U64(4),
            Protocol::Thrift(_) => match thrift::seqid_offsets(&bytes) {
                Some(at) => Slots::I32(at),
                None => Slots::Encode {
                    proto,
                    opts: opts.clone(),
                    name: name.to_owned(),
                    attachments: attachments
                        .iter()
                        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    oneway,
                },
            },
        };
        let head = match &slots {
            Slots::U64(at) => at + 8,
            Slots::I32(at) => at.iter().map(|a| a + 4).max().unwrap_or(0),
            Slots::Encode { .. } => bytes.len(),
        };
        Ok(Self {
            bytes: Bytes::from(bytes),
            head,
            slots,
        })
    }

    /// Length of one request on the wire (of the first one, for a re-encoded template).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the request is empty (never: a request has a header).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn patch(&self, out: &mut [u8], id: u64) {
        match &self.slots {
            Slots::U64(at) => out[*at..at + 8].copy_from_slice(&id.to_be_bytes()),
            Slots::I32(ats) => {
                let seqid = (id & i32::MAX as u64) as u32;
                for &at in ats {
                    out[at..at + 4].copy_from_slice(&seqid.to_be_bytes());
                }
            }
            Slots::Encode { .. } => {}
        }
    }
}

/// Requests queued for one write: bytes of their own, and shared parts of templates.
#[derive(Debug, Default)]
pub struct RequestBatch {
    own: Vec<u8>,
    /// In order: a range of `own`, then (maybe) a shared tail.
    parts: Vec<(Range<usize>, Option<Bytes>)>,
    requests: usize,
}

impl RequestBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.own.clear();
        self.parts.clear();
        self.requests = 0;
    }

    /// Requests in the batch.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Bytes the batch writes.
    pub fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|(r, t)| r.len() + t.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    /// Whether the batch has nothing to write.
    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    /// Appends request `id` made from `t`.
    pub fn push(&mut self, t: &RequestTemplate, id: u64) -> Result<(), CallError> {
        let start = self.own.len();
        let tail = match &t.slots {
            Slots::Encode {
                proto,
                opts,
                name,
                attachments,
                oneway,
            } => {
                let pairs: Vec<(&str, &str)> = attachments
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let bytes = request_bytes(*proto, id, opts, name, &pairs, *oneway)?;
                self.own.extend_from_slice(&bytes);
                None
            }
            _ if t.bytes.len() - t.head >= SHARE_FROM => {
                self.own.extend_from_slice(&t.bytes[..t.head]);
                t.patch(&mut self.own[start..], id);
                Some(t.bytes.slice(t.head..))
            }
            _ => {
                self.own.extend_from_slice(&t.bytes);
                t.patch(&mut self.own[start..], id);
                None
            }
        };
        let end = self.own.len();
        match self.parts.last_mut() {
            // Contiguous with the previous part and nothing shared in between: one slice.
            Some((r, t)) if t.is_none() && r.end == start => {
                r.end = end;
                *t = tail;
            }
            _ => self.parts.push((start..end, tail)),
        }
        self.requests += 1;
        Ok(())
    }

    /// The bytes to write, in order.
    pub(crate) fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.parts
            .iter()
            .flat_map(|(r, tail)| [&self.own[r.clone()], tail.as_deref().unwrap_or_default()])
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ThriftProtocol, ThriftTransport, padded_name};

    fn joined(batch: &RequestBatch) -> Vec<u8> {
        batch.slices().flatten().copied().collect()
    }

    #[test]
    fn batches_are_byte_for_byte_what_encoding_each_request_gives() {
        let opts = ClientOptions::default();
        let ids = [
            1,
            2,
            127,
            128,
            300,
            70_000,
            i32::MAX as u64 - 1,
            i32::MAX as u64,
        ];
        for proto in Protocol::all() {
            let attachments: &[(&str, &str)] = match proto {
                Protocol::Thrift(v) if v.transport != ThriftTransport::Header => &[],
                _ => &[("x-user", "alice")],
            };
            for name in [
                "world".to_string(),
                padded_name("héllo 😀 ", 120 * 1024),
                padded_name("w", SHARE_FROM - 300),
                padded_name("w", SHARE_FROM + 20),
            ] {
                let t = RequestTemplate::new(proto, &opts, &name, attachments, false).unwrap();
                let mut batch = RequestBatch::default();
                let mut want = Vec::new();
                for &id in &ids {
                    batch.push(&t, id).unwrap();
                    want.extend(
                        request_bytes(proto, id, &opts, &name, attachments, false).unwrap(),
                    );
                }
                let what = format!("{proto} {} bytes", name.len());
                assert_eq!(joined(&batch), want, "{what}");
                assert_eq!(
                    (batch.requests(), batch.len()),
                    (ids.len(), want.len()),
                    "{what}"
                );
                let patched = !matches!(t.slots, Slots::Encode { .. });
                let big = patched && t.len() - t.head >= SHARE_FROM;
                if patched {
                    assert_eq!(big, name.len() > SHARE_FROM, "{what}: sizes on both sides");
                }
                // big requests share the template's bytes (two slices each: patched head, shared
                // tail); small ones are one contiguous buffer
                let slices = batch.slices().count();
                if big {
                    assert_eq!(slices, 2 * ids.len(), "{what}");
                } else {
                    assert_eq!(slices, 1, "{what}");
                }
                batch.clear();
                assert!(batch.is_empty() && batch.slices().next().is_none());
            }
        }
    }

    #[test]
    fn only_compact_thrift_is_encoded_per_request() {
        let opts = ClientOptions::default();
        for proto in Protocol::all() {
            let t = RequestTemplate::new(proto, &opts, "world", &[], true).unwrap();
            let compact =
                matches!(proto, Protocol::Thrift(v) if v.protocol == ThriftProtocol::Compact);
            assert_eq!(matches!(t.slots, Slots::Encode { .. }), compact, "{proto}");
        }
        // attachments on a transport without headers are refused up front, as by `request_bytes`
        let err = RequestTemplate::new(Protocol::THRIFT, &opts, "w", &[("k", "v")], false);
        assert!(matches!(err, Err(CallError::Unsupported(_))), "{err:?}");
    }
}
