//! Which metadata keys a listener reads, and how its codecs learn it.
//!
//! Requests: every route's matcher keys and hash-policy keys, and the keys every filter declares
//! ([`Filter::request_keys`], every key for a filter that does not say). Responses: the protocol
//! status (outlier detection, retries on `status:<VALUE>`) and the keys every filter's
//! `on_response` declares. Everything else the core reads is typed (kind, status, request id).
//! A listener's downstream codecs get the request set before their first decode and again when a
//! route or filter update changes it (`conn.rs`); its upstream codecs get the response set when
//! they are created ([`ListenerCodecs`]), and a change of that set drains the listener's upstream
//! connections (`ListenerShared::set_rt`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use meta_config::Route;
use meta_protocol::{Codec, CodecFactory, CodecOptions, Correlation, ReadKeys, Side, keys};

use crate::filter::Filter;

/// The request keys read by `routes` and `filters`.
pub(crate) fn request_keys(routes: &[Route], filters: &[Arc<dyn Filter>]) -> ReadKeys {
    let mut read = ReadKeys::none();
    for r in routes {
        for m in &r.matchers {
            read.insert(&m.name);
        }
        for k in &r.hash_policy {
            read.insert(k);
        }
    }
    for f in filters {
        read.union_with(&f.request_keys());
    }
    // The core sets it on every request right after decoding, whatever the codec says.
    read.remove(keys::APPLICATION_PROTOCOL);
    read
}

/// The response keys read by the core and `filters`.
pub(crate) fn response_keys(filters: &[Arc<dyn Filter>]) -> ReadKeys {
    let mut read = ReadKeys::only([keys::PROTOCOL_STATUS]);
    for f in filters {
        read.union_with(&f.response_keys());
    }
    read
}

/// A listener's codec factory: the protocol's, plus the response keys the listener reads,
/// handed to every upstream codec it creates.
pub(crate) struct ListenerCodecs {
    inner: Arc<dyn CodecFactory>,
    response_keys: ArcSwap<ReadKeys>,
}

impl ListenerCodecs {
    pub(crate) fn new(inner: Arc<dyn CodecFactory>, response_keys: Arc<ReadKeys>) -> Self {
        Self {
            inner,
            response_keys: ArcSwap::new(response_keys),
        }
    }

    /// The response keys of upstream codecs created from now on.
    pub(crate) fn set_response_keys(&self, keys: Arc<ReadKeys>) {
        self.response_keys.store(keys);
    }
}

