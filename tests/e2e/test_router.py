"""End to end: MetaRouter `timeout`, `retries` and `fault` (issue 4) through `aeraki serve` → ADS →
meta-proxy, against real peers (thriftpy2 Thrift servers, a sofa-rpc-node Dubbo provider).

Each test writes its own mesh into tmp_path (ServiceEntries on unique loopback VIPs), starts its own
control plane and sidecar, and checks what the client observes:
(a) retries {attempts: 2, retryOn: connect-failure,reset} hide a killed Thrift server; without them
    some calls fail;
(b) a 300 ms route timeout answers a Dubbo call to a provider sleeping 1 s with the protocol's own
    timeout error, well before the provider would have answered;
(c) fault abort 100 % fails every call with the protocol error, delay 100 % of 300 ms delays every
    call by at least 300 ms, abort 50 % over 40 calls fails a binomially plausible share.

The YAML follows the lead's contract §1 (MetaRoute timeout / retries / fault).
"""

from __future__ import annotations

import contextlib
import time

import pytest

from cp_harness import (
    DUBBO_HOST,
    AdsProxy,
    ControlPlane,
    ThriftServer,
    dubbo_calls,
    meta_router,
    require_binaries,
    service_entry,
    thrift_call,
    wait_until,
    write_yaml,
)
from harness import dubbo_server, free_port

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

THRIFT_HOST = "thrift-router.e2e.svc.cluster.local"
THRIFT_PLAIN_HOST = "thrift-router-plain.e2e.svc.cluster.local"


def route_to(host: str, name: str = "all", **extra) -> dict:
    """A catch-all MetaRoute to every endpoint of `host`, with timeout / retries / fault."""
    return {"name": name, "route": [{"destination": {"host": host}}], **extra}


@contextlib.contextmanager
def sidecar(tmp_path, name: str, docs, listen: tuple[str, int]):
    """Writes the mesh, starts the control plane and the sidecar, waits for `listen`."""
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    write_yaml(mesh / "mesh.yaml", docs)
    with ControlPlane(mesh) as cp, AdsProxy(name, cp.xds_port) as proxy:
        proxy.wait_listening(*listen, cp=cp)
        yield cp, proxy


def diag_of(proxy, cp):
    return lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]


# ----------------------------------------------------------------------------- (a) retries


def test_retries_hide_a_killed_thrift_server(tmp_path):
    require_binaries()
    with ThriftServer("v1") as t1, ThriftServer("v2") as t2:
        endpoints = {"v1": t1.port, "v2": t2.port}
        vip, plain_vip = "127.0.61.1", "127.0.61.2"
        port, plain_port = free_port(), free_port()
        retries = {"attempts": 2, "retryOn": "connect-failure,reset"}
        docs = [
            service_entry("thrift-router", THRIFT_HOST, vip, port, "thrift", endpoints),
            service_entry("thrift-router-plain", THRIFT_PLAIN_HOST, plain_vip, plain_port, "thrift", endpoints),
            meta_router("thrift-router", THRIFT_HOST, [route_to(THRIFT_HOST, retries=retries)]),
            meta_router("thrift-router-plain", THRIFT_PLAIN_HOST, [route_to(THRIFT_PLAIN_HOST)]),
        ]
        with sidecar(tmp_path, "router-a", docs, (vip, port)) as (cp, proxy):
            diag = diag_of(proxy, cp)
            proxy.wait_listening(plain_vip, plain_port, cp=cp)
            wait_until(lambda: thrift_call(vip, port, timeout_ms=1000)[0], 10.0, "a first call", details=diag)
            t1.stop()  # v1 is gone: connecting to it is refused
            with_retries = [thrift_call(vip, port, arg=f"r{i}") for i in range(20)]
            failed = [r for r in with_retries if not r[0]]
            assert not failed, f"{len(failed)} of 20 calls failed despite retries: {failed[:3]}\n{diag()}"
            assert all(r[1].endswith(" from v2") for r in with_retries), with_retries[:3]
            without = [thrift_call(plain_vip, plain_port, arg=f"p{i}") for i in range(20)]
            assert any(not ok for ok, _ in without), f"without retries every call succeeded: {without[:3]}"
            code, metrics = proxy.get("/metrics")
            assert code == 200 and "meta_protocol_upstream_rq_retry_total" in metrics


