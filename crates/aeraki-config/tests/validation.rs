//! Validation rules, each with the exact message a user sees.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use aeraki_config::load_str;

const SE: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dubbo, namespace: meta}
spec:
  hosts: [org.apache.dubbo.demo]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
"#;

fn router(spec: &str) -> String {
    format!(
        "{SE}---\napiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {{name: route, namespace: meta}}\nspec:\n{spec}"
    )
}

/// Errors of a config that must be refused, one string per error.
fn errors(yaml: &str) -> Vec<String> {
    match load_str("t.yaml", yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    match load_str("t.yaml", yaml) {
        Ok(l) => l.warnings,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

const MR: &str = "t.yaml: document 2 (MetaRouter meta/route)";

#[test]
fn weights_must_sum_to_100_with_several_destinations() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route:
    - {destination: {host: org.apache.dubbo.demo, subset: v1}, weight: 20}
    - {destination: {host: org.apache.dubbo.demo, subset: v2}, weight: 70}
",
    );
    assert_eq!(
        errors(&yaml),
        [format!(
            "{MR}: spec.routes[0].route: weights sum to 90, must be 100"
        )]
    );
}

#[test]
fn every_error_is_reported_in_one_pass() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo, other.demo]
  routes:
  - match: {attributes: {method: {regex: '('}, '': {exact: x}}}
    route:
    - {destination: {host: Bad_Host, subset: v_1, port: {number: 0}}, weight: 101}
    mirrorPercentage: {value: 50}
    requestMutation: [{key: '', value: v}, {key: k, value: ''}]
  exportTo: ['*', meta]
",
    );
    let e = errors(&yaml);
    let expected = [
        "spec.hosts: exactly one host is required, found 2",
        "spec.exportTo[0]: \"*\" must be the only entry",
        "spec.routes[0].match.attributes: attribute name must not be empty",
        "spec.routes[0].match.attributes.method.regex: invalid regex \"(\": error: unclosed group",
        "spec.routes[0].route[0].weight: weight 101 must be between 0 and 100",
        "spec.routes[0].route[0].destination.host: \"Bad_Host\" is not a valid FQDN: label \"Bad_Host\" is not a DNS-1123 label",
        "spec.routes[0].route[0].destination.subset: \"v_1\" is not a valid subset name (a DNS-1123 label)",
        "spec.routes[0].route[0].destination.port.number: port number 0 is out of range 1-65535",
        "spec.routes[0].mirrorPercentage: mirrorPercentage requires mirror",
        "spec.routes[0].requestMutation[0].key: must not be empty",
        "spec.routes[0].requestMutation[1].value: must not be empty",
    ];
    let expected: Vec<String> = expected.iter().map(|m| format!("{MR}: {m}")).collect();
    assert_eq!(e, expected);
}

#[test]
fn host_routes_and_attributes() {
    let e = errors(&router("  hosts: []\n"));
    assert_eq!(
        e,
        [
            format!("{MR}: spec.hosts: exactly one host is required, found none"),
            format!(
                "{MR}: spec: at least one of routes, localRateLimit or globalRateLimit is required"
            ),
        ]
    );
    let e = errors(&router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - match: {attributes: {method: {exact: a, prefix: b}, iface: {regex: ''}}}
    route: []
",
    ));
    assert_eq!(
        e,
        [
            format!("{MR}: spec.routes[0].match.attributes.iface.regex: regex must not be empty"),
            format!(
                "{MR}: spec.routes[0].match.attributes.method: only one of exact, prefix, regex may be set"
            ),
            format!("{MR}: spec.routes[0].route: at least one destination is required"),
        ]
    );
}

#[test]
fn mirror_percentage_range() {
    for (v, shown) in [("0", "0"), ("100.5", "100.5")] {
        let yaml = router(&format!(
            "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{{destination: {{host: org.apache.dubbo.demo}}}}]
    mirror: {{host: org.apache.dubbo.demo}}
    mirrorPercentage: {{value: {v}}}
"
        ));
        assert_eq!(
            errors(&yaml),
            [format!(
                "{MR}: spec.routes[0].mirrorPercentage.value: {shown} must be in (0, 100]"
            )]
        );
    }
}

