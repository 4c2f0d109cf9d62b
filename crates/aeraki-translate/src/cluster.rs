//! Clusters and endpoints (identical in both flavours): `outbound|<port>||<host>` plus one
//! cluster per DestinationRule subset, with the DestinationRule traffic policy applied.

use std::time::Duration;

use aeraki_model::resources::{CLUSTER, ENDPOINT};
use aeraki_model::{
    EndpointView, HashAlgorithm, LoadBalancer, LocalityLb, OutlierDetection, Resolution,
    ServiceView, SimpleLb, TrafficPolicy, outbound_cluster_name,
};
use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CommonLbConfig, DiscoveryType, DnsLookupFamily, EdsClusterConfig,
    LbConfig, LbPolicy, MaglevLbConfig, RingHashLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, OutlierDetection as PbOutlier};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Locality, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{ListValue, Struct, UInt64Value, Value as PbValue};

use aeraki_model::Protocol;
use aeraki_model::resources::Flavor;

use crate::common::{any, duration, u32v};
use crate::pool::{HTTP_PROTOCOL_OPTIONS, http2_only};
use crate::{Cx, svc_id};

/// Istio's default cluster connect timeout.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Emits the service's clusters (and, for EDS clusters, their load assignments).
pub(crate) fn clusters(cx: &mut Cx<'_>, svc: &ServiceView) {
    let main = outbound_cluster_name(svc.port, None, &svc.host);
    if svc.resolution == Resolution::None {
        let mut names = vec![main];
        names.extend(
            svc.subsets
                .iter()
                .map(|s| outbound_cluster_name(svc.port, Some(&s.name), &svc.host)),
        );
        cx.warn(format!(
            "{}: resolution NONE needs an original-destination cluster, which is not supported \
             yet; clusters not generated: {}",
            svc_id(svc),
            names.join(", ")
        ));
        return;
    }
    let all: Vec<&EndpointView> = svc.endpoints.iter().collect();
    cluster(cx, svc, main, &all, svc.traffic_policy.as_ref());
    for subset in &svc.subsets {
        let name = outbound_cluster_name(svc.port, Some(&subset.name), &svc.host);
        let members: Vec<&EndpointView> = svc
            .endpoints
            .iter()
            .filter(|e| {
                subset
                    .labels
                    .iter()
                    .all(|(k, v)| e.labels.get(k) == Some(v))
            })
            .collect();
        let policy = subset
            .traffic_policy
            .as_ref()
            .or(svc.traffic_policy.as_ref());
        cluster(cx, svc, name, &members, policy);
    }
}

fn cluster(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    name: String,
    endpoints: &[&EndpointView],
    policy: Option<&TrafficPolicy>,
) {
    let mut c = Cluster {
        name: name.clone(),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    };
    match svc.resolution {
        Resolution::Dns => {
            c.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32));
            c.dns_lookup_family = DnsLookupFamily::V4Only as i32;
            let fallback;
            let endpoints = if svc.endpoints.is_empty() {
                // No endpoints listed: the host itself is resolved (ServiceEntry DNS rule).
                fallback = EndpointView {
                    address: svc.host.clone(),
                    port: svc.port,
                    labels: Default::default(),
                    weight: 1,
                    locality: String::new(),
                };
                vec![&fallback]
            } else {
                endpoints.to_vec()
            };
            c.load_assignment = Some(load_assignment(&name, &endpoints));
        }
        Resolution::Static | Resolution::None => {
            c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            c.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: name.clone(),
            });
            cx.insert(ENDPOINT, name.clone(), &load_assignment(&name, endpoints));
        }
    }
    if let Some(policy) = policy {
        apply_policy(cx, svc, &name, &mut c, policy);
    }
    if svc.protocol == Protocol::Grpc && cx.flavor == Flavor::Envoy {
        // The connection pool may have written these options already (with HTTP/2).
        c.typed_extension_protocol_options
            .entry(HTTP_PROTOCOL_OPTIONS.to_owned())
            .or_insert_with(|| any(&http2_only(None)));
    }
    cx.insert(CLUSTER, name, &c);
}

/// `{ads: {}, resource_api_version: V3}`.
pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// A load assignment with endpoints grouped by locality (in order of first appearance).
pub(crate) fn load_assignment(name: &str, endpoints: &[&EndpointView]) -> ClusterLoadAssignment {
    let mut groups: Vec<LocalityLbEndpoints> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for e in endpoints {
        let at = match keys.iter().position(|k| *k == e.locality) {
            Some(i) => i,
            None => {
                keys.push(&e.locality);
                groups.push(LocalityLbEndpoints {
                    locality: locality(&e.locality),
                    ..Default::default()
                });
                groups.len() - 1
            }
        };
        groups[at].lb_endpoints.push(LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(&e.address, e.port)),
                ..Default::default()
            })),
            load_balancing_weight: Some(u32v(e.weight.max(1))),
            ..Default::default()
        });
    }
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: groups,
        ..Default::default()
    }
}

/// `region/zone/subzone` (missing parts empty); `None` for an empty string.
fn locality(s: &str) -> Option<Locality> {
    if s.is_empty() {
        return None;
    }
    let mut parts = s.splitn(3, '/');
    Some(Locality {
        region: parts.next().unwrap_or_default().to_owned(),
        zone: parts.next().unwrap_or_default().to_owned(),
        sub_zone: parts.next().unwrap_or_default().to_owned(),
    })
}

