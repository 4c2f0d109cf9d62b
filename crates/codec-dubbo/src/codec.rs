//! [`DubboCodec`]: the [`Codec`] implementation.

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecError, CodecOptions, ErrorKind, Frame, LocalReply, MessageKind, Metadata, Mutation,
    ReadKeys, ResponseStatus, Side, keys,
};

use crate::body::{
    METHOD, RequestBody, RequestHead, ResponseBody, is_exception, response_type, rtype,
};
use crate::header::{
    FLAG_EVENT, HEADER_LEN, HESSIAN2, Header, MAGIC, STATUS_OK, set_body_len, status,
};
use crate::hessian::encode;

/// One dubbo2 connection side.
#[derive(Debug, Clone)]
pub struct DubboCodec {
    side: Side,
    options: CodecOptions,
    /// Requests: walk the arguments to the attachments (a key other than `method` is read).
    request_attachments: bool,
    /// OK responses: walk the value to the attachments (a key other than the protocol status
    /// is read).
    response_attachments: bool,
}

impl DubboCodec {
    /// A codec for one side of a connection; it decodes everything until
    /// [`Codec::set_read_keys`] says otherwise.
    pub fn new(side: Side, options: CodecOptions) -> Self {
        Self {
            side,
            options,
            request_attachments: true,
            response_attachments: true,
        }
    }

    /// The side this codec was created for.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Request metadata: the head's keys, plus the attachments when a key they may carry is
    /// read. Without them the arguments are not walked: bytes after the parameter types are
    /// not validated (the frame is forwarded as received; the server judges).
    fn request_meta(&self, body: &[u8], meta: &mut Metadata) -> Result<(), CodecError> {
        if self.request_attachments {
            RequestBody::parse(body)?.fill(meta);
        } else {
            RequestHead::parse(body)?.fill(meta);
        }
        Ok(())
    }

    /// OK-response metadata: the status from the result type, plus the attachments when a key
    /// they may carry is read. A body that does not parse is still a well-delimited frame: it
    /// is forwarded, as an error, and the client decides (e.g. dubbo-remoting answers a null
    /// result with a bare `N`, no result type). Without attachments only the result type is
    /// read, so a damaged value after a valid type is not noticed.
    fn response_meta(&self, body: &[u8], meta: &mut Metadata) {
        let rtype = if self.response_attachments {
            ResponseBody::parse(body).map(|resp| {
                for (k, v) in resp.attachments.iter().flat_map(|a| a.strings()) {
                    // The codec's own key: an attachment cannot fake an error status.
                    if !k.eq_ignore_ascii_case(keys::PROTOCOL_STATUS) {
                        meta.set(k, v);
                    }
                }
                resp.rtype
            })
        } else {
            response_type(body)
        };
        match rtype {
            Ok(t) if is_exception(t) => {
                meta.status = ResponseStatus::Error;
                meta.set(keys::PROTOCOL_STATUS, "EXCEPTION");
            }
            Ok(_) => {}
            Err(_) => meta.status = ResponseStatus::Error,
        }
    }
}

/// Dubbo status byte of a local reply.
pub fn status_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RouteNotFound | ErrorKind::ClusterNotFound => status::SERVICE_NOT_FOUND,
        ErrorKind::BadResponse => status::BAD_RESPONSE,
        ErrorKind::Timeout => status::SERVER_TIMEOUT,
        ErrorKind::BadRequest => status::BAD_REQUEST,
        ErrorKind::OverLimit => status::SERVER_THREADPOOL_EXHAUSTED,
        ErrorKind::NoHealthyUpstream | ErrorKind::ConnectFailure | ErrorKind::UpstreamReset => {
            status::SERVER_ERROR
        }
        ErrorKind::Unspecified => status::SERVICE_ERROR,
    }
}

/// The header of a whole frame held in `bytes`.
fn frame_header(bytes: &[u8]) -> Result<Header, CodecError> {
    match Header::parse(bytes, usize::MAX)? {
        Some(h) if bytes.len() >= HEADER_LEN + h.body_len => Ok(h),
        _ => Err(CodecError::malformed(
            "dubbo: frame shorter than its header and body",
        )),
    }
}

