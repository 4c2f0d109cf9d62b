//! Every Istio/Aeraki object in Aeraki's own YAML (`shared/fixtures/aeraki/`, beside the
//! repository) parses and validates; kinds we do not manage are counted as skipped. The
//! Dubbo and Thrift demos resolve to a pinned view.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aeraki_config::{Store, build_view, load_str};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/aeraki")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

#[test]
fn every_fixture_file_validates() {
    let dir = dir();
    assert!(
        dir.is_dir(),
        "fixture directory {} not found",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 65);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match load_str(&name, &std::fs::read_to_string(f).unwrap()) {
            Ok(loaded) => {
                for (k, n) in loaded.stats.kinds {
                    *kinds.entry(k).or_default() += n;
                }
                for (k, n) in loaded.stats.skipped {
                    *skipped.entry(k).or_default() += n;
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let pairs = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        pairs(&kinds),
        "DestinationRule=8 EndpointSlice=1 MetaRouter=27 RedisDestination=4 RedisService=7 Service=11 ServiceEntry=4"
    );
    assert_eq!(
        pairs(&skipped),
        "(not a Kubernetes object)=2 apiextensions.k8s.io/v1/CustomResourceDefinition=5 apps/v1/Deployment=22 apps/v1/StatefulSet=2 networking.istio.io/v1beta1/Gateway=1 v1/ConfigMap=7 v1/Secret=2"
    );
}

/// WorkloadEntries standing for the pods the demo Deployments create (file mode has no pods).
fn pods(ns: &str, app: &str, extra: &str) -> String {
    ["v1", "v2"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "---\napiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\nmetadata: {{name: {app}-{v}, namespace: {ns}}}\nspec: {{address: 10.244.0.{}, labels: {{app: {app}, version: {v}{extra}}}}}\n",
                i + 10
            )
        })
        .collect()
}

/// Loads fixture files into one store, as `kubectl apply -n <ns> -f ...` would.
fn demo(ns: &str, files: &[&str], extra: &str) -> (aeraki_model::MeshView, Vec<String>) {
    let mut store = Store {
        default_namespace: ns.into(),
        ..Store::default()
    };
    let mut errors = Vec::new();
    for f in files {
        store.add_text(Path::new(f), &read(f), &mut errors);
    }
    store.add_text(Path::new("pods.yaml"), extra, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    build_view(&store).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dubbo_demo_view() {
    let (view, warnings) = demo(
        "meta-dubbo",
        &[
            "demo_metaprotocol-dubbo_dubbo-sample.yaml",
            "demo_metaprotocol-dubbo_serviceentry.yaml",
            "demo_metaprotocol-dubbo_destinationrule.yaml",
            "demo_metaprotocol-dubbo_traffic-split.yaml",
        ],
        &pods("meta-dubbo", "dubbo-sample-provider", ""),
    );
    insta::assert_yaml_snapshot!("dubbo_demo", (view, warnings));
}

#[test]
fn thrift_demo_view() {
    let (view, warnings) = demo(
        "meta-thrift",
        &[
            "demo_metaprotocol-thrift_thrift-sample.yaml",
            "demo_metaprotocol-thrift_destinationrule.yaml",
            "demo_metaprotocol-thrift_traffic-split.yaml",
        ],
        &pods("meta-thrift", "thrift-sample-server", ""),
    );
    insta::assert_yaml_snapshot!("thrift_demo", (view, warnings));
}

type Row = (String, u16, Vec<String>, Vec<u16>, bool);

#[test]
fn the_repository_demo_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let loaded = aeraki_config::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let got: Vec<Row> = loaded
        .view
        .services
        .iter()
        .map(|s| {
            (
                s.host.clone(),
                s.port,
                s.addresses.clone(),
                s.endpoints.iter().map(|e| e.port).collect(),
                s.router.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "org.apache.dubbo.samples.basic.api.demoservice".into(),
                20880,
                vec!["127.0.10.1".into()],
                vec![20881, 20882],
                true
            ),
            (
                "thrift-sample-server.demo.svc.cluster.local".into(),
                9090,
                vec!["127.0.10.2".into()],
                vec![9091, 9092],
                true
            ),
        ]
    );
}
