//! `cp-bench`: the control-plane scale benchmark (see the `cp_bench` crate docs and
//! `docs/benchmarks.md`).

use std::time::Duration;

use clap::Parser;

/// Translate N services and push a one-route change to M simulated ADS clients.
#[derive(Debug, Parser)]
#[command(name = "cp-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Services in the generated mesh.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Simulated meta-proxy ADS clients.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Bound on the initial sync and on the push, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Run the simulated clients in this process instead of a child process (the RSS is
    /// then server + clients).
    #[arg(long)]
    in_process: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Internal: run the simulated clients and report events on stdout (started by the
    /// benchmark itself).
    Clients {
        #[arg(long)]
        server: std::net::SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        subscription: std::path::PathBuf,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(Sub::Clients {
        server,
        count,
        subscription,
    }) = cli.command
    {
        return runtime.block_on(cp_bench::child::serve_clients(server, count, &subscription));
    }
    let opts = cp_bench::Options {
        services: cli.services,
        clients: cli.clients,
        timeout: Duration::from_secs(cli.timeout),
        clients_process: if cli.in_process {
            None
        } else {
            Some(std::env::current_exe()?)
        },
    };
    let r = runtime.block_on(cp_bench::run(&opts))?;
    println!(
        "{} services, {} clients; resources (meta-proxy): {:?}; {:.1} MiB serialised (both flavours)",
        r.services,
        r.clients,
        r.resources,
        r.resource_bytes as f64 / 1048576.0
    );
    println!(
        "load+resolve {:.0} ms; translate {:.0} ms (meta-proxy {:.0}, envoy {:.0}); publish {:.0} ms",
        r.load_ms, r.translate_ms, r.translate_meta_ms, r.translate_envoy_ms, r.publish_ms
    );
    println!("initial sync of all clients {:.0} ms", r.initial_sync_ms);
    println!(
        "edit: reload {:.0} ms, translate {:.0} ms, publish {:.0} ms",
        r.edit_load_ms, r.edit_translate_ms, r.edit_publish_ms
    );
    println!(
        "push to all {:.1} ms (all ACKs sent {:.1} ms); per client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         {}/{} got the edited route; responses after edit CDS/EDS/LDS/RDS {:?}",
        r.push_all_ms,
        r.acked_all_ms,
        r.delivery_p50_ms,
        r.delivery_p99_ms,
        r.delivery_max_ms,
        r.clients_with_edit,
        r.clients,
        r.responses_after_edit
    );
    let who = if r.clients_in_child {
        "control plane alone"
    } else {
        "server + clients"
    };
    println!(
        "RSS ({who}): translated {:.0} MiB, published {:.0} MiB, synced {:.0} MiB, peak {:.0} MiB; \
         clients process: synced {:.0} MiB, peak {:.0} MiB; open files limit {}",
        r.rss_translated_mib,
        r.rss_published_mib,
        r.rss_synced_mib,
        r.peak_rss_mib,
        r.clients_rss_synced_mib,
        r.clients_peak_rss_mib,
        r.open_files_limit
    );
    if cli.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
