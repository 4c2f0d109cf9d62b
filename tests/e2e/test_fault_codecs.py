"""MetaRoute `fault` for both codecs, checked on the wire: MetaRouter YAML → `aeraki serve` → ADS →
meta-proxy, in front of a real sofa-rpc-node Dubbo provider and a real thriftpy2 server
(test_router.py covers Thrift abort/delay percentages).

One sidecar serves one service per `abort.errorCode` and protocol (100 % abort), plus a Dubbo
service with a 100 % delay. What the client must get is the protocol's own error (contract §2):
- Dubbo: a response frame for the same request id whose status byte is the mapped Dubbo status
  (OVER_LIMIT → 100 SERVER_THREADPOOL_EXHAUSTED, TIMEOUT → 31 SERVER_TIMEOUT, UPSTREAM_RESET → 80
  SERVER_ERROR, ROUTE_NOT_FOUND → 60 SERVICE_NOT_FOUND, BAD_REQUEST → 40 BAD_REQUEST,
  UNSPECIFIED → 70 SERVICE_ERROR), its body naming the fault;
- Thrift: a TApplicationException of the mapped type (ROUTE_NOT_FOUND → UNKNOWN_METHOD,
  BAD_REQUEST → PROTOCOL_ERROR, others INTERNAL_ERROR), read by thriftpy2.
The provider never sees an aborted call; a delayed call is answered by it after the delay.
"""

from __future__ import annotations

import socket
import time

import pytest

from cp_harness import (
    AdsProxy,
    ControlPlane,
    ThriftServer,
    dubbo_calls,
    meta_router,
    require_binaries,
    service_entry,
    write_yaml,
)
from harness import dubbo_server, free_port, metric_value
from test_dubbo import dubbo_request, read_frame
from thrift_common import tp2_client

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

NET = 68  # VIPs 127.0.68.x
DUBBO_STATUS = {"OVER_LIMIT": 100, "TIMEOUT": 31, "UPSTREAM_RESET": 80, "ROUTE_NOT_FOUND": 60,
                "BAD_REQUEST": 40, "UNSPECIFIED": 70}
THRIFT_TYPE = {"OVER_LIMIT": "INTERNAL_ERROR", "TIMEOUT": "INTERNAL_ERROR", "UPSTREAM_RESET": "INTERNAL_ERROR",
               "ROUTE_NOT_FOUND": "UNKNOWN_METHOD", "BAD_REQUEST": "PROTOCOL_ERROR", "UNSPECIFIED": "INTERNAL_ERROR"}
DELAY_MS = 300


def abort(code: str) -> dict:
    return {"abort": {"percentage": {"value": 100}, "errorCode": code}}


@pytest.fixture(scope="module")
def faults(tmp_path_factory, node_peers):
    """{(protocol, code or "delay"): (vip, port)}, the sidecar and the two providers."""
    require_binaries()
    d = tmp_path_factory.mktemp("faults") / "mesh"
    d.mkdir()
    with dubbo_server("v1") as dubbo, ThriftServer("v1") as thrift:
        backend = {"dubbo": dubbo.port, "thrift": thrift.port}
        wanted = [(p, c, abort(c)) for p in ("dubbo", "thrift") for c in DUBBO_STATUS]
        wanted.append(("dubbo", "delay", {"delay": {"fixedDelay": f"{DELAY_MS}ms", "percentage": {"value": 100}}}))
        docs, services = [], {}
        for i, (protocol, code, fault) in enumerate(wanted):
            name = f"{protocol}-fault-{code.lower().replace('_', '-')}"
            host, vip, port = f"{name}.e2e.svc.cluster.local", f"127.0.{NET}.{i + 1}", free_port()
            docs.append(service_entry(name, host, vip, port, protocol, {"v1": backend[protocol]}))
            docs.append(meta_router(name, host, [
                {"name": "all", "route": [{"destination": {"host": host}}], "fault": fault}]))
            services[(protocol, code)] = (vip, port)
        write_yaml(d / "mesh.yaml", docs)
        with ControlPlane(d) as cp, AdsProxy("faults", cp.xds_port) as proxy:
            for vip, port in services.values():
                proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            yield services, proxy, {"dubbo": dubbo, "thrift": thrift}


@pytest.mark.parametrize("code", list(DUBBO_STATUS))
def test_dubbo_abort_answers_the_mapped_status(faults, code):
    services, _, providers = faults
    vip, port = services[("dubbo", code)]
    seen = providers["dubbo"].log().count("CALL sayHello")
    with socket.create_connection((vip, port), timeout=5) as s:
        for request_id in (11, 0x0102030405060708):
            s.sendall(dubbo_request(request_id, "sayHello", f"abort-{code}"))
            header, body = read_frame(s)
            assert header[2] & 0x80 == 0, "a response"
            assert int.from_bytes(header[4:12], "big") == request_id
            assert header[3] == DUBBO_STATUS[code], (code, header[3], body)
            assert b"fault injected: abort" in body, body
    assert providers["dubbo"].log().count("CALL sayHello") == seen, "an aborted call reached the provider"


@pytest.mark.parametrize("code", list(THRIFT_TYPE))
def test_thrift_abort_answers_the_mapped_exception_type(faults, code):
    from thriftpy2.thrift import TApplicationException

    services, proxy, _ = faults
    vip, port = services[("thrift", code)]
    client = tp2_client(port, "binary", "framed", 5000, vip)
    try:
        for i in range(2):  # the connection stays usable after the error reply
            with pytest.raises(TApplicationException) as info:
                client.sayHello(f"abort-{i}")
            assert info.value.type == getattr(TApplicationException, THRIFT_TYPE[code]), (code, info.value.type)
            assert "fault injected: abort" in info.value.message, info.value.message
    finally:
        client.close()
    code_, body = proxy.get("/metrics")
    assert code_ == 200
    assert metric_value(body, "meta_protocol_faults_total", kind="abort") >= 2


def test_dubbo_delay_then_the_provider_answers(faults):
    services, _, _ = faults
    vip, port = services[("dubbo", "delay")]
    t0 = time.monotonic()
    calls, summary = dubbo_calls(vip, port, "sayHello", ["late"], count=3, timeout_ms=5000)
    took = time.monotonic() - t0
    assert summary["ok"] == 3, calls
    assert all(c["result"] == "hello late from v1" for c in calls), calls
    # Three calls one after another on one connection, each delayed by the fault.
    assert took >= 3 * DELAY_MS / 1000, took
    assert all(c["ms"] >= DELAY_MS for c in calls), calls
