//! Serde types of the kinds we manage, as Kubernetes YAML writes them (camelCase). Specs
//! refuse unknown fields (`deny_unknown_fields`) so a typo or an unsupported feature is an
//! error naming its path; Kubernetes-owned kinds and `metadata` accept extra fields.

pub mod aeraki;
pub mod istio;
pub mod k8s;

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata`: what we use; other fields (uid, resourceVersion, managedFields…) are
/// Kubernetes bookkeeping and are accepted.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A managed object's body, after parsing.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per load and stored in one map; boxing buys nothing"
)]
pub enum Body {
    ServiceEntry(istio::ServiceEntry),
    DestinationRule(istio::DestinationRule),
    VirtualService(istio::VirtualService),
    WorkloadEntry(istio::WorkloadEntry),
    MetaRouter(aeraki::MetaRouter),
    ApplicationProtocol(aeraki::ApplicationProtocol),
    RedisService(aeraki::RedisService),
    RedisDestination(aeraki::RedisDestination),
    DubboAuthorizationPolicy(aeraki::DubboAuthorizationPolicy),
    Service(k8s::ServiceSpec),
    EndpointSlice(k8s::EndpointSlice),
}

impl Body {
    /// The Kubernetes kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::ServiceEntry(_) => "ServiceEntry",
            Body::DestinationRule(_) => "DestinationRule",
            Body::VirtualService(_) => "VirtualService",
            Body::WorkloadEntry(_) => "WorkloadEntry",
            Body::MetaRouter(_) => "MetaRouter",
            Body::ApplicationProtocol(_) => "ApplicationProtocol",
            Body::RedisService(_) => "RedisService",
            Body::RedisDestination(_) => "RedisDestination",
            Body::DubboAuthorizationPolicy(_) => "DubboAuthorizationPolicy",
            Body::Service(_) => "Service",
            Body::EndpointSlice(_) => "EndpointSlice",
        }
    }
}
