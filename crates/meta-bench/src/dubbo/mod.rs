//! Dubbo messages of the sample service: requests and responses in hessian2, and reading the
//! argument / result out of frames the codec delimited.

use codec_dubbo::header::{FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HEADER_LEN, HESSIAN2, Header};
use codec_dubbo::hessian::{Reader, Value, encode};

mod prefix;

use prefix::string_prefix;

/// Dubbo protocol version written in requests.
const DUBBO_VERSION: &str = "2.0.2";
/// Parameter descriptor of `sayHello(String)`.
pub(crate) const STRING_PARAM: &str = "Ljava/lang/String;";
/// Response status OK.
pub(crate) const STATUS_OK: u8 = 20;

/// Result types of an OK response body.
mod rtype {
    pub(crate) const EXCEPTION: i32 = 0;
    pub(crate) const VALUE: i32 = 1;
    pub(crate) const NULL: i32 = 2;
    pub(crate) const EXCEPTION_WITH_ATTACHMENTS: i32 = 3;
    pub(crate) const VALUE_WITH_ATTACHMENTS: i32 = 4;
    pub(crate) const NULL_WITH_ATTACHMENTS: i32 = 5;
}

/// What a response carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// A value (a string, or the text form of another value); null is `""`.
    Value(String),
    /// Status OK with an exception result: its message.
    Exception(String),
    /// An error status and its message.
    Status(u8, String),
}

fn frame(flag: u8, status: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    Header::write(&mut out, flag, status, id, body.len());
    out.extend_from_slice(body);
    out
}

/// A request `interface:version.method(name)` with `attachments` (after `path`, `interface` and
/// `version`, which they may override).
pub(crate) fn encode_request(
    id: u64,
    interface: &str,
    version: &str,
    method: &str,
    name: &str,
    attachments: &[(&str, &str)],
    oneway: bool,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128 + name.len());
    for s in [
        DUBBO_VERSION,
        interface,
        version,
        method,
        STRING_PARAM,
        name,
    ] {
        encode::write_string(&mut body, s);
    }
    let mut pairs: Vec<(&str, &str)> = vec![
        ("path", interface),
        ("interface", interface),
        ("version", version),
    ];
    for &(k, v) in attachments {
        match pairs.iter_mut().find(|(pk, _)| *pk == k) {
            Some(p) => p.1 = v,
            None => pairs.push((k, v)),
        }
    }
    encode::write_string_map(&mut body, pairs);
    let flag = FLAG_REQUEST | HESSIAN2 | if oneway { 0 } else { FLAG_TWO_WAY };
    frame(flag, 0, id, &body)
}

/// A two-way heartbeat request.
pub(crate) fn encode_heartbeat(id: u64) -> Vec<u8> {
    frame(
        FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2,
        0,
        id,
        b"N",
    )
}

/// An OK response whose value is the string `text`.
pub(crate) fn encode_response(id: u64, text: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + text.len());
    encode::write_int(&mut body, rtype::VALUE);
    encode::write_string(&mut body, text);
    frame(HESSIAN2, STATUS_OK, id, &body)
}

/// Rewrites the id of an encoded request or response (header bytes 4..12).
pub(crate) fn set_id(frame: &mut [u8], id: u64) {
    frame[4..12].copy_from_slice(&id.to_be_bytes());
}

/// An OK response with an exception result (a string standing for the exception), for tests.
#[cfg(test)]
pub(crate) fn encode_exception(id: u64, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    encode::write_int(&mut body, rtype::EXCEPTION);
    encode::write_string(&mut body, message);
    frame(HESSIAN2, STATUS_OK, id, &body)
}

fn body(frame: &[u8]) -> Result<(Header, &[u8]), String> {
    let h = Header::parse(frame, usize::MAX)
        .map_err(|e| e.to_string())?
        .ok_or("frame shorter than a dubbo header")?;
    let body = frame
        .get(HEADER_LEN..HEADER_LEN + h.body_len)
        .ok_or("frame shorter than its body length")?;
    Ok((h, body))
}

/// The first argument of a request whose parameters start with a `String` (`None` otherwise),
/// cut after its first `max_units` UTF-16 units (the sample server echoes only the start of it:
/// reading a 120 KB argument whole would cost more than everything else the server does).
pub(crate) fn request_name(frame: &[u8], max_units: usize) -> Result<Option<String>, String> {
    let (_, body) = body(frame)?;
    let mut r = Reader::new(body);
    let mut desc = String::new();
    for what in [
        "dubbo version",
        "path",
        "version",
        "method",
        "parameter types",
    ] {
        desc = r
            .read_opt_string()
            .map_err(|e| format!("request {what}: {e}"))?
            .unwrap_or_default();
    }
    if !desc.starts_with(STRING_PARAM) {
        return Ok(None);
    }
    string_prefix(&body[r.pos()..], max_units).map_err(|e| format!("request argument 0: {e}"))
}

