//! `meta-proxy`: the sidecar binary.
//!
//! This crate owns the process: the command line, logging, the tokio runtime, the codec
//! registry (every protocol compiled in), the engine's lifetime, the xDS client when the
//! bootstrap has `dynamic_resources`, the admin server and signals.
//! Everything else lives in libraries: configuration loading in `meta-api`, the data plane in
//! `meta-proxy-engine`, the admin endpoints in `meta-admin`.
//!
//! ```text
//! meta-proxy --config FILE [--concurrency N] [--log-level LEVEL] [--mode serve|validate]
//! ```
//!
//! `--mode validate` loads and checks the configuration, prints `configuration OK` and exits 0,
//! or prints the precise error and exits 1 (like `envoy --mode validate`). `--mode serve` (the
//! default) runs until SIGINT or SIGTERM, then drains the engine and exits 0. Any failure is one
//! line on stderr, `meta-proxy: error: ...`, and exit code 1.

mod serve;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use meta_protocol::CodecFactory;
use tracing_subscriber::EnvFilter;

/// The meta-proxy sidecar: a MetaProtocol (Dubbo, Thrift, ...) proxy configured by an Envoy v3
/// bootstrap.
#[derive(Debug, Parser)]
#[command(name = "meta-proxy", version)]
struct Cli {
    /// Envoy v3 bootstrap file (YAML, or JSON when it ends in `.json`).
    #[arg(short = 'c', long, value_name = "FILE")]
    config: PathBuf,

    /// Worker threads of the runtime [default: number of CPU cores].
    #[arg(long, value_name = "N")]
    concurrency: Option<NonZeroUsize>,

    /// Log level or filter (trace, debug, info, warn, error, off, or a RUST_LOG directive such
    /// as `info,meta_proxy_engine=debug`) [default: $RUST_LOG, else info].
    #[arg(short = 'l', long, value_name = "LEVEL")]
    log_level: Option<String>,

    /// `serve` runs the proxy; `validate` only checks the configuration.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Serve,
    Validate,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: clap prints them on stdout.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage errors too are one line and exit code 1 (clap's own convention is 2).
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("meta-proxy: error: {first} (see --help)");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meta-proxy: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_level.as_deref())?;
    let factories = codec_factories();
    let bootstrap = load(&cli.config, &factories)?;
    match cli.mode {
        Mode::Validate => {
            report_ok();
            Ok(())
        }
        Mode::Serve => {
            let workers = cli.concurrency.map_or_else(
                || std::thread::available_parallelism().map_or(1, usize::from),
                usize::from,
            );
            serve::serve(bootstrap, factories, workers)
        }
    }
}

#[allow(clippy::print_stdout)] // the documented output of --mode validate
fn report_ok() {
    println!("configuration OK");
}

/// Every codec compiled into the binary.
fn codec_factories() -> Vec<Arc<dyn CodecFactory>> {
    vec![
        Arc::new(codec_dubbo::DubboCodecFactory),
        Arc::new(codec_thrift::ThriftCodecFactory),
        Arc::new(custom_codec_example::CustomCodecFactory),
    ]
}

/// Loads the bootstrap and checks what the loader cannot know: that every codec is compiled in.
fn load(
    path: &Path,
    factories: &[Arc<dyn CodecFactory>],
) -> anyhow::Result<meta_config::Bootstrap> {
    let bootstrap = meta_api::load_bootstrap(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for listener in &bootstrap.listeners {
        let codec = &listener.proxy.codec;
        if !factories.iter().any(|f| f.name() == codec) {
            let known: Vec<&str> = factories.iter().map(|f| f.name()).collect();
            anyhow::bail!(
                "{}: listener '{}': unknown codec '{codec}' (compiled in: {})",
                path.display(),
                listener.name,
                known.join(", ")
            );
        }
    }
    Ok(bootstrap)
}

/// `--log-level` wins over `RUST_LOG`; Envoy's level names `warning` and `critical` are accepted.
fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => {
            let level = match level {
                "warning" => "warn",
                "critical" => "error",
                other => other,
            };
            EnvFilter::try_new(level)
                .map_err(|e| anyhow::anyhow!("invalid --log-level '{level}': {e}"))?
        }
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
                .map_err(|e| anyhow::anyhow!("invalid RUST_LOG '{directives}': {e}"))?,
            _ => EnvFilter::new("info"),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// The error and its causes on one line. A multi-line message (a YAML parser's source snippet
/// under its one-line message) is cut to its first line.
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or("").trim_end().to_owned()
}
