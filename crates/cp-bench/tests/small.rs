//! A small control-plane scale run (200 services, 50 clients) as a correctness test: every
//! client gets the edited RouteConfiguration, only RDS is pushed for a one-route change, and the
//! report is complete. Timings are printed, never asserted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_run_delivers_the_edit_to_every_client() {
    let opts = cp_bench::Options {
        services: 200,
        clients: 50,
        timeout: Duration::from_secs(120),
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
