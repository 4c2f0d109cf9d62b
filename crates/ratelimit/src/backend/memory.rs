//! In-process counters, for a single service instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{Backend, BackendError, Increment, IncrementFuture};

/// Sweep expired counters after this many increments.
const SWEEP_EVERY: u64 = 4096;

/// Counters in a map guarded by a mutex; expired counters are dropped lazily.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counters: HashMap<String, (u64, Instant)>,
    ops: u64,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many counters are live (for tests and debugging).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.counters.len()).unwrap_or(0)
    }

    /// Whether no counter is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn increment(&self, increments: Vec<Increment>) -> IncrementFuture<'_> {
        let result = self
            .state
            .lock()
            .map_err(|_| BackendError {
                backend: "memory",
                message: "counter lock poisoned".into(),
            })
            .map(|mut state| {
                let now = Instant::now();
                state.ops += 1;
                if state.ops.is_multiple_of(SWEEP_EVERY) {
                    state.counters.retain(|_, (_, expiry)| *expiry > now);
                }
                increments
                    .into_iter()
                    .map(|inc| {
                        let slot = state.counters.entry(inc.key).or_insert((0, now + inc.ttl));
                        if slot.1 <= now {
                            *slot = (0, now + inc.ttl);
                        }
                        slot.0 = slot.0.saturating_add(inc.hits);
                        slot.0
                    })
                    .collect()
            });
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn inc(key: &str, hits: u64, ttl_ms: u64) -> Increment {
        Increment {
            key: key.into(),
            hits,
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[tokio::test]
    async fn counts_per_key_and_expires() {
        let b = MemoryBackend::new();
        let r = b
            .increment(vec![inc("a", 1, 60_000), inc("b", 3, 60_000)])
            .await;
        assert_eq!(r.ok(), Some(vec![1, 3]));
        let r = b.increment(vec![inc("a", 2, 60_000)]).await;
        assert_eq!(r.ok(), Some(vec![3]));
        let r = b.increment(vec![inc("short", 5, 20)]).await;
        assert_eq!(r.ok(), Some(vec![5]));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let r = b.increment(vec![inc("short", 1, 20)]).await;
        assert_eq!(r.ok(), Some(vec![1]), "an expired counter starts again");
        assert_eq!(b.len(), 3);
    }
}
