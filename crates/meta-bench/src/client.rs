//! [`Client`]: one connection to a sayHello server (or a proxy in front of one).

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use meta_protocol::{Codec, CodecFactory, CodecOptions, MessageKind, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

pub use crate::error::CallError;
use crate::{
    DUBBO_INTERFACE, DUBBO_VERSION, METHOD, Protocol, RequestBatch, RequestTemplate,
    ThriftTransport, dubbo, thrift,
};

/// Most slices one `writev` of [`ClientWriter::write_batch`] passes.
const MAX_SLICES: usize = 64;

/// What a client sends besides the name argument.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Dubbo interface (service path); default [`DUBBO_INTERFACE`].
    pub interface: String,
    /// Dubbo service version; default [`DUBBO_VERSION`].
    pub version: String,
    /// Method called; default [`METHOD`] (`sayHello`).
    pub method: String,
    /// Bound on one [`Client::call`]; `None` waits forever. Default 5 s.
    pub timeout: Option<Duration>,
    /// Largest response accepted, in bytes. Default 8 MiB.
    pub max_message_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            interface: DUBBO_INTERFACE.into(),
            version: DUBBO_VERSION.into(),
            method: METHOD.into(),
            timeout: Some(Duration::from_secs(5)),
            max_message_size: CodecOptions::default().max_message_size,
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The result string (`""` for a null or void result).
    pub text: String,
    /// The response's metadata strings as the project codec decoded them: Dubbo response
    /// attachments; Thrift THeader info headers (plus the codec's `method`).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The server name in a sample server's reply: the word after the last `" from "`.
    pub fn server(&self) -> Option<&str> {
        let at = self.text.rfind(" from ")?;
        self.text[at + 6..].split_whitespace().next()
    }
}

/// One response read by [`Client::recv`].
#[derive(Debug)]
pub struct Response {
    /// The request id it answers (what [`Client::send`] returned).
    pub id: u64,
    /// The reply or the protocol error it carries.
    pub result: Result<Reply, CallError>,
}

/// One connection speaking one protocol. Not `Clone`: pipeline with [`Client::send`] and
/// [`Client::recv`], or split it into a writer and a reader for two tasks.
#[derive(Debug)]
pub struct Client {
    writer: ClientWriter,
    reader: ClientReader,
}

/// The sending half of a [`Client`].
#[derive(Debug)]
pub struct ClientWriter {
    proto: Protocol,
    opts: Arc<ClientOptions>,
    half: OwnedWriteHalf,
    next_id: u64,
}

/// The receiving half of a [`Client`].
pub struct ClientReader {
    proto: Protocol,
    half: OwnedReadHalf,
    buf: BytesMut,
    codec: Box<dyn Codec>,
}

impl std::fmt::Debug for ClientReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReader")
            .field("proto", &self.proto)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects with default [`ClientOptions`].
    pub async fn connect(proto: Protocol, addr: impl ToSocketAddrs) -> Result<Client, CallError> {
        Self::connect_with(proto, addr, ClientOptions::default()).await
    }

    /// Connects with `opts`.
    pub async fn connect_with(
        proto: Protocol,
        addr: impl ToSocketAddrs,
        opts: ClientOptions,
    ) -> Result<Client, CallError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let codec_opts = CodecOptions {
            max_message_size: opts.max_message_size,
        };
        let codec = match proto {
            Protocol::Dubbo => codec_dubbo::DubboCodecFactory.new_codec(Side::Upstream, codec_opts),
            Protocol::Thrift(_) => {
                codec_thrift::ThriftCodecFactory.new_codec(Side::Upstream, codec_opts)
            }
        };
        Ok(Client {
            writer: ClientWriter {
                proto,
                opts: Arc::new(opts),
                half: w,
                next_id: 0,
            },
            reader: ClientReader {
                proto,
                half: r,
                buf: BytesMut::with_capacity(16 * 1024),
                codec,
            },
        })
    }

    /// Calls the method with `name` and waits for its response (bounded by the timeout).
    /// Responses to earlier requests (pipelined or timed out) are discarded.
    pub async fn call(
        &mut self,
        name: &str,
        attachments: &[(&str, &str)],
    ) -> Result<Reply, CallError> {
        let id = self.send(name, attachments).await?;
        let wait = async {
            loop {
                let resp = self.reader.recv().await?;
                if resp.id == id {
                    return resp.result;
                }
            }
        };
        match self.writer.opts.timeout {
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .unwrap_or(Err(CallError::Timeout(t))),
            None => wait.await,
        }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send(
        &mut self,
        name: &str,
        attachments: &[(&str, &str)],
    ) -> Result<u64, CallError> {
        self.writer.send(name, attachments).await
    }

    /// Sends a one-way request (no response will come).
    pub async fn send_oneway(&mut self, name: &str) -> Result<u64, CallError> {
        self.writer.send_oneway(name).await
    }

    /// Reads the next response (cancel-safe).
    pub async fn recv(&mut self) -> Result<Response, CallError> {
        self.reader.recv().await
    }

    /// The two halves, for a sending task and a receiving task.
    pub fn into_split(self) -> (ClientWriter, ClientReader) {
        (self.writer, self.reader)
    }
}

