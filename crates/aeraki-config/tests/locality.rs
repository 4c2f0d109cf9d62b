//! DestinationRule `loadBalancer.localityLbSetting`: `enabled` and `failover` are carried to
//! the model; `distribute` and `failoverPriority` are refused with their path; without
//! outlier detection the setting has no effect (Istio's rule) and a warning says so.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use aeraki_config::load_str;
use aeraki_model::{LocalityLb, ServiceView};

const SE: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: se, namespace: meta}
spec:
  hosts: [org.apache.dubbo.demo]
  addresses: [127.0.10.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}, locality: r1/z1}
  - {address: 10.0.0.2, labels: {version: v2}, locality: r2/z1}
---
"#;

fn dr(policy: &str) -> String {
    format!(
        "{SE}apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: dr, namespace: meta}}
spec:
  host: org.apache.dubbo.demo
{policy}"
    )
}

fn load(yaml: &str) -> (Vec<ServiceView>, Vec<String>) {
    match load_str("t.yaml", yaml) {
        Ok(l) => (l.view.services, l.warnings),
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match load_str("t.yaml", yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

const DR: &str = "t.yaml: document 2 (DestinationRule meta/dr)";

fn locality(s: &ServiceView) -> Option<&LocalityLb> {
    s.traffic_policy.as_ref()?.locality.as_ref()
}

#[test]
fn failover_is_carried_with_outlier_detection_and_subsets_inherit_it() {
    let (s, warnings) = load(&dr("  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 1}
    loadBalancer:
      localityLbSetting:
        failover: [{from: r1, to: r3}]
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
"));
    assert_eq!(warnings, Vec::<String>::new());
    let want = LocalityLb {
        failover: vec![("r1".into(), "r3".into())],
    };
    assert_eq!(locality(&s[0]), Some(&want));
    let sub = |i: usize| s[0].subsets[i].traffic_policy.as_ref().unwrap();
    assert_eq!(sub(0).locality.as_ref(), Some(&want), "inherited");
    assert_eq!(
        sub(1).locality,
        None,
        "a subset's loadBalancer replaces the whole loadBalancer (Istio)"
    );
}

#[test]
fn disabled_or_without_outlier_detection_has_no_effect() {
    let (s, warnings) = load(&dr("  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: false}}
"));
    assert_eq!(locality(&s[0]), None);
    assert_eq!(warnings, Vec::<String>::new());

    let (s, warnings) = load(&dr("  trafficPolicy:
    loadBalancer: {localityLbSetting: {enabled: true}}
"));
    assert_eq!(locality(&s[0]), None);
    assert_eq!(
        warnings,
        [format!(
            "{DR}: spec.trafficPolicy: localityLbSetting has no effect without outlierDetection (as in Istio)"
        )]
    );
}

#[test]
fn unsupported_fields_are_refused_with_their_path() {
    let e = errors(&dr("  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 1}
    loadBalancer:
      localityLbSetting:
        distribute: [{from: r1/z1/*, to: {r1/z1/*: 100}}]
        failoverPriority: [topology.kubernetes.io/region]
        failover: [{from: r1}, {from: r1/z1, to: r2}, {from: r2, to: r2}]
"));
    let p = "spec.trafficPolicy.loadBalancer.localityLbSetting";
    let want: Vec<String> = [
        format!("{p}.distribute: not supported"),
        format!("{p}.failoverPriority: not supported"),
        format!("{p}.failover[0].to: required: a region"),
        format!("{p}.failover[1].from: \"r1/z1\" must be a region (no '/')"),
        format!("{p}.failover[2]: from and to are the same region \"r2\""),
    ]
    .iter()
    .map(|m| format!("{DR}: {m}"))
    .collect();
    assert_eq!(e, want);
}
