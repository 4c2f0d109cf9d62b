//! [`serve`]: the sample sayHello server.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{
    Codec, CodecFactory, CodecOptions, ErrorKind, Frame, LocalReply, MessageKind, Side,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::{ECHO_LIMIT, METHOD, Protocol, dubbo, hello_text, thrift};

/// How a sample server answers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Server name put in replies (`"hello <name> from <server name>"`), e.g. `v1`.
    pub name: String,
    /// Pad the reply text to this many bytes (0: no padding).
    pub payload: usize,
    /// Wait this long before answering each request (requests still overlap).
    pub delay: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            name: "v1".into(),
            payload: 0,
            delay: None,
        }
    }
}

/// Serves `proto` on `listener` until the task is dropped; each connection is served by its
/// own task. Only returns (with the error) when accepting fails for a reason other than a
/// transient per-connection one or descriptor exhaustion (which are waited out).
pub async fn serve(proto: Protocol, listener: TcpListener, opts: ServerOptions) -> io::Result<()> {
    let opts = Arc::new(opts);
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(connection(proto, sock, Arc::clone(&opts)));
            }
            Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e),
        }
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

async fn connection(proto: Protocol, sock: TcpStream, opts: Arc<ServerOptions>) {
    let _ = sock.set_nodelay(true);
    let (mut rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_loop(wr, rx));
    let codec_opts = CodecOptions::default();
    let mut codec = match proto {
        Protocol::Dubbo => codec_dubbo::DubboCodecFactory.new_codec(Side::Downstream, codec_opts),
        Protocol::Thrift(_) => {
            codec_thrift::ThriftCodecFactory.new_codec(Side::Downstream, codec_opts)
        }
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::new();
    let mut last = LastReply::default();
    'conn: loop {
        let mut batch = Vec::new();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    out.clear();
                    answer(proto, codec.as_mut(), &frame, &opts, &mut last, &mut out);
                    if out.is_empty() {
                        continue;
                    }
                    match opts.delay {
                        Some(d) => {
                            let (tx, reply) = (tx.clone(), out.to_vec());
                            tokio::spawn(async move {
                                tokio::time::sleep(d).await;
                                let _ = tx.send(reply);
                            });
                        }
                        None => batch.extend_from_slice(&out),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Answer natively when the offending request is known, then close.
                    if let Some(req) = &e.request {
                        let mut out = BytesMut::new();
                        let kind = ErrorKind::BadRequest;
                        codec.on_error(req, &LocalReply::new(kind, e.to_string()), &mut out);
                        batch.extend_from_slice(&out);
                    }
                    if !batch.is_empty() {
                        let _ = tx.send(batch);
                    }
                    break 'conn;
                }
            }
        }
        if !batch.is_empty() && tx.send(batch).is_err() {
            break;
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes replies, coalescing whatever is queued into one write.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(mut first) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            first.extend_from_slice(&more);
            if first.len() > 256 * 1024 {
                break;
            }
        }
        if wr.write_all(&first).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// The last sayHello reply of a connection, kept to answer the same name again without
/// encoding: a load generator sends the same name over and over.
#[derive(Debug, Default)]
struct LastReply {
    /// The name prefix it answers (what [`dubbo::request_name`] returned).
    name: String,
    /// The encoded reply; its id is rewritten for each request.
    bytes: Vec<u8>,
}

/// UTF-16 units of a Dubbo name argument the server reads: enough for the [`ECHO_LIMIT`] bytes
/// it echoes (each unit takes at least a byte), plus one in case the last character read is
/// half of a surrogate pair (decoded as U+FFFD, beyond the cut).
const NAME_UNITS: usize = ECHO_LIMIT + 2;

/// Writes the answer to `frame` (nothing for one-way requests and responses).
fn answer(
    proto: Protocol,
    codec: &mut dyn Codec,
    frame: &Frame,
    opts: &ServerOptions,
    last: &mut LastReply,
    out: &mut BytesMut,
) {
    let meta = &frame.meta;
    match meta.kind {
        MessageKind::Heartbeat => {
            codec.heartbeat_reply(frame, out);
        }
        MessageKind::Request => {
            let method = meta.get("method").unwrap_or_default();
            let bare = method.rsplit(':').next().unwrap_or(method);
            let reply = match proto {
                Protocol::Dubbo => answer_dubbo(frame, bare, opts, last, out),
                Protocol::Thrift(_) => {
                    answer_thrift(frame, bare, opts).map(|bytes| out.extend_from_slice(&bytes))
                }
            };
            if let Err(reply) = reply {
                codec.on_error(meta, &reply, out);
            }
        }
        _ => {}
    }
}

fn answer_dubbo(
    frame: &Frame,
    method: &str,
    opts: &ServerOptions,
    last: &mut LastReply,
    out: &mut BytesMut,
) -> Result<(), LocalReply> {
    if method != METHOD {
        let interface = frame.meta.get("interface").unwrap_or_default();
        return Err(LocalReply::new(
            ErrorKind::Unspecified,
            format!(
                "unknown method {method} of {interface} on server {} (only {METHOD})",
                opts.name
            ),
        ));
    }
    let name = dubbo::request_name(&frame.bytes, NAME_UNITS)
        .map_err(|e| LocalReply::new(ErrorKind::BadRequest, e))?
        .unwrap_or_default();
    let id = frame.meta.request_id;
    if last.bytes.is_empty() || last.name != name {
        let text = hello_text(&name, &opts.name, opts.payload);
        last.bytes = dubbo::encode_response(id, &text);
        last.name = name;
    } else {
        dubbo::set_id(&mut last.bytes, id);
    }
    out.extend_from_slice(&last.bytes);
    Ok(())
}

fn answer_thrift(frame: &Frame, method: &str, opts: &ServerOptions) -> Result<Vec<u8>, LocalReply> {
    let bad = |e: String| LocalReply::new(ErrorKind::BadRequest, e);
    let (v, msg) = thrift::unwrap(&frame.bytes).map_err(bad)?;
    let (h, name) = thrift::parse_call(v.protocol, msg).map_err(bad)?;
    if method != METHOD {
        let text = format!("Unknown method {method} on server {}", opts.name);
        return Ok(thrift::encode_app_exception(
            v,
            h.seqid,
            method,
            thrift::UNKNOWN_METHOD,
            &text,
        ));
    }
    let text = hello_text(name.unwrap_or_default(), &opts.name, opts.payload);
    Ok(thrift::encode_reply(v, h.seqid, method, &text))
}
