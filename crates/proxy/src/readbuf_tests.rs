//! Read-buffer tests with the real Thrift codec on the upstream side (framed binary replies):
//! frames split at every byte boundary, large frames read in place in one allocation each.

use bytes::BytesMut;
use codec_thrift::ThriftCodecFactory;
use meta_protocol::{Codec, CodecFactory, CodecOptions, Frame, Side};

use super::*;

/// A framed binary Thrift REPLY to `sayHello` with seqid `id` whose result is a string of
/// `payload` bytes.
fn reply(id: i32, payload: usize) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&0x8001_0002_u32.to_be_bytes()); // version 1, REPLY
    m.extend_from_slice(&8_i32.to_be_bytes());
    m.extend_from_slice(b"sayHello");
    m.extend_from_slice(&id.to_be_bytes());
    m.push(11); // field 0 (success): string
    m.extend_from_slice(&0_i16.to_be_bytes());
    m.extend_from_slice(&i32::try_from(payload).unwrap_or(i32::MAX).to_be_bytes());
    m.extend(std::iter::repeat_n(b'x', payload));
    m.push(0); // end of the result struct
    let mut f = u32::try_from(m.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    f.extend(m);
    f
}

fn upstream_codec() -> Box<dyn Codec> {
    ThriftCodecFactory.new_codec(Side::Upstream, CodecOptions::default())
}

/// What the connection's read loop does with one read: room first (as [`ReadBuf::read`]),
/// then at most `max_read` bytes of `data`, never more than the room made (a socket read
/// fills only the spare capacity), then every whole frame decoded. Returns the bytes consumed.
fn read_once(
    rb: &mut ReadBuf,
    codec: &mut dyn Codec,
    data: &[u8],
    max_read: usize,
    frames: &mut Vec<Frame>,
) -> usize {
    rb.make_room();
    let room = rb.bytes().capacity() - rb.bytes().len();
    let n = data.len().min(max_read).min(room);
    rb.bytes().extend_from_slice(&data[..n]);
    decode_all(rb, codec, frames);
    n
}

fn decode_all(rb: &mut ReadBuf, codec: &mut dyn Codec, frames: &mut Vec<Frame>) {
    loop {
        match rb.decode(codec) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return,
            Err(e) => panic!("decode failed: {e}"),
        }
    }
}

/// Delivers `data` in reads of at most `max_read` bytes.
fn deliver(rb: &mut ReadBuf, codec: &mut dyn Codec, data: &[u8], max_read: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < data.len() {
        at += read_once(rb, codec, &data[at..], max_read, &mut frames);
    }
    frames
}

#[test]
fn frames_split_at_every_byte_boundary_decode_intact() {
    // Small and large frames (against a 64-byte chunk), back to back.
    let originals: Vec<Vec<u8>> = [(1, 0), (2, 300), (3, 5), (4, 1000), (5, 64), (6, 2000)]
        .iter()
        .map(|&(id, len)| reply(id, len))
        .collect();
    let wire: Vec<u8> = originals.concat();
    for cut in 0..=wire.len() {
        let mut rb = ReadBuf::with_chunk(64);
        let mut codec = upstream_codec();
        let mut frames = deliver(&mut rb, codec.as_mut(), &wire[..cut], usize::MAX);
        frames.extend(deliver(&mut rb, codec.as_mut(), &wire[cut..], usize::MAX));
        assert_eq!(frames.len(), originals.len(), "cut at {cut}");
        for (i, (f, o)) in frames.iter().zip(&originals).enumerate() {
            assert_eq!(&f.bytes[..], &o[..], "frame {i}, cut at {cut}");
            assert_eq!(f.meta.request_id, i as u64 + 1, "frame {i}, cut at {cut}");
        }
        assert!(rb.bytes().is_empty(), "cut at {cut}: bytes left over");
    }
}

#[test]
fn one_byte_reads_decode_intact() {
    let originals = [reply(7, 3000), reply(8, 1), reply(9, 200)];
    let mut rb = ReadBuf::with_chunk(64);
    let mut codec = upstream_codec();
    let frames = deliver(&mut rb, codec.as_mut(), &originals.concat(), 1);
    let got: Vec<&[u8]> = frames.iter().map(|f| &f.bytes[..]).collect();
    let want: Vec<&[u8]> = originals.iter().map(Vec::as_slice).collect();
    assert_eq!(got, want);
}

#[test]
fn large_frames_are_read_in_place_one_allocation_each() {
    const FRAMES: i32 = 6;
    let originals: Vec<Vec<u8>> = (1..=FRAMES).map(|id| reply(id, 150_000)).collect();
    let wire = originals.concat();
    let mut rb = ReadBuf::new();
    let mut codec = upstream_codec();
    // Frames stay alive (in flight to their callers), so no allocation can be reused.
    let mut frames = Vec::new();
    // Where each frame's first byte landed, and the room made for it at that moment.
    let mut starts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        if rb.bytes().is_empty() {
            rb.make_room();
            let b = rb.bytes();
            starts.push((b.as_ptr() as usize, b.capacity()));
        }
        // Socket reads deliver at most one loopback segment at a time.
        at += read_once(&mut rb, codec.as_mut(), &wire[at..], 65_483, &mut frames);
    }
    assert_eq!(frames.len(), originals.len());
    for (i, (f, o)) in frames.iter().zip(&originals).enumerate() {
        assert_eq!(&f.bytes[..], &o[..], "frame {i}");
        if i == 0 {
            // Nothing known yet: a chunk first, then one allocation for the rest.
            assert_eq!(starts[0].1, READ_CHUNK);
            continue;
        }
        let (ptr, room) = starts[i];
        assert_eq!(
            room,
            o.len(),
            "frame {i}: one allocation of exactly its size"
        );
        assert_eq!(
            f.bytes.as_ptr() as usize,
            ptr,
            "frame {i}: read in place, never copied"
        );
    }
}

#[test]
fn a_forwarded_frame_leaves_its_allocation_to_the_next() {
    let first = reply(1, 100_000);
    let mut rb = ReadBuf::new();
    let mut codec = upstream_codec();
    let frames = deliver(&mut rb, codec.as_mut(), &first, usize::MAX);
    let ptr = frames[0].bytes.as_ptr() as usize;
    drop(frames); // written upstream and released
    rb.make_room();
    assert_eq!(
        rb.bytes().as_ptr() as usize,
        ptr,
        "the same allocation, reused"
    );
    assert!(rb.bytes().capacity() >= first.len());
}

#[test]
fn nothing_is_allocated_before_the_first_read() {
    let mut rb = ReadBuf::new();
    assert_eq!(rb.bytes().capacity(), 0);
}

#[test]
fn a_header_alone_reserves_at_most_the_bound() {
    let mut rb = ReadBuf::new();
    let mut codec = upstream_codec();
    // A frame header announcing 8 MiB (the default maximum message size) of which 16 bytes
    // arrived.
    let mut head = (8 * 1024 * 1024_u32 - 4).to_be_bytes().to_vec();
    head.extend_from_slice(&0x8001_0002_u32.to_be_bytes());
    head.extend_from_slice(&[0; 8]);
    let frames = deliver(&mut rb, codec.as_mut(), &head, usize::MAX);
    assert!(frames.is_empty());
    let b: &BytesMut = rb.bytes();
    assert!(
        b.capacity() >= b.len() + MAX_RESERVE_AHEAD / 2,
        "room made ahead"
    );
    assert!(
        b.capacity() <= b.len() + MAX_RESERVE_AHEAD,
        "{}",
        b.capacity()
    );
}
