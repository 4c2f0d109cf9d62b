"""DestinationRule outlier detection by protocol status and circuit breaking, for both codecs, through
`aeraki serve` → ADS → meta-proxy with real peers (test_health.py covers killed Thrift providers and
the Thrift overflow).

(a) v1 answers sayHello with an error response (sofa-rpc-node provider whose method throws: Dubbo
    status SERVER_ERROR; thriftpy2 server raising TApplicationException INTERNAL_ERROR), v2 answers.
    - `consecutive5xxErrors: 2`: v1 fails twice (round robin), is ejected, every later call is
      answered by v2; /metrics counts the ejection under detector consecutive_5xx.
    - `consecutiveGatewayErrors: 2` alone on a twin service: error responses are not gateway
      errors, so v1 is never ejected and keeps failing its share.
(b) `http2MaxRequests: 1` on a Dubbo provider that delays its answers: while one call holds the
    slot, another gets a Dubbo error response naming the overflow, and the overflow is counted.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from cp_harness import (
    AdsProxy,
    ControlPlane,
    dubbo_calls,
    meta_router,
    require_binaries,
    service_entry,
    thrift_call,
    wait_until,
    write_yaml,
)
from error_peers import failing_and_healthy
from harness import dubbo_server, free_port, metric_value

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

NET = 67  # VIPs 127.0.67.x


def host_of(protocol: str, name: str) -> str:
    return f"{protocol}-{name}.e2e.svc.cluster.local"


@contextlib.contextmanager
def sidecar(tmp_path, protocol: str, services: dict[str, tuple[dict[str, int], dict]]):
    """services: name → (endpoints {version: port}, DestinationRule trafficPolicy). Each gets a VIP,
    a DestinationRule and a catch-all MetaRouter. Yields ({name: (vip, port, cluster)}, proxy)."""
    d = tmp_path / "mesh"
    d.mkdir()
    docs, out = [], {}
    for i, (name, (endpoints, policy)) in enumerate(services.items()):
        host, vip, port = host_of(protocol, name), f"127.0.{NET}.{i + 1}", free_port()
        docs += [
            service_entry(f"{protocol}-{name}", host, vip, port, protocol, endpoints),
            {
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "DestinationRule",
                "metadata": {"name": f"{protocol}-{name}", "namespace": "e2e"},
                "spec": {"host": host, "trafficPolicy": policy},
            },
            meta_router(f"{protocol}-{name}", host, [{"name": "all", "route": [{"destination": {"host": host}}]}]),
        ]
        out[name] = (vip, port, f"outbound|{port}||{host}")
    write_yaml(d / "mesh.yaml", docs)
    with ControlPlane(d) as cp, AdsProxy(f"health-{protocol}", cp.xds_port) as proxy:
        for vip, port, _ in out.values():
            proxy.wait_listening(vip, port, cp=cp)
        cp.wait_acked(proxy.node_id)
        yield out, proxy


def sidecar_metric(proxy: AdsProxy, name: str, **labels) -> float:
    code, body = proxy.get("/metrics")
    assert code == 200, body[:300]
    return metric_value(body, name, **labels)


def sayhello_calls(protocol: str, vip: str, port: int, n: int) -> list[tuple[bool, str]]:
    """n sequential sayHello calls (Dubbo: one connection; Thrift: one connection per call)."""
    if protocol == "dubbo":
        got, _ = dubbo_calls(vip, port, "sayHello", ["x"], count=n, timeout_ms=5000)
        assert len(got) == n, got
        return [(c["ok"], c["result"] if c["ok"] else c["error"]) for c in got]
    return [thrift_call(vip, port, "sayHello", f"x{i}", timeout_ms=5000) for i in range(n)]


@pytest.mark.parametrize("protocol", ["dubbo", "thrift"])
def test_error_responses_eject_by_consecutive_5xx_only(tmp_path, request, protocol):
    require_binaries()
    if protocol == "dubbo":
        request.getfixturevalue("node_peers")
    timing = {"interval": "10s", "baseEjectionTime": "60s"}
    with failing_and_healthy(protocol) as eps:
        services = {
            "by-5xx": (eps, {"outlierDetection": {"consecutive5xxErrors": 2, **timing}}),
            "by-gateway": (eps, {"outlierDetection": {"consecutiveGatewayErrors": 2, **timing}}),
        }
        with sidecar(tmp_path, protocol, services) as (svc, proxy):
            vip, port, cluster = svc["by-5xx"]
            results = sayhello_calls(protocol, vip, port, 24)
            failed = [text for ok, text in results if not ok]
            # Round robin: v1 answers two errors, then is ejected; every later call is v2's.
            assert len(failed) == 2, results
            assert all("failed on purpose in v1" in t for t in failed), failed
            assert all(ok and text.endswith(" from v2") for ok, text in results[4:]), results
            assert sidecar_metric(proxy, "meta_protocol_outlier_ejections_enforced_total", cluster=cluster,
                                  detector="consecutive_5xx") == 1
            assert sidecar_metric(proxy, "meta_protocol_outlier_ejections_active", cluster=cluster) == 1

            vip, port, cluster = svc["by-gateway"]
            results = sayhello_calls(protocol, vip, port, 24)
            failed = [text for ok, text in results if not ok]
            # Not ejected: v1 keeps getting (and failing) every other call.
            assert len(failed) == 12, results
            assert sidecar_metric(proxy, "meta_protocol_outlier_ejections_enforced_total", cluster=cluster) == 0


def test_dubbo_max_requests_overflow_gets_a_native_error(tmp_path, node_peers):
    require_binaries()
    with dubbo_server("slow", delay_ms=1500) as slow:
        services = {"pool": ({"v1": slow.port}, {"connectionPool": {"http": {"http2MaxRequests": 1}}})}
        with sidecar(tmp_path, "dubbo", services) as (svc, proxy):
            vip, port, cluster = svc["pool"]
            held = []
            t = threading.Thread(target=lambda: held.extend(sayhello_calls("dubbo", vip, port, 1)))
            t.start()
            try:
                wait_until(lambda: sidecar_metric(proxy, "meta_protocol_circuit_breaker_open", cluster=cluster,
                                                  resource="rq") == 1, 5.0, "the slow call to hold the slot")
                (ok, text), = sayhello_calls("dubbo", vip, port, 1)
                assert not held, "the overflow must be answered while the slow call holds the slot"
                assert not ok, text
                assert f"upstream overflow: max_requests of cluster '{cluster}'" in text, text
            finally:
                t.join(15)
            assert held and held[0][0] and held[0][1].endswith(" from slow"), held
            assert sidecar_metric(proxy, "meta_protocol_upstream_rq_pending_overflow_total", cluster=cluster) >= 1
            assert sayhello_calls("dubbo", vip, port, 1)[0][0], "the slot is free again"
