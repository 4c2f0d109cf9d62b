//! Golden tests: every scenario rendered with `to_json` for both flavours, warnings included.

mod common;

use aeraki_model::MeshView;
use aeraki_model::resources::Flavor;
use aeraki_translate::{to_json, translate};
use serde_json::json;

fn golden(view: &MeshView, flavor: Flavor) -> serde_json::Value {
    let t = translate(view, flavor);
    json!({ "warnings": t.warnings, "resources": to_json(&t.resources) })
}

macro_rules! golden_test {
    ($name:ident, $fixture:expr) => {
        #[test]
        fn $name() {
            let view = $fixture;
            insta::assert_json_snapshot!(
                concat!(stringify!($name), "_meta_proxy"),
                golden(&view, Flavor::MetaProxy)
            );
            insta::assert_json_snapshot!(
                concat!(stringify!($name), "_envoy"),
                golden(&view, Flavor::Envoy)
            );
        }
    };
}

golden_test!(dubbo_weighted_mutation_mirror, common::dubbo_weighted());
golden_test!(thrift_attribute_matches, common::thrift_attributes());
golden_test!(no_meta_router_default_route, common::default_route());
golden_test!(consistent_hash_on_subset, common::consistent_hash_subset());
golden_test!(dns_resolution, common::dns());
golden_test!(two_addresses_two_listeners, common::two_addresses());
golden_test!(route_policies_and_rate_limits, common::traffic_policies());

#[test]
fn translation_is_deterministic() {
    let view = common::everything();
    for flavor in [Flavor::MetaProxy, Flavor::Envoy] {
        let a = translate(&view, flavor);
        let b = translate(&view, flavor);
        assert_eq!(a, b);
        let bytes = |t: &aeraki_translate::Translation| {
            serde_json::to_vec(&json!({"w": t.warnings, "r": to_json(&t.resources)}))
                .expect("serialisable")
        };
        assert_eq!(bytes(&a), bytes(&b));
        // Every resource renders (no type missing from the descriptor pool).
        let text = String::from_utf8(bytes(&a)).expect("utf8");
        assert!(!text.contains("@error"), "{text}");
    }
}
