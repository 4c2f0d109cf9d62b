"""DestinationRule `loadBalancer.simple` policies and ServiceEntry endpoint weights, end to end:
MetaRouter/DestinationRule YAML → `aeraki serve` → ADS → meta-proxy → real sofa-rpc-node Dubbo
providers (test_traffic.py covers ROUND_ROBIN spread, ring hash and maglev).

All calls of a test run on ONE client connection: the proxy balances per request.
- weights: endpoints weighted 3 and 1 under ROUND_ROBIN (Envoy's weighted round robin) → of 40
  calls, the weight-3 endpoint answers 30 (± 3).
- RANDOM over three endpoints: every endpoint answers some of 60 calls, and at least two
  consecutive calls land on the same endpoint (round robin never does that; for a uniform random
  choice all 59 neighbours differing has probability (2/3)^59 ≈ 4e-11).
- LEAST_REQUEST vs ROUND_ROBIN over the same three endpoints, one of which (slow) delays every answer
  by SLOW_MS, with 6 calls in flight: round robin gives the slow endpoint its third of 180 calls; least
  request (two random choices, fewest active requests wins) gives it far fewer, since it nearly
  always has more calls in flight than the others (it still wins when both choices fall on it).
"""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from cp_harness import AdsProxy, ControlPlane, meta_router, require_binaries, write_yaml
from harness import NODE_PEERS, dubbo_client_cmd, dubbo_server, free_port, parse_client_output

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

NET = 69  # VIPs 127.0.69.x
SLOW_MS = 300
CALLS = 180  # per policy in the least-request test
PORT_NAME = "tcp-metaprotocol-dubbo"


def service(name: str, vip: str, port: int, endpoints: list[tuple[str, int, int]], lb: str) -> list[dict]:
    """ServiceEntry (endpoints: (version, backend port, weight)), DestinationRule with `lb`, and a
    catch-all MetaRouter."""
    host = f"{name}.e2e.svc.cluster.local"
    eps = [{"address": "127.0.0.1", "ports": {PORT_NAME: p}, "labels": {"version": v}, "weight": w}
           for v, p, w in endpoints]
    return [
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "e2e"},
            "spec": {"hosts": [host], "addresses": [vip], "resolution": "STATIC", "endpoints": eps,
                     "ports": [{"number": port, "name": PORT_NAME, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "e2e"},
            "spec": {"host": host, "trafficPolicy": {"loadBalancer": {"simple": lb}}},
        },
        meta_router(name, host, [{"name": "all", "route": [{"destination": {"host": host}}]}]),
    ]


@pytest.fixture(scope="module")
def lb_mesh(tmp_path_factory, node_peers):
    """{service name: (vip, port)} and the sidecar."""
    require_binaries()
    d = tmp_path_factory.mktemp("lb") / "mesh"
    d.mkdir()
    with dubbo_server("v1") as v1, dubbo_server("v2") as v2, dubbo_server("v3") as v3, \
            dubbo_server("slow", delay_ms=SLOW_MS) as slow:
        wanted = {
            "weighted": ([("v1", v1.port, 3), ("v2", v2.port, 1)], "ROUND_ROBIN"),
            "random": ([("v1", v1.port, 1), ("v2", v2.port, 1), ("v3", v3.port, 1)], "RANDOM"),
            "rr-slow": ([("slow", slow.port, 1), ("v2", v2.port, 1), ("v3", v3.port, 1)], "ROUND_ROBIN"),
            "least-slow": ([("slow", slow.port, 1), ("v2", v2.port, 1), ("v3", v3.port, 1)], "LEAST_REQUEST"),
        }
        docs, services = [], {}
        for i, (name, (endpoints, lb)) in enumerate(wanted.items()):
            vip, port = f"127.0.{NET}.{i + 1}", free_port()
            docs += service(name, vip, port, endpoints, lb)
            services[name] = (vip, port)
        write_yaml(d / "mesh.yaml", docs)
        with ControlPlane(d) as cp, AdsProxy("lb", cp.xds_port) as proxy:
            for vip, port in services.values():
                proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            yield services, proxy


def answered_by(services, name: str, count: int, concurrency: int = 1) -> list[str]:
    """`count` sayHello calls on one sofa-rpc-node connection → the answering version per call, in
    call order."""
    vip, port = services[name]
    cmd = dubbo_client_cmd(port, "sayHello", ["x"], None, count, concurrency, 5000)
    cmd[cmd.index("--target") + 1] = f"{vip}:{port}"
    done = subprocess.run(cmd, cwd=NODE_PEERS, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    calls, summary = parse_client_output(done.stdout, done.stderr)
    assert summary["ok"] == count, [c for c in calls if not c["ok"]][:3]
    return [c["result"].rsplit(" from ", 1)[1] for c in sorted(calls, key=lambda c: c["i"])]


def test_endpoint_weights(lb_mesh):
    services, _ = lb_mesh
    got = Counter(answered_by(services, "weighted", 40))
    assert set(got) == {"v1", "v2"} and 27 <= got["v1"] <= 33, got


def test_random(lb_mesh):
    services, _ = lb_mesh
    seq = answered_by(services, "random", 60)
    got = Counter(seq)
    assert set(got) == {"v1", "v2", "v3"} and min(got.values()) >= 5, got
    assert any(a == b for a, b in zip(seq, seq[1:])), f"a strict rotation, not random: {seq}"


def test_least_request_avoids_the_busy_endpoint(lb_mesh):
    services, _ = lb_mesh
    rr = Counter(answered_by(services, "rr-slow", CALLS, concurrency=6))
    assert CALLS // 3 - 2 <= rr["slow"] <= CALLS // 3 + 2, rr
    least = Counter(answered_by(services, "least-slow", CALLS, concurrency=6))
    print("slow endpoint's share:", rr, least)
    assert set(least) <= {"slow", "v2", "v3"}, least
    # Both random choices fall on it 1/9 of the time (20 of 180); observed 12-33 here. A policy
    # blind to active requests gives it a third (60).
    assert least["slow"] <= 45, f"least request sent {least['slow']} of {CALLS} calls to the slow endpoint"
