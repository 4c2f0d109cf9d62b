//! Example: a complete meta-proxy codec for a small custom protocol, tests included.
//!
//! It shows everything a protocol needs to be proxied (routing, multiplexing, local replies,
//! heartbeats) and doubles as the test protocol of the engine's own tests ([`request`]).
//!
//! # Wire format
//!
//! A fixed 16-byte header, big-endian, then the body:
//!
//! | offset | size | field                                                             |
//! |--------|------|-------------------------------------------------------------------|
//! | 0      | 2    | magic `0xCAFE`                                                    |
//! | 2      | 1    | version, must be `1`                                              |
//! | 3      | 1    | flags: bit0 response, bit1 one-way, bit2 heartbeat, bit3 error    |
//! | 4      | 4    | request id (`u32`)                                                |
//! | 8      | 2    | command (`u16`)                                                   |
//! | 10     | 2    | reserved, `0`                                                     |
//! | 12     | 4    | body length (`u32`)                                               |
//!
//! Metadata: `kind` (heartbeat, else response, else one-way, else request), `status` (error flag),
//! `request_id`, and the routable string `cmd` (the command in decimal). Mutations are not
//! supported (the protocol has nowhere to put key/values): a non-empty one is an `Unsupported`
//! error. A local reply is a response with the error flag, the request's id and command, and the
//! reply message as body. A heartbeat request is answered with a heartbeat response (same id).

use bytes::{BufMut, BytesMut};
use meta_protocol::{
    Codec, CodecError, CodecFactory, CodecOptions, Frame, LocalReply, MessageKind, Metadata,
    Mutation, ResponseStatus, Side,
};

/// Magic number opening every frame.
pub const MAGIC: u16 = 0xCAFE;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 16;
/// Flag: the frame is a response.
pub const FLAG_RESPONSE: u8 = 1;
/// Flag: the request expects no response.
pub const FLAG_ONE_WAY: u8 = 2;
/// Flag: the frame is a heartbeat (request, or response when combined with [`FLAG_RESPONSE`]).
pub const FLAG_HEARTBEAT: u8 = 4;
/// Flag: the response carries an error status.
pub const FLAG_ERROR: u8 = 8;

