//! Counters in Redis, shared by every service instance pointing at the same server.
//!
//! Each request is one `MULTI` / (`INCRBY key hits`, `EXPIRE key ttl`)... / `EXEC` round trip.
//! The connection is made lazily and re-made automatically after a failure; every operation is
//! bounded by [`RedisOptions::timeout`], so a dead or unreachable Redis becomes an error (gRPC
//! UNAVAILABLE) quickly instead of a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backend, BackendError, Increment, IncrementFuture};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port[/db]`, or `host:port` (as the Go service's `REDIS_URL`).
    pub url: String,
    /// Bound on connecting and on each request's round trip (default 100 ms).
    pub timeout: Duration,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            timeout: Duration::from_millis(100),
        }
    }
}

/// The Redis counter backend.
pub struct RedisBackend {
    conn: ConnectionManager,
    timeout: Duration,
    url: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisBackend {
    /// Creates the backend without connecting: the first request connects, and later
    /// requests reconnect after a failure. Fails only on a malformed URL. Must be called
    /// inside a Tokio runtime.
    pub fn new(options: RedisOptions) -> Result<Self, BackendError> {
        let url = if options.url.contains("://") {
            options.url.clone()
        } else {
            format!("redis://{}", options.url)
        };
        let fail = |e: redis::RedisError| BackendError {
            backend: "redis",
            message: format!("{url}: {e}"),
        };
        let client = redis::Client::open(url.as_str()).map_err(fail)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(options.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(fail)?;
        Ok(RedisBackend {
            conn,
            timeout: options.timeout,
            url,
        })
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn increment(&self, increments: Vec<Increment>) -> IncrementFuture<'_> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for inc in &increments {
                pipe.cmd("INCRBY").arg(&inc.key).arg(inc.hits);
                pipe.cmd("EXPIRE")
                    .arg(&inc.key)
                    .arg(inc.ttl.as_secs().max(1))
                    .ignore();
            }
            let fail = |message: String| BackendError {
                backend: "redis",
                message,
            };
            match tokio::time::timeout(self.timeout, pipe.query_async::<Vec<u64>>(&mut conn)).await
            {
                Ok(Ok(counts)) if counts.len() == increments.len() => Ok(counts),
                Ok(Ok(counts)) => Err(fail(format!(
                    "{}: expected {} counts, got {}",
                    self.url,
                    increments.len(),
                    counts.len()
                ))),
                Ok(Err(e)) => Err(fail(format!("{}: {e}", self.url))),
                Err(_) => Err(fail(format!(
                    "{}: no answer within {:?}",
                    self.url, self.timeout
                ))),
            }
        })
    }
}
