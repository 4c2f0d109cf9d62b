//! 120 KB requests between our sample server / load generator and real third-party peers
//! (sofa-rpc-node with dubbo-remoting; thriftpy2 and Apache Thrift). The server reads only the
//! start of a large argument and reuses its last reply (rewriting the id); the load generator
//! sends requests from a template (encoded once, the id rewritten). Each test prints why and
//! passes when its peer is not installed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers outside #[test] fns"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{calls, node, python, repo, run_client, serve_peer, start_ours};
use meta_bench::load::{LoadOptions, Progress, run};
use meta_bench::{Protocol, hello_text};

const PAD: usize = 120 * 1024;

/// A ~120 KB name with multi-byte characters in the part the server echoes, in the middle of
/// the padding it does not read, and at the end.
fn big_name(tag: &str) -> String {
    format!(
        "{tag}-é😀-{}ü{}😀end",
        "x".repeat(PAD / 2),
        "y".repeat(PAD / 2)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dubbo_server_answers_sofa_rpc_node_with_120kb_arguments() {
    if !node() {
        return;
    }
    let (port, server) = start_ours(Protocol::Dubbo, "rs3").await;
    // The same name on every call (answered from the connection's last reply, id rewritten),
    // then a different name on every call ("{i}" is the call's index).
    for tag in ["same", "call{i}"] {
        let name = big_name(tag);
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/peers/dubbo_client.js")).args([
            "--target",
            &format!("127.0.0.1:{port}"),
            "--method",
            "sayHello",
            "--args",
            &serde_json::to_string(&[&name]).unwrap(),
            "--count",
            "6",
            "--concurrency",
            "3",
        ]);
        let lines = run_client(cmd).await;
        let made = calls(&lines);
        assert_eq!(made.len(), 6, "{tag}: {lines:?}");
        for l in made {
            assert_eq!(l["ok"], true, "{tag}: {l}");
            let sent = name.replace("{i}", &l["i"].as_u64().unwrap().to_string());
            assert_eq!(l["result"], hello_text(&sent, "rs3", 0), "{tag}");
        }
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_thrift_server_answers_real_clients_with_120kb_arguments() {
    let Some(py) = python() else { return };
    let (port, server) = start_ours(Protocol::THRIFT, "rs4").await;
    let name = big_name("big");
    for (protocol, transport, implementation) in [
        ("binary", "framed", "thriftpy2"),
        ("compact", "buffered", "thriftpy2"),
        ("binary", "header", "apache"),
        ("compact", "framed", "apache"),
    ] {
        let mut cmd = Command::new(&py);
        cmd.arg(repo().join("tests/peers/thrift_client.py")).args([
            "--target",
            &format!("127.0.0.1:{port}"),
            "--protocol",
            protocol,
            "--transport",
            transport,
            "--impl",
            implementation,
            "--arg",
            &name,
            "--count",
            "3",
        ]);
        let lines = run_client(cmd).await;
        let what = format!("{implementation} {protocol}/{transport}");
        assert_eq!(lines.len(), 3, "{what}: {lines:?}");
        for l in &lines {
            assert_eq!(l["ok"], true, "{what}: {l}");
            assert_eq!(l["result"], hello_text(&name, "rs4", 0), "{what}");
        }
    }
    server.abort();
}

/// `meta-bench run` (closed loop, 120 KB requests) against a real server: every answer is a
/// success (a request with a wrong id or bytes would be an error or a timeout).
async fn load_real_server(proto: Protocol, port: u16) {
    let opts = LoadOptions {
        protocol: proto,
        target: format!("127.0.0.1:{port}"),
        connections: 2,
        pipeline: 2,
        duration: Duration::from_millis(500),
        payload: PAD,
        ..LoadOptions::default()
    };
    let report = run(opts, Arc::new(Progress::default())).await.unwrap();
    assert_eq!(report.errors, 0, "{proto}: {:?}", report.errors_by_kind);
    assert!(report.requests > 0, "{proto}: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_load_generator_drives_real_servers_with_120kb_requests() {
    if node() {
        let (port, _peer) = serve_peer(Path::new("node"), "dubbo_server.js", "js2", &[]).await;
        load_real_server(Protocol::Dubbo, port).await;
    }
    if let Some(py) = python() {
        for (protocol, transport) in [("binary", "framed"), ("compact", "framed")] {
            let extra = ["--protocol", protocol, "--transport", transport];
            let (port, _peer) = serve_peer(&py, "thrift_server.py", "py2", &extra).await;
            let proto: Protocol = format!("thrift-{transport}-{protocol}").parse().unwrap();
            load_real_server(proto, port).await;
        }
    }
}
