//! The sample server and client against real third-party peers: thriftpy2 and Apache Thrift
//! (Python, `.venv`), sofa-rpc-node with dubbo-remoting (`tests/peers/node_modules`). Each test
//! prints why and passes when its peer is not installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers outside #[test] fns"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{calls, node, python, repo, run_client, serve_peer, start_ours};
use meta_bench::{CallError, Client, ClientOptions, Protocol};

const THRIFT_VARIANTS: [(&str, &str); 6] = [
    ("binary", "framed"),
    ("compact", "framed"),
    ("binary", "buffered"),
    ("compact", "buffered"),
    ("binary", "header"),
    ("compact", "header"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_thrift_server_answers_real_clients() {
    let Some(py) = python() else { return };
    let (port, server) = start_ours(Protocol::THRIFT, "rs1").await;
    for (protocol, transport) in THRIFT_VARIANTS {
        for (method, arg, want_ok) in [("sayHello", "world", true), ("echo", "x", false)] {
            let mut cmd = Command::new(&py);
            cmd.arg(repo().join("tests/peers/thrift_client.py")).args([
                "--target",
                &format!("127.0.0.1:{port}"),
                "--protocol",
                protocol,
                "--transport",
                transport,
                "--method",
                method,
                "--arg",
                arg,
                "--count",
                "3",
            ]);
            let lines = run_client(cmd).await;
            assert_eq!(lines.len(), 3, "{protocol}/{transport}: {lines:?}");
            for l in &lines {
                if want_ok {
                    assert_eq!(l["ok"], true, "{protocol}/{transport}: {l}");
                    assert_eq!(l["result"], "hello world from rs1");
                } else {
                    assert_eq!(l["ok"], false, "{protocol}/{transport}: {l}");
                    assert_eq!(l["type"], "TApplicationException", "{l}");
                    assert!(l["error"].as_str().unwrap().contains("echo"), "{l}");
                }
            }
        }
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_thrift_client_calls_real_servers() {
    let Some(py) = python() else { return };
    for (protocol, transport) in THRIFT_VARIANTS {
        let script = if transport == "header" {
            "thrift_apache_server.py"
        } else {
            "thrift_server.py"
        };
        let extra = ["--protocol", protocol, "--transport", transport];
        let (port, _peer) = serve_peer(&py, script, "py1", &extra).await;
        let proto: Protocol = format!("thrift-{transport}-{protocol}").parse().unwrap();
        let mut c = Client::connect(proto, ("127.0.0.1", port)).await.unwrap();
        for i in 0..3 {
            let r = c.call(&format!("w{i}"), &[]).await.unwrap();
            assert_eq!(r.text, format!("hello w{i} from py1"), "{proto}");
            assert_eq!(r.server(), Some("py1"));
        }
        if transport == "header" {
            let r = c.call("hdr", &[("x-k", "v")]).await.unwrap();
            assert_eq!(r.text, "hello hdr from py1");
        }
        // pipelined: the real server answers in order
        let ids: Vec<u64> = futures_send(&mut c, 5).await;
        for id in ids {
            assert_eq!(c.recv().await.unwrap().id, id, "{proto}");
        }
        // "echo" with "bad" raises the declared BadInput
        let opts = ClientOptions {
            method: "echo".into(),
            ..ClientOptions::default()
        };
        let mut e = Client::connect_with(proto, ("127.0.0.1", port), opts)
            .await
            .unwrap();
        let err = e.call("bad", &[]).await.unwrap_err();
        assert!(
            matches!(err, CallError::ThriftDeclared(1)),
            "{proto}: {err:?}"
        );
        let err = e.call("appex", &[]).await.unwrap_err();
        assert!(
            matches!(err, CallError::ThriftApplication { .. }),
            "{proto}: {err:?}"
        );
    }
}

async fn futures_send(c: &mut Client, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(c.send(&format!("p{i}"), &[]).await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dubbo_server_answers_sofa_rpc_node() {
    if !node() {
        return;
    }
    let (port, server) = start_ours(Protocol::Dubbo, "rs2").await;
    let client = |method: &str, args: &str| {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/peers/dubbo_client.js")).args([
            "--target",
            &format!("127.0.0.1:{port}"),
            "--method",
            method,
            "--args",
            args,
            "--count",
            "4",
            "--concurrency",
            "2",
        ]);
        cmd
    };
    let cmd = client("sayHello", r#"["caller{i}"]"#);
    let lines = run_client(cmd).await;
    let made = calls(&lines);
    assert_eq!(made.len(), 4, "{lines:?}");
    for l in made {
        assert_eq!(l["ok"], true, "{l}");
        let i = l["i"].as_u64().unwrap();
        assert_eq!(l["result"], format!("hello caller{i} from rs2"));
    }
    let cmd = client("goodbye", r#"["x"]"#);
    let lines = run_client(cmd).await;
    let failed = calls(&lines)[0];
    assert_eq!(failed["ok"], false, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("unknown method goodbye"),
        "{failed}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dubbo_client_calls_sofa_rpc_node() {
    if !node() {
        return;
    }
    let (port, _peer) = serve_peer(Path::new("node"), "dubbo_server.js", "js1", &[]).await;
    let mut c = Client::connect(Protocol::Dubbo, ("127.0.0.1", port))
        .await
        .unwrap();
    for i in 0..3 {
        let r = c
            .call(&format!("d{i}"), &[("x-user", "bob")])
            .await
            .unwrap();
        assert_eq!(r.text, format!("hello d{i} from js1"));
        assert_eq!(r.server(), Some("js1"));
    }
    let with = |method: &str| ClientOptions {
        method: method.into(),
        ..ClientOptions::default()
    };
    let addr = ("127.0.0.1", port);
    let mut echo = Client::connect_with(Protocol::Dubbo, addr, with("echoAttachments"))
        .await
        .unwrap();
    let r = echo.call("", &[("x-user", "bob")]).await.unwrap();
    assert!(r.text.contains("\"x-user\":\"bob\""), "{}", r.text);
    let mut fail = Client::connect_with(Protocol::Dubbo, addr, with("fail"))
        .await
        .unwrap();
    let err = fail.call("", &[]).await.unwrap_err();
    assert!(matches!(err, CallError::DubboException(_)), "{err:?}");
    assert!(err.to_string().contains("fail() raised in js1"), "{err}");
    let mut crash = Client::connect_with(Protocol::Dubbo, addr, with("crash"))
        .await
        .unwrap();
    let err = crash.call("", &[]).await.unwrap_err();
    assert!(matches!(err, CallError::DubboStatus { .. }), "{err:?}");
    assert!(err.to_string().contains("crash() in js1"), "{err}");
}