impl ClientWriter {
    fn next_id(&mut self) -> u64 {
        // Thrift seqids are i32: stay within 1..=i32::MAX for both protocols.
        self.next_id = if self.next_id >= i32::MAX as u64 {
            1
        } else {
            self.next_id + 1
        };
        self.next_id
    }

    /// Encodes a request for `name` without sending it; returns its id and bytes.
    pub fn encode(
        &mut self,
        name: &str,
        attachments: &[(&str, &str)],
        oneway: bool,
    ) -> Result<(u64, Vec<u8>), CallError> {
        let id = self.next_id();
        let bytes = request_bytes(self.proto, id, &self.opts, name, attachments, oneway)?;
        Ok((id, bytes))
    }

    /// Writes already encoded requests (one or several).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), CallError> {
        self.half.write_all(bytes).await?;
        Ok(())
    }

    /// `name` and `attachments` encoded once, for [`ClientWriter::push`].
    pub fn template(
        &self,
        name: &str,
        attachments: &[(&str, &str)],
        oneway: bool,
    ) -> Result<RequestTemplate, CallError> {
        RequestTemplate::new(self.proto, &self.opts, name, attachments, oneway)
    }

    /// Appends to `batch` a request made from `template` (of this connection's protocol) with
    /// the next id; returns the id.
    pub fn push(
        &mut self,
        template: &RequestTemplate,
        batch: &mut RequestBatch,
    ) -> Result<u64, CallError> {
        let id = self.next_id();
        batch.push(template, id)?;
        Ok(id)
    }

    /// Writes `batch` (with `writev`, at most 64 slices per call).
    pub async fn write_batch(&mut self, batch: &RequestBatch) -> Result<(), CallError> {
        let mut slices = batch.slices();
        let mut iov = [IoSlice::new(&[]); MAX_SLICES];
        loop {
            let mut n = 0;
            for (slot, s) in iov.iter_mut().zip(&mut slices) {
                *slot = IoSlice::new(s);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            let mut rest = &mut iov[..n];
            while !rest.is_empty() {
                let written = self.half.write_vectored(rest).await?;
                if written == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                IoSlice::advance_slices(&mut rest, written);
            }
        }
    }

    /// Sends a request; returns its id.
    pub async fn send(
        &mut self,
        name: &str,
        attachments: &[(&str, &str)],
    ) -> Result<u64, CallError> {
        let (id, bytes) = self.encode(name, attachments, false)?;
        self.write(&bytes).await?;
        Ok(id)
    }

    /// Sends a one-way request.
    pub async fn send_oneway(&mut self, name: &str) -> Result<u64, CallError> {
        let (id, bytes) = self.encode(name, &[], true)?;
        self.write(&bytes).await?;
        Ok(id)
    }

    /// Sends a Dubbo heartbeat request (its response is consumed by [`ClientReader::recv`]);
    /// `Unsupported` on Thrift.
    pub async fn send_heartbeat(&mut self) -> Result<u64, CallError> {
        if self.proto != Protocol::Dubbo {
            return Err(CallError::Unsupported("thrift has no heartbeat".into()));
        }
        let id = self.next_id();
        self.write(&dubbo::encode_heartbeat(id)).await?;
        Ok(id)
    }
}

