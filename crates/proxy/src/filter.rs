//! The L7 filter chain: a plain ordered list of trait objects run before the terminal router.
//!
//! Each filter sees the request (metadata and the request mutation it may add to) and may answer
//! it locally (rate limiting, fault injection, authorization); then it sees the response (or the
//! local reply) in the response phase. The router is not a [`Filter`]: it is the fixed terminal
//! step of every chain ([`meta_config::FilterConfig::Router`]).
//!
//! A filter declares the metadata keys it reads ([`Filter::request_keys`],
//! [`Filter::response_keys`]); the listener tells its codecs the union of what its routes and
//! filters read, so a codec may skip decoding the rest. The default is every key: a filter
//! that does not say is assumed to read anything.
//!
//! A filter that must wait (a remote rate-limit check) returns [`FilterStatus::Wait`] with a
//! `'static` future: the connection goes on reading and serving other requests while this one
//! waits; when the future resolves, the chain resumes with the next filter. Synchronous filters
//! cost no task and no allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use meta_protocol::{LocalReply, Metadata, Mutation, ReadKeys};

/// What a waiting filter resolves to: [`FilterStatus::Continue`] or [`FilterStatus::LocalReply`]
/// (a nested [`FilterStatus::Wait`] is awaited in turn).
pub type FilterFuture = Pin<Box<dyn Future<Output = FilterStatus> + Send>>;

/// What a filter decided for a request.
pub enum FilterStatus {
    /// Go on with the next filter (and eventually the router).
    Continue,
    /// Stop and answer the client with this error, in its protocol.
    LocalReply(LocalReply),
    /// Decide later: the request waits for this future (which must not borrow the request; copy
    /// what it needs from the [`RequestContext`] first).
    Wait(FilterFuture),
}

impl std::fmt::Debug for FilterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterStatus::Continue => f.write_str("Continue"),
            FilterStatus::LocalReply(r) => f.debug_tuple("LocalReply").field(r).finish(),
            FilterStatus::Wait(_) => f.write_str("Wait(..)"),
        }
    }
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

    /// The request metadata string keys this filter reads, in either phase. A key left out may
    /// be missing from the metadata it sees (the codec skipped it). Default: every key.
    fn request_keys(&self) -> ReadKeys {
        ReadKeys::all()
    }

    /// The response metadata string keys [`Filter::on_response`] reads. Default: every key.
    fn response_keys(&self) -> ReadKeys {
        ReadKeys::all()
    }
}

/// Where the request phase of a chain stopped.
pub enum ChainStatus {
    /// Every filter let the request through.
    Continue,
    /// A filter answered the request.
    LocalReply(LocalReply),
    /// The filter at `index` must be awaited; afterwards the chain resumes at `index + 1`.
    Wait {
        /// The waiting filter's position in the chain.
        index: usize,
        /// What it waits for.
        future: FilterFuture,
    },
}

/// Runs the request phase of `chain` from position `from`: the first local reply stops it, the
/// first wait suspends it.
pub fn run_request(
    chain: &[Arc<dyn Filter>],
    from: usize,
    ctx: &mut RequestContext<'_>,
) -> ChainStatus {
    for (index, f) in chain.iter().enumerate().skip(from) {
        match f.on_request(ctx) {
            FilterStatus::Continue => {}
            FilterStatus::LocalReply(r) => {
                tracing::debug!(filter = f.name(), "local reply: {r}");
                return ChainStatus::LocalReply(r);
            }
            FilterStatus::Wait(future) => return ChainStatus::Wait { index, future },
        }
    }
    ChainStatus::Continue
}

/// Awaits a waiting filter's future (and any wait it resolves to) down to a decision.
pub async fn settle(mut future: FilterFuture) -> Result<(), LocalReply> {
    loop {
        match future.await {
            FilterStatus::Continue => return Ok(()),
            FilterStatus::LocalReply(r) => return Err(r),
            FilterStatus::Wait(next) => future = next,
        }
    }
}
