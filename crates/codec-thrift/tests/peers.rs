//! Checks against real Thrift peers (`tests/peer.py`: thriftpy2 and Apache Thrift Python from
//! the project venv, `pip install -r tests/requirements.txt`):
//! - a real client receiving our `on_error` bytes raises `TApplicationException` with our
//!   message and type, for every transport × protocol;
//! - calls relayed through the codec (id rewritten, mutation applied, id restored) reach a real
//!   server and come back to a real client; the Apache THeader server reports the info headers
//!   it read, so the mutation is checked by an independent THeader parser.
//!
//! Skipped, with a message, when the venv or the packages are missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use codec_thrift::ThriftCodec;
use meta_protocol::{Codec, CodecErrorKind, ErrorKind, Frame, LocalReply, Mutation, Side};
use serde_json::Value as Json;

const VARIANTS: [&str; 6] = [
    "binary_framed",
    "binary_buffered",
    "compact_framed",
    "compact_buffered",
    "header_binary",
    "header_compact",
];

fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import thriftpy2, thrift.protocol.THeaderProtocol"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        eprintln!(
            "SKIPPED: {} lacks thriftpy2/thrift; run `python3 -m venv .venv && \
             .venv/bin/pip install -r tests/requirements.txt`",
            py.display()
        );
        None
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer.py")
}

fn client(py: &Path, variant: &str, port: u16, call: &str, headers: &[&str]) -> Child {
    Command::new(py)
        .arg(script())
        .args(["client", variant, &port.to_string(), call])
        .args(headers)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn outcome(child: Child) -> Json {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad client output {text:?}: {e}"))
}

/// A real server on a free port, killed when dropped.
struct Server(Child, u16);

impl Server {
    fn start(py: &Path, variant: &str) -> Self {
        let mut child = Command::new(py)
            .arg(script())
            .args(["server", variant])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("READY ").unwrap().parse().unwrap();
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock
}

fn read_frame(codec: &mut ThriftCodec, sock: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    loop {
        if let Some(f) = codec.decode(buf).unwrap() {
            return f;
        }
        let mut tmp = [0u8; 4096];
        let n = sock.read(&mut tmp).unwrap();
        assert!(n > 0, "peer closed before a whole frame");
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn real_clients_raise_our_local_replies() {
    let Some(py) = python() else { return };
    let kinds = [
        (ErrorKind::RouteNotFound, 1),
        (ErrorKind::Timeout, 6),
        (ErrorKind::BadRequest, 7),
    ];
    for (i, variant) in VARIANTS.iter().enumerate() {
        let (kind, ex_type) = kinds[i % kinds.len()];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let child = client(&py, variant, port, "echo", &["x-user=alice"]);
        let mut sock = accept(&listener);
        let mut codec = ThriftCodec::new(Side::Downstream, 1 << 20);
        let request = read_frame(&mut codec, &mut sock, &mut BytesMut::new());
        let mut out = BytesMut::new();
        let message = format!("no luck for {variant}");
        codec.on_error(&request.meta, &LocalReply::new(kind, &message), &mut out);
        sock.write_all(&out).unwrap();
        let got = outcome(child);
        assert_eq!(
            got["app_error"]["message"],
            message.as_str(),
            "{variant}: {got}"
        );
        assert_eq!(got["app_error"]["type"], ex_type, "{variant}: {got}");
    }
}

#[test]
fn calls_relayed_through_the_codec_reach_real_peers() {
    let Some(py) = python() else { return };
    let mutation: Mutation = [("x-user", "bob"), ("x-added", "yes")]
        .into_iter()
        .collect();
    for variant in VARIANTS {
        let header = variant.starts_with("header_");
        let server = Server::start(&py, variant);
        for (n, call) in ["echo", "ping", "get", "boom"].into_iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let child = client(&py, variant, port, call, &["x-user=alice"]);
            let mut down = accept(&listener);
            let mut up = TcpStream::connect(("127.0.0.1", server.1)).unwrap();
            up.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut dcodec = ThriftCodec::new(Side::Downstream, 1 << 20);
            let mut ucodec = ThriftCodec::new(Side::Upstream, 1 << 20);

            let mut req = read_frame(&mut dcodec, &mut down, &mut BytesMut::new());
            let original_id = req.meta.request_id;
            match dcodec.encode(&mut req, &mutation) {
                Ok(()) => assert!(header),
                Err(e) => assert!(!header && e.kind == CodecErrorKind::Unsupported),
            }
            let proxied_id = 70_000 + n as u64; // a 3-byte compact varint
            dcodec.set_request_id(&mut req, proxied_id).unwrap();
            up.write_all(&req.bytes).unwrap();

            let mut resp = read_frame(&mut ucodec, &mut up, &mut BytesMut::new());
            assert_eq!(resp.meta.request_id, proxied_id, "{variant} {call}");
            assert_eq!(ucodec.connection_variant(), dcodec.connection_variant());
            let want_status = if matches!(call, "get" | "boom") {
                "error"
            } else {
                "ok"
            };
            assert_eq!(resp.meta.status.as_str(), want_status, "{variant} {call}");
            ucodec.set_request_id(&mut resp, original_id).unwrap();
            down.write_all(&resp.bytes).unwrap();

            let got = outcome(child);
            match call {
                "echo" if header => {
                    assert_eq!(resp.meta.get("server"), Some("apache"));
                    assert_eq!(got["headers"]["server"], "apache", "{got}");
                    let seen: Json = serde_json::from_str(got["ok"].as_str().unwrap()).unwrap();
                    assert_eq!(seen["x-user"], "bob", "{variant}: {got}");
                    assert_eq!(seen["x-added"], "yes", "{variant}: {got}");
                }
                "echo" => assert_eq!(got["ok"], "hello", "{variant}: {got}"),
                "ping" => assert_eq!(got["ok"], Json::Null, "{variant}: {got}"),
                "get" => assert_eq!(got["declared"], "item 7", "{variant}: {got}"),
                _ => {
                    assert_eq!(got["app_error"]["message"], "boom", "{variant}: {got}");
                    assert_eq!(got["app_error"]["type"], 6, "{variant}: {got}");
                }
            }
        }
    }
}
