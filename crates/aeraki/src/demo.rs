//! `aeraki demo`: the whole mesh on one machine, no Kubernetes.
//!
//! 1. the control plane, in this process, serving `examples/demo` (watched: edit it live);
//! 2. one sample server per endpoint of every service in that config (Dubbo or Thrift, named
//!    after the endpoint's `version` label), in this process;
//! 3. a sidecar `meta-proxy` (the real binary, a child process) bootstrapped from the control
//!    plane over ADS, listening on each service's VIP;
//! 4. clients calling every VIP in a loop, and a live table of requests per service, version
//!    and outcome.
//!
//! Ctrl-C (or `--duration`) stops everything: clients, sidecar, servers, control plane.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aeraki_model::{Protocol, ServiceView};
use anyhow::Context;

use crate::controller::ControlPlane;
use meta_bench::{Client, Protocol as Sample, ServerOptions};

/// Options of `aeraki demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Mesh config to serve [default: examples/demo of this repository].
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Calls per second per service.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// The meta-proxy binary [default: next to this executable].
    #[arg(long, value_name = "FILE")]
    meta_proxy: Option<PathBuf>,
    /// xDS address of the demo's control plane.
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_address: SocketAddr,
    /// Admin address of the demo's control plane (`aeraki status` reads it).
    #[arg(long, default_value = "127.0.0.1:15014")]
    admin_address: SocketAddr,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = args.config_dir.clone().unwrap_or_else(default_dir);
    let meta_proxy = args
        .meta_proxy
        .clone()
        .map_or_else(sibling_meta_proxy, Ok)?;
    let cp = ControlPlane::start(dir.clone(), args.xds_address, args.admin_address).await?;
    // The view the control plane serves (start fails on an invalid directory).
    let view = cp.shared.view();

    let mut servers = Vec::new();
    for svc in &view.services {
        for ep in &svc.endpoints {
            let name = ep
                .labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| format!("{}:{}", ep.address, ep.port));
            let addr: SocketAddr = format!("{}:{}", ep.address, ep.port)
                .parse()
                .with_context(|| format!("demo endpoints must be IP addresses: {}", ep.address))?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot start the sample server for {} on {addr}", svc.host)
            })?;
            let protocol = bench_protocol(svc)?;
            servers.push(tokio::spawn(async move {
                let opts = ServerOptions {
                    name,
                    ..ServerOptions::default()
                };
                if let Err(e) = meta_bench::serve(protocol, listener, opts).await {
                    tracing::error!("sample server on {addr} stopped: {e}");
                }
            }));
        }
    }

    let work = tempdir()?;
    let sidecar = Sidecar::start(&meta_proxy, &work, cp.xds_address).await?;

    sidecar.wait_ready(Duration::from_secs(20)).await?;

    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for svc in &view.services {
        for vip in &svc.addresses {
            let target: SocketAddr = format!("{vip}:{}", svc.port).parse()?;
            let protocol = bench_protocol(svc)?;
            let label = format!("{} ({})", svc.host, protocol_name(svc));
            clients.push(tokio::spawn(client_loop(
                protocol,
                target,
                label,
                args.rate,
                tally.clone(),
            )));
        }
    }

    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = args.duration.map(|s| started + Duration::from_secs(s));
    let stop = crate::controller::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let screen = render_screen(&dir, &cp, &tally, started, &sidecar);
                show(&screen, tty);
                if deadline.is_some_and(|d| Instant::now() >= d) { break; }
            }
        }
    }
    for c in &clients {
        c.abort();
    }
    sidecar.stop().await;
    for s in &servers {
        s.abort();
    }
    cp.stop();
    show(&tally.summary(), false);
    Ok(ExitCode::SUCCESS)
}

