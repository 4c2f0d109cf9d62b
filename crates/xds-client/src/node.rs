//! The `Node` sent to the control plane, and the first requests of a stream.

use envoy_types::pb::envoy::config::core::v3::{Locality, Node, node::UserAgentVersionType};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use meta_config::XdsConfig;

/// `node` of every request: id, cluster, metadata and locality from the bootstrap, user agent
/// `meta-proxy` and this crate's version.
pub(crate) fn node(x: &XdsConfig) -> Node {
    let metadata = x
        .node_metadata
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| match json_to_value(v).kind {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        });
    Node {
        id: x.node_id.clone(),
        cluster: x.node_cluster.clone(),
        metadata,
        locality: x.node_locality.as_ref().map(|l| Locality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            sub_zone: l.sub_zone.clone(),
        }),
        user_agent_name: "meta-proxy".into(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").into(),
        )),
        ..Default::default()
    }
}

fn json_to_value(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s),
        J::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        J::Object(m) => Kind::StructValue(Struct {
            fields: m.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_carries_identity_metadata_and_user_agent() {
        let x = XdsConfig {
            node_id: "n1".into(),
            node_cluster: "c1".into(),
            node_metadata: Some(r#"{"LABELS":{"app":"x"},"N":[1,true,null]}"#.into()),
            node_locality: Some(meta_config::Locality {
                region: "r1".into(),
                zone: "z1".into(),
                sub_zone: String::new(),
            }),
            server_cluster: "xds".into(),
            lds: true,
            cds: true,
        };
        let n = node(&x);
        assert_eq!((n.id.as_str(), n.cluster.as_str()), ("n1", "c1"));
        let l = n.locality.as_ref().expect("node.locality is sent");
        assert_eq!((l.region.as_str(), l.zone.as_str()), ("r1", "z1"));
        assert_eq!(n.user_agent_name, "meta-proxy");
        assert_eq!(
            n.user_agent_version_type,
            Some(UserAgentVersionType::UserAgentVersion("0.1.0".into()))
        );
        let md = n.metadata.unwrap();
        let Some(Kind::StructValue(labels)) = &md.fields["LABELS"].kind else {
            panic!("LABELS is a struct");
        };
        assert_eq!(
            labels.fields["app"].kind,
            Some(Kind::StringValue("x".into()))
        );
        let Some(Kind::ListValue(l)) = &md.fields["N"].kind else {
            panic!("N is a list");
        };
        assert_eq!(l.values.len(), 3);
    }
}