/// Replaces `body[range]` of the frame with `with`, fixing the body length.
fn splice(
    frame: &mut Frame,
    h: &Header,
    range: std::ops::Range<usize>,
    with: &[u8],
) -> Result<(), CodecError> {
    let body_end = HEADER_LEN + h.body_len;
    let (start, end) = (HEADER_LEN + range.start, HEADER_LEN + range.end);
    if start > end || end > body_end {
        return Err(CodecError::malformed("dubbo: splice out of range"));
    }
    let old = &frame.bytes[..];
    let mut out = BytesMut::with_capacity(old.len() - (end - start) + with.len());
    out.extend_from_slice(&old[..start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&old[end..]);
    let new_body = h.body_len - (end - start) + with.len();
    set_body_len(&mut out, new_body)?;
    frame.bytes = out;
    frame.meta.body_size = u32::try_from(new_body).unwrap_or(u32::MAX);
    Ok(())
}

impl Codec for DubboCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(h) = Header::parse(buf, self.options.max_message_size)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + h.body_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut meta = h.metadata();
        let body = &buf[HEADER_LEN..total];
        match meta.kind {
            MessageKind::Request | MessageKind::OneWay => {
                self.request_meta(body, &mut meta)
                    .map_err(|e| e.with_request(meta.clone()))?;
            }
            MessageKind::Response if h.status == STATUS_OK => self.response_meta(body, &mut meta),
            _ => {
                if !h.is_request() && h.status != STATUS_OK {
                    meta.status = ResponseStatus::Error;
                    match status::name(h.status) {
                        Some(name) => meta.set(keys::PROTOCOL_STATUS, name),
                        None => meta.set(keys::PROTOCOL_STATUS, h.status.to_string()),
                    }
                }
            }
        }
        Ok(Some(Frame::new(meta, buf.split_to(total))))
    }

    fn set_read_keys(&mut self, read: &ReadKeys) {
        // `method` comes from the invocation, before the arguments. `interface` and `version`
        // may be overridden by attachments, so reading them needs the attachments too.
        self.request_attachments = read.contains_other_than(&[METHOD]);
        // The protocol status comes from the status byte or the result type, never from an
        // attachment.
        self.response_attachments = read.contains_other_than(&[keys::PROTOCOL_STATUS]);
    }

    fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        let h = Header::parse(buf, self.options.max_message_size).ok()??;
        Some(HEADER_LEN + h.body_len)
    }

    fn encode(&mut self, frame: &mut Frame, mutation: &Mutation) -> Result<(), CodecError> {
        if mutation.is_empty() {
            return Ok(());
        }
        let h = frame_header(&frame.bytes)?;
        if h.is_event() {
            return Ok(());
        }
        let body = &frame.bytes[HEADER_LEN..HEADER_LEN + h.body_len];
        if h.is_request() {
            let req = RequestBody::parse(body)?;
            let att = &req.attachments;
            if let Some(map) = att.merged(body, mutation)? {
                splice(frame, &h, att.span.clone(), &map)?;
            }
        } else if h.status == STATUS_OK {
            let resp = ResponseBody::parse(body)?;
            match &resp.attachments {
                Some(att) => {
                    if let Some(map) = att.merged(body, mutation)? {
                        splice(frame, &h, att.span.clone(), &map)?;
                    }
                }
                None => {
                    // Types 0/1/2 carry no attachments: switch to 3/4/5 and append the map
                    // after the value, which ends the body.
                    let mut map = Vec::new();
                    encode::write_string_map(&mut map, mutation.iter());
                    splice(frame, &h, h.body_len..h.body_len, &map)?;
                    let mut t = Vec::new();
                    encode::write_int(&mut t, resp.rtype + rtype::WITH_ATTACHMENTS);
                    splice(
                        frame,
                        &frame_header(&frame.bytes)?,
                        resp.rtype_span.clone(),
                        &t,
                    )?;
                }
            }
        } else {
            // An error-status response's body is only the message: nowhere to put attachments,
            // and refusing would lose the error, so it is forwarded as is.
            return Ok(());
        }
        for (k, v) in mutation.iter() {
            // As in decode: the invoked method is the invocation's, not an attachment's.
            if !k.eq_ignore_ascii_case(METHOD) {
                frame.meta.set(k, v);
            }
        }
        Ok(())
    }

    fn set_request_id(&mut self, frame: &mut Frame, id: u64) -> Result<(), CodecError> {
        match frame.bytes.get_mut(..HEADER_LEN) {
            Some(h) if h[..2] == MAGIC.to_be_bytes() => {
                h[4..12].copy_from_slice(&id.to_be_bytes());
                frame.meta.request_id = id;
                Ok(())
            }
            _ => Err(CodecError::malformed("dubbo: not a dubbo frame")),
        }
    }

    fn on_error(&mut self, request: &Metadata, reply: &LocalReply, out: &mut BytesMut) {
        let mut body = Vec::with_capacity(reply.message.len() + 3);
        encode::write_string(&mut body, &reply.message);
        let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
        Header::write(
            &mut frame,
            HESSIAN2,
            status_of(reply.kind),
            request.request_id,
            body.len(),
        );
        frame.extend_from_slice(&body);
        out.extend_from_slice(&frame);
    }

    fn heartbeat_reply(&mut self, frame: &Frame, out: &mut BytesMut) -> bool {
        let Ok(h) = frame_header(&frame.bytes) else {
            return false;
        };
        if !(h.is_request() && h.is_event() && h.is_two_way()) {
            return false;
        }
        let mut reply = Vec::with_capacity(HEADER_LEN + 1);
        Header::write(&mut reply, HESSIAN2 | FLAG_EVENT, STATUS_OK, h.id, 1);
        reply.push(b'N');
        out.extend_from_slice(&reply);
        true
    }

    fn max_request_id(&self) -> u64 {
        i64::MAX as u64
    }
}
