//! The binary on an ADS bootstrap: not ready until the control plane (an in-test ADS server,
//! started after the proxy) delivered LDS/CDS, then proxies the example protocol over the pushed
//! listener, shows the dynamic state in `/config_dump` and the xDS metrics, stops on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../xds-client/tests/common/ads.rs"]
mod ads;
#[path = "../../proxy/tests/common/mod.rs"]
mod engine;
#[path = "../../xds-client/tests/common/resources.rs"]
mod resources;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meta_xds_client::{CDS, EDS, LDS, RDS};

const BIN: &str = env!("CARGO_BIN_EXE_meta-proxy");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Kills the proxy (by its pid) if the test fails before it stopped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_follows_the_control_plane() {
    let (backend, _) = engine::backend("a", 0).await;
    let (cp, admin, listen) = (free_addr(), free_addr(), free_addr());
    let dir = std::env::temp_dir().join(format!("meta-proxy-xds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bootstrap.yaml");
    std::fs::write(
        &config,
        format!(
            r"node: {{id: sidecar~127.0.0.1~t.default~default.svc.cluster.local, cluster: t}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {cp_port}}}}}}}}}]}}]
",
            admin_port = admin.port(),
            cp_port = cp.port()
        ),
    )
    .unwrap();
    let err_path = dir.join("stderr.log");
    let mut child = Guard(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "--concurrency", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    until("admin up", || http_get(admin, "/ready").is_some()).await;
    assert_eq!(http_get(admin, "/ready").unwrap().0, 503, "no config yet");

    let ads = ads::Ads::new();
    ads.set(CDS, "7", vec![resources::eds_cluster("a")]);
    ads.set(EDS, "7", vec![resources::cla("a", &[backend])]);
    ads.set(LDS, "7", vec![resources::listener("l", listen, "rc")]);
    ads.set(
        RDS,
        "7",
        vec![resources::route_config("rc", &[(None, "a")])],
    );
    let _server = ads.start(cp);
    until("ready", || {
        http_get(admin, "/ready").is_some_and(|r| r.0 == 200)
    })
    .await;
    until("listener", || TcpStream::connect(listen).is_ok()).await;

    let mut c = engine::Client::connect(listen).await;
    assert_eq!(c.call(1, 1, b"x").await, (false, "a:x".into()));

    let (_, dump) = http_get(admin, "/config_dump").unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(
        dump["dynamic"]["resources"]["lds"]["version"], "7",
        "{dump:#}"
    );
    assert_eq!(
        dump["dynamic"]["resources"]["rds"]["subscribed"],
        serde_json::json!(["rc"])
    );
    assert_eq!(dump["dynamic"]["connected"], true);
    assert_eq!(dump["listeners"][0]["name"], "l");
    assert_eq!(dump["xds"]["server_cluster"], "xds-grpc");
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("meta_protocol_xds_connected 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meta_protocol_xds_updates_total{type=\"lds\",result=\"ack\"} 1"),
        "{metrics}"
    );

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(err.contains("xDS stream open"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
