//! Upstream clusters at runtime: resolved endpoints, their health and load balancer
//! ([`crate::health`]), DNS refresh.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use meta_config::{Cluster, DiscoveryType, Endpoint};

use crate::EngineError;
use crate::health::Breakers;
use crate::health::hosts::{HostSpec, Hosts};
use crate::lb::{LbContext, WeightedAddr};
use crate::metrics::{ClusterMetrics, Metrics};

/// Every cluster by name; swapped as a whole.
pub type ClusterMap = HashMap<String, Arc<ClusterState>>;

/// A picked endpoint; counts as one active request on it until dropped.
pub struct Picked {
    /// Where to send the request.
    pub addr: SocketAddr,
    active: Arc<AtomicUsize>,
    pub(crate) hosts: Arc<Hosts>,
}

impl Picked {
    fn new(addr: SocketAddr, active: Arc<AtomicUsize>, hosts: Arc<Hosts>) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        Self {
            addr,
            active,
            hosts,
        }
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster: its config, current endpoints and metric handles.
pub struct ClusterState {
    /// The cluster as configured.
    pub config: Cluster,
    /// Metric handles.
    pub metrics: ClusterMetrics,
    pub(crate) hosts: Arc<Hosts>,
    pub(crate) breakers: Arc<Breakers>,
    /// Unique per state: upstream connections opened for an older state of the same cluster
    /// (replaced by a config update) are drained.
    pub(crate) generation: u64,
}

/// Source of [`ClusterState::generation`].
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

impl ClusterState {
    /// Builds a cluster; STATIC endpoints must be IP addresses. STRICT_DNS clusters start empty
    /// until [`ClusterState::resolve`] runs.
    pub fn new(config: Cluster, metrics: &Metrics) -> Result<Self, EngineError> {
        let endpoints = match config.discovery {
            DiscoveryType::Static | DiscoveryType::Eds => config
                .endpoints
                .iter()
                .map(|e| static_addr(&config.name, e))
                .collect::<Result<Vec<_>, EngineError>>()?,
            DiscoveryType::StrictDns => Vec::new(),
        };
        let metrics = metrics.cluster(&config.name);
        let hosts = Arc::new(Hosts::new(
            config.lb_policy,
            config.outlier_detection.clone(),
            config.healthy_panic_threshold,
            metrics.clone(),
        ));
        hosts.set_specs(endpoints);
        let breakers = Arc::new(Breakers::new(
            config.circuit_breakers.clone(),
            metrics.clone(),
        ));
        Ok(Self {
            config,
            metrics,
            hosts,
            breakers,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Picks an endpoint, `None` if the cluster has none. The endpoint counts one more active
    /// request (least request reads it) until the [`Picked`] is dropped.
    /// Only endpoints in use are picked: not ejected, of the lowest priority level that has
    /// one (every endpoint of the lowest level in panic mode).
    pub fn pick(&self, ctx: &LbContext) -> Option<Picked> {
        let (addr, active) = self.hosts.set.load().pick(ctx)?;
        Some(Picked::new(addr, active, self.hosts.clone()))
    }

    /// Current endpoints (ejected or not) with their priority.
    pub fn endpoints(&self) -> Vec<HostSpec> {
        self.hosts.specs()
    }

    /// Replaces the endpoints (and rebuilds the balancer) if they changed.
    pub fn set_endpoints(&self, endpoints: Vec<HostSpec>) {
        tracing::debug!(cluster = %self.config.name, ?endpoints, "endpoints");
        self.hosts.set_specs(endpoints);
    }

    /// Replaces the endpoints of a STATIC or EDS cluster (EDS update); every host must be an IP
    /// address.
    pub fn set_static_endpoints(&self, endpoints: &[Endpoint]) -> Result<(), EngineError> {
        let addrs = endpoints
            .iter()
            .map(|e| static_addr(&self.config.name, e))
            .collect::<Result<Vec<_>, EngineError>>()?;
        self.set_endpoints(addrs);
        Ok(())
    }

    /// Resolves every STRICT_DNS endpoint name; every address becomes an endpoint. A name that
    /// fails to resolve keeps its previous addresses.
    pub async fn resolve(&self) {
        if self.config.discovery != DiscoveryType::StrictDns {
            return;
        }
        let previous = self.endpoints();
        let mut out = Vec::new();
        for e in &self.config.endpoints {
            match tokio::net::lookup_host((e.host.as_str(), e.port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        let w = HostSpec {
                            ep: WeightedAddr {
                                addr,
                                weight: e.weight,
                            },
                            priority: e.priority,
                        };
                        if !out.contains(&w) {
                            out.push(w);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(cluster = %self.config.name, host = %e.host, "DNS resolution failed: {err}");
                    out.extend(previous.iter().filter(|p| p.ep.addr.port() == e.port));
                }
            }
        }
        self.set_endpoints(out);
    }

    /// Starts the periodic DNS refresh of a STRICT_DNS cluster; it stops when the cluster is
    /// dropped from the engine (only a weak reference is held).
    pub fn spawn_refresh(self: &Arc<Self>) {
        if self.config.discovery != DiscoveryType::StrictDns {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = if self.config.dns_refresh_rate.is_zero() {
            Duration::from_secs(5)
        } else {
            self.config.dns_refresh_rate
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                cluster.resolve().await;
            }
        });
    }
}

fn static_addr(cluster: &str, e: &Endpoint) -> Result<HostSpec, EngineError> {
    let ip: IpAddr = e.host.parse().map_err(|_| EngineError::BadEndpoint {
        cluster: cluster.to_owned(),
        host: e.host.clone(),
    })?;
    Ok(HostSpec {
        ep: WeightedAddr {
            addr: SocketAddr::new(ip, e.port),
            weight: e.weight,
        },
        priority: e.priority,
    })
}

#[cfg(test)]
mod tests {
    use meta_config::LbPolicy;

    use super::*;

    fn config(policy: LbPolicy, ports: &[u16]) -> Cluster {
        let endpoints = ports
            .iter()
            .map(|p| Endpoint::at(SocketAddr::from(([127, 0, 0, 1], *p))));
        Cluster {
            lb_policy: policy,
            ..Cluster::fixed("c", endpoints)
        }
    }

    fn active(c: &ClusterState) -> Vec<(u16, usize)> {
        let set = c.hosts.set.load();
        set.endpoints
            .iter()
            .zip(&set.active)
            .map(|(e, a)| (e.addr.port(), a.load(Ordering::Relaxed)))
            .collect()
    }

    #[test]
    fn picks_count_active_requests_across_endpoint_updates() {
        let policy = LbPolicy::LeastRequest { choice_count: 2 };
        let c = ClusterState::new(config(policy, &[1, 2]), &Metrics::new()).unwrap();
        let held: Vec<Picked> = (0..10)
            .map(|_| c.pick(&LbContext::default()).unwrap())
            .collect();
        let total: usize = active(&c).iter().map(|(_, n)| n).sum();
        assert_eq!(total, 10);
        let before = active(&c);
        // Endpoint 2 stays (keeps its count), 1 goes, 3 arrives idle.
        c.set_static_endpoints(&config(policy, &[2, 3]).endpoints)
            .unwrap();
        let after = active(&c);
        assert_eq!(after[0], before[1]);
        assert_eq!(after[1], (3, 0));
        // A new request prefers the idle newcomer unless both draws hit the busy one.
        let busy = before[1].1;
        let to_new = (0..200)
            .filter(|_| c.pick(&LbContext::default()).unwrap().addr.port() == 3)
            .count();
        if busy > 0 {
            assert!(to_new > 120, "{to_new}");
        }
        drop(held);
        assert_eq!(
            active(&c),
            [(2, 0), (3, 0)],
            "finished picks leave the count"
        );
    }

    #[test]
    fn consistent_hash_survives_an_unrelated_endpoint_change() {
        let policy = LbPolicy::Maglev { table_size: 65537 };
        let c = ClusterState::new(config(policy, &[1, 2, 3, 4]), &Metrics::new()).unwrap();
        let ctx = |k: u64| LbContext {
            hash: Some(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        let owner = |c: &ClusterState, k| c.pick(&ctx(k)).unwrap().addr.port();
        let before: Vec<u16> = (0..1000).map(|k| owner(&c, k)).collect();
        c.set_static_endpoints(&config(policy, &[1, 2, 3]).endpoints)
            .unwrap();
        let kept = (0..1000u64)
            .filter(|k| before[*k as usize] != 4 && owner(&c, *k) == before[*k as usize])
            .count();
        let not_on_4 = before.iter().filter(|p| **p != 4).count();
        // Keys not on the removed endpoint mostly stay where they were.
        assert!(kept * 10 >= not_on_4 * 8, "{kept} of {not_on_4}");
    }
}
