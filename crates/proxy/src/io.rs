//! The single writer of a connection: batches every queued buffer into one write.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};

/// Largest batch gathered before a write (more stays queued for the next write).
const MAX_BATCH: usize = 256 * 1024;

/// Bytes queued for a writer and not yet written, for backpressure: the reader of the same
/// connection pauses while too much is queued and is woken as the writer drains.
#[derive(Debug, Default)]
pub struct Backlog {
    queued: AtomicUsize,
    /// Notified after each write and whenever a request completes.
    pub drained: Notify,
}

impl Backlog {
    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Accounts for `n` more queued bytes.
    pub fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }
}

/// Writes everything received on `rx` to `wr`, gathering what is ready into one write call.
/// Returns `Ok` when every sender is gone (after a graceful shutdown of the write side), or the
/// first write error.
pub async fn write_pump(
    mut wr: OwnedWriteHalf,
    rx: &mut mpsc::UnboundedReceiver<BytesMut>,
    backlog: Option<&Backlog>,
) -> std::io::Result<()> {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        wr.write_all(&batch).await?;
        if let Some(b) = backlog {
            b.queued.fetch_sub(batch.len(), Ordering::Relaxed);
            b.drained.notify_one();
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}
