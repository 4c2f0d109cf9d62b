//! The engine's metrics: one `prometheus-client` registry and the `meta_protocol_*` families.
//!
//! Label handles are resolved once per listener, route × cluster and cluster (the `*Metrics`
//! structs below), so the request path only does atomic adds.

use meta_protocol::{ErrorKind, MessageKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    listener: String,
    protocol: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: String,
    route: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    listener: String,
    route: String,
    cluster: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    listener: String,
    side: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    listener: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabels {
    cluster: String,
    detector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    cluster: String,
    resource: String,
}

/// Outlier detectors, as `detector` label values (Envoy's names).
pub const DETECTORS: [&str; 3] = [
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "consecutive_local_origin_failure",
];

/// Circuit-breaker resources, as `resource` label values (Envoy's `*_open` gauge names).
pub const BREAKER_RESOURCES: [&str; 4] = ["cx", "rq_pending", "rq", "rq_retry"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocalRateLimitLabels {
    listener: String,
    stat_prefix: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GlobalRateLimitLabels {
    listener: String,
    domain: String,
    result: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 100 µs .. ~1.6 s doubling, then +Inf.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// The registry and every metric family of the engine.
pub struct Metrics {
    registry: Registry,
    downstream_requests: Family<KindLabels, Counter>,
    upstream_requests: Family<RouteLabels, Counter>,
    responses: Family<StatusLabels, Counter>,
    local_replies: Family<ReasonLabels, Counter>,
    request_duration: HistogramFamily,
    requests_active: Family<ListenerLabels, Gauge>,
    decode_errors: Family<SideLabels, Counter>,
    downstream_cx_active: Family<ListenerLabels, Gauge>,
    downstream_cx_total: Family<ListenerLabels, Counter>,
    idle_timeouts: Family<ListenerLabels, Counter>,
    upstream_cx_active: Family<ClusterLabels, Gauge>,
    upstream_cx_total: Family<ClusterLabels, Counter>,
    upstream_connect_failures: Family<ClusterLabels, Counter>,
    mutation_failures: Family<DirectionLabels, Counter>,
    unknown_responses: Family<ClusterLabels, Counter>,
    rq_pending_overflow: Family<ClusterLabels, Counter>,
    rq_retry_overflow: Family<ClusterLabels, Counter>,
    cx_overflow: Family<ClusterLabels, Counter>,
    cx_max_requests: Family<ClusterLabels, Counter>,
    cx_idle_timeout: Family<ClusterLabels, Counter>,
    ejections_enforced: Family<DetectorLabels, Counter>,
    ejections_active: Family<ClusterLabels, Gauge>,
    breaker_open: Family<BreakerLabels, Gauge>,
    xds_updates: Family<Vec<(String, String)>, Counter>,
    xds_connected: Gauge,
    local_rate_limit: Family<LocalRateLimitLabels, Counter>,
    global_rate_limit: Family<GlobalRateLimitLabels, Counter>,
    router: RouterFamilies,
}

/// Retry and fault families (router of issue 4).
#[derive(Default)]
struct RouterFamilies {
    retry: Family<RouteLabels, Counter>,
    retry_success: Family<RouteLabels, Counter>,
    per_try_timeout: Family<RouteLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    listener: String,
    route: String,
    kind: String,
}

impl RouterFamilies {
    fn register(&self, r: &mut Registry) {
        r.register(
            "upstream_rq_retry",
            "Retries of upstream requests",
            self.retry.clone(),
        );
        r.register(
            "upstream_rq_retry_success",
            "Requests whose retry got a successful response",
            self.retry_success.clone(),
        );
        r.register(
            "upstream_rq_per_try_timeout",
            "Upstream attempts that hit the per-try timeout",
            self.per_try_timeout.clone(),
        );
        r.register(
            "faults",
            "Faults injected by routes (kind abort or delay)",
            self.faults.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered under the `meta_protocol` prefix.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("meta_protocol"),
            downstream_requests: Family::default(),
            upstream_requests: Family::default(),
            responses: Family::default(),
            local_replies: Family::default(),
            request_duration: Family::new_with_constructor(duration_histogram),
            requests_active: Family::default(),
            decode_errors: Family::default(),
            downstream_cx_active: Family::default(),
            downstream_cx_total: Family::default(),
            idle_timeouts: Family::default(),
            upstream_cx_active: Family::default(),
            upstream_cx_total: Family::default(),
            upstream_connect_failures: Family::default(),
            mutation_failures: Family::default(),
            unknown_responses: Family::default(),
            rq_pending_overflow: Family::default(),
            rq_retry_overflow: Family::default(),
            cx_overflow: Family::default(),
            cx_max_requests: Family::default(),
            cx_idle_timeout: Family::default(),
            ejections_enforced: Family::default(),
            ejections_active: Family::default(),
            breaker_open: Family::default(),
            xds_updates: Family::default(),
            xds_connected: Gauge::default(),
            local_rate_limit: Family::default(),
            global_rate_limit: Family::default(),
            router: RouterFamilies::default(),
        };
        let r = &mut m.registry;
        m.router.register(r);
        r.register(
            "downstream_requests",
            "Decoded downstream messages",
            m.downstream_requests.clone(),
        );
        r.register(
            "upstream_requests",
            "Requests forwarded upstream",
            m.upstream_requests.clone(),
        );
        r.register(
            "responses",
            "Upstream responses forwarded downstream",
            m.responses.clone(),
        );
        r.register(
            "local_replies",
            "Error replies generated by the proxy",
            m.local_replies.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request decode to response written",
            m.request_duration.clone(),
        );
        r.register(
            "requests_active",
            "Requests in flight",
            m.requests_active.clone(),
        );
        r.register(
            "decode_errors",
            "Messages that could not be decoded",
            m.decode_errors.clone(),
        );
        r.register(
            "downstream_connections_active",
            "Open downstream connections",
            m.downstream_cx_active.clone(),
        );
        r.register(
            "downstream_connections",
            "Accepted downstream connections",
            m.downstream_cx_total.clone(),
        );
        r.register(
            "idle_timeouts",
            "Downstream connections closed for idleness",
            m.idle_timeouts.clone(),
        );
        r.register(
            "upstream_connections_active",
            "Open upstream connections",
            m.upstream_cx_active.clone(),
        );
        r.register(
            "upstream_connections",
            "Upstream connections established",
            m.upstream_cx_total.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Failed upstream connection attempts",
            m.upstream_connect_failures.clone(),
        );
        r.register(
            "mutation_failures",
            "Mutations a codec could not apply (message forwarded unmodified)",
            m.mutation_failures.clone(),
        );
        r.register(
            "upstream_unknown_responses",
            "Upstream responses whose request id matched no request in flight",
            m.unknown_responses.clone(),
        );
        r.register(
            "upstream_rq_pending_overflow",
            "Requests refused by the max_requests or max_pending_requests circuit breaker",
            m.rq_pending_overflow.clone(),
        );
        r.register(
            "upstream_rq_retry_overflow",
            "Retries not attempted because of the max_retries circuit breaker or retry budget",
            m.rq_retry_overflow.clone(),
        );
        r.register(
            "upstream_cx_overflow",
            "Times the max_connections circuit breaker stopped a new upstream connection",
            m.cx_overflow.clone(),
        );
        r.register(
            "upstream_cx_max_requests",
            "Upstream connections that reached max_requests_per_connection (then drained and closed)",
            m.cx_max_requests.clone(),
        );
        r.register(
            "upstream_cx_idle_timeout",
            "Upstream connections closed by the cluster's idle timeout",
            m.cx_idle_timeout.clone(),
        );
        r.register(
            "outlier_ejections_enforced",
            "Endpoints ejected by outlier detection, by detector",
            m.ejections_enforced.clone(),
        );
        r.register(
            "outlier_ejections_active",
            "Endpoints currently ejected by outlier detection",
            m.ejections_active.clone(),
        );
        r.register(
            "circuit_breaker_open",
            "1 while a circuit breaker of the cluster is at its limit (resource cx, rq_pending, rq, rq_retry)",
            m.breaker_open.clone(),
        );
        r.register(
            "xds_updates",
            "xDS responses processed, by type and result (ack or nack)",
            m.xds_updates.clone(),
        );
        r.register(
            "xds_connected",
            "1 while the ADS stream to the control plane is up",
            m.xds_connected.clone(),
        );
        r.register(
            "local_rate_limit",
            "Requests checked by the local rate-limit filter, by result (ok or rate_limited)",
            m.local_rate_limit.clone(),
        );
        r.register(
            "global_rate_limit",
            "Requests checked against the global rate-limit service, by result (ok, over_limit, \
             error: denied on a service failure, failure_mode_allowed: let through on one)",
            m.global_rate_limit.clone(),
        );
        m
    }

    /// `local_rate_limit_total{listener, stat_prefix, result}` handles: (ok, rate_limited).
    pub fn local_rate_limit(&self, listener: &str, stat_prefix: &str) -> (Counter, Counter) {
        let c = |result: &str| {
            self.local_rate_limit
                .get_or_create_owned(&LocalRateLimitLabels {
                    listener: listener.to_owned(),
                    stat_prefix: stat_prefix.to_owned(),
                    result: result.to_owned(),
                })
        };
        (c("ok"), c("rate_limited"))
    }

    /// `global_rate_limit_total{listener, domain, result}` handles.
    pub fn global_rate_limit(&self, listener: &str, domain: &str) -> GlobalRateLimitMetrics {
        let c = |result: &str| {
            self.global_rate_limit
                .get_or_create_owned(&GlobalRateLimitLabels {
                    listener: listener.to_owned(),
                    domain: domain.to_owned(),
                    result: result.to_owned(),
                })
        };
        GlobalRateLimitMetrics {
            ok: c("ok"),
            over_limit: c("over_limit"),
            error: c("error"),
            failure_mode_allowed: c("failure_mode_allowed"),
        }
    }

    /// Handles for an xDS client.
    pub fn xds(&self) -> XdsMetrics {
        XdsMetrics {
            updates: self.xds_updates.clone(),
            connected: self.xds_connected.clone(),
        }
    }

    /// The whole registry in Prometheus/OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        out
    }

    /// Handles for one listener.
    pub fn listener(&self, listener: &str, protocol: &str) -> ListenerMetrics {
        let l = || ListenerLabels {
            listener: listener.to_owned(),
        };
        let kind = |k: MessageKind| {
            self.downstream_requests.get_or_create_owned(&KindLabels {
                listener: listener.to_owned(),
                protocol: protocol.to_owned(),
                kind: k.as_str().to_owned(),
            })
        };
        let side = |s: &str| {
            self.decode_errors.get_or_create_owned(&SideLabels {
                listener: listener.to_owned(),
                side: s.to_owned(),
            })
        };
        let dir = |d: &str| {
            self.mutation_failures
                .get_or_create_owned(&DirectionLabels {
                    listener: listener.to_owned(),
                    direction: d.to_owned(),
                })
        };
        ListenerMetrics {
            kinds: KINDS.map(kind),
            local_replies: ErrorKind::ALL.map(|k| {
                self.local_replies.get_or_create_owned(&ReasonLabels {
                    listener: listener.to_owned(),
                    reason: k.as_str().to_owned(),
                })
            }),
            requests_active: self.requests_active.get_or_create_owned(&l()),
            decode_errors_downstream: side("downstream"),
            decode_errors_upstream: side("upstream"),
            cx_active: self.downstream_cx_active.get_or_create_owned(&l()),
            cx_total: self.downstream_cx_total.get_or_create_owned(&l()),
            idle_timeouts: self.idle_timeouts.get_or_create_owned(&l()),
            mutation_failures_request: dir("request"),
            mutation_failures_response: dir("response"),
        }
    }

    /// Handles for one route × cluster pair of a listener.
    pub fn route(&self, listener: &str, route: &str, cluster: &str) -> RouteMetrics {
        let labels = RouteLabels {
            listener: listener.to_owned(),
            route: route.to_owned(),
            cluster: cluster.to_owned(),
        };
        let status = |s: &str| {
            self.responses.get_or_create_owned(&StatusLabels {
                listener: listener.to_owned(),
                route: route.to_owned(),
                cluster: cluster.to_owned(),
                status: s.to_owned(),
            })
        };
        RouteMetrics {
            upstream_requests: self.upstream_requests.get_or_create_owned(&labels),
            responses_ok: status("ok"),
            responses_error: status("error"),
            retry: self.router.retry.get_or_create_owned(&labels),
            retry_success: self.router.retry_success.get_or_create_owned(&labels),
            per_try_timeout: self.router.per_try_timeout.get_or_create_owned(&labels),
            duration: self.request_duration.get_or_create_owned(&labels),
        }
    }

    /// `faults_total{listener, route, kind}` handles (abort, delay) of one route.
    pub fn faults(&self, listener: &str, route: &str) -> FaultMetrics {
        let kind = |k: &str| {
            self.router.faults.get_or_create_owned(&FaultLabels {
                listener: listener.to_owned(),
                route: route.to_owned(),
                kind: k.to_owned(),
            })
        };
        FaultMetrics {
            abort: kind("abort"),
            delay: kind("delay"),
        }
    }

    /// Handles for one cluster.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let labels = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        ClusterMetrics {
            cx_active: self.upstream_cx_active.get_or_create_owned(&labels),
            cx_total: self.upstream_cx_total.get_or_create_owned(&labels),
            connect_failures: self.upstream_connect_failures.get_or_create_owned(&labels),
            unknown_responses: self.unknown_responses.get_or_create_owned(&labels),
            rq_pending_overflow: self.rq_pending_overflow.get_or_create_owned(&labels),
            rq_retry_overflow: self.rq_retry_overflow.get_or_create_owned(&labels),
            cx_overflow: self.cx_overflow.get_or_create_owned(&labels),
            cx_max_requests: self.cx_max_requests.get_or_create_owned(&labels),
            cx_idle_timeout: self.cx_idle_timeout.get_or_create_owned(&labels),
            ejections_enforced: DETECTORS.map(|d| {
                self.ejections_enforced
                    .get_or_create_owned(&DetectorLabels {
                        cluster: cluster.to_owned(),
                        detector: d.to_owned(),
                    })
            }),
            ejections_active: self.ejections_active.get_or_create_owned(&labels),
            breaker_open: BREAKER_RESOURCES.map(|r| {
                self.breaker_open.get_or_create_owned(&BreakerLabels {
                    cluster: cluster.to_owned(),
                    resource: r.to_owned(),
                })
            }),
        }
    }
}

const KINDS: [MessageKind; 8] = [
    MessageKind::Request,
    MessageKind::Response,
    MessageKind::OneWay,
    MessageKind::Heartbeat,
    MessageKind::StreamInit,
    MessageKind::StreamData,
    MessageKind::StreamCloseOneWay,
    MessageKind::StreamCloseTwoWay,
];

/// Per-listener handles.
#[derive(Clone)]
pub struct ListenerMetrics {
    kinds: [Counter; 8],
    local_replies: [Counter; 10],
    /// `requests_active{listener}`.
    pub requests_active: Gauge,
    /// `decode_errors_total{side="downstream"}`.
    pub decode_errors_downstream: Counter,
    /// `decode_errors_total{side="upstream"}`.
    pub decode_errors_upstream: Counter,
    /// `downstream_connections_active`.
    pub cx_active: Gauge,
    /// `downstream_connections_total`.
    pub cx_total: Counter,
    /// `idle_timeouts_total`.
    pub idle_timeouts: Counter,
    /// `mutation_failures_total{direction="request"}`.
    pub mutation_failures_request: Counter,
    /// `mutation_failures_total{direction="response"}`.
    pub mutation_failures_response: Counter,
}

impl ListenerMetrics {
    /// Counts one decoded downstream message.
    pub fn count_kind(&self, kind: MessageKind) {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.kinds[i].inc();
    }

    /// Counts one local reply.
    pub fn count_local_reply(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(9);
        self.local_replies[i].inc();
    }
}

/// Per route × cluster handles.
#[derive(Clone)]
pub struct RouteMetrics {
    /// `upstream_requests_total`.
    pub upstream_requests: Counter,
    /// `responses_total{status="ok"}`.
    pub responses_ok: Counter,
    /// `responses_total{status="error"}`.
    pub responses_error: Counter,
    /// `request_duration_seconds`.
    pub duration: Histogram,
    /// `upstream_rq_retry_total`.
    pub retry: Counter,
    /// `upstream_rq_retry_success_total`.
    pub retry_success: Counter,
    /// `upstream_rq_per_try_timeout_total`.
    pub per_try_timeout: Counter,
}

/// `faults_total` handles of one route.
#[derive(Clone)]
pub struct FaultMetrics {
    /// `kind="abort"`.
    pub abort: Counter,
    /// `kind="delay"`.
    pub delay: Counter,
}

/// Per-cluster handles.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// `upstream_connections_active`.
    pub cx_active: Gauge,
    /// `upstream_connections_total`.
    pub cx_total: Counter,
    /// `upstream_connect_failures_total`.
    pub connect_failures: Counter,
    /// `upstream_unknown_responses_total`.
    pub unknown_responses: Counter,
    /// `upstream_rq_pending_overflow_total`.
    pub rq_pending_overflow: Counter,
    /// `upstream_rq_retry_overflow_total`.
    pub rq_retry_overflow: Counter,
    /// `upstream_cx_overflow_total`.
    pub cx_overflow: Counter,
    /// `upstream_cx_max_requests_total`.
    pub cx_max_requests: Counter,
    /// `upstream_cx_idle_timeout_total`.
    pub cx_idle_timeout: Counter,
    /// `outlier_ejections_enforced_total`, one per [`DETECTORS`] entry.
    pub ejections_enforced: [Counter; 3],
    /// `outlier_ejections_active`.
    pub ejections_active: Gauge,
    /// `circuit_breaker_open`, one per [`BREAKER_RESOURCES`] entry.
    pub breaker_open: [Gauge; 4],
}

/// Handles of one global rate-limit filter: one counter per result.
#[derive(Clone)]
pub struct GlobalRateLimitMetrics {
    /// The service answered OK.
    pub ok: Counter,
    /// The service answered OVER_LIMIT (request rejected).
    pub over_limit: Counter,
    /// The check failed and `failure_mode_deny` rejected the request.
    pub error: Counter,
    /// The check failed and the request was let through.
    pub failure_mode_allowed: Counter,
}

/// xDS client handles: `xds_updates_total{type, result}` and `xds_connected`.
#[derive(Clone)]
pub struct XdsMetrics {
    updates: Family<Vec<(String, String)>, Counter>,
    connected: Gauge,
}

impl XdsMetrics {
    /// Counts one processed response of `type_` (`lds`, `cds`, `rds`, `eds`).
    pub fn update(&self, type_: &str, ack: bool) {
        let result = if ack { "ack" } else { "nack" };
        self.updates
            .get_or_create(&vec![
                ("type".to_owned(), type_.to_owned()),
                ("result".to_owned(), result.to_owned()),
            ])
            .inc();
    }

    /// Sets the connection gauge.
    pub fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }
}
