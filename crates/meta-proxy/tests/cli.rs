//! The binary as users run it: `--mode validate` outcomes, one-line errors with exit code 1, and
//! `--mode serve` proxying the example protocol to a backend, serving the admin endpoints and
//! stopping cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meta-proxy");

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bootstrap with one listener of the example protocol routing `cmd == 42` to `backend`.
fn config(listen: u16, admin: u16, backend: u16, codec: &str, extra_admin: &str) -> String {
    format!(
        r#"admin:
  {extra_admin}address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: custom_l
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}
    filter_chains:
    - filters:
      - name: aeraki.meta_protocol_proxy
        typed_config:
          '@type': type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy
          stat_prefix: custom_l
          protocol:
            name: custom
            codec: {{ name: {codec} }}
          route_config:
            name: custom_l
            routes:
            - name: cmd42
              match:
                metadata:
                - name: cmd
                  exact_match: "42"
              route: {{ cluster: backend }}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {backend} }}
"#
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meta-proxy-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code 1 and exactly one line on stderr, no panic or backtrace.
fn assert_one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("meta-proxy: error: "), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

#[test]
fn help_lists_the_flags() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--concurrency", "--log-level", "--mode"] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
}

#[test]
fn validate_accepts_a_good_config() {
    let dir = TempDir::new("ok");
    let path = dir.write("ok.yaml", &config(1, 2, 3, "example.codec.custom", ""));
    let out = run(&["--config", path.to_str().unwrap(), "--mode", "validate"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "configuration OK\n");
}

#[test]
fn validate_reports_errors_on_one_line() {
    let dir = TempDir::new("bad");
    let err = assert_one_line_error(&run(&["--concurrency", "0", "-c", "x.yaml"]));
    assert!(err.contains("--concurrency"), "{err}");
    let out = run(&["--config", "/nonexistent/meta.yaml", "--mode", "validate"]);
    let err = assert_one_line_error(&out);
    assert!(err.contains("/nonexistent/meta.yaml"), "{err}");

    let path = dir.write("codec.yaml", &config(1, 2, 3, "no.such.codec", ""));
    let err = assert_one_line_error(&run(&["-c", path.to_str().unwrap(), "--mode", "validate"]));
    assert!(err.contains("no.such.codec"), "{err}");

    let path = dir.write("syntax.yaml", "static_resources: [unclosed\n");
    assert_one_line_error(&run(&["-c", path.to_str().unwrap(), "--mode", "validate"]));

    let path = dir.write("ok.yaml", &config(1, 2, 3, "example.codec.custom", ""));
    let out = run(&[
        "-c",
        path.to_str().unwrap(),
        "--log-level",
        "loud=[",
        "--mode",
        "validate",
    ]);
    let err = assert_one_line_error(&out);
    assert!(err.contains("--log-level"), "{err}");
}

#[test]
fn serve_fails_cleanly_on_a_busy_port() {
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = TempDir::new("busy");
    let path = dir.write(
        "busy.yaml",
        &config(port, free_port(), 3, "example.codec.custom", ""),
    );
    let err_path = dir.0.join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status, Some(1), "stderr: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("meta-proxy: error: ") && last.contains(&port.to_string()),
        "{err}"
    );
}

/// Kills the proxy (by its pid) if a test fails before it stopped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `child` for its exit code; kills it (by its pid) and returns None after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn connect_retry(addr: SocketAddr, limit: Duration) -> TcpStream {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = connect_retry((Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(10));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// `promtool check metrics` must pass without a lint message (skipped without promtool).
fn promtool_check(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not on PATH: metrics lint skipped (apt-get install prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{metrics}"
    );
}

/// Reads one whole frame of the example protocol.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 16];
    s.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes([header[12], header[13], header[14], header[15]]) as usize;
    let mut frame = header.to_vec();
    frame.resize(16 + len, 0);
    s.read_exact(&mut frame[16..]).unwrap();
    frame
}

/// A backend that answers every request with a response echoing its id, command and body.
fn spawn_backend() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                loop {
                    let mut header = [0u8; 16];
                    if conn.read_exact(&mut header).is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
                    let mut body = vec![0u8; len as usize];
                    if conn.read_exact(&mut body).is_err() {
                        return;
                    }
                    let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                    let cmd = u16::from_be_bytes([header[8], header[9]]);
                    let reply = custom_codec_example::response(id, cmd, &body);
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn serves_proxies_and_stops_on_sigterm() {
    serve_then_stop_on_sigterm("2");
}

/// One worker runs the whole proxy (data plane, admin, signals) on a current-thread runtime.
#[test]
fn one_worker_serves_proxies_and_stops_on_sigterm() {
    serve_then_stop_on_sigterm("1");
}

fn serve_then_stop_on_sigterm(concurrency: &str) {
    let backend = spawn_backend();
    let (listen, admin) = (free_port(), free_port());
    let dir = TempDir::new(&format!("serve-{concurrency}"));
    let log = dir.0.join("admin.log");
    let extra = format!("access_log_path: {}\n  ", log.display());
    let path = dir.write(
        "serve.yaml",
        &config(listen, admin, backend, "example.codec.custom", &extra),
    );
    // stderr goes to a file: a full pipe would block the proxy's logging.
    let err_path = dir.0.join("stderr.log");
    let args = [
        "-c",
        path.to_str().unwrap(),
        "--concurrency",
        concurrency,
        "-l",
        "debug",
    ];
    let stderr_file = std::fs::File::create(&err_path).unwrap();
    let mut child = Guard(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .spawn()
            .unwrap(),
    );

    let (status, _) = http_get(admin, "/ready");
    assert_eq!(status, 200);
    let mut client = connect_retry(
        (Ipv4Addr::LOCALHOST, listen).into(),
        Duration::from_secs(10),
    );
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(&custom_codec_example::request(7, 42, b"ping"))
        .unwrap();
    assert_eq!(
        read_frame(&mut client),
        &custom_codec_example::response(7, 42, b"ping")[..]
    );
    // No route for command 9: an error response from the proxy itself, same id.
    client
        .write_all(&custom_codec_example::request(8, 9, b""))
        .unwrap();
    let reply = read_frame(&mut client);
    assert_eq!(&reply[4..8], &8u32.to_be_bytes());
    assert_ne!(reply[3] & custom_codec_example::FLAG_ERROR, 0, "{reply:?}");

    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("meta_protocol_downstream_requests_total{"),
        "{metrics}"
    );
    promtool_check(&metrics);
    let (status, dump) = http_get(admin, "/config_dump");
    assert!(status == 200 && dump.contains("custom_l"), "{dump}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("GET /ready")
    );

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = wait_exit(&mut child.0, Duration::from_secs(15));
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{listen}")),
        "bound address not logged:\n{err}"
    );
    assert!(err.contains("SIGTERM"), "{err}");
}
