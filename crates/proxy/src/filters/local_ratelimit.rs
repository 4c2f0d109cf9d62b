//! `aeraki.meta_protocol.filters.local_ratelimit`: token buckets shared by every connection of
//! a listener.
//!
//! A bucket starts full and gains `tokens_per_fill` tokens at every whole `fill_interval` since
//! it was created, up to `max_tokens` (Aeraki's semantics). There is no timer: the refill is
//! computed when a request takes a token, from the elapsed time, and the (tokens, period) pair
//! lives in one `AtomicU64` updated by compare-and-swap. The first condition whose matchers
//! hold takes from its own bucket (no fallthrough); otherwise the filter-wide bucket, if any;
//! otherwise the request passes.

use std::sync::atomic::{AtomicU64, Ordering};

use meta_config::{LocalRateLimit, MetadataMatcher};
use meta_protocol::{ErrorKind, LocalReply, ReadKeys};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::filter::{Filter, FilterStatus, RequestContext};

/// A lock-free token bucket refilled lazily.
#[derive(Debug)]
pub struct TokenBucket {
    max_tokens: u32,
    tokens_per_fill: u32,
    interval_nanos: u128,
    start: Instant,
    /// `tokens << 32 | period`: tokens left, and the low 32 bits of the number of whole
    /// intervals since `start` at the last refill.
    state: AtomicU64,
}

fn pack(tokens: u32, period: u32) -> u64 {
    (u64::from(tokens) << 32) | u64::from(period)
}

fn unpack(state: u64) -> (u32, u32) {
    // Truncations are the point: the halves of the packed state.
    #[allow(clippy::cast_possible_truncation)]
    ((state >> 32) as u32, state as u32)
}

impl TokenBucket {
    /// A full bucket whose refill periods start at `now`.
    pub fn new(config: meta_config::TokenBucket, now: Instant) -> Self {
        Self {
            max_tokens: config.max_tokens,
            tokens_per_fill: config.tokens_per_fill,
            interval_nanos: config.fill_interval.as_nanos().max(1),
            start: now,
            state: AtomicU64::new(pack(config.max_tokens, 0)),
        }
    }

    /// Low 32 bits of the number of whole intervals between `start` and `now` (wraps after
    /// 2^32 intervals, > 6 years at the 50 ms minimum: fine for a delta).
    fn period(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        #[allow(clippy::cast_possible_truncation)]
        let period = (elapsed / self.interval_nanos) as u32;
        period
    }

    /// `(tokens, last)` refilled up to `period`. Another caller may have refilled for a later
    /// period already: then nothing is added and `last` stays.
    fn refilled(&self, (tokens, last): (u32, u32), period: u32) -> (u32, u32) {
        #[allow(clippy::cast_possible_wrap)]
        let passed = period.wrapping_sub(last) as i32;
        if passed <= 0 {
            return (tokens, last);
        }
        let added = u64::from(passed.unsigned_abs()) * u64::from(self.tokens_per_fill);
        let t = (u64::from(tokens) + added).min(u64::from(self.max_tokens));
        (u32::try_from(t).unwrap_or(self.max_tokens), period)
    }

    /// Takes one token at time `now`; false when the bucket is empty.
    pub fn try_take(&self, now: Instant) -> bool {
        let period = self.period(now);
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (tokens, last) = self.refilled(unpack(current), period);
            if tokens == 0 {
                return false;
            }
            let next = pack(tokens - 1, last);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Tokens left at time `now` (for tests and diagnostics).
    pub fn available(&self, now: Instant) -> u32 {
        self.refilled(unpack(self.state.load(Ordering::Acquire)), self.period(now))
            .0
    }
}

/// The local rate-limit filter of one listener.
pub struct LocalRateLimitFilter {
    conditions: Vec<(Vec<MetadataMatcher>, TokenBucket)>,
    global: Option<TokenBucket>,
    ok: Counter,
    rate_limited: Counter,
}

impl LocalRateLimitFilter {
    /// Full buckets for `config`; `(ok, rate_limited)` counters.
    pub fn new(config: &LocalRateLimit, (ok, rate_limited): (Counter, Counter)) -> Self {
        let now = Instant::now();
        Self {
            conditions: config
                .conditions
                .iter()
                .map(|c| (c.matchers.clone(), TokenBucket::new(c.token_bucket, now)))
                .collect(),
            global: config.token_bucket.map(|b| TokenBucket::new(b, now)),
            ok,
            rate_limited,
        }
    }

    /// The bucket that applies to a request with metadata `meta`, if any.
    fn bucket(&self, meta: &meta_protocol::Metadata) -> Option<&TokenBucket> {
        self.conditions
            .iter()
            .find(|(matchers, _)| matchers.iter().all(|m| m.matches(meta.get(&m.name))))
            .map(|(_, b)| b)
            .or(self.global.as_ref())
    }
}

impl Filter for LocalRateLimitFilter {
    fn name(&self) -> &'static str {
        "aeraki.meta_protocol.filters.local_ratelimit"
    }

    /// The keys of its conditions' matchers.
    fn request_keys(&self) -> ReadKeys {
        ReadKeys::only(
            self.conditions
                .iter()
                .flat_map(|(matchers, _)| matchers.iter().map(|m| &m.name)),
        )
    }

    fn response_keys(&self) -> ReadKeys {
        ReadKeys::none()
    }

    fn on_request(&self, ctx: &mut RequestContext<'_>) -> FilterStatus {
        let Some(bucket) = self.bucket(ctx.meta) else {
            return FilterStatus::Continue;
        };
        if bucket.try_take(Instant::now()) {
            self.ok.inc();
            return FilterStatus::Continue;
        }
        self.rate_limited.inc();
        FilterStatus::LocalReply(LocalReply::new(
            ErrorKind::OverLimit,
            format!(
                "meta protocol local rate limit: request '{}' has been rate limited",
                ctx.meta.request_id
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
