"""MetaRoute `retries.retryOn` with the codecs' protocol error classes, end to end: MetaRouter YAML →
`aeraki serve` → ADS → meta-proxy → real peers, for both codecs.

Each service has two endpoints: v1 answers sayHello with an error response (a sofa-rpc-node
provider whose method throws: Dubbo status SERVER_ERROR; a thriftpy2 server raising a
TApplicationException INTERNAL_ERROR), v2 answers normally. Round robin sends first attempts to v1
(every other one when nothing is retried: a retry's pick advances it too). One sidecar serves one
service per retryOn value (same endpoints, own VIP):
- a class that covers the error (`status:<the codec's status>`, `error-response`, `5xx`): the retry
  goes to the other host (previous-hosts predicate), so all 20 calls are answered by v2 and the
  retries show in /metrics;
- a class that does not (another status, `gateway-error`, `reset`): the calls that hit v1 get v1's
  native error, unretried.
Concurrent retries are bounded by DestinationRule connectionPool.http.maxRetries. One-way calls are
never retried: with v1 dead and retryOn connect-failure, two-way calls all succeed but the one-way
calls sent to v1 are lost.
"""

from __future__ import annotations

import subprocess

import pytest

from cp_harness import (
    AdsProxy,
    ControlPlane,
    dubbo_calls,
    meta_router,
    require_binaries,
    service_entry,
    thrift_call,
    write_yaml,
)
from error_peers import failing_and_healthy
from harness import NODE_PEERS, dubbo_client_cmd, dubbo_server, free_port, metric_value, parse_client_output
from thrift_common import tp2_client
from traffic_mesh import LoggingThriftServer, settled_count

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

NET = 66  # VIPs 127.0.66.x
CALLS = 20
# (retryOn, whether it covers v1's error)
CLASSES = {
    "dubbo": [("status:SERVER_ERROR", True), ("error-response", True), ("5xx", True),
              ("status:SERVICE_ERROR", False), ("gateway-error", False)],
    "thrift": [("status:INTERNAL_ERROR", True), ("error-response", True), ("5xx", True),
               ("status:EXCEPTION", False), ("reset", False)],
}


def host_of(protocol: str, i: int) -> str:
    return f"{protocol}-retry-{i}.e2e.svc.cluster.local"


@pytest.fixture(params=["dubbo", "thrift"])
def retry_mesh(request, tmp_path):
    """One sidecar, one service per retryOn value of CLASSES[protocol] → (protocol, [(vip, port,
    retryOn, covers)], proxy)."""
    require_binaries()
    protocol = request.param
    if protocol == "dubbo":
        request.getfixturevalue("node_peers")
    d = tmp_path / "mesh"
    d.mkdir()
    with failing_and_healthy(protocol) as eps:
        docs, services = [], []
        for i, (retry_on, covers) in enumerate(CLASSES[protocol]):
            host, vip, port = host_of(protocol, i), f"127.0.{NET}.{i + 1}", free_port()
            retries = {"attempts": 2, "retryOn": retry_on}
            docs.append(service_entry(f"{protocol}-retry-{i}", host, vip, port, protocol, eps))
            docs.append(meta_router(f"{protocol}-retry-{i}", host, [
                {"name": "all", "route": [{"destination": {"host": host}}], "retries": retries}]))
            services.append((vip, port, retry_on, covers))
        write_yaml(d / "mesh.yaml", docs)
        with ControlPlane(d) as cp, AdsProxy(f"retry-{protocol}", cp.xds_port) as proxy:
            for vip, port, _, _ in services:
                proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            yield protocol, services, proxy


def sayhello_calls(protocol: str, vip: str, port: int) -> list[tuple[bool, str]]:
    if protocol == "dubbo":
        got, _ = dubbo_calls(vip, port, "sayHello", ["x"], count=CALLS, timeout_ms=5000)
        assert len(got) == CALLS, got
        return [(c["ok"], c["result"] if c["ok"] else c["error"]) for c in got]
    # One connection per call; the proxy balances per request either way.
    return [thrift_call(vip, port, "sayHello", f"x{i}", timeout_ms=5000) for i in range(CALLS)]


def test_retry_on_protocol_error_classes(retry_mesh):
    protocol, services, proxy = retry_mesh
    for vip, port, retry_on, covers in services:
        results = sayhello_calls(protocol, vip, port)
        failed = [text for ok, text in results if not ok]
        if covers:
            assert not failed, f"retryOn {retry_on}: {len(failed)} of {CALLS} failed: {failed[:3]}"
            assert all(text.endswith(" from v2") for _, text in results), (retry_on, results[:3])
        else:
            # v1 is the first try of about half the calls (round robin): not retried, they fail.
            assert failed, f"retryOn {retry_on} retried an error it does not cover: {results[:3]}"
            assert all("failed on purpose in v1" in t for t in failed), (retry_on, failed[:3])
            if protocol == "thrift":
                assert all(t.startswith("TApplicationException") for t in failed), failed[:3]
    code, body = proxy.get("/metrics")
    assert code == 200, body[:300]
    for i, (_, port, retry_on, covers) in enumerate(services):
        cluster = f"outbound|{port}||{host_of(protocol, i)}"
        retried = metric_value(body, "meta_protocol_upstream_rq_retry_total", cluster=cluster)
        answered = metric_value(body, "meta_protocol_upstream_rq_retry_success_total", cluster=cluster)
        if covers:
            assert retried >= 1 and answered == retried, (retry_on, retried, answered)
        else:
            assert retried == 0, (retry_on, retried)