pub(crate) fn socket_address(address: &str, port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: address.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn apply_policy(
    cx: &mut Cx<'_>,
    svc: &ServiceView,
    name: &str,
    c: &mut Cluster,
    policy: &TrafficPolicy,
) {
    match &policy.load_balancer {
        None | Some(LoadBalancer::Simple(SimpleLb::RoundRobin)) => {}
        Some(LoadBalancer::Simple(SimpleLb::LeastRequest)) => {
            c.lb_policy = LbPolicy::LeastRequest as i32;
        }
        Some(LoadBalancer::Simple(SimpleLb::Random)) => c.lb_policy = LbPolicy::Random as i32,
        Some(LoadBalancer::Simple(SimpleLb::Passthrough)) => cx.warn(format!(
            "{}: cluster {name}: trafficPolicy.loadBalancer.simple PASSTHROUGH is not supported; \
             ROUND_ROBIN used",
            svc_id(svc)
        )),
        Some(LoadBalancer::ConsistentHash { algorithm, .. }) => match *algorithm {
            HashAlgorithm::RingHash { minimum_ring_size } => {
                c.lb_policy = LbPolicy::RingHash as i32;
                c.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: (minimum_ring_size > 0).then_some(UInt64Value {
                        value: minimum_ring_size,
                    }),
                    ..Default::default()
                }));
            }
            HashAlgorithm::Maglev { table_size } => {
                c.lb_policy = LbPolicy::Maglev as i32;
                c.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: (table_size > 0).then_some(UInt64Value { value: table_size }),
                }));
            }
        },
    }
    if let Some(pool) = &policy.connection_pool {
        crate::pool::connection_pool(cx, svc, name, c, pool);
    }
    if let Some(od) = &policy.outlier_detection {
        c.outlier_detection = Some(outlier(od));
        // Istio's rule: with outlier detection the panic threshold is `minHealthPercent`,
        // whose default is 0 % (panic off: ejected hosts get no traffic, however many).
        c.common_lb_config = Some(CommonLbConfig {
            healthy_panic_threshold: Some(Percent {
                value: f64::from(od.min_health_percent.unwrap_or(0)),
            }),
            ..Default::default()
        });
    }
    if let Some(l) = &policy.locality {
        locality_lb(cx, svc, name, c, l);
    }
}

/// Key of the locality failover list in the cluster's `metadata.filter_metadata`.
pub(crate) const LOCALITY_METADATA: &str = "aeraki.locality";

/// Locality failover: meta-proxy computes each endpoint's priority from its own
/// `node.locality`, so the cluster only carries a marker (`common_lb_config.
/// zone_aware_lb_config {}`) and the failover list (`metadata.filter_metadata
/// ["aeraki.locality"] {failover: [{from, to}]}`). Stock Envoy needs per-proxy EDS priorities,
/// which one shared snapshot cannot express.
fn locality_lb(cx: &mut Cx<'_>, svc: &ServiceView, name: &str, c: &mut Cluster, l: &LocalityLb) {
    if cx.flavor == Flavor::Envoy {
        cx.warn(format!(
            "{}: cluster {name}: loadBalancer.localityLbSetting: locality failover needs \
             per-proxy priorities; not expressed for Envoy",
            svc_id(svc)
        ));
        return;
    }
    c.common_lb_config
        .get_or_insert_with(Default::default)
        .locality_config_specifier = Some(LocalityConfigSpecifier::ZoneAwareLbConfig(
        Default::default(),
    ));
    if l.failover.is_empty() {
        return;
    }
    let text = |s: &str| PbValue {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    let failover = l
        .failover
        .iter()
        .map(|(from, to)| PbValue {
            kind: Some(Kind::StructValue(Struct {
                fields: [("from".to_owned(), text(from)), ("to".to_owned(), text(to))]
                    .into_iter()
                    .collect(),
            })),
        })
        .collect();
    let list = PbValue {
        kind: Some(Kind::ListValue(ListValue { values: failover })),
    };
    c.metadata
        .get_or_insert_with(Default::default)
        .filter_metadata
        .insert(
            LOCALITY_METADATA.to_owned(),
            Struct {
                fields: [("failover".to_owned(), list)].into_iter().collect(),
            },
        );
}

/// Istio's outlier-detection mapping. Only the detectors the user configured are enforced:
/// success-rate ejection is off and consecutive-5xx enforcement is off unless set.
fn outlier(od: &OutlierDetection) -> PbOutlier {
    let enforce = |n: u32| u32v(if n > 0 { 100 } else { 0 });
    let mut out = PbOutlier {
        enforcing_success_rate: Some(u32v(0)),
        enforcing_consecutive_5xx: Some(u32v(0)),
        interval: od.interval.map(duration),
        base_ejection_time: od.base_ejection_time.map(duration),
        max_ejection_percent: od.max_ejection_percent.map(u32v),
        ..Default::default()
    };
    if let Some(n) = od.consecutive_errors {
        out.consecutive_5xx = Some(u32v(n));
        out.enforcing_consecutive_5xx = Some(enforce(n));
    }
    if let Some(n) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(u32v(n));
        out.enforcing_consecutive_gateway_failure = Some(enforce(n));
    }
    if let Some(n) = od.consecutive_local_origin_failures {
        out.split_external_local_origin_errors = true;
        // Local-origin success-rate ejection (Envoy's default 100) is not run by meta-proxy.
        out.enforcing_local_origin_success_rate = Some(u32v(0));
        out.consecutive_local_origin_failure = Some(u32v(n));
        out.enforcing_consecutive_local_origin_failure = Some(enforce(n));
    }
    out
}
