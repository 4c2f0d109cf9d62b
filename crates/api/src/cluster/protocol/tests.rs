//! `typed_extension_protocol_options`: accepted settings (static bootstrap and CDS), defaults,
//! and refusals by path.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as cl;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use meta_config::Cluster;
use prost::Message;

use super::{HTTP_PROTOCOL_OPTIONS, TCP_PROTOCOL_OPTIONS};
use crate::{Format, cluster_from_proto, parse_bootstrap};

const DOC: &str = "
static_resources:
  clusters:
  - name: c1
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9091}}}
";

const HTTP: &str = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TCP: &str = "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions";
const BASE: &str = "static_resources.clusters[0].typed_extension_protocol_options";

/// The cluster of DOC with `options` (YAML lines under `typed_extension_protocol_options:`).
fn parse(options: &str) -> Result<Cluster, String> {
    let text = if options.is_empty() {
        DOC.to_owned()
    } else {
        format!("{DOC}    typed_extension_protocol_options:\n{options}")
    };
    parse_bootstrap(&text, Format::Yaml)
        .map(|b| b.clusters[0].clone())
        .map_err(|e| e.to_string())
}

fn http(common: &str) -> String {
    format!(
        "      {HTTP_PROTOCOL_OPTIONS}:\n        \"@type\": {HTTP}\n        \
         common_http_protocol_options: {common}\n"
    )
}

fn tcp(idle: &str) -> String {
    format!(
        "      {TCP_PROTOCOL_OPTIONS}:\n        \"@type\": {TCP}\n        idle_timeout: {idle}\n"
    )
}

#[test]
fn defaults_without_options() {
    let c = parse("").unwrap();
    assert_eq!(c.max_requests_per_connection, None);
    assert_eq!(c.idle_timeout, Some(Cluster::DEFAULT_IDLE_TIMEOUT));
}

#[test]
fn http_options_set_both() {
    let c = parse(&http(
        "{max_requests_per_connection: 3, idle_timeout: 2.5s}",
    ))
    .unwrap();
    assert_eq!(c.max_requests_per_connection, Some(3));
    assert_eq!(c.idle_timeout, Some(Duration::from_millis(2500)));
    // Envoy's meanings of 0: no request limit, no idle timeout.
    let c = parse(&http("{max_requests_per_connection: 0, idle_timeout: 0s}")).unwrap();
    assert_eq!(c.max_requests_per_connection, None);
    assert_eq!(c.idle_timeout, None);
    // Only the request limit: the idle timeout keeps its default.
    let c = parse(&http("{max_requests_per_connection: 1}")).unwrap();
    assert_eq!(c.max_requests_per_connection, Some(1));
    assert_eq!(c.idle_timeout, Some(Cluster::DEFAULT_IDLE_TIMEOUT));
}

#[test]
fn tcp_options_set_the_idle_timeout() {
    let c = parse(&tcp("600s")).unwrap();
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.max_requests_per_connection, None);
    let both = format!("{}{}", http("{max_requests_per_connection: 2}"), tcp("3s"));
    let c = parse(&both).unwrap();
    assert_eq!(
        (c.max_requests_per_connection, c.idle_timeout),
        (Some(2), Some(Duration::from_secs(3)))
    );
}

#[test]
fn refusals_name_the_field() {
    let h = format!("{BASE}[{HTTP_PROTOCOL_OPTIONS}]");
    let t = format!("{BASE}[{TCP_PROTOCOL_OPTIONS}]");
    for (options, want) in [
        (
            http("{max_connection_duration: 5s}"),
            format!("{h}.common_http_protocol_options.max_connection_duration: not supported"),
        ),
        (
            format!(
                "{}        explicit_http_config: {{http2_protocol_options: {{}}}}\n",
                http("{}")
            ),
            format!("{h}.explicit_http_config: not supported"),
        ),
        (
            format!("{}{}", http("{idle_timeout: 1s}"), tcp("2s")),
            format!(
                "{t}.idle_timeout: also set at {h}.common_http_protocol_options.idle_timeout: \
                 give the idle timeout once"
            ),
        ),
        (
            format!("      envoy.extensions.upstreams.tcp.v3.Other:\n        \"@type\": {TCP}\n"),
            format!(
                "{BASE}[envoy.extensions.upstreams.tcp.v3.Other]: not supported (only \
                 {HTTP_PROTOCOL_OPTIONS} and {TCP_PROTOCOL_OPTIONS} are read)"
            ),
        ),
        (
            format!("      {HTTP_PROTOCOL_OPTIONS}:\n        \"@type\": {TCP}\n"),
            format!("{h}: key {HTTP_PROTOCOL_OPTIONS} needs {HTTP}, got '{TCP}'"),
        ),
        (
            tcp("-1s"),
            format!("{t}.idle_timeout: must not be negative"),
        ),
    ] {
        assert_eq!(parse(&options).unwrap_err(), want, "{options}");
    }
}

#[test]
fn cds_carries_http_options() {
    let options = HttpProtocolOptions {
        common_http_protocol_options: Some(core::HttpProtocolOptions {
            max_requests_per_connection: Some(UInt32Value { value: 2 }),
            idle_timeout: Some(PbDuration {
                seconds: 30,
                nanos: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = cl::Cluster {
        name: "c".into(),
        ..Default::default()
    };
    c.typed_extension_protocol_options.insert(
        HTTP_PROTOCOL_OPTIONS.into(),
        Any {
            type_url: HTTP.into(),
            value: options.encode_to_vec(),
        },
    );
    let conv = cluster_from_proto(&c, "cds[c]").unwrap();
    assert_eq!(conv.max_requests_per_connection, Some(2));
    assert_eq!(conv.idle_timeout, Some(Duration::from_secs(30)));

    let mut with_h2 = options;
    with_h2.upstream_protocol_options = Some(
        envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(Default::default()),
    );
    c.typed_extension_protocol_options.insert(
        HTTP_PROTOCOL_OPTIONS.into(),
        Any {
            type_url: HTTP.into(),
            value: with_h2.encode_to_vec(),
        },
    );
    assert_eq!(
        cluster_from_proto(&c, "cds[c]").unwrap_err().to_string(),
        format!(
            "cds[c].typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS}].\
             use_downstream_protocol_config: not supported"
        )
    );
}
