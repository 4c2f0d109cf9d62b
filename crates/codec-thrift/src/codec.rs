//! The per-connection Thrift codec: transport detection, framing, metadata, id rewriting,
//! mutations and local replies.

use bytes::{BufMut, BytesMut};
use meta_protocol::{
    Codec, CodecError, ErrorKind, Frame, LocalReply, MessageKind, Metadata, Mutation,
    ResponseStatus, Side, keys,
};

use crate::compact;
use crate::cursor::{Cursor, Stop};
use crate::message::{self, MessageHeader, MessageType, Protocol, Transport, Variant};
use crate::theader;

/// Bytes of a too-large frame the codec waits for to read the request's seqid before failing.
const PEEK: usize = 512;

/// `TApplicationException` types used in local replies.
pub(crate) mod ex_type {
    pub(crate) const UNKNOWN_METHOD: i32 = 1;
    pub(crate) const INTERNAL_ERROR: i32 = 6;
    pub(crate) const PROTOCOL_ERROR: i32 = 7;
}

/// Thrift codec for one connection side (see the crate docs).
#[derive(Debug)]
pub struct ThriftCodec {
    side: Side,
    max_size: usize,
    variant: Option<Variant>,
    /// The buffer must hold this many bytes before parsing is worth retrying.
    need: usize,
}

/// Outcome of one parse attempt that did not produce a frame.
enum NoFrame {
    /// Parse again once the buffer holds this many bytes.
    Wait(usize),
    Fail(CodecError),
}

impl From<CodecError> for NoFrame {
    fn from(e: CodecError) -> Self {
        NoFrame::Fail(e)
    }
}

/// A complete frame found at the front of the buffer.
struct Parsed {
    len: usize,
    meta: Metadata,
    variant: Variant,
}

impl ThriftCodec {
    /// A codec for `side` refusing frames above `max_size` bytes.
    pub fn new(side: Side, max_size: usize) -> Self {
        Self {
            side,
            max_size,
            variant: None,
            need: 0,
        }
    }

    /// Attaches `meta` to `err` when it describes a request this side could answer.
    fn attach(&self, err: CodecError, meta: Option<&Metadata>) -> CodecError {
        match meta {
            Some(m) if self.side == Side::Downstream && m.kind == MessageKind::Request => {
                err.with_request(m.clone())
            }
            _ => err,
        }
    }

    fn check_transport(&self, transport: Transport) -> Result<(), NoFrame> {
        match self.variant {
            Some(v) if v.transport != transport => {
                Err(NoFrame::Fail(CodecError::malformed(format!(
                    "thrift transport changed mid-connection: {:?} after {:?}",
                    transport, v.transport
                ))))
            }
            _ => Ok(()),
        }
    }

    fn parse(&self, buf: &[u8]) -> Result<Parsed, NoFrame> {
        match buf {
            [] | [_] => Err(NoFrame::Wait(2)),
            [0x80, ..] => self.parse_unframed(buf, Protocol::Binary),
            [compact::PROTOCOL_ID, ..] => self.parse_unframed(buf, Protocol::Compact),
            _ => self.parse_framed(buf),
        }
    }

    fn parse_unframed(&self, buf: &[u8], protocol: Protocol) -> Result<Parsed, NoFrame> {
        self.check_transport(Transport::Unframed)?;
        let header = match message::read_header(protocol, buf) {
            Ok(h) => h,
            Err(Stop::Incomplete(n)) if n > self.max_size => {
                return Err(CodecError::too_large(n, self.max_size).into());
            }
            Err(Stop::Incomplete(n)) => return Err(NoFrame::Wait(n)),
            Err(Stop::Malformed(why)) => return Err(CodecError::malformed(why).into()),
        };
        // Metadata strings are built only once the message is whole (or failed).
        let meta = || {
            let mut meta = Metadata::default();
            message_meta(&header, &mut meta);
            meta
        };
        let mut c = Cursor::at(buf, header.body_at);
        match message::skip_struct(protocol, &mut c) {
            Ok(()) => {}
            Err(Stop::Incomplete(n)) if n > self.max_size => {
                let err = CodecError::too_large(n, self.max_size);
                return Err(self.attach(err, Some(&meta())).into());
            }
            Err(Stop::Incomplete(n)) => return Err(NoFrame::Wait(n)),
            Err(Stop::Malformed(why)) => {
                let err = CodecError::malformed(format!("thrift message body: {why}"));
                return Err(self.attach(err, Some(&meta())).into());
            }
        }
        let len = c.pos();
        let mut meta = meta();
        if len > self.max_size {
            let err = CodecError::too_large(len, self.max_size);
            return Err(self.attach(err, Some(&meta)).into());
        }
        if header.mtype != MessageType::Call && header.mtype != MessageType::Oneway {
            reply_status(
                protocol,
                header.mtype,
                Cursor::at(buf, header.body_at),
                &mut meta,
            );
        }
        meta.header_size = header.body_at as u32;
        meta.body_size = (len - header.body_at) as u32;
        Ok(Parsed {
            len,
            meta,
            variant: Variant {
                transport: Transport::Unframed,
                protocol,
            },
        })
    }

