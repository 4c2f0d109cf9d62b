//! Upstream clusters at runtime: resolved endpoints, their load balancer, DNS refresh.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use meta_config::{Cluster, DiscoveryType, Endpoint};

use crate::EngineError;
use crate::lb::{self, LbContext, LoadBalancer, WeightedAddr};
use crate::metrics::{ClusterMetrics, Metrics};

/// Every cluster by name; swapped as a whole.
pub type ClusterMap = HashMap<String, Arc<ClusterState>>;

/// One resolved endpoint set and its balancer.
struct EndpointSet {
    endpoints: Vec<WeightedAddr>,
    lb: Box<dyn LoadBalancer>,
}

/// A cluster: its config, current endpoints and metric handles.
pub struct ClusterState {
    /// The cluster as configured.
    pub config: Cluster,
    set: ArcSwap<EndpointSet>,
    /// Metric handles.
    pub metrics: ClusterMetrics,
}

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
        let set = ArcSwap::from_pointee(EndpointSet {
            lb: lb::build(config.lb_policy, endpoints.clone()),
            endpoints,
        });
        Ok(Self {
            config,
            set,
            metrics,
        })
    }

    /// Picks an endpoint, `None` if the cluster has none.
    pub fn pick(&self, ctx: &LbContext) -> Option<SocketAddr> {
        self.set.load().lb.pick(ctx)
    }

    /// Current endpoints.
    pub fn endpoints(&self) -> Vec<WeightedAddr> {
        self.set.load().endpoints.clone()
    }

    /// Replaces the endpoint set (and rebuilds the balancer) if it changed.
    pub fn set_endpoints(&self, endpoints: Vec<WeightedAddr>) {
        if self.set.load().endpoints == endpoints {
            return;
        }
        tracing::debug!(cluster = %self.config.name, ?endpoints, "endpoints updated");
        self.set.store(Arc::new(EndpointSet {
            lb: lb::build(self.config.lb_policy, endpoints.clone()),
            endpoints,
        }));
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
                        let w = WeightedAddr {
                            addr,
                            weight: e.weight,
                        };
                        if !out.contains(&w) {
                            out.push(w);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(cluster = %self.config.name, host = %e.host, "DNS resolution failed: {err}");
                    out.extend(previous.iter().filter(|p| p.addr.port() == e.port));
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

fn static_addr(cluster: &str, e: &Endpoint) -> Result<WeightedAddr, EngineError> {
    let ip: IpAddr = e.host.parse().map_err(|_| EngineError::BadEndpoint {
        cluster: cluster.to_owned(),
        host: e.host.clone(),
    })?;
    Ok(WeightedAddr {
        addr: SocketAddr::new(ip, e.port),
        weight: e.weight,
    })
}
