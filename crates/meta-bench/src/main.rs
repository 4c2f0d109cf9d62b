//! `meta-bench`: sample Dubbo/Thrift server and load generator (see the library docs).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use meta_bench::load::{LoadOptions, Progress, run};
use meta_bench::{ClientOptions, Protocol, ServerOptions, ThriftProtocol, ThriftTransport, serve};

#[derive(Parser, Debug)]
#[command(
    name = "meta-bench",
    version,
    about = "Sample Dubbo/Thrift servers and a load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve sayHello (Dubbo DemoService or Thrift HelloService) until killed.
    Server(ServerArgs),
    /// Generate load against a server or proxy and report throughput and latency.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct ProtoArgs {
    /// dubbo or thrift (also thrift-compact, thrift-buffered, thrift-header-compact, ...).
    #[arg(long)]
    protocol: Protocol,
    /// Thrift transport: framed, buffered or header (overrides the one in --protocol).
    #[arg(long)]
    transport: Option<ThriftTransport>,
    /// Thrift protocol: binary or compact (overrides the one in --protocol).
    #[arg(long)]
    thrift_protocol: Option<ThriftProtocol>,
}

impl ProtoArgs {
    fn resolve(&self) -> anyhow::Result<Protocol> {
        match self.protocol {
            Protocol::Dubbo if self.transport.is_some() || self.thrift_protocol.is_some() => {
                bail!("--transport and --thrift-protocol apply to --protocol thrift only")
            }
            Protocol::Dubbo => Ok(Protocol::Dubbo),
            Protocol::Thrift(mut v) => {
                if let Some(t) = self.transport {
                    v.transport = t;
                }
                if let Some(p) = self.thrift_protocol {
                    v.protocol = p;
                }
                Ok(Protocol::Thrift(v))
            }
        }
    }
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    proto: ProtoArgs,
    /// Address to listen on, e.g. 127.0.0.1:9090 (port 0 picks one; the READY line says which).
    #[arg(long)]
    listen: String,
    /// Pad every reply to this many bytes.
    #[arg(long, default_value_t = 0)]
    payload: usize,
    /// Server name put in replies ("hello <name> from <server name>").
    #[arg(long, default_value = "v1")]
    name: String,
    /// Delay every reply by this long (e.g. 5ms).
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    proto: ProtoArgs,
    /// host:port of the server or proxy.
    #[arg(long)]
    target: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Measured time (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before the measured one, same load.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop at this total rate (requests/s), latency from the intended send time.
    #[arg(long)]
    rate: Option<f64>,
    /// Pad the request's name argument to this many bytes.
    #[arg(long, default_value_t = 0)]
    payload: usize,
    /// Closed loop: requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Method to call.
    #[arg(long, default_value = meta_bench::METHOD)]
    method: String,
    /// A request without a response after this long is a `timeout` error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the report as one JSON object on the last stdout line.
    #[arg(long)]
    json: bool,
}

/// `10s`, `250ms`, `2.5s`, `1m`, `100us`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 10s, 250ms, 1m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?} (us, ms, s, m)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Server(a) => rt.block_on(server(a)),
        Command::Run(a) => rt.block_on(load(a)),
    }
}

async fn server(a: ServerArgs) -> anyhow::Result<()> {
    let proto = a.proto.resolve()?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    let opts = ServerOptions {
        name: a.name,
        payload: a.payload,
        delay: a.delay,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {proto} {addr}")?;
    out.flush()?;
    drop(out);
    tokio::select! {
        r = serve(proto, listener, opts) => r.context("serving")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn load(a: RunArgs) -> anyhow::Result<()> {
    let protocol = a.proto.resolve()?;
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if a.pipeline == 0 {
        bail!("--pipeline must be at least 1");
    }
    if let Some(r) = a.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of requests per second, not {r}");
    }
    let opts = LoadOptions {
        protocol,
        target: a.target,
        connections: a.connections,
        duration: a.duration,
        warmup: a.warmup,
        rate: a.rate,
        payload: a.payload,
        pipeline: a.pipeline,
        client: ClientOptions {
            method: a.method,
            timeout: Some(a.timeout),
            ..ClientOptions::default()
        },
    };
    let progress = Arc::new(Progress::default());
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(&progress, a.warmup + a.duration));
    let report = run(opts, progress).await;
    if let Some(b) = bar {
        b.abort();
    }
    let report = report?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", report.summary())?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    }
    Ok(())
}

/// A progress bar on stderr, updated every 100 ms until the task is aborted.
fn progress_bar(progress: &Arc<Progress>, total: Duration) -> tokio::task::JoinHandle<()> {
    let p = Arc::clone(progress);
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let start = std::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let done = p.responses.load(Ordering::Relaxed);
            let errs = p.errors.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64().max(0.001);
            bar.set_position((start.elapsed().as_millis() as u64).min(total.as_millis() as u64));
            bar.set_message(format!(
                "{done} responses, {errs} errors, {:.0} req/s",
                done as f64 / secs
            ));
            if start.elapsed() > total {
                bar.finish_and_clear();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn cli_parses_and_resolves_variants() {
        let cli = Cli::try_parse_from([
            "meta-bench",
            "server",
            "--protocol",
            "thrift",
            "--transport",
            "header",
            "--thrift-protocol",
            "compact",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        let Command::Server(a) = cli.command else {
            panic!("not server")
        };
        assert_eq!(
            a.proto.resolve().unwrap(),
            "thrift-header-compact".parse().unwrap()
        );
        let cli = Cli::try_parse_from([
            "meta-bench",
            "run",
            "--protocol",
            "dubbo",
            "--transport",
            "framed",
            "--target",
            "x:1",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert!(a.proto.resolve().is_err());
        assert!(
            Cli::try_parse_from(["meta-bench", "run", "--protocol", "http", "--target", "x"])
                .is_err()
        );
    }
}
