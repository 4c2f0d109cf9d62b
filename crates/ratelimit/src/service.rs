//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: match each descriptor,
//! count its hits in the current fixed window, answer OK or OVER_LIMIT.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::backend::{Backend, Increment, MemoryBackend};
use crate::config::{Config, Limit, Lookup, Unit};
use crate::metrics::{BackendLabels, DescriptorLabels, DomainLabels, HitLabels, Metrics};

/// The current time in whole seconds since the Unix epoch (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Remember at most this many unknown domains for log-once (then stay quiet).
const MAX_LOGGED_UNKNOWN: usize = 1024;

/// The rate-limit service: configuration (swappable at run time), a counter backend,
/// metrics. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

struct Shared {
    config: ArcSwap<Config>,
    backend: Arc<dyn Backend>,
    metrics: Metrics,
    clock: Clock,
    unknown_logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("backend", &self.shared.backend.name())
            .finish()
    }
}

/// Builds a [`Service`]: in-memory counters, fresh metrics and the system clock by default.
pub struct ServiceBuilder {
    config: Config,
    backend: Option<Arc<dyn Backend>>,
    metrics: Option<Metrics>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceBuilder")
    }
}

impl ServiceBuilder {
    /// The counter backend (default: [`MemoryBackend`]).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Metrics to record into (default: a new registry, see [`Service::metrics`]).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The clock giving Unix seconds (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn build(self) -> Service {
        let system: Clock = Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        Service {
            shared: Arc::new(Shared {
                config: ArcSwap::from_pointee(self.config),
                backend: self
                    .backend
                    .unwrap_or_else(|| Arc::new(MemoryBackend::new())),
                metrics: self.metrics.unwrap_or_default(),
                clock: self.clock.unwrap_or(system),
                unknown_logged: Mutex::new(HashSet::new()),
            }),
        }
    }
}

/// What one descriptor resolved to before counting.
enum Plan<'a> {
    NoLimit,
    Unlimited,
    Count {
        limit: Cow<'a, Limit>,
        unit: Unit,
        hits: u64,
        label: String,
    },
}

impl Service {
    /// A service over `config` with in-memory counters.
    pub fn new(config: Config) -> Service {
        Self::builder(config).build()
    }

    pub fn builder(config: Config) -> ServiceBuilder {
        ServiceBuilder {
            config,
            backend: None,
            metrics: None,
            clock: None,
        }
    }

    /// Replaces the configuration; requests already running finish with the old one.
    pub fn set_config(&self, config: Config) {
        self.shared.config.store(Arc::new(config));
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config.load_full()
    }

    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// The tonic service, for embedding in a caller's router.
    pub fn grpc_service(&self) -> RateLimitServiceServer<Service> {
        RateLimitServiceServer::new(self.clone())
    }

