//! Compiles our Aeraki protos plus the Envoy bootstrap protos shipped inside the `envoy-types`
//! package into one descriptor set (embedded for prost-reflect), and generates prost types for
//! the Aeraki messages only (Envoy/Google types map to `envoy-types` / `prost-types`).
//! No `protoc` binary is needed: `protox` parses the files.

use std::path::PathBuf;
use std::process::Command;

/// Envoy protos whose messages must be in the reflection pool (imports come along).
const ENVOY_ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/config/trace/v3/zipkin.proto",
    // Translation output of the control plane (aeraki-translate renders these to JSON).
    "envoy/config/route/v3/route.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/filters/network/dubbo_proxy/v3/dubbo_proxy.proto",
    "envoy/extensions/filters/network/dubbo_proxy/router/v3/router.proto",
    "envoy/extensions/filters/network/thrift_proxy/v3/thrift_proxy.proto",
    "envoy/extensions/filters/network/thrift_proxy/router/v3/router.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    // Route fault injection and retry host predicate (MetaRoute `fault` and `retries`).
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    // gRPC clusters of the control plane's Envoy flavour (explicit HTTP/2 upstream).
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    // Upstream connection lifetime of a cluster (idle timeout of TCP-pooled clusters).
    "envoy/extensions/upstreams/tcp/v3/tcp_protocol_options.proto",
];

/// Our own protos (relative to `proto/`).
const OUR_ROOTS: &[&str] = &[
    "aeraki/meta_protocol_proxy/v1alpha/meta_protocol_proxy.proto",
    "aeraki/meta_protocol_proxy/config/route/v1alpha/route.proto",
    "aeraki/meta_protocol_proxy/filters/router/v1alpha/router.proto",
    "aeraki/meta_protocol_proxy/filters/local_ratelimit/v1alpha/local_ratelimit.proto",
    "aeraki/meta_protocol_proxy/filters/ratelimit/v1alpha/ratelimit.proto",
    "aeraki/meta_protocol_proxy/filters/metadata_exchange/v1alpha/metadata_exchange.proto",
    "aeraki/meta_protocol_proxy/filters/istio_stats/v1alpha/istio_stats.proto",
    "aeraki/meta_protocol/codec/codec.proto",
    "udpa/type/v1/typed_struct.proto",
    "xds/type/v3/typed_struct.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ours = manifest.join("proto");
    let envoy = envoy_types_proto_dir(&manifest)?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ENVOY_TYPES_PROTO_DIR");

    let mut includes = vec![ours.clone()];
    for sub in [
        "data-plane-api",
        "xds",
        "protoc-gen-validate",
        "googleapis",
        "cel-spec",
        "opentelemetry-proto",
        "client_model",
    ] {
        includes.push(envoy.join(sub));
    }
    let mut files: Vec<&str> = OUR_ROOTS.to_vec();
    files.extend_from_slice(ENVOY_ROOTS);
    let fds = protox::compile(&files, &includes)?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor_set.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    // Generate only the aeraki packages; everything else is external.
    let mut config = prost_build::Config::new();
    config
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .extern_path(".xds", "::envoy_types::pb::xds")
        .extern_path(".udpa", "::envoy_types::pb::udpa")
        .extern_path(".validate", "::envoy_types::pb::validate")
        // Same well-known types as envoy-types uses, so values move freely between the two.
        // (`compile_well_known_types` only turns off prost-build's default prost_types mapping.)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::envoy_types::pb::google::protobuf");
    // prost-build needs every dependency in the set to analyse derives, and then writes a
    // module per package; only the `aeraki.*` ones are included by `src/pb.rs`.
    let gen_dir = out.join("prost");
    std::fs::create_dir_all(&gen_dir)?;
    config.out_dir(&gen_dir);
    config.compile_fds(fds)?;
    Ok(())
}

/// Finds the `proto/` folder shipped inside the `envoy-types` package this build resolved,
/// via `cargo metadata` (offline, using the same cargo that runs this build).
fn envoy_types_proto_dir(
    manifest: &std::path::Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Ok(dir) = std::env::var("ENVOY_TYPES_PROTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var("TARGET")?;
    // Filtering by platform keeps cargo from needing (downloading) other platforms' crates.
    let metadata = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ]);
        if offline {
            cmd.arg("--offline");
        }
        cmd.arg("--manifest-path")
            .arg(manifest.join("Cargo.toml"))
            .output()
    };
    let mut output = metadata(true)?;
    if !output.status.success() {
        output = metadata(false)?;
    }
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    for p in packages {
        if p["name"] == "envoy-types" {
            let path = p["manifest_path"].as_str().ok_or("no manifest_path")?;
            let dir = PathBuf::from(path)
                .parent()
                .ok_or("manifest has no parent")?
                .join("proto");
            return Ok(dir);
        }
    }
    Err("envoy-types not found in cargo metadata".into())
}
