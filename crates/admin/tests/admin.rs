//! The admin server over real TCP on 127.0.0.1: every endpoint, the 404 list, the access log,
//! and `promtool check metrics` on a metrics sample shaped like the engine's.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meta_admin::{AdminState, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type Labels = Vec<(String, String)>;

/// What Prometheus' scraper sends.
const OPENMETRICS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A registry with the families of /work/briefs/metrics.md and a few samples, as the engine has.
fn sample_metrics() -> String {
    let mut root = Registry::default();
    let reg = root.sub_registry_with_prefix("meta_protocol");
    let requests = Family::<Labels, Counter>::default();
    reg.register(
        "downstream_requests",
        "Decoded downstream messages",
        requests.clone(),
    );
    let replies = Family::<Labels, Counter>::default();
    reg.register("local_replies", "Local error replies", replies.clone());
    let active = Family::<Labels, Gauge>::default();
    reg.register("requests_active", "Requests in flight", active.clone());
    let duration = Family::<Labels, Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0005, 2.0, 12))
    });
    reg.register(
        "request_duration_seconds",
        "Decode to response written",
        duration.clone(),
    );
    let l = labels(&[
        ("listener", "l1"),
        ("protocol", "dubbo"),
        ("kind", "request"),
    ]);
    requests.get_or_create(&l).inc_by(3);
    replies
        .get_or_create(&labels(&[("listener", "l1"), ("reason", "no_route")]))
        .inc();
    active.get_or_create(&labels(&[("listener", "l1")])).set(2);
    let route = labels(&[("listener", "l1"), ("route", ""), ("cluster", "")]);
    duration.get_or_create(&route).observe(0.0042);
    let mut out = String::new();
    encode(&mut out, &root).unwrap();
    out
}

struct Admin {
    addr: std::net::SocketAddr,
    ready: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(access_log_path: Option<std::path::PathBuf>) -> Admin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let r = ready.clone();
    let state = AdminState {
        metrics: Arc::new(sample_metrics),
        config_dump: Arc::new(|| serde_json::json!({"listeners": [{"name": "l1", "port": 0}]})),
        ready: Arc::new(move || r.load(Ordering::SeqCst)),
        access_log_path,
    };
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(meta_admin::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Admin {
        addr,
        ready,
        stop: Some(tx),
        task,
    }
}

impl Admin {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        done.unwrap().unwrap().unwrap();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// A raw HTTP/1.1 GET with `Connection: close`.
async fn get(addr: std::net::SocketAddr, path: &str) -> Reply {
    get_with(addr, path, "").await
}

async fn get_with(addr: std::net::SocketAddr, path: &str, extra_headers: &str) -> Reply {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: admin-test\r\n{extra_headers}Connection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_every_endpoint() {
    let admin = start(None).await;
    let index = get(admin.addr, "/").await;
    assert_eq!(index.status, 200);
    for path in ["/metrics", "/stats/prometheus", "/ready", "/config_dump"] {
        assert!(
            index.body.contains(path),
            "{path} missing from {}",
            index.body
        );
    }

    for path in ["/metrics", "/stats/prometheus"] {
        let m = get_with(admin.addr, path, OPENMETRICS_ACCEPT).await;
        assert_eq!(m.status, 200);
        let ct = OPENMETRICS_CONTENT_TYPE.to_ascii_lowercase();
        assert!(
            m.head.contains(&format!("content-type: {ct}")),
            "{}",
            m.head
        );
        assert!(
            m.body
                .contains("# TYPE meta_protocol_downstream_requests counter\n")
        );
        assert!(m.body.contains("meta_protocol_downstream_requests_total{"));
        assert!(m.body.ends_with("# EOF\n"));

        let m = get(admin.addr, path).await;
        assert_eq!(m.status, 200);
        let ct = PROMETHEUS_TEXT_CONTENT_TYPE.to_ascii_lowercase();
        assert!(
            m.head.contains(&format!("content-type: {ct}")),
            "{}",
            m.head
        );
        assert!(
            m.body
                .contains("# TYPE meta_protocol_downstream_requests_total counter\n")
        );
        assert!(m.body.contains("meta_protocol_downstream_requests_total{"));
        assert!(!m.body.contains("# EOF"));
    }

    let r = get(admin.addr, "/ready").await;
    assert_eq!((r.status, r.body.as_str()), (200, "LIVE\n"));
    admin.ready.store(false, Ordering::SeqCst);
    let r = get(admin.addr, "/ready").await;
    assert_eq!(r.status, 503);

    let c = get(admin.addr, "/config_dump").await;
    assert_eq!(c.status, 200);
    assert!(c.head.contains("content-type: application/json"));
    assert!(
        c.body.contains("\n  \"listeners\""),
        "not pretty: {}",
        c.body
    );
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(v["listeners"][0]["name"], "l1");

    let n = get(admin.addr, "/nope").await;
    assert_eq!(n.status, 404);
    assert!(n.body.contains("/config_dump"));
    admin.stop().await;
}

#[tokio::test]
async fn writes_one_access_log_line_per_request() {
    let dir = std::env::temp_dir().join(format!("meta-admin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("admin_access.log");
    let _ = std::fs::remove_file(&path);
    let admin = start(Some(path.clone())).await;
    assert_eq!(get(admin.addr, "/ready").await.status, 200);
    assert_eq!(get(admin.addr, "/missing?x=1").await.status, 404);
    admin.stop().await;
    let log = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with('['), "{}", lines[0]);
    assert!(
        lines[0].contains("\"GET /ready HTTP/1.1\" 200 5 "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"127.0.0.1:"), "{}", lines[0]);
    assert!(lines[0].ends_with("\"admin-test\""), "{}", lines[0]);
    assert!(
        lines[1].contains("\"GET /missing?x=1 HTTP/1.1\" 404 "),
        "{}",
        lines[1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unwritable_access_log_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = AdminState {
        metrics: Arc::new(String::new),
        config_dump: Arc::new(|| serde_json::Value::Null),
        ready: Arc::new(|| true),
        access_log_path: Some("/nonexistent-dir/admin.log".into()),
    };
    let err = meta_admin::serve(listener, state, async {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/admin.log"),
        "{err}"
    );
}

/// Runs `promtool check metrics` on `text`: (exit code, report).
fn promtool(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    (result.status.code().unwrap_or(-1), report)
}

#[tokio::test]
async fn promtool_accepts_the_metrics() {
    if Command::new("promtool").arg("--version").output().is_err() {
        println!("skipped: promtool not on PATH (apt-get install prometheus)");
        return;
    }
    let admin = start(None).await;
    let open = get_with(admin.addr, "/metrics", OPENMETRICS_ACCEPT).await;
    let classic = get(admin.addr, "/stats/prometheus").await;
    admin.stop().await;
    assert!(
        classic
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        classic.head
    );
    // The classic format passes parsing and every lint.
    let (code, report) = promtool(&classic.body);
    assert_eq!((code, report.as_str()), (0, ""), "{}", classic.body);
    // promtool parses OpenMetrics with its 0.0.4 parser: it must parse (exit 1 is a parse error);
    // its only lint complaint is the counter HELP naming (`x` vs `x_total`), which is correct
    // OpenMetrics.
    let (code, report) = promtool(&open.body);
    assert!(
        code == 0 || code == 3,
        "promtool exit {code}: {report}\n{}",
        open.body
    );
    for line in report.lines() {
        assert!(
            line.ends_with("_total no help text"),
            "{line}\n{}",
            open.body
        );
    }
}
