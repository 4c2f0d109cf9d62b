"""End to end: DestinationRule connectionPool connection lifetime through `aeraki serve` → ADS →
meta-proxy, with real peers.

(a) `http.maxRequestsPerConnection: 2`, K = 7 sequential calls on ONE client connection: every call is
    answered, the provider sees ceil(7/2) = 4 upstream connections (sofa-rpc-node logs each connection
    it accepts; thriftpy2 cannot tell, so a counting TCP relay sits in front of it), and /metrics shows
    floor(7/2) = 3 in upstream_cx_max_requests_total (the fourth connection carried one request only).
(b) `tcp.idleTimeout: 30s` and `http.idleTimeout: 500ms` (Thrift): the http one wins (Istio's rule):
    after a call the idle upstream connection is closed within seconds, the relay sees the proxy close
    it, upstream_cx_idle_timeout_total counts it, and the next call opens a new connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from cp_harness import (
    AdsProxy,
    ControlPlane,
    ThriftServer,
    dubbo_calls,
    meta_router,
    require_binaries,
    service_entry,
    thrift_calls,
    wait_until,
    write_yaml,
)
from harness import dubbo_server, free_port, metric_value

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

NET = 80  # VIPs 127.0.80.x
K = 7


class CountingRelay:
    """A TCP relay on 127.0.0.1 in front of a provider: counts the connections it accepts and the ones
    the proxy side closes (EOF), and copies bytes both ways."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.closed_by_proxy = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "CountingRelay":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            up = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_proxy: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            if from_proxy:
                with self._lock:
                    self.closed_by_proxy += 1
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@contextlib.contextmanager
def sidecar(tmp_path, protocol: str, endpoint_port: int, traffic_policy: dict):
    """One service (VIP 127.0.80.1 or .2) on `endpoint_port` with a DestinationRule carrying
    traffic_policy and a catch-all MetaRouter; yields (vip, port, cluster, proxy) once the proxy ACKed."""
    d = tmp_path / "mesh"
    d.mkdir()
    host = f"{protocol}-pool.e2e.svc.cluster.local"
    vip, port = f"127.0.{NET}.{1 if protocol == 'thrift' else 2}", free_port()
    write_yaml(d / "mesh.yaml", [
        service_entry(f"{protocol}-pool", host, vip, port, protocol, {"v1": endpoint_port}),
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": f"{protocol}-pool", "namespace": "e2e"},
            "spec": {"host": host, "trafficPolicy": traffic_policy},
        },
        meta_router(f"{protocol}-pool", host, [{"name": "all", "route": [{"destination": {"host": host}}]}]),
    ])
    with ControlPlane(d) as cp, AdsProxy(f"pool-{protocol}", cp.xds_port) as proxy:
        proxy.wait_listening(vip, port, cp=cp)
        cp.wait_acked(proxy.node_id)
        yield vip, port, f"outbound|{port}||{host}", proxy


def sidecar_metric(proxy: AdsProxy, name: str, **labels) -> float:
    code, body = proxy.get("/metrics")
    assert code == 200, body[:300]
    return metric_value(body, name, **labels)


MAX_REQUESTS = {"connectionPool": {"http": {"maxRequestsPerConnection": 2}}}


def test_dubbo_two_requests_per_connection(tmp_path, node_peers):
    require_binaries()
    with dubbo_server("v1") as provider:
        with sidecar(tmp_path, "dubbo", provider.port, MAX_REQUESTS) as (vip, port, cluster, proxy):
            calls, summary = dubbo_calls(vip, port, "sayHello", ["k{i}"], count=K, timeout_ms=5000)
            assert summary["ok"] == K, calls
            assert [c["result"] for c in calls] == [f"hello k{i} from v1" for i in range(K)], calls
            connections = lambda: provider.log().count("CONNECTION ")  # noqa: E731 - the provider's own count
            wait_until(lambda: connections() >= 4, 5.0, "the provider to log its connections")
            assert connections() == 4, provider.log()[-2000:]
            assert sidecar_metric(proxy, "meta_protocol_upstream_cx_max_requests_total", cluster=cluster) == 3
            assert sidecar_metric(proxy, "meta_protocol_upstream_connections_total", cluster=cluster) == 4


def test_thrift_two_requests_per_connection(tmp_path):
    require_binaries()
    with ThriftServer("v1") as provider, CountingRelay(provider.port) as relay:
        with sidecar(tmp_path, "thrift", relay.port, MAX_REQUESTS) as (vip, port, cluster, proxy):
            results = thrift_calls(vip, port, K, arg="k", timeout_ms=5000)
            assert results == [(True, f"hello k-{i} from v1") for i in range(K)], results
            assert relay.accepted == 4, relay.accepted
            assert sidecar_metric(proxy, "meta_protocol_upstream_cx_max_requests_total", cluster=cluster) == 3
            # The three full connections are closed by the proxy once their answers are delivered.
            wait_until(lambda: relay.closed_by_proxy == 3, 5.0, "the full connections to close")


def test_thrift_http_idle_timeout_wins_and_closes_idle_connections(tmp_path):
    require_binaries()
    policy = {"connectionPool": {"tcp": {"idleTimeout": "30s"}, "http": {"idleTimeout": "500ms"}}}
    with ThriftServer("v1") as provider, CountingRelay(provider.port) as relay:
        with sidecar(tmp_path, "thrift", relay.port, policy) as (vip, port, cluster, proxy):
            assert thrift_calls(vip, port, 1, arg="a") == [(True, "hello a-0 from v1")]
            counted = lambda: sidecar_metric(  # noqa: E731
                proxy, "meta_protocol_upstream_cx_idle_timeout_total", cluster=cluster)
            wait_until(lambda: counted() == 1, 10.0, "the idle connection to be closed")
            wait_until(lambda: relay.closed_by_proxy == 1, 5.0, "the relay to see the close")
            assert thrift_calls(vip, port, 1, arg="b") == [(True, "hello b-0 from v1")]
            assert relay.accepted == 2
            assert sidecar_metric(proxy, "meta_protocol_upstream_cx_max_requests_total", cluster=cluster) == 0
