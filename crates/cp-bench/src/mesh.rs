//! The generated mesh: `n` services as Istio/Aeraki YAML, one text for
//! [`aeraki_config::load_str`].
//!
//! Service `i`: host `svc-<i>.bench.svc.cluster.local`, VIP `10.<a>.<b>.<c>`, port 20880
//! (`tcp-metaprotocol-dubbo`, even `i`) or 9090 (`tcp-metaprotocol-thrift`, odd `i`), 2–4 static
//! endpoints labelled `version: v1|v2`; a DestinationRule with subsets v1 and v2; a MetaRouter
//! with 2–3 routes: `method` exact match with a weighted v1/v2 split, (for every other service)
//! an `interface` exact match to v2, and a catch-all to v1.

use std::fmt::Write as _;

/// The one edit the benchmark makes: route 0 of this service's MetaRouter gets these weights.
pub const EDITED_WEIGHTS: (u32, u32) = (30, 70);
/// Route 0's weights before the edit.
pub const ORIGINAL_WEIGHTS: (u32, u32) = (90, 10);

/// Host of service `i`.
pub fn host(i: usize) -> String {
    format!("svc-{i}.bench.svc.cluster.local")
}

/// Port of service `i`.
pub fn port(i: usize) -> u16 {
    if i.is_multiple_of(2) { 20880 } else { 9090 }
}

fn port_name(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "tcp-metaprotocol-dubbo"
    } else {
        "tcp-metaprotocol-thrift"
    }
}

/// `10.x.y.z` for service `i` (distinct for i < 2^24 - 2^16).
fn vip(i: usize) -> String {
    let n = i + 256; // skip 10.0.0.x
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// The whole mesh; `edited` is the service whose route 0 carries [`EDITED_WEIGHTS`].
pub fn mesh_yaml(services: usize, edited: Option<usize>) -> String {
    let mut out = String::with_capacity(services * 2200);
    for i in 0..services {
        service_yaml(&mut out, i, edited == Some(i));
    }
    out
}

fn service_yaml(out: &mut String, i: usize, edited: bool) {
    let (host, port, pname) = (host(i), port(i), port_name(i));
    let endpoints = 2 + i % 3;
    let _ = write!(
        out,
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n  name: svc-{i}\n  \
         namespace: bench\nspec:\n  hosts: [{host}]\n  addresses: [{vip}]\n  ports:\n  - number: {port}\n    \
         name: {pname}\n    protocol: TCP\n  resolution: STATIC\n  endpoints:\n",
        vip = vip(i)
    );
    for e in 0..endpoints {
        let _ = write!(
            out,
            "  - address: 172.16.{}.{}\n    ports:\n      {pname}: {}\n    labels:\n      version: v{}\n",
            (i >> 8) & 255,
            i & 255,
            20000 + e,
            1 + e % 2
        );
    }
    let _ = write!(
        out,
        "---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: svc-{i}\n  \
         namespace: bench\nspec:\n  host: {host}\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  \
         - name: v2\n    labels:\n      version: v2\n---\n"
    );
    let (w1, w2) = if edited {
        EDITED_WEIGHTS
    } else {
        ORIGINAL_WEIGHTS
    };
    let _ = write!(
        out,
        "apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata:\n  name: svc-{i}\n  \
         namespace: bench\nspec:\n  hosts: [{host}]\n  routes:\n  - name: by-method\n    match:\n      \
         attributes:\n        method:\n          exact: sayHello\n    route:\n    - destination:\n        \
         host: {host}\n        subset: v1\n      weight: {w1}\n    - destination:\n        host: {host}\n        \
         subset: v2\n      weight: {w2}\n"
    );
    if i % 2 == 1 {
        let _ = write!(
            out,
            "  - name: by-interface\n    match:\n      attributes:\n        interface:\n          \
             exact: bench.Iface{i}\n    route:\n    - destination:\n        host: {host}\n        subset: v2\n"
        );
    }
    let _ = write!(
        out,
        "  - name: default\n    route:\n    - destination:\n        host: {host}\n        subset: v1\n---\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_mesh_loads_and_resolves() {
        let loaded = aeraki_config::load_str("gen.yaml", &mesh_yaml(6, Some(3)))
            .unwrap_or_else(|e| panic!("generated mesh refused: {e}"));
        assert_eq!(loaded.view.services.len(), 6);
        let svc = &loaded.view.services.iter().find(|s| s.host == host(3));
        let router = svc.and_then(|s| s.router.as_ref());
        assert_eq!(router.map(|r| r.routes.len()), Some(3));
        assert_eq!(
            router.map(|r| r.routes[0]
                .destinations
                .iter()
                .map(|d| d.weight)
                .collect::<Vec<_>>()),
            Some(vec![EDITED_WEIGHTS.0, EDITED_WEIGHTS.1])
        );
    }
}