impl CodecFactory for ListenerCodecs {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }

    fn correlation(&self) -> Correlation {
        self.inner.correlation()
    }

    fn new_codec(&self, side: Side, options: CodecOptions) -> Box<dyn Codec> {
        let mut codec = self.inner.new_codec(side, options);
        if side == Side::Upstream {
            codec.set_read_keys(&self.response_keys.load());
        }
        codec
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use meta_config::{Destination, MetadataMatcher};

    use super::*;

    /// A filter declaring fixed keys.
    struct Reads(ReadKeys, ReadKeys);

    impl Filter for Reads {
        fn name(&self) -> &'static str {
            "test.reads"
        }

        fn request_keys(&self) -> ReadKeys {
            self.0.clone()
        }

        fn response_keys(&self) -> ReadKeys {
            self.1.clone()
        }
    }

    /// A filter that does not declare anything.
    struct Silent;

    impl Filter for Silent {
        fn name(&self) -> &'static str {
            "test.silent"
        }
    }

    fn route(matchers: &[&str], hash: &[&str]) -> Route {
        Route {
            name: "r".into(),
            matchers: matchers
                .iter()
                .map(|m| MetadataMatcher::present(*m))
                .collect(),
            destination: Destination::Cluster("c".into()),
            request_mutation: vec![("x-written".into(), "v".into())],
            response_mutation: vec![("x-back".into(), "v".into())],
            timeout: None,
            hash_policy: hash.iter().map(|h| (*h).to_owned()).collect(),
            mirrors: vec![],
            retry: None,
            fault: None,
        }
    }

    #[test]
    fn request_keys_join_matchers_hash_keys_and_filters() {
        let routes = [
            route(&["Method"], &[]),
            route(&["method", "user"], &["x-tenant"]),
            route(&[keys::APPLICATION_PROTOCOL], &[]),
        ];
        let filters: Vec<Arc<dyn Filter>> = vec![Arc::new(Reads(
            ReadKeys::only(["region"]),
            ReadKeys::none(),
        ))];
        assert_eq!(
            request_keys(&routes, &filters),
            ReadKeys::only(["method", "user", "x-tenant", "region"]),
            "mutations write keys, the core sets the application protocol"
        );
        assert_eq!(request_keys(&routes[..1], &[]), ReadKeys::only(["method"]));
        // No route and no filter reads a key: nothing to decode but typed fields.
        assert_eq!(request_keys(&[route(&[], &[])], &[]), ReadKeys::none());
        // A filter that does not declare its keys may read anything.
        let silent: Vec<Arc<dyn Filter>> = vec![Arc::new(Silent)];
        assert!(request_keys(&routes, &silent).is_all());
    }

    #[test]
    fn response_keys_are_the_status_and_the_filters() {
        let status = ReadKeys::only([keys::PROTOCOL_STATUS]);
        assert_eq!(response_keys(&[]), status);
        let declared: Vec<Arc<dyn Filter>> = vec![Arc::new(Reads(
            ReadKeys::only(["user"]),
            ReadKeys::only(["x-cost"]),
        ))];
        assert_eq!(
            response_keys(&declared),
            ReadKeys::only([keys::PROTOCOL_STATUS, "x-cost"])
        );
        let silent: Vec<Arc<dyn Filter>> = vec![Arc::new(Silent)];
        assert!(response_keys(&silent).is_all());
    }

    /// A codec factory recording the keys its codecs were given.
    #[derive(Default)]
    struct Recording(Arc<Mutex<Vec<(Side, ReadKeys)>>>);

    struct RecordingCodec(Side, Arc<Mutex<Vec<(Side, ReadKeys)>>>);

    impl Codec for RecordingCodec {
        fn decode(
            &mut self,
            _: &mut bytes::BytesMut,
        ) -> Result<Option<meta_protocol::Frame>, meta_protocol::CodecError> {
            Ok(None)
        }

        fn encode(
            &mut self,
            _: &mut meta_protocol::Frame,
            _: &meta_protocol::Mutation,
        ) -> Result<(), meta_protocol::CodecError> {
            Ok(())
        }

        fn set_request_id(
            &mut self,
            _: &mut meta_protocol::Frame,
            _: u64,
        ) -> Result<(), meta_protocol::CodecError> {
            Ok(())
        }

        fn on_error(
            &mut self,
            _: &meta_protocol::Metadata,
            _: &meta_protocol::LocalReply,
            _: &mut bytes::BytesMut,
        ) {
        }

        fn set_read_keys(&mut self, keys: &ReadKeys) {
            self.1.lock().unwrap().push((self.0, keys.clone()));
        }
    }

    impl CodecFactory for Recording {
        fn name(&self) -> &'static str {
            "test.recording"
        }

        fn protocol(&self) -> &'static str {
            "rec"
        }

        fn correlation(&self) -> Correlation {
            Correlation::InOrder
        }

        fn new_codec(&self, side: Side, _: CodecOptions) -> Box<dyn Codec> {
            Box::new(RecordingCodec(side, self.0.clone()))
        }
    }

    #[test]
    fn upstream_codecs_get_the_current_response_keys() {
        let rec = Recording::default();
        let seen = rec.0.clone();
        let status = Arc::new(ReadKeys::only([keys::PROTOCOL_STATUS]));
        let codecs = ListenerCodecs::new(Arc::new(rec), status.clone());
        assert_eq!(
            (codecs.name(), codecs.protocol(), codecs.correlation()),
            ("test.recording", "rec", Correlation::InOrder)
        );
        let _ = codecs.new_codec(Side::Upstream, CodecOptions::default());
        // Downstream codecs get the request keys from their connection instead.
        let _ = codecs.new_codec(Side::Downstream, CodecOptions::default());
        codecs.set_response_keys(Arc::new(ReadKeys::all()));
        let _ = codecs.new_codec(Side::Upstream, CodecOptions::default());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Side::Upstream, (*status).clone()),
                (Side::Upstream, ReadKeys::all())
            ]
        );
    }
}
