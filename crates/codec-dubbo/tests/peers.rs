//! Checks against the real Node peers (`npm install --prefix tests/peers`): frames this codec
//! rewrote are read back by dubbo-remoting/hessian.js, and a sofa-rpc-node client fails a call
//! at once with the message of an `on_error` reply. Skipped, with a message, when node or the
//! peers are not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use codec_dubbo::DubboCodec;
use meta_protocol::{Codec, CodecOptions, ErrorKind, Frame, LocalReply, Mutation, Side};
use serde_json::Value as Json;

fn peers_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/node_modules");
    let ok = dir.join("sofa-rpc-node").is_dir()
        && dir.join("dubbo-remoting").is_dir()
        && Command::new("node").arg("--version").output().is_ok();
    if ok {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: node or tests/peers/node_modules missing; run \
             `npm install --prefix tests/peers --no-audit --no-fund`"
        );
        None
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node")
        .join(name)
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn codec() -> DubboCodec {
    DubboCodec::new(Side::Downstream, CodecOptions::default())
}

fn decode(bytes: &[u8]) -> Frame {
    codec().decode(&mut BytesMut::from(bytes)).unwrap().unwrap()
}

/// Runs dubbo-remoting's decoder on `frames`, one JSON result per frame.
fn node_decode(frames: &[Vec<u8>]) -> Vec<Json> {
    let mut child = Command::new("node")
        .arg(script("decode_frames.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = frames.iter().map(|f| hex_of(f) + "\n").collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn mutated_frames_are_read_back_by_hessian_js() {
    if peers_dir().is_none() {
        return;
    }
    let m: Mutation = [
        ("group", "blue"),
        ("x-meta-peer", "héllo 😀"),
        ("long", &*"L".repeat(2000)),
    ]
    .into_iter()
    .collect();
    let mut frames = Vec::new();
    for golden in [
        include_str!("golden/request_sayhello.hex"),
        include_str!("golden/request_echo_types.hex"),
        include_str!("golden/response_sayhello.hex"),
        include_str!("golden/response_exception.hex"),
    ] {
        let mut f = decode(&hex(golden));
        codec().encode(&mut f, &m).unwrap();
        frames.push(f.bytes.to_vec());
    }
    // And a second mutation on an already-converted response (type 4, map in place).
    let mut again = decode(&frames[2]);
    codec()
        .encode(
            &mut again,
            &[("x-meta-peer", "second")].into_iter().collect(),
        )
        .unwrap();
    frames.push(again.bytes.to_vec());
    let hb = decode(&hex(include_str!("golden/request_heartbeat.hex")));
    let mut reply = BytesMut::new();
    assert!(codec().heartbeat_reply(&hb, &mut reply));
    frames.push(reply.to_vec());

    let got = node_decode(&frames);
    assert_eq!(got.len(), frames.len());
    for req in &got[..2] {
        let props = &req["requestProps"];
        assert_eq!(props["group"], "blue", "{req}");
        assert_eq!(props["x-meta-peer"], "héllo 😀");
        assert_eq!(props["long"].as_str().unwrap().len(), 2000);
        assert_eq!(props["path"], "org.apache.dubbo.demo.DemoService");
    }
    assert_eq!(got[0]["args"][0], "world");
    assert_eq!(got[0]["methodName"], "sayHello");
    assert_eq!(got[1]["args"].as_array().unwrap().len(), 13, "{}", got[1]);
    assert_eq!(got[2]["appResponse"], "hello world");
    assert_eq!(got[2]["responseProps"]["x-meta-peer"], "héllo 😀");
    assert!(got[3]["error"].is_string(), "{}", got[3]);
    assert_eq!(got[3]["responseProps"]["group"], "blue");
    assert_eq!(got[4]["responseProps"]["x-meta-peer"], "second");
    assert_eq!(got[4]["responseProps"]["group"], "blue");
    assert_eq!(got[5]["packetType"], "heartbeat_ack");
}

/// A server that answers each request with `on_error(replies[i])`.
#[test]
fn sofa_rpc_client_rejects_promptly_with_the_on_error_message() {
    if peers_dir().is_none() {
        return;
    }
    let replies = [
        LocalReply::new(
            ErrorKind::RouteNotFound,
            "meta-proxy: no route for sayHello",
        ),
        LocalReply::new(ErrorKind::OverLimit, "meta-proxy: rate limited"),
        LocalReply::new(
            ErrorKind::NoHealthyUpstream,
            "meta-proxy: no healthy upstream ü",
        ),
    ];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = Command::new("node")
        .arg(script("onerror_client.js"))
        .arg(port.to_string())
        .arg(replies.len().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let server_replies = replies.clone();
    let server = std::thread::spawn(move || {
        // Bounded wait for the client, so a broken node setup fails instead of hanging.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("no client connected: {e}"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut codec = codec();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while seen.len() < server_replies.len() {
            let n = sock.read(&mut chunk).unwrap();
            assert!(n > 0, "client closed early");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                let mut out = BytesMut::new();
                codec.on_error(&frame.meta, &server_replies[seen.len()], &mut out);
                sock.write_all(&out).unwrap();
                seen.push(frame.meta);
            }
        }
        // Keep the connection open until the client is done: the rejection must come from the
        // reply, not from a close.
        let _ = sock.read(&mut chunk);
        seen
    });
    let out = child.wait_with_output().unwrap();
    let seen = server.join().unwrap();
    assert!(out.status.success());
    let lines: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), replies.len());
    for ((line, reply), meta) in lines.iter().zip(&replies).zip(&seen) {
        assert_eq!(meta.get("method"), Some("sayHello"));
        assert_eq!(line["rejected"], true, "{line}");
        assert!(
            line["message"].as_str().unwrap().contains(&reply.message),
            "{line} should carry {:?}",
            reply.message
        );
        // Prompt: far below the 5 s response timeout.
        assert!(line["ms"].as_u64().unwrap() < 1000, "{line}");
        eprintln!("real client saw: {line}");
    }
}
