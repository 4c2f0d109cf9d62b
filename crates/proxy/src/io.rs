//! The single writer of a connection: gathers every queued buffer into one vectored write.
//!
//! Large buffers (a 120 KB request or response) are handed to the kernel where they are, as
//! separate `writev` slices, never copied into a batch; small ones are appended to the small
//! buffer before them so that many tiny answers still make few slices.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};

/// Largest batch gathered before a write (more stays queued for the next write).
const MAX_BATCH: usize = 256 * 1024;

/// Most slices passed to one vectored write (well under every system's `IOV_MAX`).
const MAX_SLICES: usize = 64;

/// A buffer at most this long is appended to the buffer before it (if that one is small too)
/// instead of taking a slice of its own.
const COALESCE: usize = 4 * 1024;

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
    let mut queue = VecDeque::new();
    while let Some(first) = rx.recv().await {
        let mut batch = first.len();
        queue.push_back(first);
        while batch < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    batch += more.len();
                    push(&mut queue, more);
                    if queue.len() >= MAX_SLICES {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        write_all(&mut wr, &mut queue).await?;
        if let Some(b) = backlog {
            b.queued.fetch_sub(batch, Ordering::Relaxed);
            b.drained.notify_one();
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

/// Queues `more`, appending it to the last buffer when both are small.
fn push(queue: &mut VecDeque<BytesMut>, more: BytesMut) {
    match queue.back_mut() {
        Some(last) if more.len() <= COALESCE && last.len() <= COALESCE => {
            last.extend_from_slice(&more);
        }
        _ => queue.push_back(more),
    }
}

/// Writes every queued buffer, in order, with as few vectored writes as the socket allows.
async fn write_all(wr: &mut OwnedWriteHalf, queue: &mut VecDeque<BytesMut>) -> std::io::Result<()> {
    while !queue.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for (slot, buf) in slices.iter_mut().zip(queue.iter()) {
                *slot = IoSlice::new(buf);
                n += 1;
            }
            wr.write_vectored(&slices[..n]).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        consume(queue, written);
    }
    Ok(())
}

/// Drops the first `n` written bytes from the front of `queue`.
fn consume(queue: &mut VecDeque<BytesMut>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        queue.pop_front();
    }
    // Empty buffers (nothing to write) must not hold the queue.
    while queue.front().is_some_and(|b| b.is_empty()) {
        queue.pop_front();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test setup")]
mod tests {
    use super::*;

    fn q(parts: &[&[u8]]) -> VecDeque<BytesMut> {
        parts.iter().map(|p| BytesMut::from(*p)).collect()
    }

    #[test]
    fn consume_advances_across_buffers() {
        let mut queue = q(&[b"abc", b"", b"defg", b"h"]);
        consume(&mut queue, 2);
        assert_eq!(queue.front().map(|b| &b[..]), Some(&b"c"[..]));
        consume(&mut queue, 3);
        assert_eq!(
            queue.iter().map(|b| &b[..]).collect::<Vec<_>>(),
            [&b"fg"[..], b"h"]
        );
        consume(&mut queue, 3);
        assert!(queue.is_empty());
    }

    #[test]
    fn small_buffers_coalesce_large_ones_stay_apart() {
        let mut queue = q(&[b"ab"]);
        push(&mut queue, BytesMut::from(&b"cd"[..]));
        assert_eq!(queue.len(), 1);
        assert_eq!(&queue[0][..], b"abcd");
        push(&mut queue, BytesMut::from(&vec![7u8; COALESCE + 1][..]));
        push(&mut queue, BytesMut::from(&b"ef"[..]));
        assert_eq!(
            queue.len(),
            3,
            "a large buffer is a slice of its own, and so is what follows"
        );
        assert_eq!(&queue[2][..], b"ef");
    }

    #[tokio::test]
    async fn writes_everything_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (_rd, wr) = client.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut expected = Vec::new();
        for i in 0..200u32 {
            // Mixed sizes: tiny answers and buffers far larger than a socket buffer.
            let len = if i % 10 == 0 {
                150_000
            } else {
                (i as usize * 37) % 3000
            };
            let part: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            expected.extend_from_slice(&part);
            tx.send(BytesMut::from(&part[..])).unwrap();
        }
        drop(tx);
        let pump = tokio::spawn(async move { write_pump(wr, &mut rx, None).await });
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got),
        )
        .await
        .unwrap()
        .unwrap();
        pump.await.unwrap().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ or are out of order");
    }
}