/// The bytes of one request with id `id` (a Thrift seqid is the low 31 bits), as a [`Client`]
/// sends it: `opts.method(name)` with `attachments` (Dubbo attachments, Thrift THeader info
/// headers; `Unsupported` on other Thrift transports).
pub fn request_bytes(
    proto: Protocol,
    id: u64,
    opts: &ClientOptions,
    name: &str,
    attachments: &[(&str, &str)],
    oneway: bool,
) -> Result<Vec<u8>, CallError> {
    Ok(match proto {
        Protocol::Dubbo => dubbo::encode_request(
            id,
            &opts.interface,
            &opts.version,
            &opts.method,
            name,
            attachments,
            oneway,
        ),
        Protocol::Thrift(v) => {
            if !attachments.is_empty() && v.transport != ThriftTransport::Header {
                return Err(CallError::Unsupported(format!(
                    "attachments need the THeader transport, not thrift {}",
                    v.transport
                )));
            }
            let seqid = (id & i32::MAX as u64) as i32;
            thrift::encode_call(v, seqid, &opts.method, name, oneway, attachments)
        }
    })
}

/// The bytes of a successful reply carrying `text` to request `id` of `method`, as the sample
/// server writes it.
pub fn reply_bytes(proto: Protocol, id: u64, method: &str, text: &str) -> Vec<u8> {
    match proto {
        Protocol::Dubbo => dubbo::encode_response(id, text),
        Protocol::Thrift(v) => thrift::encode_reply(v, (id & i32::MAX as u64) as i32, method, text),
    }
}

impl ClientReader {
    /// Reads the next response; heartbeats are consumed. Cancel-safe: nothing is lost if the
    /// future is dropped.
    pub async fn recv(&mut self) -> Result<Response, CallError> {
        loop {
            while let Some(frame) = self
                .codec
                .decode(&mut self.buf)
                .map_err(|e| CallError::BadResponse(e.to_string()))?
            {
                if frame.meta.kind != MessageKind::Response {
                    continue; // heartbeats (and anything a server should not send)
                }
                let id = frame.meta.request_id;
                let headers = frame
                    .meta
                    .strings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let result = match self.proto {
                    Protocol::Dubbo => dubbo_result(&frame.bytes, headers),
                    Protocol::Thrift(_) => thrift_result(&frame.bytes, headers),
                };
                return Ok(Response { id, result });
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Err(CallError::Closed);
            }
        }
    }
}

fn dubbo_result(bytes: &[u8], headers: Vec<(String, String)>) -> Result<Reply, CallError> {
    match dubbo::parse_response(bytes).map_err(CallError::BadResponse)? {
        dubbo::Outcome::Value(text) => Ok(Reply { text, headers }),
        dubbo::Outcome::Exception(m) => Err(CallError::DubboException(m)),
        dubbo::Outcome::Status(status, message) => Err(CallError::DubboStatus { status, message }),
    }
}

fn thrift_result(bytes: &[u8], headers: Vec<(String, String)>) -> Result<Reply, CallError> {
    let (v, msg) = thrift::unwrap(bytes).map_err(CallError::BadResponse)?;
    let (_, outcome) = thrift::parse_reply(v.protocol, msg).map_err(CallError::BadResponse)?;
    match outcome {
        thrift::Outcome::Value(text) => Ok(Reply { text, headers }),
        thrift::Outcome::Void => Ok(Reply {
            text: String::new(),
            headers,
        }),
        thrift::Outcome::Declared(id) => Err(CallError::ThriftDeclared(id)),
        thrift::Outcome::Application { kind, message } => {
            Err(CallError::ThriftApplication { kind, message })
        }
    }
}
