//! `meta-bench run` against `meta-bench server`, both as processes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test helpers outside #[test] fns"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_meta-bench");

/// A `meta-bench server` killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(args: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "READY <protocol> <addr>"
    let addr = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert!(line.starts_with("READY"), "{line:?}");
    Server { child, addr }
}

/// Runs `meta-bench run ... --json` (at most 30 s) and returns the JSON of its last line.
fn run(args: &[&str]) -> Value {
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("meta-bench run still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn n(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn closed_loop_reports_requests_without_errors() {
    for proto in [
        "thrift",
        "dubbo",
        "thrift-compact",
        "thrift-buffered",
        "thrift-header",
    ] {
        let s = server(&["--protocol", proto, "--name", "v9"]);
        let r = run(&[
            "--protocol",
            proto,
            "--target",
            &s.addr,
            "--connections",
            "2",
            "--duration",
            "1s",
            "--pipeline",
            "4",
        ]);
        assert!(n(&r, "requests") > 0.0, "{proto}: {r}");
        assert_eq!(n(&r, "errors"), 0.0, "{proto}: {r}");
        for key in [
            "rps",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "duration_s",
        ] {
            assert!(n(&r, key) > 0.0, "{proto}: {key} in {r}");
        }
        assert!(n(&r, "p50_us") <= n(&r, "p99_us") && n(&r, "p99_us") <= n(&r, "max_us"));
        assert_eq!(n(&r, "connections"), 2.0);
    }
}

#[test]
fn open_loop_holds_the_rate() {
    let s = server(&["--protocol", "thrift"]);
    let r = run(&[
        "--protocol",
        "thrift",
        "--target",
        &s.addr,
        "--connections",
        "3",
        "--duration",
        "1s",
        "--rate",
        "200",
        "--warmup",
        "200ms",
        "--payload",
        "120000",
    ]);
    let requests = n(&r, "requests");
    assert!((160.0..=240.0).contains(&requests), "{r}");
    assert_eq!(n(&r, "errors"), 0.0, "{r}");
    assert_eq!(n(&r, "rate"), 200.0);
}

#[test]
fn errors_are_counted_by_kind() {
    let s = server(&["--protocol", "dubbo"]);
    let r = run(&[
        "--protocol",
        "dubbo",
        "--target",
        &s.addr,
        "--duration",
        "300ms",
        "--method",
        "nope",
    ]);
    assert_eq!(n(&r, "requests"), 0.0, "{r}");
    assert!(n(&r, "errors") > 0.0, "{r}");
    assert_eq!(r["errors_by_kind"]["dubbo_status_70"], r["errors"], "{r}");

    // a server that is slower than the timeout
    let slow = server(&["--protocol", "thrift", "--delay", "2s"]);
    let r = run(&[
        "--protocol",
        "thrift",
        "--target",
        &slow.addr,
        "--duration",
        "300ms",
        "--timeout",
        "200ms",
    ]);
    assert!(n(&r, "errors") > 0.0, "{r}");
    assert_eq!(r["errors_by_kind"]["timeout"], r["errors"], "{r}");

    // nothing listening: every connection fails
    drop(slow);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let r = run(&[
        "--protocol",
        "thrift",
        "--target",
        &addr,
        "--duration",
        "100ms",
        "--connections",
        "3",
    ]);
    assert_eq!(r["errors_by_kind"]["connect_transport"], 3, "{r}");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &[
            "run",
            "--protocol",
            "thrift",
            "--target",
            "x:1",
            "--rate",
            "0",
        ][..],
        &[
            "run",
            "--protocol",
            "thrift",
            "--target",
            "x:1",
            "--pipeline",
            "0",
        ],
        &[
            "run",
            "--protocol",
            "dubbo",
            "--transport",
            "header",
            "--target",
            "x:1",
        ],
        &[
            "run",
            "--protocol",
            "thrift",
            "--target",
            "x:1",
            "--duration",
            "10 parsecs",
        ],
        &["server", "--protocol", "redis", "--listen", "127.0.0.1:0"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no error message");
    }
}
