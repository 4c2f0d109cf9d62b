//! The demo's sample workloads: a tiny Dubbo or Thrift (binary, framed) server answering
//! `sayHello` with `hello <name> from <server name>`, and a matching client.
//!
//! Framing and decoding use the project's codecs (the same code meta-proxy runs); only the
//! few bytes of a request or reply are written here. These are demo parts, not test peers:
//! the end-to-end tests use third-party Dubbo and Thrift implementations.

use std::net::SocketAddr;

use bytes::BytesMut;
use codec_dubbo::hessian::encode::{write_int, write_string, write_string_map};
use meta_protocol::{Codec, CodecFactory, CodecOptions, Frame, MessageKind, ResponseStatus, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Demo protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Dubbo,
    Thrift,
}

const DUBBO_INTERFACE: &str = "org.apache.dubbo.samples.basic.api.DemoService";

impl Sample {
    pub fn from_app(app: &str) -> Option<Self> {
        match app {
            "dubbo" => Some(Sample::Dubbo),
            "thrift" => Some(Sample::Thrift),
            _ => None,
        }
    }

    fn codec(self, side: Side) -> Box<dyn Codec> {
        match self {
            Sample::Dubbo => {
                codec_dubbo::DubboCodecFactory.new_codec(side, CodecOptions::default())
            }
            Sample::Thrift => {
                codec_thrift::ThriftCodecFactory.new_codec(side, CodecOptions::default())
            }
        }
    }
}

/// Serves sample calls on `listener` until the task is dropped.
pub async fn serve(sample: Sample, listener: TcpListener, name: String) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let _ = serve_conn(sample, stream, &name).await;
        });
    }
}

async fn serve_conn(sample: Sample, mut stream: TcpStream, name: &str) -> anyhow::Result<()> {
    let mut codec = sample.codec(Side::Downstream);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        while let Some(frame) = codec.decode(&mut buf)? {
            let reply = match (sample, frame.meta.kind) {
                (_, MessageKind::OneWay) => continue,
                (Sample::Dubbo, MessageKind::Heartbeat) => {
                    dubbo_frame(0x22, frame.meta.request_id, b"N")
                }
                (Sample::Dubbo, _) => {
                    let mut body = Vec::new();
                    write_int(&mut body, 1); // RESPONSE_VALUE
                    write_string(&mut body, &format!("hello from {name}"));
                    dubbo_frame(0x02, frame.meta.request_id, &body)
                }
                (Sample::Thrift, _) => {
                    let method = frame.meta.get("method").unwrap_or("sayHello").to_owned();
                    thrift_message(
                        2,
                        &method,
                        frame.meta.request_id,
                        0,
                        &format!("hello from {name}"),
                    )
                }
            };
            stream.write_all(&reply).await?;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// A Dubbo frame: magic, flags, status OK (20), id, length, body.
fn dubbo_frame(flags: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&[0xda, 0xbb, flags, 20]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A framed, strict binary Thrift message whose struct holds one string field.
fn thrift_message(kind: u8, method: &str, seq: u64, field: i16, text: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&(0x8001_0000u32 | u32::from(kind)).to_be_bytes());
    m.extend_from_slice(&u32::try_from(method.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(method.as_bytes());
    m.extend_from_slice(&u32::try_from(seq & 0x7fff_ffff).unwrap_or(0).to_be_bytes());
    m.push(11); // string
    m.extend_from_slice(&field.to_be_bytes());
    m.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(text.as_bytes());
    m.push(0); // stop
    let mut out = Vec::with_capacity(4 + m.len());
    out.extend_from_slice(&u32::try_from(m.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&m);
    out
}

/// One client connection (one call at a time).
pub struct Client {
    sample: Sample,
    stream: TcpStream,
    codec: Box<dyn Codec>,
    buf: BytesMut,
    next_id: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sample", &self.sample)
            .finish_non_exhaustive()
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer answered with a protocol error (Dubbo status / Thrift exception).
    #[error("error reply: {0}")]
    Protocol(String),
    /// The connection failed or closed.
    #[error("{0}")]
    Transport(String),
}

impl CallError {
    pub fn is_protocol_error(&self) -> bool {
        matches!(self, CallError::Protocol(_))
    }
}

impl Client {
    pub async fn connect(sample: Sample, addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            sample,
            stream,
            codec: sample.codec(Side::Upstream),
            buf: BytesMut::with_capacity(4096),
            next_id: 1,
        })
    }

    /// Calls sayHello(name); returns the reply text.
    pub async fn call(&mut self, name: &str) -> Result<String, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = match self.sample {
            Sample::Dubbo => {
                let mut body = Vec::new();
                write_string(&mut body, "2.0.2");
                write_string(&mut body, DUBBO_INTERFACE);
                write_string(&mut body, "0.0.0");
                write_string(&mut body, "sayHello");
                write_string(&mut body, "Ljava/lang/String;");
                write_string(&mut body, name);
                write_string_map(
                    &mut body,
                    [("path", DUBBO_INTERFACE), ("interface", DUBBO_INTERFACE)],
                );
                dubbo_frame(0xc2, id, &body)
            }
            Sample::Thrift => thrift_message(1, "sayHello", id, 1, name),
        };
        let t = |e: std::io::Error| CallError::Transport(e.to_string());
        self.stream.write_all(&request).await.map_err(t)?;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) if frame.meta.request_id == id => {
                    return reply_text(self.sample, &frame);
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(CallError::Transport(format!("bad reply: {e}"))),
            }
            if self.stream.read_buf(&mut self.buf).await.map_err(t)? == 0 {
                return Err(CallError::Transport("connection closed".into()));
            }
        }
    }
}

/// The reply's text: the last printable run of the body (the string result, or the error
/// message of a Dubbo error / Thrift exception).
fn reply_text(sample: Sample, frame: &Frame) -> Result<String, CallError> {
    let header = match sample {
        Sample::Dubbo => 16,
        Sample::Thrift => 4,
    };
    let body = frame.bytes.get(header..).unwrap_or_default();
    let text = printable_tail(body);
    match frame.meta.status {
        ResponseStatus::Ok => Ok(text),
        ResponseStatus::Error => Err(CallError::Protocol(text)),
    }
}

fn printable_tail(body: &[u8]) -> String {
    let mut best = String::new();
    for run in body.split(|b| !(0x20..0x7f).contains(b)) {
        if run.len() >= 4 {
            best = String::from_utf8_lossy(run).into_owned();
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sample_servers_answer_their_clients() {
        for sample in [Sample::Dubbo, Sample::Thrift] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(serve(sample, l, "v7".into()));
            let mut c = Client::connect(sample, addr).await.unwrap();
            for _ in 0..3 {
                let text = c.call("x").await.unwrap();
                assert!(text.ends_with("hello from v7"), "{sample:?}: {text}");
            }
            server.abort();
        }
    }
}