# ----------------------------------------------------------------------------- (b) route timeout


def test_route_timeout_answers_a_slow_dubbo_provider_natively(tmp_path, node_peers):
    require_binaries()
    with dubbo_server("slow", delay_ms=1000) as slow:
        vip, port = "127.0.62.1", free_port()
        docs = [
            service_entry("dubbo-router", DUBBO_HOST, vip, port, "dubbo", {"v1": slow.port}),
            meta_router("dubbo-router", DUBBO_HOST, [route_to(DUBBO_HOST, timeout="300ms")]),
        ]
        with sidecar(tmp_path, "router-b", docs, (vip, port)) as (cp, proxy):
            calls, summary = dubbo_calls(vip, port, "sayHello", ["slow"], count=3, timeout_ms=5000)
            assert summary["failed"] == 3, f"every call must time out: {calls}\n{diag_of(proxy, cp)()}"
            for c in calls:
                assert "timed out after 300 ms" in c["error"], c
                # The proxy's timeout answered, not the provider (1 s) or the client (5 s).
                assert 250 <= c["ms"] < 1000, c


# ----------------------------------------------------------------------------- (c) faults


def fault_sidecar(tmp_path, name: str, net: int, fault: dict):
    t = ThriftServer("v1")
    vip, port = f"127.0.{net}.1", free_port()

    @contextlib.contextmanager
    def run():
        with t:
            docs = [
                service_entry("thrift-router", THRIFT_HOST, vip, port, "thrift", {"v1": t.port}),
                meta_router("thrift-router", THRIFT_HOST, [route_to(THRIFT_HOST, fault=fault)]),
            ]
            with sidecar(tmp_path, name, docs, (vip, port)) as (cp, proxy):
                yield vip, port, proxy, diag_of(proxy, cp)

    return run()


def test_fault_abort_all_calls(tmp_path):
    require_binaries()
    abort = {"abort": {"percentage": {"value": 100}, "errorCode": "OVER_LIMIT"}}
    with fault_sidecar(tmp_path, "router-c1", 63, abort) as (vip, port, proxy, diag):
        calls = [thrift_call(vip, port, arg=f"a{i}") for i in range(10)]
        assert all(not ok and "fault injected: abort" in text for ok, text in calls), f"{calls[:3]}\n{diag()}"
        code, metrics = proxy.get("/metrics")
        assert 'kind="abort"} 10' in metrics, metrics


def test_fault_delay_all_calls(tmp_path):
    require_binaries()
    delay = {"delay": {"fixedDelay": "300ms", "percentage": {"value": 100}}}
    with fault_sidecar(tmp_path, "router-c2", 64, delay) as (vip, port, proxy, diag):
        for i in range(5):
            t0 = time.monotonic()
            ok, text = thrift_call(vip, port, arg=f"d{i}")
            took = time.monotonic() - t0
            assert ok and text.endswith(" from v1"), f"{text}\n{diag()}"
            assert took >= 0.3, f"call {i} took {took:.3f}s, the fault delay is 300 ms"


def test_fault_abort_half_of_the_calls(tmp_path):
    require_binaries()
    abort = {"abort": {"percentage": {"value": 50}}}
    with fault_sidecar(tmp_path, "router-c3", 65, abort) as (vip, port, proxy, diag):
        calls = [thrift_call(vip, port, arg=f"h{i}") for i in range(40)]
        failed = [text for ok, text in calls if not ok]
        assert all("fault injected: abort" in t for t in failed), failed[:3]
        # Binomial(40, 0.5): sd 3.2; accept 4 sd either side.
        assert 7 <= len(failed) <= 33, f"{len(failed)} of 40 aborted\n{diag()}"