/// Text of a decoded value: a string as is, null as `""`, anything else in debug form.
fn text_of(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// The message of an exception value (Java `detailMessage`, hessian.js `message`), else its
/// text form.
fn exception_message(v: Value) -> String {
    if let Value::Object(class, fields) = &v {
        for (k, f) in fields {
            if (k == "detailMessage" || k == "message")
                && let Some(s) = f.as_str()
            {
                return format!("{class}: {s}");
            }
        }
    }
    text_of(v)
}

/// The outcome of a response frame.
pub(crate) fn parse_response(frame: &[u8]) -> Result<Outcome, String> {
    let (h, body) = body(frame)?;
    let mut r = Reader::new(body);
    if h.status == STATUS_OK && body == b"N" {
        // dubbo-remoting answers a null result with a bare `N`, no result type
        return Ok(Outcome::Value(String::new()));
    }
    if h.status != STATUS_OK {
        let msg = r.read_opt_string().ok().flatten().unwrap_or_default();
        return Ok(Outcome::Status(h.status, msg));
    }
    let t = r.read_int().map_err(|e| format!("response type: {e}"))?;
    let value = |r: &mut Reader<'_>| r.read_value().map_err(|e| format!("response value: {e}"));
    match t {
        rtype::EXCEPTION | rtype::EXCEPTION_WITH_ATTACHMENTS => {
            Ok(Outcome::Exception(exception_message(value(&mut r)?)))
        }
        rtype::VALUE | rtype::VALUE_WITH_ATTACHMENTS => Ok(Outcome::Value(text_of(value(&mut r)?))),
        rtype::NULL | rtype::NULL_WITH_ATTACHMENTS => Ok(Outcome::Value(String::new())),
        other => Err(format!("unknown response type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use codec_dubbo::DubboCodecFactory;
    use meta_protocol::{
        Codec, CodecFactory, CodecOptions, ErrorKind, LocalReply, MessageKind, ResponseStatus, Side,
    };

    use super::*;

    fn new_codec(side: Side) -> Box<dyn Codec> {
        DubboCodecFactory.new_codec(side, CodecOptions::default())
    }

    #[test]
    fn requests_decode_with_metadata_and_argument() {
        let mut c = new_codec(Side::Downstream);
        let long = crate::padded_name("big", 120 * 1024);
        let mut buf = BytesMut::new();
        let first = encode_request(
            7,
            crate::DUBBO_INTERFACE,
            "1.0.0",
            "sayHello",
            "world",
            &[("x-user", "alice"), ("version", "2.0.0")],
            false,
        );
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&encode_request(
            u64::MAX >> 1,
            "a.B",
            "",
            "m",
            &long,
            &[],
            true,
        ));
        buf.extend_from_slice(&encode_heartbeat(9));
        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.meta.kind, f.meta.request_id), (MessageKind::Request, 7));
        assert_eq!(f.meta.get("interface"), Some(crate::DUBBO_INTERFACE));
        assert_eq!(f.meta.get("method"), Some("sayHello"));
        assert_eq!(f.meta.get("x-user"), Some("alice"));
        assert_eq!(f.meta.get("version"), Some("2.0.0"), "attachment overrides");
        assert_eq!(&f.bytes[..], &first[..]);
        assert_eq!(
            request_name(&f.bytes, 66).unwrap().as_deref(),
            Some("world")
        );

        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.kind, f.meta.request_id),
            (MessageKind::OneWay, u64::MAX >> 1)
        );
        assert_eq!(
            request_name(&f.bytes, usize::MAX).unwrap(),
            Some(long.clone())
        );
        assert_eq!(
            request_name(&f.bytes, 66).unwrap(),
            Some(long[..66].to_owned())
        );

        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.meta.kind, MessageKind::Heartbeat);
        let mut out = BytesMut::new();
        assert!(c.heartbeat_reply(&f, &mut out));
        assert!(buf.is_empty());
    }

    #[test]
    fn responses_decode_with_status_and_value() {
        let mut c = new_codec(Side::Upstream);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode_response(42, "hello world from v1"));
        buf.extend_from_slice(&encode_exception(43, "boom"));
        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.kind, f.meta.status, f.meta.request_id),
            (MessageKind::Response, ResponseStatus::Ok, 42)
        );
        assert_eq!(
            parse_response(&f.bytes).unwrap(),
            Outcome::Value("hello world from v1".into())
        );
        let f = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.meta.status, f.meta.request_id),
            (ResponseStatus::Error, 43)
        );
        assert_eq!(
            parse_response(&f.bytes).unwrap(),
            Outcome::Exception("boom".into())
        );
    }

    #[test]
    fn codec_local_replies_parse_as_status_errors() {
        let mut down = new_codec(Side::Downstream);
        let req = encode_request(5, "a.B", "", "sayHello", "x", &[], false);
        let f = down.decode(&mut BytesMut::from(&req[..])).unwrap().unwrap();
        let mut out = BytesMut::new();
        down.on_error(
            &f.meta,
            &LocalReply::new(ErrorKind::RouteNotFound, "no route"),
            &mut out,
        );
        let mut up = new_codec(Side::Upstream);
        let back = up.decode(&mut out).unwrap().unwrap();
        assert_eq!(back.meta.request_id, 5);
        assert_eq!(
            parse_response(&back.bytes).unwrap(),
            Outcome::Status(60, "no route".into())
        );
        // a bare `N` body (dubbo-remoting's null) is an empty value
        let mut bare = Vec::new();
        Header::write(&mut bare, HESSIAN2, STATUS_OK, 6, 1);
        bare.push(b'N');
        assert_eq!(
            parse_response(&bare).unwrap(),
            Outcome::Value(String::new())
        );
        assert!(parse_response(&bare[..10]).is_err());
    }
}
