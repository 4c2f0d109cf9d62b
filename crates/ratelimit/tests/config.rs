//! Config loading: every rate-limit config Aeraki users ran, error messages with file and
//! path, and the matching semantics of envoyproxy/ratelimit.

#![allow(clippy::expect_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};

use aeraki_ratelimit::{Config, Lookup, Unit};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/aeraki")
}

#[test]
fn every_aeraki_rate_limit_config_loads() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.to_string_lossy()
                .ends_with("rate-limit-server_config.yaml")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let config = Config::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            config.domains().collect::<Vec<_>>(),
            ["production"],
            "{}",
            f.display()
        );
        let Lookup::Limited(limit) = config.lookup("production", &[("method", "sayHello")]) else {
            panic!("{}: no limit for method=sayHello", f.display());
        };
        assert_eq!(limit.full_key, "production.method_sayHello");
        let expected = if f.to_string_lossy().contains("e2e") {
            (5, Unit::Hour)
        } else {
            (10, Unit::Minute)
        };
        assert_eq!(
            (limit.requests_per_unit, limit.unit),
            (expected.0, Some(expected.1))
        );
        assert_eq!(
            config.lookup("production", &[("method", "sayGoodbye")]),
            Lookup::NoLimit
        );
    }
}

#[test]
fn a_directory_loads_every_yaml_file_and_refuses_duplicate_domains() {
    let dir = std::env::temp_dir().join(format!("rls-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
    write(
        "a.yaml",
        "domain: one\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    write("b.yml", "domain: two\n");
    write("notes.txt", "not yaml: [");
    write(".hidden.yaml", "not yaml: [");
    let config = Config::load(&dir).expect("directory loads");
    assert_eq!(config.domains().collect::<Vec<_>>(), ["one", "two"]);

    write("c.yaml", "domain: one\n");
    let err = Config::load(&dir).expect_err("duplicate domain");
    let text = err.to_string();
    assert!(
        text.contains("c.yaml: domain: duplicate domain 'one' (already defined in"),
        "{text}"
    );
    assert!(text.contains("a.yaml)"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn error_of(yaml: &str) -> String {
    Config::from_yaml("cfg.yaml", yaml)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn errors_name_file_and_field_path() {
    let cases: &[(&str, &str)] = &[
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "cfg.yaml: descriptors[0].rate_limit.unit: invalid unit 'fortnight' (expected second, minute, hour or day)",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limt: {unit: second}\n",
            "cfg.yaml: descriptors[0].descriptors[0].rate_limt: unknown field `rate_limt` (expected one of: key, value, rate_limit, descriptors, shadow_mode, detailed_metric)",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: x\n  - key: a\n    value: x\n",
            "cfg.yaml: descriptors[1]: duplicate descriptor `d.a_x` (also at descriptors[0])",
        ),
        ("descriptors: []\n", "cfg.yaml: domain: is required"),
        ("domain: ''\n", "cfg.yaml: domain: must not be empty"),
        (
            "domain: d\nextra: 1\n",
            "cfg.yaml: extra: unknown field `extra` (expected one of: domain, descriptors)",
        ),
        (
            "domain: d\ndescriptors:\n  - value: x\n",
            "cfg.yaml: descriptors[0].key: is required",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: second}\n",
            "cfg.yaml: descriptors[0].rate_limit.unit: must not be set when `unlimited` is true",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
            "cfg.yaml: descriptors[0].rate_limit.requests_per_unit: is required",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
            "cfg.yaml: descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    quota_mode: true\n",
            "cfg.yaml: descriptors[0].quota_mode: `quota_mode` is not supported by this rate-limit service",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    shadow_mode: yes\n",
            "cfg.yaml: descriptors[0].shadow_mode: must be true or false, found a string",
        ),
        (
            "domain: d\ndescriptors: {key: a}\n",
            "cfg.yaml: descriptors: must be a list, found a mapping",
        ),
        (
            "kind: Deployment\n",
            "cfg.yaml: kind: a Kubernetes Deployment is not a rate-limit config",
        ),
        (
            "kind: ConfigMap\nmetadata: {name: x}\n",
            "cfg.yaml: data: a ConfigMap needs a `data` mapping",
        ),
    ];
    for (yaml, expected) in cases {
        let got = error_of(yaml);
        assert!(
            got.starts_with(expected),
            "for\n{yaml}\nexpected: {expected}\n     got: {got}"
        );
    }
}

#[test]
fn every_error_is_reported_with_its_document() {
    let yaml = "domain: a\ndescriptors:\n  - key: x\n    rate_limit: {unit: week, requests_per_unit: 1}\n---\ndomain: b\nbogus: 1\n";
    let err = Config::from_yaml("multi.yaml", yaml).expect_err("refused");
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "multi.yaml document 1: descriptors[0].rate_limit.unit: invalid unit 'week'"
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("multi.yaml document 2: bogus: unknown field"),
        "{lines:?}"
    );
}

#[test]
fn config_map_data_errors_name_the_data_key() {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rl}\ndata:\n  config.yaml: |\n    domain: d\n    descriptors:\n      - key: k\n        rate_limit: {unit: MINUTE, requests_per_unit: x}\n";
    let got = error_of(yaml);
    assert_eq!(
        got,
        "cfg.yaml data[config.yaml]: descriptors[0].rate_limit.requests_per_unit: must be an integer from 0 to 4294967295"
    );
}

#[test]
fn invalid_yaml_is_refused_with_the_file() {
    let got = error_of("domain: d\ndescriptors: [\n");
    assert!(got.starts_with("cfg.yaml: invalid YAML:"), "{got}");
    let got = error_of("domain: d\ndomain: e\n");
    assert!(
        got.starts_with("cfg.yaml: invalid YAML:") && got.contains("duplicate"),
        "{got}"
    );
}

const TREE: &str = r#"
domain: test
descriptors:
  - key: client
    value: gold
    rate_limit: {unit: second, requests_per_unit: 100}
  - key: client
    rate_limit: {unit: Second, requests_per_unit: 10}
  - key: path
    value: /api/*
    rate_limit: {unit: minute, requests_per_unit: 7, name: api}
  - key: remote
    descriptors:
      - key: path
        value: /admin
        rate_limit: {unit: hour, requests_per_unit: 1}
      - key: path
        rate_limit: {unit: DAY, requests_per_unit: 2}
  - key: vip
    rate_limit: {unlimited: true}
  - key: shadow
    shadow_mode: true
    detailed_metric: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: parent
    rate_limit: {unit: hour, requests_per_unit: 3}
"#;

/// (entries, expected full key of the deciding node, or None for no limit)
type Entries = &'static [(&'static str, &'static str)];

const MATCHING: &[(Entries, Option<&str>)] = &[
    // key+value takes precedence over key-only
    (&[("client", "gold")], Some("test.client_gold")),
    // key-only matches any other value
    (&[("client", "silver")], Some("test.client")),
    // wildcard value
    (&[("path", "/api/users")], Some("test.path_/api/*")),
    (&[("path", "/other")], None),
    // nested: the node matched by the last entry decides
    (
        &[("remote", "1.2.3.4"), ("path", "/admin")],
        Some("test.remote.path_/admin"),
    ),
    (
        &[("remote", "1.2.3.4"), ("path", "/x")],
        Some("test.remote.path"),
    ),
    // a node without rate_limit decides nothing
    (&[("remote", "1.2.3.4")], None),
    // a request deeper than the config is not limited (as the Go service)
    (&[("parent", "p"), ("child", "c")], None),
    (&[("client", "gold"), ("extra", "e")], None),
    // order matters: entries walk the tree
    (&[("path", "/admin"), ("remote", "1.2.3.4")], None),
    (&[("unknown", "x")], None),
    (&[], None),
    (&[("vip", "anyone")], Some("test.vip")),
];

#[test]
fn matching_semantics_table() {
    let config = Config::from_yaml("tree.yaml", TREE).expect("valid");
    for (entries, expected) in MATCHING {
        let got = match config.lookup("test", entries) {
            Lookup::Limited(l) => Some(l.full_key.as_str()),
            Lookup::NoLimit => None,
            Lookup::UnknownDomain => panic!("domain is known"),
        };
        assert_eq!(got, *expected, "entries {entries:?}");
    }
    assert_eq!(
        config.lookup("other", &[("client", "gold")]),
        Lookup::UnknownDomain
    );
    let Lookup::Limited(l) = config.lookup("test", &[("vip", "x")]) else {
        panic!("vip")
    };
    assert!(l.unlimited);
    let Lookup::Limited(l) = config.lookup("test", &[("path", "/api/v")]) else {
        panic!("api")
    };
    assert_eq!(
        (l.name.as_str(), l.requests_per_unit, l.unit),
        ("api", 7, Some(Unit::Minute))
    );
    let Lookup::Limited(l) = config.lookup("test", &[("shadow", "s")]) else {
        panic!("shadow")
    };
    assert!(l.shadow_mode && l.detailed_metric);
    let dump = config.dump();
    assert!(dump.contains("test.remote.path_/admin: 1/hour\n"), "{dump}");
    assert!(dump.contains("test.vip: unlimited\n"), "{dump}");
}

#[test]
fn numeric_values_are_text_and_comment_only_documents_are_skipped() {
    let yaml = "# header\n---\n# only a comment\n---\ndomain: n\ndescriptors:\n  - key: code\n    value: 200\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
    let config = Config::from_yaml("n.yaml", yaml).expect("valid");
    assert!(matches!(
        config.lookup("n", &[("code", "200")]),
        Lookup::Limited(_)
    ));
}