#[test]
fn unreachable_catch_all_is_a_warning() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - name: all
    route: [{destination: {host: org.apache.dubbo.demo}}]
  - name: never
    match: {attributes: {method: {exact: sayHello}}}
    route: [{destination: {host: org.apache.dubbo.demo}}]
",
    );
    assert_eq!(
        warnings(&yaml),
        [format!(
            "{MR}: spec.routes[0]: MetaRouterUnreachableRule: this route matches every request, so the 1 route(s) after it are unreachable"
        )]
    );
}

#[test]
fn rate_limits_must_be_complete() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  localRateLimit:
    tokenBucket: {maxTokens: 0, fillInterval: 1s}
    conditions:
    - tokenBucket: {maxTokens: 1, tokensPerFill: '2', fillInterval: 0s}
    - match: {attributes: {method: {exact: a}}}
  globalRateLimit:
    descriptors: [{property: '', descriptorKey: k}]
",
    );
    let p = "spec.localRateLimit";
    let g = "spec.globalRateLimit";
    let expected = [
        format!("{p}.tokenBucket.maxTokens: 0 must be at least 1"),
        format!("{p}.tokenBucket.tokensPerFill: required (at least 1)"),
        format!("{p}.conditions[0].match: required"),
        format!("{p}.conditions[0].tokenBucket.fillInterval: must be greater than 0"),
        format!("{p}.conditions[1].tokenBucket: required"),
        format!("{g}.domain: required"),
        format!("{g}.rateLimitService: required"),
        format!("{g}.descriptors[0].property: required"),
    ];
    let expected: Vec<String> = expected.iter().map(|m| format!("{MR}: {m}")).collect();
    assert_eq!(errors(&yaml), expected);
    let e = errors(&router(
        "  hosts: [org.apache.dubbo.demo]\n  localRateLimit: {}\n  globalRateLimit: {domain: d, rateLimitService: c}\n",
    ));
    assert_eq!(
        e,
        [
            format!(
                "{MR}: spec.localRateLimit: a tokenBucket or at least one condition is required"
            ),
            format!("{MR}: spec.globalRateLimit.descriptors: at least one descriptor is required"),
        ]
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{destination: {host: org.apache.dubbo.demo}, wieght: 100}]
",
    );
    assert_eq!(
        errors(&yaml),
        [format!(
            "{MR}: spec.routes[0].route[0].wieght: unknown field `wieght`, expected `destination` or `weight`"
        )]
    );
}

#[test]
fn service_entry_basics() {
    let yaml = r#"
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: ["*.demo"]
  addresses: [10.0.0.0/24, not-an-ip]
  ports:
  - {number: 0, name: tcp-metaprotocol-dubbo}
  - {number: 70000, name: tcp-metaprotocol-dubbo, protocol: FOO}
  - {number: 9000, name: tcp-metaprotocol-brpc}
  - {number: 9001, name: tcp-metaprotocol}
  resolution: STATIC
  endpoints:
  - {address: example.com, ports: {http: 80}}
  workloadSelector: {labels: {app: x}}
"#;
    let p = "t.yaml: document 1 (ServiceEntry default/se)";
    let expected = [
        "spec.ports[0].number: port number 0 is out of range 1-65535",
        "spec.ports[1].number: port number 70000 is out of range 1-65535",
        "spec.ports[1].name: port name \"tcp-metaprotocol-dubbo\" is used twice",
        "spec.ports[1].protocol: unsupported protocol \"FOO\"",
        "spec.ports[2].name: port name \"tcp-metaprotocol-brpc\": unknown application protocol \"brpc\" (known: dubbo, thrift); declare it with an ApplicationProtocol",
        "spec.ports[3].name: port name \"tcp-metaprotocol\" names no application protocol: expected tcp-metaprotocol-<protocol>[-suffix], e.g. tcp-metaprotocol-dubbo",
        "spec.hosts[0]: wildcard host \"*.demo\" cannot serve Dubbo/Thrift/Redis/MetaProtocol ports",
        "spec.addresses[0]: CIDR address \"10.0.0.0/24\" is not supported: a listener needs one IP",
        "spec.addresses[1]: \"not-an-ip\" is not an IP address or CIDR range",
        "spec.workloadSelector: cannot be set together with endpoints",
        "spec.endpoints[0].address: \"example.com\" is not an IP address (resolution STATIC needs IPs)",
        "spec.endpoints[0].ports.http: \"http\" is not the name of a declared port",
    ];
    let expected: Vec<String> = expected.iter().map(|m| format!("{p}: {m}")).collect();
    assert_eq!(errors(yaml), expected);

    let none = SE.replace("resolution: STATIC", "resolution: NONE");
    assert_eq!(
        errors(&none),
        [
            "t.yaml: document 1 (ServiceEntry meta/dubbo): spec.endpoints: no endpoints should be provided for resolution NONE"
        ]
    );
    let bad = SE.replace("resolution: STATIC", "resolution: DYNAMIC");
    assert_eq!(
        errors(&bad),
        [
            "t.yaml: document 1 (ServiceEntry meta/dubbo): spec.resolution: unknown resolution \"DYNAMIC\" (expected NONE, STATIC, DNS or DNS_ROUND_ROBIN)"
        ]
    );
}