/// Builds a complete frame (a body over 4 GiB cannot be framed: its length saturates).
pub fn frame(flags: u8, id: u32, cmd: u16, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_u16(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(flags);
    out.put_u32(id);
    out.put_u16(cmd);
    out.put_u16(0);
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(body);
    out
}

/// Builds a request frame (two-way: no flags).
pub fn request(id: u32, cmd: u16, body: &[u8]) -> BytesMut {
    frame(0, id, cmd, body)
}

/// Builds a successful response frame.
pub fn response(id: u32, cmd: u16, body: &[u8]) -> BytesMut {
    frame(FLAG_RESPONSE, id, cmd, body)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The codec; stateless, one per connection side.
#[derive(Debug, Clone, Copy)]
pub struct CustomCodec {
    options: CodecOptions,
}

impl Codec for CustomCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        // Reject a bad magic as soon as two bytes are in, without waiting for a whole header.
        if buf.len() >= 2 && be16(buf, 0) != MAGIC {
            let magic = be16(buf, 0);
            return Err(CodecError::malformed(format!("bad magic {magic:#06x}")));
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flags = buf[3];
        let cmd = be16(buf, 8);
        let body_len = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
        let kind = if flags & FLAG_HEARTBEAT != 0 {
            MessageKind::Heartbeat
        } else if flags & FLAG_RESPONSE != 0 {
            MessageKind::Response
        } else if flags & FLAG_ONE_WAY != 0 {
            MessageKind::OneWay
        } else {
            MessageKind::Request
        };
        let mut meta = Metadata::of_kind(kind);
        meta.request_id = u64::from(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
        meta.header_size = HEADER_LEN as u32;
        meta.body_size = body_len;
        if flags & FLAG_ERROR != 0 {
            meta.status = ResponseStatus::Error;
        }
        meta.set("cmd", cmd.to_string());
        if buf[2] != VERSION {
            let e = CodecError::unsupported(format!("unsupported version {}", buf[2]));
            return Err(e.with_request(meta));
        }
        let total = HEADER_LEN.saturating_add(body_len as usize);
        if total > self.options.max_message_size {
            let e = CodecError::too_large(total, self.options.max_message_size);
            return Err(e.with_request(meta));
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        Ok(Some(Frame::new(meta, buf.split_to(total))))
    }

    fn encode(&mut self, _frame: &mut Frame, mutation: &Mutation) -> Result<(), CodecError> {
        if mutation.is_empty() {
            Ok(())
        } else {
            Err(CodecError::unsupported(
                "the custom protocol carries no key/values",
            ))
        }
    }

    fn set_request_id(&mut self, frame: &mut Frame, id: u64) -> Result<(), CodecError> {
        let id32 = u32::try_from(id)
            .map_err(|_| CodecError::malformed(format!("request id {id} exceeds u32")))?;
        let Some(field) = frame.bytes.get_mut(4..8) else {
            return Err(CodecError::malformed("frame shorter than its header"));
        };
        field.copy_from_slice(&id32.to_be_bytes());
        frame.meta.request_id = id;
        Ok(())
    }

    fn on_error(&mut self, request: &Metadata, reply: &LocalReply, out: &mut BytesMut) {
        let cmd = request.get("cmd").and_then(|c| c.parse().ok()).unwrap_or(0);
        let id = u32::try_from(request.request_id).unwrap_or(0);
        let body = reply.message.as_bytes();
        out.extend_from_slice(&frame(FLAG_RESPONSE | FLAG_ERROR, id, cmd, body));
    }

    fn heartbeat_reply(&mut self, ping: &Frame, out: &mut BytesMut) -> bool {
        let flags = ping.bytes.get(3).copied().unwrap_or(0);
        if ping.meta.kind != MessageKind::Heartbeat || flags & FLAG_RESPONSE != 0 {
            return false;
        }
        let id = u32::try_from(ping.meta.request_id).unwrap_or(0);
        let cmd = ping.bytes.get(8..10).map_or(0, |c| be16(c, 0));
        out.extend_from_slice(&frame(FLAG_RESPONSE | FLAG_HEARTBEAT, id, cmd, &[]));
        true
    }
}

/// Factory registered as `example.codec.custom` (protocol `custom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomCodecFactory;

impl CodecFactory for CustomCodecFactory {
    fn name(&self) -> &'static str {
        "example.codec.custom"
    }

    fn protocol(&self) -> &'static str {
        "custom"
    }

    fn new_codec(&self, _side: Side, options: CodecOptions) -> Box<dyn Codec> {
        Box::new(CustomCodec { options })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_protocol::{CodecErrorKind as E, ErrorKind};
    use {MessageKind::*, ResponseStatus::Error as Fail, ResponseStatus::Ok as Fine};

    fn codec() -> Box<dyn Codec> {
        CustomCodecFactory.new_codec(Side::Downstream, CodecOptions::default())
    }

    /// Decodes one whole frame and returns it with (kind, status, id).
    fn dec(c: &mut Box<dyn Codec>, mut b: BytesMut) -> (Frame, (MessageKind, ResponseStatus, u64)) {
        let f = c.decode(&mut b).unwrap().unwrap();
        (f.clone(), (f.meta.kind, f.meta.status, f.meta.request_id))
    }

    fn err(r: Result<Option<Frame>, CodecError>) -> (E, Option<u64>) {
        let e = r.unwrap_err();
        (e.kind, e.request.map(|m| m.request_id))
    }

    #[test]
    fn decodes_two_frames_fed_byte_by_byte() {
        let mut wire = request(7, 42, b"hello");
        wire.extend_from_slice(&frame(FLAG_ONE_WAY, 8, 3, b""));
        let (mut c, mut buf, mut frames) = (codec(), BytesMut::new(), Vec::new());
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert!(buf.is_empty() && frames.len() == 2);
        let m = &frames[0].meta;
        assert_eq!(
            (m.kind, m.request_id, m.get("cmd")),
            (Request, 7, Some("42"))
        );
        assert_eq!((m.header_size, m.body_size), (16, 5));
        assert_eq!(frames[0].bytes, request(7, 42, b"hello"));
        assert_eq!(
            (frames[1].meta.kind, frames[1].meta.request_id),
            (OneWay, 8)
        );
    }

    #[test]
    fn errors() {
        let c = &mut codec();
        let bad_magic = c.decode(&mut BytesMut::from(&b"\x12\x34"[..]));
        assert_eq!(err(bad_magic), (E::Malformed, None));
        let mut bad_version = request(5, 1, b"");
        bad_version[2] = 9;
        assert_eq!(err(c.decode(&mut bad_version)), (E::Unsupported, Some(5)));
        let mut small = CustomCodecFactory.new_codec(
            Side::Upstream,
            CodecOptions {
                max_message_size: 20,
            },
        );
        let too_large = small.decode(&mut request(6, 1, &[0; 5]));
        assert_eq!(err(too_large), (E::TooLarge, Some(6)));
        let mut f = dec(c, request(1, 1, b"")).0;
        let kv: Mutation = [("a", "b")].into_iter().collect();
        assert_eq!(c.encode(&mut f, &kv).unwrap_err().kind, E::Unsupported);
        c.encode(&mut f, &Mutation::new()).unwrap();
        assert_eq!(f.bytes, request(1, 1, b""));
    }

    #[test]
    fn set_request_id_rewrites_in_place() {
        let c = &mut codec();
        let mut f = dec(c, request(1, 9, b"body")).0;
        c.set_request_id(&mut f, 0xDEAD_BEEF).unwrap();
        assert_eq!(f.bytes, request(0xDEAD_BEEF, 9, b"body"));
        assert_eq!(f.meta.request_id, 0xDEAD_BEEF);
        assert!(c.set_request_id(&mut f, u64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn on_error_writes_an_error_response_and_responses_decode() {
        let c = &mut codec();
        let (f, mut out) = (dec(c, request(77, 12, b"")).0, BytesMut::new());
        let reply = LocalReply::new(ErrorKind::RouteNotFound, "no route");
        c.on_error(&f.meta, &reply, &mut out);
        assert_eq!(out, frame(FLAG_RESPONSE | FLAG_ERROR, 77, 12, b"no route"));
        assert_eq!(dec(c, out).1, (Response, Fail, 77));
        assert_eq!(dec(c, response(2, 2, b"")).1, (Response, Fine, 2));
    }

    #[test]
    fn heartbeat_request_is_answered_response_is_not() {
        let (c, mut out) = (&mut codec(), BytesMut::new());
        let ping = dec(c, frame(FLAG_HEARTBEAT, 3, 0, b"")).0;
        assert!(c.heartbeat_reply(&ping, &mut out));
        assert_eq!(out, frame(FLAG_RESPONSE | FLAG_HEARTBEAT, 3, 0, b""));
        let pong = dec(c, out.split());
        assert_eq!(pong.1, (Heartbeat, Fine, 3));
        let req = dec(c, request(1, 1, b"")).0;
        assert!(!c.heartbeat_reply(&pong.0, &mut out) && !c.heartbeat_reply(&req, &mut out));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let (mut c, mut buf) = (codec(), BytesMut::from(&data[..]));
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
    }
}