    fn parse_framed(&self, buf: &[u8]) -> Result<Parsed, NoFrame> {
        let Some(&[a, b, c, d]) = buf.get(..4) else {
            return Err(NoFrame::Wait(4));
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len > i32::MAX as usize {
            return Err(CodecError::malformed("negative thrift frame length").into());
        }
        let total = len + 4;
        if total > self.max_size {
            return self.too_large_frame(buf, total);
        }
        if buf.len() < total {
            return Err(NoFrame::Wait(total));
        }
        let frame = &buf[..total];
        let (transport, protocol, msg_at) = match frame.get(4..6) {
            Some(magic) if magic == theader::MAGIC => (Transport::Header, None, 0),
            Some(&[0x80, _]) => (Transport::Framed, Some(Protocol::Binary), 4),
            Some(&[compact::PROTOCOL_ID, _]) => (Transport::Framed, Some(Protocol::Compact), 4),
            Some(_) => (Transport::Framed, Some(Protocol::BinaryNonStrict), 4),
            None => return Err(CodecError::malformed("thrift frame too short").into()),
        };
        self.check_transport(transport)?;
        let mut meta = Metadata::default();
        let (protocol, msg_at) = match protocol {
            Some(p) => (p, msg_at),
            None => {
                let env = theader::parse(frame, |k, v| {
                    meta.set(String::from_utf8_lossy(k), String::from_utf8_lossy(v));
                });
                match env {
                    Ok(env) => (env.protocol, env.payload_at),
                    Err(err) => {
                        let seqid = header_seqid(frame);
                        let partial = Metadata {
                            request_id: u64::from(seqid as u32),
                            ..meta
                        };
                        return Err(self.attach(err, Some(&partial)).into());
                    }
                }
            }
        };
        let msg = &frame[msg_at..];
        let header = message::read_header(protocol, msg).map_err(|stop| match stop {
            Stop::Incomplete(_) => CodecError::malformed("thrift message header exceeds its frame"),
            Stop::Malformed(why) => CodecError::malformed(why),
        })?;
        message_meta(&header, &mut meta);
        if header.mtype != MessageType::Call && header.mtype != MessageType::Oneway {
            reply_status(
                protocol,
                header.mtype,
                Cursor::at(msg, header.body_at),
                &mut meta,
            );
        }
        meta.header_size = (msg_at + header.body_at) as u32;
        meta.body_size = (total - msg_at - header.body_at) as u32;
        Ok(Parsed {
            len: total,
            meta,
            variant: Variant {
                transport,
                protocol,
            },
        })
    }

    /// Fails a frame above the size limit, with the request's seqid when it can be read from
    /// the first bytes.
    fn too_large_frame(&self, buf: &[u8], total: usize) -> Result<Parsed, NoFrame> {
        let err = CodecError::too_large(total, self.max_size);
        let peek = &buf[..buf.len().min(total)];
        let meta = match peek.get(4..6) {
            Some(magic) if magic == theader::MAGIC => peek.get(..12).map(|f| Metadata {
                request_id: u64::from(header_seqid(f) as u32),
                ..Metadata::default()
            }),
            Some(&[first, ..]) => {
                let protocol = match first {
                    0x80 => Protocol::Binary,
                    compact::PROTOCOL_ID => Protocol::Compact,
                    _ => Protocol::BinaryNonStrict,
                };
                match message::read_header(protocol, &peek[4..]) {
                    Ok(h) => {
                        let mut m = Metadata::default();
                        message_meta(&h, &mut m);
                        Some(m)
                    }
                    Err(Stop::Incomplete(n)) if n <= PEEK => None,
                    Err(_) => return Err(err.into()),
                }
            }
            _ => None,
        };
        match meta {
            Some(m) => Err(self.attach(err, Some(&m)).into()),
            None if buf.len() < total.min(PEEK + 4) => Err(NoFrame::Wait(total.min(PEEK + 4))),
            None => Err(err.into()),
        }
    }
}

/// The header seqid of a THeader frame (at least 12 bytes).
fn header_seqid(frame: &[u8]) -> i32 {
    match frame.get(theader::SEQID_AT..theader::SEQID_AT + 4) {
        Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Fills kind, status, request id, `method` and `service` from a message header.
fn message_meta(h: &MessageHeader<'_>, meta: &mut Metadata) {
    (meta.kind, meta.status) = match h.mtype {
        MessageType::Call => (MessageKind::Request, ResponseStatus::Ok),
        MessageType::Oneway => (MessageKind::OneWay, ResponseStatus::Ok),
        MessageType::Reply => (MessageKind::Response, ResponseStatus::Ok),
        MessageType::Exception => (MessageKind::Response, ResponseStatus::Error),
    };
    meta.request_id = u64::from(h.seqid as u32);
    let name = String::from_utf8_lossy(h.name);
    match name.split_once(':') {
        Some((service, method)) => {
            meta.set("service", service);
            meta.set("method", method);
        }
        None => meta.set("method", &name),
    }
}

/// A reply whose result struct starts with a field other than 0 (`success`) carries a
/// declared exception (protocol status `EXCEPTION`); a result struct that cannot be read is
/// an error too. An exception message's protocol status is its `TApplicationException` type
/// name. Only error responses get a protocol status.
fn reply_status(protocol: Protocol, mtype: MessageType, mut c: Cursor<'_>, meta: &mut Metadata) {
    if mtype == MessageType::Exception {
        let ty = message::app_exception_type(protocol, &mut c).ok().flatten();
        match ty.and_then(message::app_exception_name) {
            Some(name) => meta.set(keys::PROTOCOL_STATUS, name),
            None => meta.set(keys::PROTOCOL_STATUS, "UNKNOWN"),
        }
        return;
    }
    meta.status = match message::first_field_id(protocol, &mut c) {
        Ok(None | Some(0)) => ResponseStatus::Ok,
        Ok(Some(_)) => {
            meta.set(keys::PROTOCOL_STATUS, "EXCEPTION");
            ResponseStatus::Error
        }
        Err(_) => ResponseStatus::Error,
    };
}

/// Transport, protocol and message offset of a complete frame.
fn locate(bytes: &[u8]) -> Result<(Transport, Protocol, usize), CodecError> {
    match bytes {
        [0x80, ..] => Ok((Transport::Unframed, Protocol::Binary, 0)),
        [compact::PROTOCOL_ID, ..] => Ok((Transport::Unframed, Protocol::Compact, 0)),
        [_, _, _, _, 0x0f, 0xff, ..] => {
            let env = theader::parse(bytes, |_, _| {})?;
            Ok((Transport::Header, env.protocol, env.payload_at))
        }
        [_, _, _, _, 0x80, ..] => Ok((Transport::Framed, Protocol::Binary, 4)),
        [_, _, _, _, compact::PROTOCOL_ID, ..] => Ok((Transport::Framed, Protocol::Compact, 4)),
        [_, _, _, _, _, ..] => Ok((Transport::Framed, Protocol::BinaryNonStrict, 4)),
        _ => Err(CodecError::malformed("not a thrift frame")),
    }
}

impl Codec for ThriftCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if buf.len() < self.need {
            return Ok(None);
        }
        match self.parse(buf) {
            Ok(parsed) => {
                if let Some(v) = self.variant
                    && v != parsed.variant
                {
                    return Err(CodecError::malformed(format!(
                        "thrift protocol changed mid-connection: {:?} after {:?}",
                        parsed.variant, v
                    )));
                }
                self.variant = Some(parsed.variant);
                self.need = 0;
                Ok(Some(Frame::new(parsed.meta, buf.split_to(parsed.len))))
            }
            Err(NoFrame::Wait(n)) => {
                self.need = n;
                Ok(None)
            }
            Err(NoFrame::Fail(e)) => Err(e),
        }
    }

    fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        match buf {
            // Unframed: the length is known only once the message is parsed.
            [0x80, ..] | [compact::PROTOCOL_ID, ..] => None,
            // Framed and THeader: a 4-byte length before the frame.
            [a, b, c, d, ..] => {
                let total = usize::try_from(u32::from_be_bytes([*a, *b, *c, *d]))
                    .ok()?
                    .checked_add(4)?;
                (total <= self.max_size).then_some(total)
            }
            _ => None,
        }
    }

