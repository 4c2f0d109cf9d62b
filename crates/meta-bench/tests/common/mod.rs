//! Helpers of the tests against real third-party peers (`peers.rs`, `peers_large.rs`).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers; each test file uses a part of them"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meta_bench::{Protocol, ServerOptions, serve};
use tokio::net::TcpListener;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn python() -> Option<PathBuf> {
    let py = repo().join(".venv/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import thriftpy2, thrift"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "SKIP: {} with thriftpy2 and thrift is not installed",
            py.display()
        );
    }
    ok.then_some(py)
}

pub fn node() -> bool {
    let ok = repo()
        .join("tests/peers/node_modules/sofa-rpc-node")
        .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ok {
        println!("SKIP: node or tests/peers/node_modules/sofa-rpc-node is missing");
    }
    ok
}

/// A child process killed on drop.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts a peer server and waits (at most 20 s) for its READY line.
pub fn start_peer(mut cmd: Command) -> Peer {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = Peer(cmd.spawn().unwrap());
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("READY") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("peer server did not print READY within 20 s");
    child
}

/// Starts the peer server `tests/peers/<script>`, run by `program` (`node` or a Python), on a
/// free port under `name`, with `extra` arguments; returns its port once it is READY.
pub async fn serve_peer(program: &Path, script: &str, name: &str, extra: &[&str]) -> (u16, Peer) {
    let port = free_port();
    let mut cmd = Command::new(program);
    cmd.arg(repo().join("tests/peers").join(script))
        .args(["--port", &port.to_string(), "--name", name])
        .args(extra);
    let peer = tokio::task::spawn_blocking(move || start_peer(cmd))
        .await
        .unwrap();
    (port, peer)
}

/// Runs a peer client to completion (at most 60 s, on a blocking thread) and returns its JSON
/// lines.
pub async fn run_client(cmd: Command) -> Vec<serde_json::Value> {
    tokio::task::spawn_blocking(move || wait_client(cmd))
        .await
        .unwrap()
}

/// The lines of `run_client` that report a call (not the final summary).
pub fn calls(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.get("summary").is_none())
        .collect()
}

fn wait_client(mut cmd: Command) -> Vec<serde_json::Value> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = Peer(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "peer client still running after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut text).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub async fn start_ours(proto: Protocol, name: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let opts = ServerOptions {
        name: name.into(),
        ..ServerOptions::default()
    };
    let task = tokio::spawn(async move {
        let _ = serve(proto, l, opts).await;
    });
    (port, task)
}
