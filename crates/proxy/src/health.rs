//! Cluster health: circuit breakers (admission of requests and retries) and outlier detection
//! (ejection of endpoints from their outcomes). The router asks before each attempt and reports
//! the outcome of each; [`ClusterState::pick`] skips ejected endpoints.
//!
//! Not yet: every limit is open and nothing is ejected (issue 4 brings the thresholds from
//! `circuit_breakers` and the detectors from `outlier_detection`).

// Stubs until the router and cluster-health work of issue 4 wire them (remove this then).
#![allow(dead_code)]

use std::net::SocketAddr;

use crate::cluster::ClusterState;

/// How one upstream attempt ended, as the router saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostResult {
    /// A response with status OK.
    Success,
    /// A response with status Error (Dubbo non-OK status or exception; Thrift exception).
    ErrorResponse,
    /// The upstream refused the request without processing it (e.g. Dubbo thread pool exhausted).
    Refused,
    /// Connecting to the endpoint failed or timed out.
    ConnectFailure,
    /// The connection closed or reset before the answer.
    Reset,
    /// The per-try timeout expired.
    Timeout,
}

/// A circuit-breaker slot held by one request or retry; dropping it frees the slot.
#[derive(Debug)]
pub struct Admission {
    _private: (),
}

/// A circuit breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `max_requests` active requests reached.
    MaxRequests,
    /// `max_pending_requests` reached while no upstream connection was ready.
    MaxPending,
}

impl Overflow {
    /// The threshold's name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::MaxRequests => "max_requests",
            Overflow::MaxPending => "max_pending_requests",
        }
    }
}

impl ClusterState {
    /// Admits one request under the cluster's circuit breakers.
    pub fn admit_request(&self) -> Result<Admission, Overflow> {
        Ok(Admission { _private: () })
    }

    /// Admits one retry (`max_retries` or the retry budget); `None` means no retry.
    pub fn admit_retry(&self) -> Option<Admission> {
        Some(Admission { _private: () })
    }

    /// Feeds outlier detection with the outcome of one attempt on `addr`.
    pub fn report(&self, addr: SocketAddr, result: HostResult) {
        let _ = (addr, result);
    }
}
