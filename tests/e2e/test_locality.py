"""End to end: locality failover from a DestinationRule `localityLbSetting` through `aeraki serve` →
ADS → meta-proxy (bootstrap node.locality r1/z1), with real thriftpy2 providers in several
localities (ServiceEntry endpoints[].locality).

meta-proxy computes each endpoint's priority itself from its own locality (Istio's order: same
region+zone+sub-zone, same region+zone, same region, failover regions, anything else); outlier
detection (consecutiveGatewayErrors 1) ejects a killed provider and the existing priority failover
moves traffic to the next level.

(a) providers r1/z1, r1/z2, r2/z1: every call lands on r1/z1; kill it → r1/z2; kill that → r2/z1.
(b) failover [{from: r1, to: r3}] with providers r1/z1, r2/z1, r3/z1: kill r1/z1 → r3 (not r2).
/config_dump shows each endpoint's computed priority.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from cp_harness import (
    AdsProxy,
    ControlPlane,
    ThriftServer,
    meta_router,
    require_binaries,
    service_entry,
    thrift_call,
    version_of,
    wait_until,
    write_yaml,
)
from harness import free_port

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

HOST = "thrift-locality.e2e.svc.cluster.local"
NODE_LOCALITY = {"region": "r1", "zone": "z1"}


@contextlib.contextmanager
def mesh(tmp_path, servers: dict[str, ThriftServer], net: int, failover: list | None = None):
    """One Thrift service over `servers` ({"r1/z1": server}, each server named after its locality
    without the slash), a DestinationRule with outlier detection and localityLbSetting, a MetaRouter
    to the whole service, and meta-proxy in r1/z1; yields (vip, port, proxy, diag) once it answers."""
    d = tmp_path / "mesh"
    d.mkdir()
    vip, port = f"127.0.{net}.1", free_port()
    se = service_entry("thrift-locality", HOST, vip, port, "thrift",
                       {loc.replace("/", ""): s.port for loc, s in servers.items()})
    for ep, loc in zip(se["spec"]["endpoints"], servers):
        ep["locality"] = loc
    setting: dict = {"enabled": True}
    if failover:
        setting["failover"] = failover
    policy = {
        # maxEjectionPercent 100: every provider of a level may be ejected (Envoy's default 10 %
        # would stop at the first).
        "outlierDetection": {"consecutiveGatewayErrors": 1, "interval": "10s", "baseEjectionTime": "60s",
                             "maxEjectionPercent": 100},
        "loadBalancer": {"localityLbSetting": setting},
    }
    write_yaml(d / "mesh.yaml", [
        se,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "thrift-locality", "namespace": "e2e"},
            "spec": {"host": HOST, "trafficPolicy": policy},
        },
        meta_router("thrift-locality", HOST, [{"name": "all", "route": [{"destination": {"host": HOST}}]}]),
    ])
    with ControlPlane(d) as cp, AdsProxy(f"locality-{net}", cp.xds_port, locality=NODE_LOCALITY) as proxy:
        diag = lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]  # noqa: E731
        proxy.wait_listening(vip, port, cp=cp)
        wait_until(lambda: thrift_call(vip, port, timeout_ms=1000)[0], 10.0, "the service to answer",
                   details=diag)
        yield vip, port, proxy, diag


def priorities(proxy: AdsProxy, port: int) -> dict[int, int]:
    """{endpoint port: priority} of the service's cluster in /config_dump."""
    status, text = proxy.get("/config_dump")
    assert status == 200, text
    name = f"outbound|{port}||{HOST}"
    for c in json.loads(text)["clusters"]:
        if c["name"] == name:
            return {e["port"]: e["priority"] for e in c["endpoints"]}
    raise AssertionError(f"cluster {name} not in /config_dump")


def versions(vip: str, port: int, n: int, tag: str) -> list[str]:
    """The provider of each of n calls ("FAILED: ..." for a failed call)."""
    out = []
    for i in range(n):
        ok, text = thrift_call(vip, port, arg=f"{tag}-{i}")
        out.append(version_of(text) if ok else f"FAILED: {text}")
    return out


def fail_over(vip: str, port: int, killed: ThriftServer, to: str, diag) -> None:
    """Stops `killed`; at most the first call after it fails (that failure ejects it: one gateway
    error), every later call lands on `to`."""
    killed.stop()
    got = versions(vip, port, 12, f"after-{to}")
    failed = [v for v in got if v.startswith("FAILED")]
    assert len(failed) <= 1, f"{got}\n{diag()}"
    assert all("TApplicationException" in f for f in failed), failed
    assert got[2:] == [to] * 10, f"{got}\n{diag()}"


def test_same_zone_first_then_same_region_then_other_regions(tmp_path):
    require_binaries()
    with ThriftServer("r1z1") as a, ThriftServer("r1z2") as b, ThriftServer("r2z1") as c:
        servers = {"r1/z1": a, "r1/z2": b, "r2/z1": c}
        with mesh(tmp_path, servers, 74) as (vip, port, proxy, diag):
            assert priorities(proxy, port) == {a.port: 0, b.port: 2, c.port: 3}, diag()
            assert versions(vip, port, 10, "before") == ["r1z1"] * 10, diag()
            fail_over(vip, port, a, "r1z2", diag)
            fail_over(vip, port, b, "r2z1", diag)


def test_failover_region_is_preferred_over_other_regions(tmp_path):
    require_binaries()
    with ThriftServer("r1z1") as a, ThriftServer("r2z1") as b, ThriftServer("r3z1") as c:
        servers = {"r1/z1": a, "r2/z1": b, "r3/z1": c}
        with mesh(tmp_path, servers, 75, failover=[{"from": "r1", "to": "r3"}]) as (vip, port, proxy, diag):
            assert priorities(proxy, port) == {a.port: 0, c.port: 3, b.port: 4}, diag()
            assert versions(vip, port, 10, "before") == ["r1z1"] * 10, diag()
            fail_over(vip, port, a, "r3z1", diag)