#[test]
fn application_protocols_extend_the_registry() {
    let ap = "apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: ApplicationProtocol\nmetadata: {name: brpc, namespace: istio-system}\nspec: {protocol: brpc, codec: aeraki.meta_protocol.codec.brpc}\n";
    let se = SE.replace("tcp-metaprotocol-dubbo", "tcp-metaprotocol-brpc-x");
    let loaded = load_str("t.yaml", &format!("{ap}---\n{se}")).unwrap();
    assert_eq!(
        loaded.view.services[0].protocol,
        aeraki_model::Protocol::MetaProtocol {
            application: "brpc".into(),
            codec: "aeraki.meta_protocol.codec.brpc".into()
        }
    );
    let conflict = ap
        .replace("name: brpc,", "name: brpc2,")
        .replace("codec.brpc", "codec.other");
    assert_eq!(
        errors(&format!("{ap}---\n{conflict}")),
        [
            "t.yaml: document 2 (ApplicationProtocol brpc2): spec.protocol: protocol \"brpc\" is already declared with another codec by ApplicationProtocol brpc (t.yaml: document 1)"
        ]
    );
    let upper = ap.replace("protocol: brpc", "protocol: bRPC");
    assert_eq!(
        errors(&upper),
        [
            "t.yaml: document 1 (ApplicationProtocol brpc): spec.protocol: \"bRPC\" must be lowercase letters and digits: it is matched against the lowercased third token of port names (tcp-metaprotocol-<protocol>)"
        ]
    );
}

#[test]
fn destination_rule_basics() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: meta}
spec:
  host: org.apache.dubbo.demo
  workloadSelector: {matchLabels: {app: a}}
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
    tls: {mode: SIMPLE}
    outlierDetection: {maxEjectionPercent: 150}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
  - {name: V_2}
  - name: ch
    trafficPolicy:
      loadBalancer: {simple: RANDOM, consistentHash: {httpHeaderName: method}}
  - name: ch2
    trafficPolicy:
      loadBalancer: {consistentHash: {useSourceIp: true}}
"#;
    let p = "t.yaml: document 1 (DestinationRule meta/dr)";
    let tp = "spec.trafficPolicy";
    let expected = [
        "spec.workloadSelector: not supported: client workloads are not distinguished in file mode".to_owned(),
        format!("{tp}.tls.mode: TLS mode SIMPLE is not supported"),
        format!("{tp}.loadBalancer.simple: unknown load balancer \"FASTEST\" (expected ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH or UNSPECIFIED)"),
        format!("{tp}.outlierDetection.maxEjectionPercent: 150 must be between 0 and 100"),
        "spec.subsets[1].name: duplicate subset name \"v1\"".to_owned(),
        "spec.subsets[2].name: \"V_2\" is not a valid subset name (a DNS-1123 label)".to_owned(),
        "spec.subsets[3].trafficPolicy.loadBalancer: only one of simple and consistentHash may be set".to_owned(),
        "spec.subsets[4].trafficPolicy.loadBalancer.consistentHash.useSourceIp: not supported: MetaProtocol hashes on a metadata key named by httpHeaderName".to_owned(),
        "spec.subsets[4].trafficPolicy.loadBalancer.consistentHash.httpHeaderName: required: the metadata key to hash on (e.g. method)".to_owned(),
    ];
    let expected: Vec<String> = expected.iter().map(|m| format!("{p}: {m}")).collect();
    assert_eq!(errors(yaml), expected);
}

