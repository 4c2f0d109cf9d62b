//! Load-balancing policies of a cluster: accepted settings and refused ones, by path.

use envoy_types::pb::envoy::config::cluster::v3 as cl;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use meta_config::LbPolicy;

use crate::cluster_from_proto;

fn cluster(policy: cl::cluster::LbPolicy, config: Option<cl::cluster::LbConfig>) -> cl::Cluster {
    cl::Cluster {
        name: "c".into(),
        lb_policy: policy as i32,
        lb_config: config,
        ..Default::default()
    }
}

fn convert(c: &cl::Cluster) -> Result<LbPolicy, String> {
    cluster_from_proto(c, "cds[0]")
        .map(|c| c.lb_policy)
        .map_err(|e| e.to_string())
}

fn u64v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn ring(min: Option<u64>, max: Option<u64>) -> Option<cl::cluster::LbConfig> {
    Some(cl::cluster::LbConfig::RingHashLbConfig(
        cl::cluster::RingHashLbConfig {
            minimum_ring_size: min.and_then(u64v),
            maximum_ring_size: max.and_then(u64v),
            ..Default::default()
        },
    ))
}

fn maglev(size: u64) -> Option<cl::cluster::LbConfig> {
    Some(cl::cluster::LbConfig::MaglevLbConfig(
        cl::cluster::MaglevLbConfig {
            table_size: u64v(size),
        },
    ))
}

fn least(choices: Option<u32>) -> Option<cl::cluster::LbConfig> {
    Some(cl::cluster::LbConfig::LeastRequestLbConfig(
        cl::cluster::LeastRequestLbConfig {
            choice_count: choices.map(|value| UInt32Value { value }),
            ..Default::default()
        },
    ))
}

use cl::cluster::LbPolicy as P;

#[test]
fn least_request_defaults_and_choice_count() {
    assert_eq!(
        convert(&cluster(P::LeastRequest, None)),
        Ok(LbPolicy::LeastRequest { choice_count: 2 })
    );
    assert_eq!(
        convert(&cluster(P::LeastRequest, least(Some(5)))),
        Ok(LbPolicy::LeastRequest { choice_count: 5 })
    );
    assert_eq!(
        convert(&cluster(P::LeastRequest, least(None))),
        Ok(LbPolicy::LeastRequest { choice_count: 2 })
    );
    assert_eq!(
        convert(&cluster(P::LeastRequest, least(Some(1)))),
        Err("cds[0].least_request_lb_config.choice_count: must be >= 2".into())
    );
    let mut c = cluster(P::LeastRequest, None);
    c.lb_config = Some(cl::cluster::LbConfig::LeastRequestLbConfig(
        cl::cluster::LeastRequestLbConfig {
            active_request_bias: Some(core::RuntimeDouble {
                default_value: 2.0,
                runtime_key: "k".into(),
            }),
            ..Default::default()
        },
    ));
    assert_eq!(
        convert(&c),
        Err("cds[0].least_request_lb_config.active_request_bias: not supported".into())
    );
}

#[test]
fn ring_hash_sizes_and_hash_function() {
    assert_eq!(
        convert(&cluster(P::RingHash, None)),
        Ok(LbPolicy::RingHash {
            minimum_ring_size: 1024,
            maximum_ring_size: 8 * 1024 * 1024
        })
    );
    assert_eq!(
        convert(&cluster(P::RingHash, ring(Some(64), Some(4096)))),
        Ok(LbPolicy::RingHash {
            minimum_ring_size: 64,
            maximum_ring_size: 4096
        })
    );
    assert_eq!(
        convert(&cluster(P::RingHash, ring(Some(100), Some(10)))),
        Err(
            "cds[0].ring_hash_lb_config.minimum_ring_size: 100 is larger than maximum_ring_size 10"
                .into()
        )
    );
    assert_eq!(
        convert(&cluster(P::RingHash, ring(None, Some(9_000_000)))),
        Err("cds[0].ring_hash_lb_config.maximum_ring_size: must be in 1..=8388608".into())
    );
    let murmur = Some(cl::cluster::LbConfig::RingHashLbConfig(
        cl::cluster::RingHashLbConfig {
            hash_function: cl::cluster::ring_hash_lb_config::HashFunction::MurmurHash2 as i32,
            ..Default::default()
        },
    ));
    assert_eq!(
        convert(&cluster(P::RingHash, murmur)),
        Err(
            "cds[0].ring_hash_lb_config.hash_function: MURMUR_HASH_2 not supported (XX_HASH only)"
                .into()
        )
    );
}

#[test]
fn maglev_table_size_must_be_prime() {
    assert_eq!(
        convert(&cluster(P::Maglev, None)),
        Ok(LbPolicy::Maglev { table_size: 65537 })
    );
    assert_eq!(
        convert(&cluster(P::Maglev, maglev(251))),
        Ok(LbPolicy::Maglev { table_size: 251 })
    );
    assert_eq!(
        convert(&cluster(P::Maglev, maglev(1000))),
        Err("cds[0].maglev_lb_config.table_size: 1000 is not a prime <= 5000011".into())
    );
    assert_eq!(
        convert(&cluster(P::Maglev, maglev(5_000_111))),
        Err("cds[0].maglev_lb_config.table_size: 5000111 is not a prime <= 5000011".into())
    );
}

#[test]
fn config_of_another_policy_and_unknown_policies_are_refused() {
    assert_eq!(
        convert(&cluster(P::Random, maglev(251))),
        Err("cds[0].maglev_lb_config: does not apply to lb_policy RANDOM".into())
    );
    assert_eq!(
        convert(&cluster(P::Maglev, ring(None, None))),
        Err("cds[0].ring_hash_lb_config: does not apply to lb_policy MAGLEV".into())
    );
    assert_eq!(
        convert(&cluster(P::ClusterProvided, None)),
        Err("cds[0].lb_policy: CLUSTER_PROVIDED not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)".into())
    );
    let mut c = cluster(P::RoundRobin, None);
    c.lb_config = Some(cl::cluster::LbConfig::RoundRobinLbConfig(
        cl::cluster::RoundRobinLbConfig::default(),
    ));
    assert_eq!(
        convert(&c),
        Err("cds[0].round_robin_lb_config: not supported".into())
    );
}
