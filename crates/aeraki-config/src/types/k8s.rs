//! Kubernetes v1 Service and discovery.k8s.io/v1 EndpointSlice. These are written by the
//! Kubernetes API server (or `kubectl get -o yaml`), which has already validated them, so
//! fields we do not use are accepted (they do not change mesh routing).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::lenient::{self, IntOrString};
use crate::types::ObjectMeta;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(default)]
    pub external_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, deserialize_with = "lenient::i64_")]
    pub port: i64,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// The whole EndpointSlice document (it has no `spec`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: Option<SliceConditions>,
    #[serde(default)]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliceConditions {
    #[serde(default)]
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
}
