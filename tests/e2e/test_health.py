"""End to end: DestinationRule outlier detection and circuit breaking through `aeraki serve` → ADS →
meta-proxy, with real thriftpy2 providers.

(a) outlierDetection.consecutiveGatewayErrors (or consecutiveLocalOriginFailures with
    splitExternalLocalOriginErrors): one of two providers is killed; after that many failed calls it
    is ejected and every later call succeeds on the other; /metrics shows the ejection by detector.
(b) connectionPool.http.http2MaxRequests: 1 (→ circuit_breakers max_requests 1): while a slow call
    holds the only slot, another call gets a Thrift TApplicationException naming the overflow, and
    upstream_rq_pending_overflow counts it.
"""

from __future__ import annotations

import contextlib
import threading

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

HOST = "thrift-health.e2e.svc.cluster.local"


def metric(proxy: AdsProxy, prefix: str) -> float:
    """Value of the first /metrics line starting with prefix (0 if absent)."""
    status, text = proxy.get("/metrics")
    assert status == 200, text
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextlib.contextmanager
def mesh(tmp_path, backends: dict[str, int], net: int, traffic_policy: dict):
    """One Thrift service on 127.0.<net>.1 over `backends`, a DestinationRule with traffic_policy and a
    MetaRouter sending everything to the whole service; yields (vip, port, proxy) once it answers."""
    d = tmp_path / "mesh"
    d.mkdir()
    vip, port = f"127.0.{net}.1", free_port()
    write_yaml(d / "mesh.yaml", [
        service_entry("thrift-health", HOST, vip, port, "thrift", backends),
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "thrift-health", "namespace": "e2e"},
            "spec": {"host": HOST, "trafficPolicy": traffic_policy},
        },
        meta_router("thrift-health", HOST, [{"name": "all", "route": [{"destination": {"host": HOST}}]}]),
    ])
    with ControlPlane(d) as cp, AdsProxy(f"health-{net}", cp.xds_port) as proxy:
        diag = lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]  # noqa: E731
        proxy.wait_listening(vip, port, cp=cp)
        wait_until(lambda: thrift_call(vip, port, timeout_ms=1000)[0], 10.0, "the service to answer",
                   details=diag)
        yield vip, port, proxy, diag


@pytest.mark.parametrize("net,detection,detector", [
    (61, {"consecutiveGatewayErrors": 2}, "consecutive_gateway_failure"),
    (63, {"consecutiveLocalOriginFailures": 2, "splitExternalLocalOriginErrors": True},
     "consecutive_local_origin_failure"),
])
def test_killed_provider_is_ejected_after_consecutive_errors(tmp_path, net, detection, detector):
    require_binaries()
    cluster = f"outbound|{{port}}||{HOST}"
    with ThriftServer("v1") as v1, ThriftServer("v2") as v2:
        policy = {"outlierDetection": {**detection, "interval": "10s", "baseEjectionTime": "60s"}}
        with mesh(tmp_path, {"v1": v1.port, "v2": v2.port}, net, policy) as (vip, port, proxy, diag):
            # Both providers serve before the kill.
            versions = {version_of(thrift_call(vip, port)[1]) for _ in range(6)}
            assert versions == {"v1", "v2"}, f"{versions}\n{diag()}"
            v2.stop()
            results = [thrift_call(vip, port, arg=f"after-{i}") for i in range(24)]
            failed = [text for ok, text in results if not ok]
            # Round robin: v2 is tried (and fails) twice, then ejected; the rest answer from v1.
            assert len(failed) == 2, f"{failed}\n{diag()}"
            assert all("TApplicationException" in text for text in failed), failed
            tail = results[8:]
            assert all(ok and version_of(text) == "v1" for ok, text in tail), f"{tail}\n{diag()}"
            name = cluster.format(port=port)
            enforced = metric(proxy, 'meta_protocol_outlier_ejections_enforced_total{cluster="%s",'
                                     'detector="%s"}' % (name, detector))
            assert enforced == 1.0, diag()
            assert metric(proxy, 'meta_protocol_outlier_ejections_active{cluster="%s"}' % name) == 1.0


def test_max_requests_overflow_gets_a_native_error(tmp_path):
    require_binaries()
    with ThriftServer("v1") as v1:
        policy = {"connectionPool": {"http": {"http2MaxRequests": 1}}}
        with mesh(tmp_path, {"v1": v1.port}, 62, policy) as (vip, port, proxy, diag):
            slow_result = []
            started = threading.Event()

            def slow():
                started.set()
                slow_result.append(thrift_call(vip, port, method="slow", arg="3000", timeout_ms=10000))

            t = threading.Thread(target=slow)
            t.start()
            try:
                started.wait(5)
                name = f"outbound|{port}||{HOST}"
                rq_open = f'meta_protocol_circuit_breaker_open{{cluster="{name}",resource="rq"}}'
                wait_until(lambda: metric(proxy, rq_open) == 1.0, 5.0, "the slow call to hold the slot",
                           details=diag)
                ok, text = thrift_call(vip, port, arg="overflow")
                # Answered while the slow call still holds the slot.
                assert not slow_result, slow_result
                assert not ok, text
                assert "TApplicationException" in text, text
                assert f"upstream overflow: max_requests of cluster '{name}'" in text, text
            finally:
                t.join(15)
            assert slow_result and slow_result[0][0], slow_result
            overflow = metric(proxy, f'meta_protocol_upstream_rq_pending_overflow_total{{cluster="{name}"}}')
            assert overflow >= 1.0, diag()
            # The slot is free again.
            assert thrift_call(vip, port)[0]
