//! Circuit breakers, outlier detection and the panic threshold: accepted settings (static
//! bootstrap and CDS) and refused ones, by path.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cl;
use envoy_types::pb::google::protobuf::UInt32Value;
use meta_config::{Cluster, OutlierDetection};

use crate::{Format, cluster_from_proto, parse_bootstrap};

const DOC: &str = "
static_resources:
  clusters:
  - name: c1
    connect_timeout: 1s
    circuit_breakers:
      thresholds:
      - {max_connections: 2, max_requests: 7, retry_budget: {budget_percent: {value: 25}}}
    outlier_detection:
      consecutive_gateway_failure: 3
      enforcing_consecutive_gateway_failure: 100
      enforcing_success_rate: 0
      base_ejection_time: 60s
      max_ejection_percent: 50
    common_lb_config: {healthy_panic_threshold: {value: 30}}
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9091}}}
      - priority: 1
        lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: 9091}}}
";

fn parse(extra: &str) -> Result<Cluster, String> {
    let text = DOC.replace(
        "    common_lb_config",
        &format!("{extra}\n    common_lb_config"),
    );
    parse_bootstrap(&text, Format::Yaml)
        .map(|b| b.clusters[0].clone())
        .map_err(|e| e.to_string())
}

#[test]
fn static_bootstrap_health_settings() {
    let c = parse("").unwrap();
    let cb = &c.circuit_breakers;
    assert_eq!((cb.max_connections, cb.max_requests), (2, 7));
    assert_eq!((cb.max_pending_requests, cb.max_retries), (1024, 3));
    let budget = cb.retry_budget.as_ref().unwrap();
    assert_eq!(
        (budget.budget_percent, budget.min_retry_concurrency),
        (25.0, 3)
    );
    let od = c.outlier_detection.unwrap();
    assert_eq!(
        od,
        OutlierDetection {
            consecutive_gateway_failure: 3,
            enforcing_consecutive_gateway_failure: 100,
            base_ejection_time: Duration::from_secs(60),
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        }
    );
    assert_eq!(od.max_ejection_time, Duration::from_secs(300));
    assert_eq!(c.healthy_panic_threshold, 30.0);
    let prio: Vec<u32> = c.endpoints.iter().map(|e| e.priority).collect();
    assert_eq!(prio, [0, 1]);
}

#[test]
fn refusals_name_the_field() {
    let base = "static_resources.clusters[0].outlier_detection";
    for (extra, want) in [
        (
            "      failure_percentage_threshold: 90",
            format!("{base}.failure_percentage_threshold: not supported"),
        ),
        (
            "      success_rate_minimum_hosts: 3",
            format!("{base}.success_rate_minimum_hosts: not supported"),
        ),
        (
            "      max_ejection_percent: 101",
            format!("{base}.max_ejection_percent: must be in 0..=100"),
        ),
        (
            "      max_ejection_time: 10s",
            format!("{base}.max_ejection_time: must not be less than base_ejection_time"),
        ),
    ] {
        let text = DOC.replace("      max_ejection_percent: 50\n", "").replace(
            "      base_ejection_time: 60s",
            &format!("      base_ejection_time: 60s\n{extra}"),
        );
        let got = parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(got, want);
    }
    let text = DOC.replace("      enforcing_success_rate: 0\n", "");
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        format!(
            "{base}.enforcing_success_rate: required and 0: success-rate ejection \
             (Envoy's default 100) not supported"
        )
    );
    let text = DOC.replace("enforcing_success_rate: 0", "enforcing_success_rate: 10");
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        format!("{base}.enforcing_success_rate: 10: success-rate ejection not supported (set 0)")
    );
    let text = DOC.replace(
        "      thresholds:",
        "      per_host_thresholds: [{max_connections: 1}]\n      thresholds:",
    );
    assert_eq!(
        parse_bootstrap(&text, Format::Yaml)
            .unwrap_err()
            .to_string(),
        "static_resources.clusters[0].circuit_breakers.per_host_thresholds: not supported"
    );
}

#[test]
fn cds_refusals() {
    let mut c = cl::Cluster {
        name: "c".into(),
        outlier_detection: Some(cl::OutlierDetection {
            enforcing_success_rate: Some(UInt32Value { value: 0 }),
            split_external_local_origin_errors: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        cluster_from_proto(&c, "cds[c]").unwrap_err().to_string(),
        "cds[c].outlier_detection.enforcing_local_origin_success_rate: required and 0: \
         success-rate ejection (Envoy's default 100) not supported"
    );
    let od = c.outlier_detection.as_mut().unwrap();
    od.enforcing_local_origin_success_rate = Some(UInt32Value { value: 0 });
    od.enforcing_failure_percentage = Some(UInt32Value { value: 100 });
    assert_eq!(
        cluster_from_proto(&c, "cds[c]").unwrap_err().to_string(),
        "cds[c].outlier_detection.enforcing_failure_percentage: not supported"
    );
    c.outlier_detection
        .as_mut()
        .unwrap()
        .enforcing_failure_percentage = None;
    let conv = cluster_from_proto(&c, "cds[c]").unwrap();
    assert!(
        conv.outlier_detection
            .unwrap()
            .split_external_local_origin_errors
    );
    c.circuit_breakers = Some(cl::CircuitBreakers {
        thresholds: vec![Default::default(), Default::default()],
        ..Default::default()
    });
    assert_eq!(
        cluster_from_proto(&c, "cds[c]").unwrap_err().to_string(),
        "cds[c].circuit_breakers.thresholds: only one entry (priority DEFAULT) is supported"
    );
}
