//! Small control-plane scale runs (clients in this process, and in a child process) as
//! correctness tests: every client gets the edited RouteConfiguration, only RDS is pushed for a
//! one-route change, and the report is complete. Timings are printed, never asserted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_run_delivers_the_edit_to_every_client() {
    let opts = cp_bench::Options {
        services: 200,
        clients: 50,
        timeout: Duration::from_secs(120),
        clients_process: None,
    };
    let r = cp_bench::run(&opts).await.unwrap();
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert_eq!(
        r.clients_with_edit, 50,
        "every client has the edited weights"
    );
    // A one-route change is one RDS response per client, no other type.
    assert_eq!(r.responses_after_edit, [0, 0, 0, 50]);
    assert_eq!(r.resources["Listener"], 200);
    assert_eq!(r.resources["RouteConfiguration"], 200);
    // 2 subsets + the default cluster per service.
    assert_eq!(r.resources["Cluster"], 600);
    assert!(r.delivery_p50_ms <= r.delivery_p99_ms && r.delivery_p99_ms <= r.delivery_max_ms);
    assert!(r.peak_rss_mib > 0.0);
}

/// The clients in a child process (what `bench/cp-scale` does): same correctness, and the
/// child's memory is reported apart from the control plane's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_a_child_process_get_the_edit() {
    let opts = cp_bench::Options {
        services: 100,
        clients: 20,
        timeout: Duration::from_secs(120),
        clients_process: Some(env!("CARGO_BIN_EXE_cp-bench").into()),
    };
    let r = cp_bench::run(&opts).await.unwrap();
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert!(r.clients_in_child);
    assert_eq!(r.clients_with_edit, 20);
    assert_eq!(r.responses_after_edit, [0, 0, 0, 20]);
    assert!(r.clients_peak_rss_mib > 0.0, "the child's memory is read");
    assert!(r.clients_peak_rss_mib >= r.clients_rss_synced_mib);
}