    fn encode(&mut self, frame: &mut Frame, mutation: &Mutation) -> Result<(), CodecError> {
        if mutation.is_empty() {
            return Ok(());
        }
        let (transport, _, _) = locate(&frame.bytes)?;
        if transport != Transport::Header {
            return Err(CodecError::unsupported(
                "thrift mutation needs THeader transport",
            ));
        }
        let old_len = frame.bytes.len();
        frame.bytes = theader::rewrite(&frame.bytes, mutation)?;
        let grown = frame.bytes.len() as i64 - old_len as i64;
        frame.meta.header_size = (i64::from(frame.meta.header_size) + grown).max(0) as u32;
        for (k, v) in mutation.iter() {
            if !k.eq_ignore_ascii_case("method") && !k.eq_ignore_ascii_case("service") {
                frame.meta.set(k, v);
            }
        }
        Ok(())
    }

    fn set_request_id(&mut self, frame: &mut Frame, id: u64) -> Result<(), CodecError> {
        let seqid = u32::try_from(id)
            .map_err(|_| CodecError::unsupported(format!("thrift seqid {id} exceeds 32 bits")))?
            as i32;
        let (transport, protocol, msg_at) = locate(&frame.bytes)?;
        let (at, old) = {
            let msg = frame.bytes.get(msg_at..).unwrap_or_default();
            let h = message::read_header(protocol, msg)
                .map_err(|_| CodecError::malformed("thrift message header unreadable"))?;
            (msg_at + h.seqid_at, h.seqid_len)
        };
        let mut enc = BytesMut::with_capacity(5);
        message::put_seqid(protocol, &mut enc, seqid);
        let bytes = &mut frame.bytes;
        let len = bytes.len();
        let new = enc.len();
        if new > old {
            bytes.resize(len + new - old, 0);
            bytes.copy_within(at + old..len, at + new);
        } else if new < old {
            bytes.copy_within(at + old..len, at + new);
            bytes.truncate(len - (old - new));
        }
        bytes[at..at + new].copy_from_slice(&enc);
        if transport != Transport::Unframed {
            let frame_len = (bytes.len() - 4) as u32;
            bytes[..4].copy_from_slice(&frame_len.to_be_bytes());
        }
        if transport == Transport::Header {
            let at = theader::SEQID_AT;
            bytes[at..at + 4].copy_from_slice(&seqid.to_be_bytes());
        }
        frame.meta.header_size = (frame.meta.header_size as usize + new).saturating_sub(old) as u32;
        frame.meta.request_id = id;
        Ok(())
    }

