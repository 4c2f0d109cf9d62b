//! The simulated clients in a child process (`cp-bench clients ...`), so that the benchmark
//! process's memory is the control plane's alone.
//!
//! The parent writes the [`Subscription`] as JSON to a file and starts
//! `cp-bench clients --server ADDR --count N --subscription FILE`. The child runs the clients
//! and prints one line per event on stdout: `R <client> <kind> <version> <at> <acked> <w>`
//! (times in nanoseconds since the Unix epoch, `w` = `-` when the watched route was not in
//! the response, else `1`/`0` for edited weights or not) or `F <client> <error>`. Parent and
//! child share the machine's clock; the parent converts the times to its own `Instant`s.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::client::{self, Event, Subscription};

fn unix_ns(at: Instant) -> u128 {
    let now_sys = SystemTime::now();
    let ago = Instant::now().saturating_duration_since(at);
    (now_sys - ago)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn instant_of(ns: u128) -> Instant {
    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX));
    let ago = SystemTime::now().duration_since(at).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// The child's side: runs `count` clients against `server` and reports on stdout until every
/// client stopped (or stdout is closed).
pub async fn serve_clients(
    server: SocketAddr,
    count: usize,
    subscription: &Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(subscription)
        .with_context(|| format!("reading {}", subscription.display()))?;
    let sub: Arc<Subscription> = Arc::new(serde_json::from_str(&text)?);
    crate::sys::ensure_open_files(count as u64 + 256)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for id in 0..count {
        tokio::spawn(client::run(id, server, sub.clone(), tx.clone()));
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(event) = rx.recv().await {
        let line = match event {
            Event::Response {
                client,
                kind,
                version,
                at,
                acked,
                watched,
            } => {
                let w = match watched {
                    None => "-",
                    Some(true) => "1",
                    Some(false) => "0",
                };
                format!(
                    "R {client} {kind} {version} {} {} {w}\n",
                    unix_ns(at),
                    unix_ns(acked)
                )
            }
            Event::Failed { client, error } => {
                format!("F {client} {}\n", error.replace('\n', " "))
            }
        };
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

fn parse(line: &str) -> Option<Event> {
    let mut f = line.splitn(7, ' ');
    match f.next()? {
        "R" => {
            let client = f.next()?.parse().ok()?;
            let kind = f.next()?.parse().ok()?;
            let version = f.next()?.to_owned();
            let at = instant_of(f.next()?.parse().ok()?);
            let acked = instant_of(f.next()?.parse().ok()?);
            let watched = match f.next()? {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            };
            Some(Event::Response {
                client,
                kind,
                version,
                at,
                acked,
                watched,
            })
        }
        "F" => {
            let client = f.next()?.parse().ok()?;
            let error = line.splitn(3, ' ').nth(2).unwrap_or("").to_owned();
            Some(Event::Failed { client, error })
        }
        _ => None,
    }
}

/// The parent's side: starts the child (`bin`) and forwards its events to `events`. The
/// subscription file is `dir/cp-bench-subscription-<pid>.json`, removed when the child is.
pub fn spawn(
    bin: &Path,
    server: SocketAddr,
    count: usize,
    sub: &Subscription,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<Clients> {
    let file =
        std::env::temp_dir().join(format!("cp-bench-subscription-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(sub)?)?;
    let mut child = Command::new(bin)
        .args([
            "clients",
            "--server",
            &server.to_string(),
            "--count",
            &count.to_string(),
            "--subscription",
        ])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event = parse(&line).unwrap_or(Event::Failed {
                client: usize::MAX,
                error: format!("unreadable line from the clients process: {line}"),
            });
            if events.send(event).is_err() {
                break;
            }
        }
    });
    Ok(Clients { child, file })
}

/// The running child; killed (and its subscription file removed) on drop.
#[derive(Debug)]
pub struct Clients {
    child: Child,
    file: std::path::PathBuf,
}

impl Clients {
    /// `(VmRSS, VmHWM)` of the child in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        crate::sys::memory_kib_of(&format!("/proc/{}/status", self.child.id()))
            .map_or((0.0, 0.0), |(r, h)| (r as f64 / 1024.0, h as f64 / 1024.0))
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}