    /// Answers one request (the gRPC method without the transport).
    pub async fn check(&self, request: RateLimitRequest) -> Result<RateLimitResponse, Status> {
        if request.domain.is_empty() {
            return Err(Status::invalid_argument(
                "rate limit domain must not be empty",
            ));
        }
        if request.descriptors.is_empty() {
            return Err(Status::invalid_argument(
                "rate limit descriptor list must not be empty",
            ));
        }
        let config = self.shared.config.load();
        let metrics = self.shared.metrics.inner();
        let domain = request.domain.as_str();
        let now = (self.shared.clock)();
        if config.lookup(domain, &[]) == Lookup::UnknownDomain {
            self.unknown_domain(domain);
            let ok = DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            };
            return Ok(RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: vec![ok; request.descriptors.len()],
                ..Default::default()
            });
        }
        let mut plans = Vec::with_capacity(request.descriptors.len());
        for (i, d) in request.descriptors.iter().enumerate() {
            if d.is_negative_hits {
                return Err(Status::invalid_argument(format!(
                    "descriptors[{i}].is_negative_hits is not supported"
                )));
            }
            let entries: Vec<(&str, &str)> = d
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            let hits = match &d.hits_addend {
                Some(h) => h.value,
                None => u64::from(request.hits_addend.max(1)),
            };
            let limit = match (&d.limit, config.lookup(domain, &entries)) {
                (_, Lookup::UnknownDomain) => Plan::NoLimit,
                (Some(o), _) => override_limit(i, domain, d, o.requests_per_unit, o.unit, hits)?,
                (None, Lookup::NoLimit) => Plan::NoLimit,
                (None, Lookup::Limited(l)) if l.unlimited => Plan::Unlimited,
                (None, Lookup::Limited(l)) => match l.unit {
                    Some(unit) => Plan::Count {
                        limit: Cow::Borrowed(l),
                        unit,
                        hits,
                        label: String::new(),
                    },
                    None => Plan::Unlimited,
                },
            };
            plans.push(match limit {
                Plan::Count {
                    limit, unit, hits, ..
                } => {
                    let label = if limit.detailed_metric {
                        detailed_key(domain, d)
                    } else {
                        limit.full_key.clone()
                    };
                    Plan::Count {
                        limit,
                        unit,
                        hits,
                        label,
                    }
                }
                other => other,
            });
        }

        let mut increments = Vec::new();
        for (d, plan) in request.descriptors.iter().zip(&plans) {
            if let Plan::Count {
                unit, hits, label, ..
            } = plan
            {
                let window = unit.seconds();
                increments.push(Increment {
                    key: cache_key(domain, d, now - now % window),
                    hits: *hits,
                    ttl: Duration::from_secs(window),
                });
                let labels = HitLabels {
                    domain: domain.into(),
                    descriptor: label.clone(),
                };
                metrics.hits.get_or_create(&labels).inc_by(*hits);
            }
        }
        let counts = if increments.is_empty() {
            Vec::new()
        } else {
            let backend = self.shared.backend.as_ref();
            let labels = BackendLabels {
                backend: backend.name(),
            };
            let started = std::time::Instant::now();
            let result = backend.increment(increments).await;
            metrics
                .backend_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(counts) => counts,
                Err(e) => {
                    metrics.backend_errors.get_or_create(&labels).inc();
                    tracing::warn!(error = %e, domain, "rate-limit counter backend failed");
                    return Err(Status::unavailable(e.to_string()));
                }
            }
        };

        let mut counts = counts.into_iter();
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        for plan in plans {
            let record = |descriptor: &str, result: &'static str| {
                let labels = DescriptorLabels {
                    domain: domain.into(),
                    descriptor: descriptor.into(),
                    result,
                };
                metrics.requests.get_or_create(&labels).inc();
            };
            let status = match plan {
                Plan::NoLimit => {
                    record("", "no_limit");
                    DescriptorStatus {
                        code: Code::Ok as i32,
                        ..Default::default()
                    }
                }
                Plan::Unlimited => {
                    record("", "unlimited");
                    DescriptorStatus {
                        code: Code::Ok as i32,
                        limit_remaining: u32::MAX,
                        ..Default::default()
                    }
                }
                Plan::Count {
                    limit, unit, label, ..
                } => {
                    let after = counts.next().unwrap_or(u64::MAX);
                    let allowed = u64::from(limit.requests_per_unit);
                    let over = after > allowed;
                    let (code, result) = match (over, limit.shadow_mode) {
                        (false, _) => (Code::Ok, "ok"),
                        (true, true) => (Code::Ok, "shadow"),
                        (true, false) => (Code::OverLimit, "over_limit"),
                    };
                    record(&label, result);
                    if code == Code::OverLimit {
                        response.overall_code = Code::OverLimit as i32;
                    }
                    let remaining = if over { 0 } else { (allowed - after) as u32 };
                    let window = unit.seconds();
                    DescriptorStatus {
                        code: code as i32,
                        current_limit: Some(RateLimit {
                            name: limit.name.clone(),
                            requests_per_unit: limit.requests_per_unit,
                            unit: proto_unit(unit),
                        }),
                        limit_remaining: remaining,
                        duration_until_reset: Some(envoy_types::pb::google::protobuf::Duration {
                            seconds: (window - now % window) as i64,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }
                }
            };
            response.statuses.push(status);
        }
        Ok(response)
    }

    fn unknown_domain(&self, domain: &str) {
        let labels = DomainLabels {
            domain: domain.into(),
        };
        self.shared
            .metrics
            .inner()
            .unknown_domain
            .get_or_create(&labels)
            .inc();
        if let Ok(mut seen) = self.shared.unknown_logged.lock()
            && seen.len() < MAX_LOGGED_UNKNOWN
            && seen.insert(domain.to_string())
        {
            tracing::warn!(
                domain,
                "rate-limit request for an unknown domain: answering OK"
            );
        }
    }
}

/// A descriptor's `limit` override (as Envoy's `limit` action sends it): counted under the
/// request's own key; never in shadow mode.
fn override_limit<'a>(
    index: usize,
    domain: &str,
    d: &RateLimitDescriptor,
    requests_per_unit: u32,
    unit: i32,
    hits: u64,
) -> Result<Plan<'a>, Status> {
    let unit = match unit {
        1 => Unit::Second,
        2 => Unit::Minute,
        3 => Unit::Hour,
        4 => Unit::Day,
        other => {
            return Err(Status::invalid_argument(format!(
                "descriptors[{index}].limit.unit {other} is not supported (second, minute, hour or day)"
            )));
        }
    };
    let full_key = detailed_key(domain, d);
    let limit = Limit {
        full_key: full_key.clone(),
        requests_per_unit,
        unit: Some(unit),
        name: String::new(),
        unlimited: false,
        shadow_mode: false,
        detailed_metric: false,
    };
    Ok(Plan::Count {
        limit: Cow::Owned(limit),
        unit,
        hits,
        label: full_key,
    })
}

/// `domain.key_value.key2_value2` from the request's entries.
fn detailed_key(domain: &str, d: &RateLimitDescriptor) -> String {
    let mut key = domain.to_string();
    for e in &d.entries {
        key.push('.');
        key.push_str(&e.key);
        key.push('_');
        key.push_str(&e.value);
    }
    key
}

/// The counter key, as envoyproxy/ratelimit spells it: `domain_key_value_..._windowstart`.
fn cache_key(domain: &str, d: &RateLimitDescriptor, window_start: u64) -> String {
    let mut key = format!("{domain}_");
    for e in &d.entries {
        key.push_str(&e.key);
        key.push('_');
        key.push_str(&e.value);
        key.push('_');
    }
    key.push_str(&window_start.to_string());
    key
}

fn proto_unit(unit: Unit) -> i32 {
    match unit {
        Unit::Second => 1,
        Unit::Minute => 2,
        Unit::Hour => 3,
        Unit::Day => 4,
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.check(request.into_inner()).await.map(Response::new)
    }
}
