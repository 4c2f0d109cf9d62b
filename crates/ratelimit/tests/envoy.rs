//! Cross-check with stock Envoy 1.40: its network `envoy.filters.network.ratelimit` filter
//! (failure_mode_deny) in front of a TCP echo backend asks our service on every new
//! connection; exactly the allowed number of connections reach the backend, and none do once
//! the service is gone.

#![allow(clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::time::Duration;

use aeraki_ratelimit::{Config, Service};
use common::{manual_clock, start};
use envoy_harness::{Envoy, listener_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RLS_CONFIG: &str = "domain: envoy\ndescriptors:\n  - key: service\n    value: echo\n    rate_limit: {unit: hour, requests_per_unit: 3}\n";

fn bootstrap(rls_port: u16, echo_port: u16) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: echo_rl
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ratelimit.v3.RateLimit
          stat_prefix: echo
          domain: envoy
          descriptors:
          - entries: [{{key: service, value: echo}}]
          timeout: 2s
          failure_mode_deny: true
          rate_limit_service:
            transport_api_version: V3
            grpc_service: {{envoy_grpc: {{cluster_name: rls}}}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo
          cluster: echo
  clusters:
  - name: rls
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: rls
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {rls_port}}}}}}}
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {echo_port}}}}}}}
"#
    )
}

async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Starts Envoy and returns it with its listener's port once `/ready` says LIVE.
async fn start_envoy(bin: &Path, rls_port: u16, echo_port: u16) -> (Envoy, u16) {
    let envoy = Envoy::start(bin, "rls", &bootstrap(rls_port, echo_port), "info");
    let admin = envoy.ready().await;
    let port = listener_port(&admin, "echo_rl").await;
    let port = port.unwrap_or_else(|| panic!("no echo_rl listener; log:\n{}", envoy.log()));
    (envoy, port)
}

/// Whether one new connection through Envoy gets its bytes echoed.
async fn passes(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"ping\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_envoy_network_ratelimit_filter_agrees() {
    let Some(bin) = envoy_harness::binary("ratelimit envoy") else {
        return;
    };
    let config = Config::from_yaml("envoy-rls.yaml", RLS_CONFIG).expect("valid");
    let (_, clock) = manual_clock(36_000_000 + 7);
    let service = Service::builder(config).clock(clock).build();
    let running = start(service.clone()).await;
    let echo_port = echo_server().await;
    let (envoy, port) = start_envoy(&bin, running.addr.port(), echo_port).await;

    let mut results = Vec::new();
    for _ in 0..8 {
        results.push(passes(port).await);
    }
    assert_eq!(
        results,
        [true, true, true, false, false, false, false, false],
        "Envoy log:\n{}",
        envoy.log()
    );
    let m = service.metrics();
    assert_eq!(m.requests("envoy", "envoy.service_echo", "ok"), 3);
    assert_eq!(m.requests("envoy", "envoy.service_echo", "over_limit"), 5);

    // The service goes away: failure_mode_deny closes every new connection. (Emptying the
    // config first makes a still-answering server say OK — unknown domain — so a pass here
    // could only come from a server that should be gone.)
    service.set_config(Config::default());
    drop(running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        assert!(
            !passes(port).await,
            "failure_mode_deny must refuse while the RLS is down"
        );
    }
}
