//! `aeraki`: the control plane binary.
//!
//! This crate owns the process and the wiring; the work lives in libraries: reading and
//! validating the mesh YAML (`aeraki-config`), translating it to xDS (`aeraki-translate`) and
//! serving it (`aeraki-xds`).
//!
//! ```text
//! aeraki serve    --config-dir DIR [--xds-address ADDR] [--admin-address ADDR]
//! aeraki validate DIR
//! aeraki render   DIR [--node ID] [--envoy]
//! aeraki status   [--admin-address ADDR] [--json]
//! aeraki demo     [--config-dir DIR]
//! aeraki ratelimit --config PATH [--listen ADDR] [--metrics ADDR] [--redis URL]
//! ```
//!
//! Errors are one line on stderr, `aeraki: error: ...`, and exit code 1; `validate` prints one
//! line per problem found; `ratelimit` exits 2 when its config does not load.

mod admin;
mod controller;
mod demo;
mod ratelimit;
mod status;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Default xDS (ADS + RDS) address, Istio's plaintext xDS port.
pub const DEFAULT_XDS_ADDRESS: &str = "127.0.0.1:15010";
/// Default admin/status address.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:15014";

/// Aeraki control plane: Istio and Aeraki YAML → xDS for meta-proxy and stock Envoy.
#[derive(Debug, Parser)]
#[command(name = "aeraki", version)]
struct Cli {
    /// Log level or RUST_LOG-style filter [default: $RUST_LOG, else info].
    #[arg(short = 'l', long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve xDS for a watched directory of YAML files.
    Serve {
        /// Directory of Istio/Aeraki YAML (searched recursively, multi-document files).
        #[arg(long, value_name = "DIR")]
        config_dir: PathBuf,
        /// Address of the xDS gRPC server (ADS and Aeraki's RDS).
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS_ADDRESS)]
        xds_address: SocketAddr,
        /// Address of the admin HTTP server (/status, /ready, /render).
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADMIN_ADDRESS)]
        admin_address: SocketAddr,
    },
    /// Check a directory: exit 0 and print a summary, or print every error and exit 1.
    Validate {
        /// Directory of Istio/Aeraki YAML.
        dir: PathBuf,
    },
    /// Print, as JSON, the xDS resources a node would receive.
    Render {
        /// Directory of Istio/Aeraki YAML.
        dir: PathBuf,
        /// Node id (informational; every node of a flavour receives the same resources).
        #[arg(long, default_value = "sidecar")]
        node: String,
        /// Render for stock Envoy (native dubbo_proxy/thrift_proxy) instead of meta-proxy.
        #[arg(long)]
        envoy: bool,
    },
    /// List the proxies connected to a running `aeraki serve`, with ACKed/NACKed versions.
    Status {
        /// Admin address of the running control plane.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ADMIN_ADDRESS)]
        admin_address: SocketAddr,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the local demo: control plane, sample servers, a sidecar and clients, with a live
    /// table of requests per service, version and outcome.
    Demo(demo::DemoArgs),
    /// Run the global rate-limit service (Envoy RLS v3 gRPC, envoyproxy/ratelimit YAML,
    /// in-memory or Redis counters, /metrics), reloading its config on changes.
    Ratelimit(ratelimit::RatelimitArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(cli.log_level.as_deref(), &cli.command) {
        eprintln!("aeraki: error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aeraki: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { dir } => Ok(controller::validate(&dir)),
        Command::Render { dir, node, envoy } => controller::render(&dir, &node, envoy),
        Command::Serve {
            config_dir,
            xds_address,
            admin_address,
        } => {
            runtime()?.block_on(controller::serve_until_signal(
                config_dir,
                xds_address,
                admin_address,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            admin_address,
            json,
        } => runtime()?.block_on(status::print(admin_address, json)),
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Ratelimit(args) => runtime()?.block_on(ratelimit::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(level: Option<&str>, command: &Command) -> anyhow::Result<()> {
    // The demo owns the terminal (a live table): only warnings and errors are logged there.
    let default = if matches!(command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
