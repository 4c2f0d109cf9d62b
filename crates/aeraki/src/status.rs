//! `aeraki status`: asks a running control plane's admin server for `/status` and prints a
//! table of connected proxies with their last ACKed and NACKed versions per resource type.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::StatusReport;

/// Fetches and prints the status. Exit code 1 when a proxy's last response was NACKed or the
/// config directory is currently invalid, so scripts can gate on it.
pub async fn print(admin: SocketAddr, json: bool) -> anyhow::Result<ExitCode> {
    let body = http_get(admin, "/status").await?;
    let report: StatusReport = serde_json::from_str(&body)
        .with_context(|| format!("unexpected /status answer from {admin}"))?;
    let mut out = String::new();
    if json {
        out.push_str(&serde_json::to_string_pretty(&report)?);
        out.push('\n');
    } else {
        render_table(&report, &mut out);
    }
    write_stdout(&out);
    let unhealthy = report.config.last_error.is_some()
        || report
            .proxies
            .iter()
            .any(|p| p.types.iter().any(|t| t.nacked_after_ack()));
    Ok(if unhealthy {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::print_stdout)] // the command's documented output
fn write_stdout(s: &str) {
    print!("{s}");
}

/// Renders the report as aligned text.
pub fn render_table(report: &StatusReport, out: &mut String) {
    use std::fmt::Write as _;
    let c = &report.config;
    let _ = writeln!(
        out,
        "config: version {} from {} ({} services){}",
        c.version,
        c.dir,
        c.services,
        c.last_error
            .as_deref()
            .map(|e| format!("; LAST CHANGE REFUSED: {e}"))
            .unwrap_or_default()
    );
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if report.proxies.is_empty() {
        out.push_str("no proxies connected\n");
        return;
    }
    let mut rows = vec![[
        "NODE".to_owned(),
        "FLAVOR".to_owned(),
        "PEER".to_owned(),
        "TYPE".to_owned(),
        "SENT".to_owned(),
        "ACKED".to_owned(),
        "NACKED".to_owned(),
    ]];
    for p in &report.proxies {
        for t in &p.types {
            rows.push([
                p.node.clone(),
                p.flavor.clone(),
                p.peer.clone(),
                t.short_type().to_owned(),
                t.sent.clone().unwrap_or_else(|| "-".into()),
                t.acked.clone().unwrap_or_else(|| "-".into()),
                t.nack
                    .as_ref()
                    .map(|n| format!("{}: {}", n.version, n.error))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Minimal HTTP/1.0 GET (the admin server is ours and local; no client crate needed).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the control plane at {addr} within 5s"))?
        .with_context(|| format!("cannot reach the control plane's admin server at {addr}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP answer from {addr}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        anyhow::bail!("{addr}{path} answered `{status}`");
    }
    Ok(body.to_owned())
}
