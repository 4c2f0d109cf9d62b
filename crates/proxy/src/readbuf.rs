//! The read buffer of a connection (downstream and upstream), sized by the frames it carries.
//!
//! - Room is made only once the socket is readable, so an idle connection holds no buffer of
//!   its own.
//! - When the codec knows a partly received frame's length, room for all of the rest is made at
//!   once: one allocation per large frame instead of doubling (and copying) the buffer while the
//!   frame arrives.
//! - The next frame is expected to be as large as the previous one: after a 120 KB frame the
//!   next read goes into a fresh buffer of that size, so a stream of large frames is read in
//!   place (no copy of the first part), each frame in one allocation that it then owns while it
//!   is forwarded. When the previous frame has been forwarded already, its allocation is reused.

use bytes::BytesMut;
use meta_protocol::{Codec, CodecError, Frame};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// Room made for a read when nothing says how much is coming.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Most bytes reserved ahead of their arrival on a header's or a previous frame's word: a larger
/// frame still grows the buffer as it comes, so a header alone cannot make the proxy allocate
/// megabytes.
pub(crate) const MAX_RESERVE_AHEAD: usize = 1024 * 1024;

/// Bytes received and not yet decoded, and what the connection's past frames say about the
/// next ones.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: BytesMut,
    /// Room made for a read when nothing better is known ([`READ_CHUNK`]; smaller in tests).
    chunk: usize,
    /// Length of the last frame decoded from this connection.
    last_frame: usize,
}

impl ReadBuf {
    /// An empty buffer (nothing allocated until the first read).
    pub(crate) fn new() -> Self {
        Self::with_chunk(READ_CHUNK)
    }

    /// An empty buffer reading `chunk` bytes at a time when nothing better is known.
    pub(crate) fn with_chunk(chunk: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: chunk.max(1),
            last_frame: 0,
        }
    }

    /// The bytes received and not yet decoded (tests feed bytes through it).
    #[cfg(test)]
    pub(crate) fn bytes(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Waits until `rd` is readable, makes room, and reads once. `Ok(0)` is the end of the
    /// stream. Cancel-safe: nothing is read unless the future completes.
    pub(crate) async fn read(&mut self, rd: &mut OwnedReadHalf) -> std::io::Result<usize> {
        rd.readable().await?;
        self.make_room();
        rd.read_buf(&mut self.buf).await
    }

    /// The next whole frame at the front, decoded by `codec`, or `None` until more bytes
    /// arrive (room for the rest of a frame of known length is then made in one allocation).
    pub(crate) fn decode(&mut self, codec: &mut dyn Codec) -> Result<Option<Frame>, CodecError> {
        let frame = codec.decode(&mut self.buf)?;
        match &frame {
            Some(f) => self.decoded(f.bytes.len()),
            None => self.reserve_frame(|b| codec.frame_len(b)),
        }
        Ok(frame)
    }

    /// Notes that a frame of `len` bytes was just split off the front.
    fn decoded(&mut self, len: usize) {
        self.last_frame = len;
    }

    /// After a decode that needs more bytes: when `frame_len` (the codec's
    /// [`meta_protocol::Codec::frame_len`]) knows the whole length of the frame at the front,
    /// makes room for the rest of it in one allocation of exactly that size (at most
    /// [`MAX_RESERVE_AHEAD`] ahead).
    fn reserve_frame(&mut self, frame_len: impl FnOnce(&[u8]) -> Option<usize>) {
        if self.buf.is_empty() {
            return;
        }
        let Some(total) = frame_len(&self.buf) else {
            return;
        };
        let missing = total.saturating_sub(self.buf.len()).min(MAX_RESERVE_AHEAD);
        self.ensure_exact(missing);
    }

    /// Makes sure the next read has room: at the start of a frame, as much as the previous
    /// frame took when that is more than a chunk; in the middle of a frame of unknown length, a
    /// chunk more (the buffer then grows by doubling).
    fn make_room(&mut self) {
        if self.buf.capacity() > self.buf.len() {
            return;
        }
        if self.buf.is_empty() {
            let want = self.last_frame.min(MAX_RESERVE_AHEAD).max(self.chunk);
            self.ensure_exact(want);
        } else {
            self.buf.reserve(self.chunk);
        }
    }

    /// Room for `additional` more bytes: the current allocation when it is ours alone and large
    /// enough (what is buffered moves to its front), else a fresh one of exactly the size
    /// needed (what is buffered is copied; the frames split off before keep the old one).
    fn ensure_exact(&mut self, additional: usize) {
        if self.buf.capacity() - self.buf.len() >= additional || self.buf.try_reclaim(additional) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buf.len() + additional);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
    }
}

#[cfg(test)]
#[path = "readbuf_tests.rs"]
mod tests;
