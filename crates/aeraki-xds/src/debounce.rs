//! Coalescing of change triggers before a publish.
//!
//! Config changes arrive in bursts (an editor writes a file twice, `kubectl apply` of a
//! directory). The serve loop waits for a batch with [`Debouncer::next_batch`]: it returns
//! once no trigger arrived for `quiet` (default 100 ms), or `max` (default 1 s) after the
//! first trigger of the batch, whichever comes first — so a steady stream of changes still
//! publishes at least once a second.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// Quiet-period / max-delay trigger coalescer. See the module doc.
#[derive(Debug, Clone, Copy)]
pub struct Debouncer {
    quiet: Duration,
    max: Duration,
}

impl Default for Debouncer {
    fn default() -> Self {
        Debouncer::new(Duration::from_millis(100), Duration::from_secs(1))
    }
}

impl Debouncer {
    /// `quiet`: how long without triggers ends a batch; `max`: the longest a batch may wait
    /// after its first trigger (raised to `quiet` if smaller).
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Debouncer {
            quiet,
            max: max.max(quiet),
        }
    }

    /// Waits for the first trigger, then collects triggers until the batch ends. Returns the
    /// batch in arrival order, or `None` when every sender has gone and nothing is pending.
    /// Triggers that arrive after the batch ends stay queued for the next call.
    pub async fn next_batch<T>(&self, rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
        let first = rx.recv().await?;
        let started = Instant::now();
        let deadline = started + self.max;
        let mut batch = vec![first];
        let mut quiet_until = started + self.quiet;
        loop {
            let until = quiet_until.min(deadline);
            tokio::select! {
                trigger = rx.recv() => match trigger {
                    Some(trigger) => {
                        batch.push(trigger);
                        quiet_until = Instant::now() + self.quiet;
                    }
                    None => return Some(batch),
                },
                () = sleep_until(until) => return Some(batch),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_is_one_batch_after_quiet_period() {
        let (tx, mut rx) = mpsc::channel(64);
        let debouncer = Debouncer::default();
        let start = Instant::now();
        tokio::spawn(async move {
            for i in 0..5 {
                tx.send(i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let batch = debouncer.next_batch(&mut rx).await.unwrap();
        assert_eq!(batch, vec![0, 1, 2, 3, 4]);
        // Last trigger at 120 ms, then 100 ms of quiet.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(220) && took < Duration::from_millis(260),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn steady_stream_is_cut_at_max() {
        let (tx, mut rx) = mpsc::channel(1024);
        let debouncer = Debouncer::default();
        tokio::spawn(async move {
            for i in 0..100u32 {
                if tx.send(i).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let start = Instant::now();
        let first = debouncer.next_batch(&mut rx).await.unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1060),
            "{took:?}"
        );
        assert!((19..=21).contains(&first.len()), "{}", first.len());
        let second = debouncer.next_batch(&mut rx).await.unwrap();
        assert_eq!(
            second[0],
            first[first.len() - 1] + 1,
            "nothing lost between batches"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closed_channel_ends() {
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(7).await.unwrap();
        drop(tx);
        let debouncer = Debouncer::default();
        assert_eq!(debouncer.next_batch(&mut rx).await, Some(vec![7]));
        assert_eq!(debouncer.next_batch(&mut rx).await, None);
    }
}
