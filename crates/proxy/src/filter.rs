//! The L7 filter chain: a plain ordered list of trait objects run before the terminal router.
//!
//! Each filter sees the request (metadata and the request mutation it may add to) and may answer
//! it locally (rate limiting, fault injection, authorization); then it sees the response (or the
//! local reply) in the response phase. The router is not a [`Filter`]: it is the fixed terminal
//! step of every chain ([`meta_config::FilterConfig::Router`]).

use meta_protocol::{LocalReply, Metadata, Mutation};

/// What a filter decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterStatus {
    /// Go on with the next filter (and eventually the router).
    Continue,
    /// Stop and answer the client with this error, in its protocol.
    LocalReply(LocalReply),
}

/// The request as a filter sees it.
#[derive(Debug)]
pub struct RequestContext<'a> {
    /// Listener name.
    pub listener: &'a str,
    /// Decoded request metadata (filters may add string keys, e.g. for routing).
    pub meta: &'a mut Metadata,
    /// Key/values to write into the request before it goes upstream (route `request_mutation`
    /// is applied after the filters and overrides equal keys).
    pub mutation: &'a mut Mutation,
}

/// One L7 filter. Shared by every connection of a listener: keep state in atomics or locks.
pub trait Filter: Send + Sync {
    /// Filter name as configured (e.g. `aeraki.meta_protocol.filters.local_ratelimit`).
    fn name(&self) -> &'static str;

    /// Request phase, in chain order.
    fn on_request(&self, ctx: &mut RequestContext<'_>) -> FilterStatus {
        let _ = ctx;
        FilterStatus::Continue
    }

    /// Response phase, in chain order: the response (or local reply) metadata, for accounting.
    fn on_response(&self, request: &Metadata, response: Option<&Metadata>) {
        let _ = (request, response);
    }
}

/// Runs the request phase of `chain`; the first local reply stops it.
pub fn run_request(
    chain: &[std::sync::Arc<dyn Filter>],
    ctx: &mut RequestContext<'_>,
) -> FilterStatus {
    for f in chain {
        if let FilterStatus::LocalReply(r) = f.on_request(ctx) {
            tracing::debug!(filter = f.name(), "local reply: {r}");
            return FilterStatus::LocalReply(r);
        }
    }
    FilterStatus::Continue
}