def test_one_way_calls_are_never_retried(tmp_path):
    """v1 is a dead port, v2 a live thriftpy2 server; retries {attempts: 2, retryOn: connect-failure}.
    Two-way calls all succeed (each call the balancer sends to v1 is retried on v2), but of 10
    one-way `notify` calls only those sent to v2 arrive: the ones sent to v1 are not retried."""
    require_binaries()
    with LoggingThriftServer("v2") as v2:
        host, vip, port = "thrift-oneway.e2e.svc.cluster.local", f"127.0.{NET}.100", free_port()
        d = tmp_path / "mesh"
        d.mkdir()
        retries = {"attempts": 2, "retryOn": "connect-failure"}
        write_yaml(d / "mesh.yaml", [
            service_entry("thrift-oneway", host, vip, port, "thrift", {"v1": free_port(), "v2": v2.port}),
            meta_router("thrift-oneway", host, [
                {"name": "all", "route": [{"destination": {"host": host}}], "retries": retries}]),
        ])
        with ControlPlane(d) as cp, AdsProxy("oneway", cp.xds_port) as proxy:
            proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            two_way = [thrift_call(vip, port, "sayHello", f"t{i}") for i in range(6)]
            assert all(ok and text.endswith(" from v2") for ok, text in two_way), two_way
            cluster = f"outbound|{port}||{host}"
            code, body = proxy.get("/metrics")
            retried = metric_value(body, "meta_protocol_upstream_rq_retry_total", cluster=cluster)
            assert retried >= 1, "the balancer never picked v1: the one-way check below would prove nothing"
            client = tp2_client(port, "binary", "framed", 5000, vip)
            try:
                for i in range(10):
                    client.notify(f"oneway-{i}")
            finally:
                client.close()
            arrived = settled_count(v2, "notify", "oneway-", at_least=1)
            assert 1 <= arrived < 10, f"{arrived} of 10 one-way calls reached v2 (v1 is dead)"
            code, body = proxy.get("/metrics")
            assert metric_value(body, "meta_protocol_upstream_rq_retry_total", cluster=cluster) == retried


def test_max_retries_bounds_concurrent_retries(tmp_path, node_peers):
    """DestinationRule connectionPool.http.maxRetries (→ circuit_breakers max_retries): v1 fails
    sayHello at once, v2 answers after 500 ms, retries {attempts: 2, retryOn: 5xx}, 12 calls with
    6 in flight. With maxRetries 1, while one retry is outstanding on v2 the other failed first tries
    are not retried (v1's error reaches the client, retry overflow counted); with maxRetries 100
    every call is retried and answered by v2."""
    require_binaries()
    with dubbo_server("v1", fail_method="sayHello") as v1, dubbo_server("v2", delay_ms=500) as v2:
        d = tmp_path / "mesh"
        d.mkdir()
        docs, services = [], {}
        for i, limit in enumerate((1, 100)):
            host, vip, port = f"dubbo-budget-{limit}.e2e.svc.cluster.local", f"127.0.{NET}.{110 + i}", free_port()
            docs += [
                service_entry(f"dubbo-budget-{limit}", host, vip, port, "dubbo", {"v1": v1.port, "v2": v2.port}),
                {
                    "apiVersion": "networking.istio.io/v1beta1",
                    "kind": "DestinationRule",
                    "metadata": {"name": f"dubbo-budget-{limit}", "namespace": "e2e"},
                    "spec": {"host": host, "trafficPolicy": {"connectionPool": {"http": {"maxRetries": limit}}}},
                },
                meta_router(f"dubbo-budget-{limit}", host, [{
                    "name": "all", "route": [{"destination": {"host": host}}],
                    "retries": {"attempts": 2, "retryOn": "5xx"}}]),
            ]
            services[limit] = (vip, port, f"outbound|{port}||{host}")
        write_yaml(d / "mesh.yaml", docs)
        with ControlPlane(d) as cp, AdsProxy("budget", cp.xds_port) as proxy:
            for vip, port, _ in services.values():
                proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            results = {}
            for limit, (vip, port, _) in services.items():
                cmd = dubbo_client_cmd(port, "sayHello", ["x"], None, 12, 6, 5000)
                cmd[cmd.index("--target") + 1] = f"{vip}:{port}"
                done = subprocess.run(cmd, cwd=NODE_PEERS, capture_output=True, text=True, timeout=60,
                                      stdin=subprocess.DEVNULL)
                results[limit], _ = parse_client_output(done.stdout, done.stderr)
            code, body = proxy.get("/metrics")
            assert code == 200
            tight = [c for c in results[1] if not c["ok"]]
            assert tight, f"maxRetries 1 let every concurrent retry through: {results[1]}"
            assert all("failed on purpose in v1" in c["error"] for c in tight), tight
            assert metric_value(body, "meta_protocol_upstream_rq_retry_overflow_total", cluster=services[1][2]) >= 1
            assert all(c["ok"] and c["result"].endswith(" from v2") for c in results[100]), results[100]
            assert metric_value(body, "meta_protocol_upstream_rq_retry_overflow_total", cluster=services[100][2]) == 0
