//! Locality: `node.locality` (bootstrap and the xDS node), the cluster marker
//! `common_lb_config.zone_aware_lb_config {}` with its failover list in
//! `metadata.filter_metadata["aeraki.locality"]`, endpoint localities; refusals by path.

use meta_config::{Locality, LocalityLb};

use super::*;

const BOOT: &str = r"
node:
  id: sidecar~1.2.3.4~a.b~b.svc.cluster.local
  locality: {region: r1, zone: z1}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  cds_config: {ads: {}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]
  - name: svc
    type: STATIC
    common_lb_config: {zone_aware_lb_config: {}}
    metadata: {filter_metadata: {aeraki.locality: {failover: [{from: r1, to: r3}]}}}
    load_assignment:
      endpoints:
      - locality: {region: r1, zone: z2, sub_zone: s}
        lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9001}}}}]
      - lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9002}}}}]
";

fn load(text: &str) -> Result<meta_config::Bootstrap, String> {
    parse_bootstrap(text, Format::Yaml).map_err(|e| e.to_string())
}

fn err(from: &str, to: &str) -> String {
    let text = BOOT.replace(from, to);
    assert_ne!(text, BOOT, "replacement of '{from}' did nothing");
    load(&text).expect_err("refused")
}

fn loc(region: &str, zone: &str, sub_zone: &str) -> Locality {
    Locality {
        region: region.into(),
        zone: zone.into(),
        sub_zone: sub_zone.into(),
    }
}

#[test]
fn node_locality_cluster_marker_and_endpoint_localities_load() {
    let b = load(BOOT).unwrap();
    assert_eq!(b.node_locality, Some(loc("r1", "z1", "")));
    assert_eq!(
        b.xds.as_ref().and_then(|x| x.node_locality.clone()),
        Some(loc("r1", "z1", "")),
        "sent to the control plane"
    );
    let svc = &b.clusters[1];
    assert_eq!(
        svc.locality_lb,
        Some(LocalityLb {
            failover: vec![("r1".into(), "r3".into())]
        })
    );
    assert_eq!(svc.endpoints[0].locality, Some(loc("r1", "z2", "s")));
    assert_eq!(svc.endpoints[1].locality, None);
    assert_eq!(
        b.clusters[0].locality_lb, None,
        "no marker: not locality-aware"
    );
}

#[test]
fn marker_without_failover_and_refusals_name_their_path() {
    let b = load(&BOOT.replace(
        "    metadata: {filter_metadata: {aeraki.locality: {failover: [{from: r1, to: r3}]}}}\n",
        "",
    ))
    .unwrap();
    assert_eq!(b.clusters[1].locality_lb, Some(LocalityLb::default()));
    let c = "static_resources.clusters[1]";
    assert_eq!(
        err(
            "zone_aware_lb_config: {}",
            "zone_aware_lb_config: {fail_traffic_on_panic: true}"
        ),
        format!(
            "{c}.common_lb_config.zone_aware_lb_config.fail_traffic_on_panic: not supported: an empty zone_aware_lb_config marks locality priorities computed from node.locality"
        )
    );
    assert_eq!(
        err("common_lb_config: {zone_aware_lb_config: {}}", ""),
        format!(
            "{c}.metadata.filter_metadata[aeraki.locality]: needs common_lb_config.zone_aware_lb_config (locality priorities)"
        )
    );
    assert_eq!(
        err("aeraki.locality:", "istio:"),
        format!(
            "{c}.metadata.filter_metadata[istio]: unknown metadata namespace (only aeraki.locality is read)"
        )
    );
    assert_eq!(
        err("{from: r1, to: r3}", "{from: r1}"),
        format!(
            "{c}.metadata.filter_metadata[aeraki.locality].failover[0].to: required: a region name"
        )
    );
    assert_eq!(
        err("{from: r1, to: r3}", "{from: r1, to: r3, weight: 1}"),
        format!("{c}.metadata.filter_metadata[aeraki.locality].failover[0].weight: not supported")
    );
    assert_eq!(
        err("{region: r1, zone: z1}", "{region: r1, zone: z1, bogus: 1}")
            .split(':')
            .next(),
        Some("node.locality.bogus"),
    );
}