#[test]
fn documents_and_objects() {
    let e = errors(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 1, name: x}\n",
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.yaml: document 1: invalid YAML: "),
        "{}",
        e[0]
    );
    assert!(e[0].contains("line 5"), "{}", e[0]);

    let dup_key = "---\n# comment\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: a\n  host: b\n";
    let e = errors(dup_key);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("t.yaml: document 1: invalid YAML: "),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("duplicate mapping key") && e[0].contains("line 9"),
        "{}",
        e[0]
    );

    assert_eq!(
        errors("apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: a}\n"),
        [
            "t.yaml: document 1: apiVersion: unsupported version \"networking.istio.io/v2\" for ServiceEntry (expected v1alpha3, v1beta1 or v1)"
        ]
    );
    assert_eq!(
        errors("kind: ServiceEntry\n"),
        ["t.yaml: document 1: apiVersion: required"]
    );
    assert_eq!(
        errors("- a\n- b\n"),
        ["t.yaml: document 1: expected a Kubernetes object (a mapping), found a list"]
    );
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n";
    assert_eq!(
        errors(&format!("{dr}---\n{dr}")),
        [
            "t.yaml: document 2 (DestinationRule default/a): metadata.name: duplicate object: t.yaml: document 1 already defines it"
        ]
    );
    assert_eq!(
        errors(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {namespace: x}\nspec: {host: a}\nextra: 1\n"
        ),
        [
            "t.yaml: document 1: metadata.name: required",
            "t.yaml: document 1: extra: unknown field `extra`",
        ]
    );
}

#[test]
fn virtual_services_on_our_hosts() {
    let vs = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs, namespace: meta}\nspec:\n  hosts: [org.apache.dubbo.demo]\n  http: [{route: [{destination: {host: org.apache.dubbo.demo}}]}]\n";
    assert_eq!(
        warnings(&format!("{SE}---\n{vs}")),
        [
            "t.yaml: document 2 (VirtualService meta/vs): spec.hosts[0]: ignored for MetaProtocol port 20880 of org.apache.dubbo.demo, as Aeraki does: route with a MetaRouter"
        ]
    );
    let native = SE.replace("tcp-metaprotocol-dubbo", "tcp-dubbo");
    assert_eq!(
        errors(&format!("{native}---\n{vs}")),
        [
            "t.yaml: document 2 (VirtualService meta/vs): spec.hosts[0]: VirtualService routing of the native tcp-dubbo port 20880 of org.apache.dubbo.demo is not supported yet; use a tcp-metaprotocol-* port and a MetaRouter"
        ]
    );
}

#[test]
fn skipped_kinds_are_counted() {
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {whatever: 1}\n---\ndomain: production\n";
    let l = load_str("t.yaml", yaml).unwrap();
    assert!(l.view.services.is_empty());
    assert_eq!(l.stats.skipped.get("apps/v1/Deployment"), Some(&1));
    assert_eq!(l.stats.skipped.get("(not a Kubernetes object)"), Some(&1));
}

#[test]
fn route_policies_are_parsed_into_the_view() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - name: r
    route: [{destination: {host: org.apache.dubbo.demo}}]
    timeout: 2s
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: 'connect-failure, reset,status:SERVER_TIMEOUT'}
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 50}}
      abort: {percentage: {value: 10}, errorCode: OVER_LIMIT}