fn bench_protocol(svc: &ServiceView) -> anyhow::Result<Sample> {
    let app = match &svc.protocol {
        Protocol::MetaProtocol { application, .. } => application.as_str(),
        Protocol::Dubbo => "dubbo",
        Protocol::Thrift => "thrift",
        Protocol::Redis => "redis",
        Protocol::Tcp => "tcp",
        Protocol::Grpc => "grpc",
    };
    app.parse::<Sample>()
        .map_err(|_| anyhow::anyhow!("the demo has no sample server for `{app}` ({})", svc.host))
}

fn protocol_name(svc: &ServiceView) -> &str {
    match &svc.protocol {
        Protocol::MetaProtocol { application, .. } => application,
        Protocol::Dubbo => "dubbo",
        Protocol::Thrift => "thrift",
        Protocol::Redis => "redis",
        Protocol::Tcp => "tcp",
        Protocol::Grpc => "grpc",
    }
}

/// `examples/demo` of the source tree this binary was built from, or of the current directory.
fn default_dir() -> PathBuf {
    let here = PathBuf::from("examples/demo");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo")
}

fn sibling_meta_proxy() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidate = exe.with_file_name("meta-proxy");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        anyhow::bail!(
            "meta-proxy not found at {} (build it: cargo build --release --bins, or pass --meta-proxy FILE)",
            candidate.display()
        )
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("aeraki-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The sidecar meta-proxy child process.
#[derive(Debug)]
struct Sidecar {
    child: Mutex<Option<tokio::process::Child>>,
    admin: SocketAddr,
    log: PathBuf,
}

impl Sidecar {
    async fn start(binary: &Path, work: &Path, xds: SocketAddr) -> anyhow::Result<Self> {
        let admin = free_addr()?;
        let bootstrap = work.join("sidecar.yaml");
        std::fs::write(&bootstrap, sidecar_bootstrap(xds, admin))?;
        let log = work.join("sidecar.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&bootstrap)
            .arg("--concurrency")
            .arg("2")
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Sidecar {
            child: Mutex::new(Some(child)),
            admin,
            log,
        })
    }

    /// Waits until the sidecar has its first config from the control plane (`/ready`).
    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        loop {
            if crate::status::http_get(self.admin, "/ready").await.is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                anyhow::bail!(
                    "the sidecar meta-proxy exited ({status}); its log: {}",
                    self.log.display()
                );
            }
            if Instant::now() >= until {
                anyhow::bail!(
                    "the sidecar meta-proxy is not ready after {}s; its log: {}",
                    limit.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut c) = child {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// The ADS bootstrap of the demo's sidecar.
pub fn sidecar_bootstrap(xds: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"node:
  id: sidecar~127.0.0.1~demo-client.demo~demo.svc.cluster.local
  cluster: demo-client
admin:
  address:
    socket_address: {{ address: {admin_ip}, port_value: {admin_port} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
      - envoy_grpc: {{ cluster_name: xds-grpc }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
    - name: xds-grpc
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: xds-grpc
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: {xds_ip}, port_value: {xds_port} }}
"#,
        admin_ip = admin.ip(),
        admin_port = admin.port(),
        xds_ip = xds.ip(),
        xds_port = xds.port(),
    )
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// Calls `target` at `rate` per second forever, recording each outcome.
async fn client_loop(
    protocol: Sample,
    target: SocketAddr,
    label: String,
    rate: u32,
    tally: Arc<Tally>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<Client> = None;
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if client.is_none() {
            match tokio::time::timeout(Duration::from_secs(1), Client::connect(protocol, target))
                .await
            {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => {
                    tally.record(&label, format!("connect error: {}", e.kind()));
                    continue;
                }
                Err(_) => {
                    tally.record(&label, "connect timeout".to_owned());
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let name = format!("demo-{n}");
        let outcome = match tokio::time::timeout(Duration::from_secs(2), c.call(&name, &[])).await {
            Ok(Ok(reply)) => reply
                .server()
                .map(str::to_owned)
                .unwrap_or_else(|| "ok (unlabelled)".to_owned()),
            Ok(Err(e)) => {
                let text = format!("error: {}", short(&e.to_string()));
                if e.is_transport() {
                    client = None;
                }
                text
            }
            Err(_) => {
                client = None;
                "timeout".to_owned()
            }
        };
        tally.record(&label, outcome);
    }
}

fn short(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default();
    if s.chars().count() > 26 {
        format!("{}…", s.chars().take(26).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Outcome counters: totals, and a ring of per-second buckets for the recent share.
#[derive(Debug, Default)]
struct Tally {
    inner: Mutex<TallyInner>,
}

#[derive(Debug, Default)]
struct TallyInner {
    /// (service, outcome) → total
    total: BTreeMap<(String, String), u64>,
    /// recent events: (when, service, outcome)
    recent: std::collections::VecDeque<(Instant, String, String)>,
}

const WINDOW: Duration = Duration::from_secs(5);

impl Tally {
    fn record(&self, service: &str, outcome: String) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *t.total
            .entry((service.to_owned(), outcome.clone()))
            .or_default() += 1;
        let now = Instant::now();
        t.recent.push_back((now, service.to_owned(), outcome));
        while t
            .recent
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > WINDOW)
        {
            t.recent.pop_front();
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut recent: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut recent_per_service: BTreeMap<String, u64> = BTreeMap::new();
        for (at, svc, outcome) in &t.recent {
            if now.duration_since(*at) <= WINDOW {
                *recent.entry((svc.clone(), outcome.clone())).or_default() += 1;
                *recent_per_service.entry(svc.clone()).or_default() += 1;
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<62} {:<34} {:>10} {:>8}",
            "SERVICE", "VERSION / OUTCOME", "LAST 5s", "TOTAL"
        );
        let mut last_service = String::new();
        for ((svc, outcome), total) in &t.total {
            let r = recent
                .get(&(svc.clone(), outcome.clone()))
                .copied()
                .unwrap_or(0);
            let all = recent_per_service.get(svc).copied().unwrap_or(0).max(1);
            let pct = format!("{:>5.1}%", 100.0 * r as f64 / all as f64);
            let shown = if *svc == last_service {
                ""
            } else {
                svc.as_str()
            };
            let _ = writeln!(out, "{shown:<62} {outcome:<34} {pct:>10} {total:>8}");
            last_service.clone_from(svc);
        }
        out
    }

    fn summary(&self) -> String {
        format!("\nfinal counts:\n{}", self.table())
    }
}

fn render_screen(
    dir: &Path,
    cp: &ControlPlane,
    tally: &Tally,
    started: Instant,
    sidecar: &Sidecar,
) -> String {
    use std::fmt::Write as _;
    let report = cp.shared.report();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "aeraki demo — {}s — config {} (version {}) — xDS {} — admin {} — sidecar admin {}",
        started.elapsed().as_secs(),
        dir.display(),
        report.config.version,
        cp.xds_address,
        cp.admin_address,
        sidecar.admin,
    );
    let _ = writeln!(
        out,
        "edit {}/*-router.yaml (e.g. weights 90/10 → 10/90) and watch the shares move; Ctrl-C stops.\n",
        dir.display()
    );
    out.push_str(&tally.table());
    if let Some(e) = &report.config.last_error {
        let _ = writeln!(
            out,
            "\nLAST EDIT REFUSED (still serving version {}):\n{e}",
            report.config.version
        );
    }
    for p in &report.proxies {
        for t in &p.types {
            if let Some(n) = t.nack.as_ref().filter(|_| t.nacked_after_ack()) {
                let _ = writeln!(
                    out,
                    "\n{} rejected {} v{}: {}",
                    p.node,
                    t.short_type(),
                    n.version,
                    n.error
                );
            }
        }
    }
    if report.proxies.is_empty() {
        let _ = writeln!(
            out,
            "\nsidecar not connected yet (log: {})",
            sidecar.log.display()
        );
    }
    out
}

#[allow(clippy::print_stdout)] // the demo's live table
fn show(screen: &str, tty: bool) {
    if tty {
        print!("\x1b[2J\x1b[H{screen}");
    } else {
        println!("{screen}");
    }
}
