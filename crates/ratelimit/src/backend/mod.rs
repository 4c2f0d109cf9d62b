//! Counter backends: where the hits of each fixed window are counted.
//!
//! A backend only adds hits to named counters that expire; the service builds the keys
//! (`domain_key_value_..._windowstart`, as envoyproxy/ratelimit does) and decides OK or
//! OVER_LIMIT from the counts returned.

mod memory;
mod redis_store;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use memory::MemoryBackend;
pub use redis_store::{RedisBackend, RedisOptions};

/// One counter increment: add `hits` to `key`, which expires `ttl` after its window began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    pub key: String,
    pub hits: u64,
    pub ttl: Duration,
}

/// A backend failure: the service answers gRPC UNAVAILABLE so clients apply their failure mode.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
}

/// The future returned by [`Backend::increment`].
pub type IncrementFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u64>, BackendError>> + Send + 'a>>;

/// A store of expiring counters.
pub trait Backend: Send + Sync + 'static {
    /// A short name for metrics and errors (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// Adds each increment's hits to its counter (creating it with its TTL when absent) and
    /// returns the counters' new values, in order. All increments of one request are sent
    /// together; a backend must fail rather than hang.
    fn increment(&self, increments: Vec<Increment>) -> IncrementFuture<'_>;
}