",
    );
    let l = load_str("t.yaml", &yaml).unwrap();
    let r = &l.view.services[0].router.as_ref().unwrap().routes[0];
    assert_eq!(r.timeout, Some(std::time::Duration::from_secs(2)));
    let retries = r.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 2);
    assert_eq!(
        retries.per_try_timeout,
        Some(std::time::Duration::from_millis(500))
    );
    assert_eq!(
        retries.retry_on,
        "connect-failure,reset,status:SERVER_TIMEOUT"
    );
    let f = r.fault.as_ref().unwrap();
    assert_eq!(f.delay.as_ref().unwrap().percentage, 50.0);
    let abort = f.abort.as_ref().unwrap();
    assert_eq!(abort.error_code, aeraki_model::AbortCode::OverLimit);
    assert_eq!(abort.error_code.http_status(), 429);
    // Defaults: retryOn, percentages 100, UNSPECIFIED; attempts 0 means no retry policy.
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    retries: {attempts: 1}
    fault: {abort: {}}
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    retries: {attempts: 0}
",
    );
    let l = load_str("t.yaml", &yaml).unwrap();
    let routes = &l.view.services[0].router.as_ref().unwrap().routes;
    assert_eq!(
        routes[0].retries.as_ref().unwrap().retry_on,
        "connect-failure,refused-stream"
    );
    let abort = routes[0].fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!(abort.percentage, 100.0);
    assert_eq!(abort.error_code, aeraki_model::AbortCode::Unspecified);
    assert_eq!(routes[0].timeout, None);
    assert_eq!(routes[1].retries, None);
}

#[test]
fn route_policy_errors_name_their_field() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    timeout: 1s
    retries: {attempts: -1, perTryTimeout: 2s, retryOn: 'reset,foo,,status:'}
    fault:
      delay: {fixedDelay: 0s, percentage: {value: 101}}
      abort: {percentage: {value: -1}, errorCode: NOPE}
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    retries: {perTryTimeout: 20s}
    fault: {}
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    retries: {attempts: 1, perTryTimeout: 20s}
    timeout: 0s
    fault: {delay: {}}
",
    );
    let known = "connect-failure, refused-stream, reset, gateway-error, 5xx, error-response, status:<VALUE>";
    let r0 = "spec.routes[0]";
    let r1 = "spec.routes[1]";
    let r2 = "spec.routes[2]";
    let expected = [
        format!("{r0}.retries.attempts: -1 must be between 0 and 4294967295"),
        format!("{r0}.retries.perTryTimeout: 2s is longer than the route timeout 1s"),
        format!("{r0}.retries.retryOn: unknown token 'foo' (known: {known})"),
        format!("{r0}.retries.retryOn: empty token in \"reset,foo,,status:\""),
        format!("{r0}.retries.retryOn: unknown token 'status:' (known: {known})"),
        format!("{r0}.fault.delay.fixedDelay: must be greater than 0"),
        format!("{r0}.fault.delay.percentage.value: 101 must be in [0, 100]"),
        format!(
            "{r0}.fault.abort.errorCode: unknown error code \"NOPE\" (known: UNSPECIFIED, OVER_LIMIT, TIMEOUT, UPSTREAM_RESET, ROUTE_NOT_FOUND, BAD_REQUEST)"
        ),
        format!("{r0}.fault.abort.percentage.value: -1 must be in [0, 100]"),
        format!("{r1}.retries.attempts: required (0 disables retries)"),
        format!("{r1}.retries.perTryTimeout: 20s is longer than the route timeout 15s (default)"),
        format!("{r1}.fault: a delay or an abort is required"),
        format!("{r2}.fault.delay.fixedDelay: required"),
    ];
    let expected: Vec<String> = expected.iter().map(|m| format!("{MR}: {m}")).collect();
    assert_eq!(errors(&yaml), expected);
    // Unknown fields and bad durations inside the new objects are refused with their path.
    let e = errors(&router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    retries: {attempts: 1, retryon: reset}
",
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "{MR}: spec.routes[0].retries.retryon: unknown field `retryon`"
        )),
        "{e:?}"
    );
    let e = errors(&router(
        "  hosts: [org.apache.dubbo.demo]
  routes:
  - route: [{destination: {host: org.apache.dubbo.demo}}]
    timeout: soon
",
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "{MR}: spec.routes[0].timeout: invalid duration \"soon\""
        )),
        "{e:?}"
    );
}

#[test]
fn local_rate_limit_fill_interval_is_at_least_50ms() {
    let yaml = router(
        "  hosts: [org.apache.dubbo.demo]
  localRateLimit:
    tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 49ms}
    conditions:
    - match: {attributes: {method: {exact: a}}}
      tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 50ms}
",
    );
    assert_eq!(
        errors(&yaml),
        [format!(
            "{MR}: spec.localRateLimit.tokenBucket.fillInterval: local rate limit token bucket fill timer must be >= 50ms (got 49ms)"
        )]
    );
}