    fn on_error(&mut self, request: &Metadata, reply: &LocalReply, out: &mut BytesMut) {
        let variant = self.variant.unwrap_or(Variant {
            transport: Transport::Framed,
            protocol: Protocol::Binary,
        });
        let method = request.get("method").unwrap_or_default();
        let name = match request.get("service") {
            Some(service) if !method.is_empty() => format!("{service}:{method}"),
            _ => method.to_owned(),
        };
        let seqid = request.request_id as u32 as i32;
        let ex_type = match reply.kind {
            ErrorKind::RouteNotFound => ex_type::UNKNOWN_METHOD,
            ErrorKind::BadRequest => ex_type::PROTOCOL_ERROR,
            _ => ex_type::INTERNAL_ERROR,
        };
        let write = |out: &mut BytesMut| {
            message::write_app_exception(
                variant.protocol,
                out,
                &name,
                seqid,
                &reply.message,
                ex_type,
            );
        };
        match variant.transport {
            Transport::Unframed => write(out),
            Transport::Framed => {
                let start = out.len();
                out.put_u32(0);
                write(out);
                let len = (out.len() - start - 4) as u32;
                out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
            Transport::Header => theader::write_frame(out, variant.protocol, seqid, write),
        }
    }

    fn max_request_id(&self) -> u64 {
        i32::MAX as u64
    }

    fn connection_variant(&self) -> u32 {
        self.variant.map_or(0, Variant::id)
    }
}
