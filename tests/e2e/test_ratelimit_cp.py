"""Aeraki's TestLocalRateLimit and TestGlobalRateLimit, configured the Aeraki way: MetaRouter
`localRateLimit` / `globalRateLimit` YAML → `aeraki serve` → ADS → meta-proxy (one sidecar: the
limits sit on its outbound listener, so they hold in the single-proxy setup), with real peers:
sofa-rpc-node Dubbo and thriftpy2 Thrift providers, `aeraki ratelimit` (our RLS) over a real
redis-server, reached through a ServiceEntry (port `grpc-rls`) named by `rateLimitService`.

(test_ratelimit.py covers the same filters from a static meta-proxy bootstrap; this file proves
the control-plane path: the YAML fields, the translation, the RLS cluster from a ServiceEntry, and
that meta-proxy ACKs all of it: every test checks `aeraki status` for ACKs and no NACK.)

- local: route method=sayHello → v1 and a catch-all → v1, tokenBucket 5/60s with the condition
  method=sayHello 2/60s → exactly 2 of 10 sayHello calls pass and 5 of 10 calls of another
  method; the rest get the codec's native rate-limit error.
- global: Aeraki's metarouter-global-ratelimit (match method=sayHello, domain production,
  requestTimeout 100ms, denyOnFail, descriptor method) with `method=sayHello` 5/hour in the RLS →
  as in Aeraki's test, poll until the first success, then 10 more calls: exactly 5 succeed in total;
  calls of another method are not checked (all pass); the sidecar's and the RLS's /metrics agree.
- the RLS stopped: denyOnFail true → every sayHello call fails with the native error; false → all
  pass.
- every new field at once (MetaRoute timeout/retries/fault, both rate limits, DestinationRule
  connectionPool/outlierDetection/loadBalancer): ACKed with no NACK, and the service answers.
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
    http_get,
    meta_router,
    mr_route,
    require_binaries,
    service_entry,
    thrift_call,
    write_yaml,
)
from harness import Proc, aeraki_bin, dubbo_server, free_port, metric_value, wait_port

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

THRIFT_HOST = "thrift-ratelimit.e2e.svc.cluster.local"
RLS_HOST = "rate-limit-server.e2e.svc.cluster.local"
RLS_PORT = 8081  # the ServiceEntry port (Aeraki's e2e uses outbound|8081||rate-limit-server...)
RLS_CLUSTER = f"outbound|{RLS_PORT}||{RLS_HOST}"
NET = 64  # VIPs 127.0.64.x
RLS_YAML = """\
domain: production
descriptors:
  - key: method
    value: sayHello
    rate_limit: {unit: hour, requests_per_unit: 5}
"""


@pytest.fixture(scope="module")
def dubbo_v1(node_peers):
    with dubbo_server("v1") as s:
        yield s.port


@pytest.fixture(scope="module")
def thrift_v1():
    with ThriftServer("v1") as s:
        yield s.port


class RateLimitService:
    """A fresh redis-server and `aeraki ratelimit` over it (every test starts from zero counters)."""

    def __init__(self, tmp):
        binary = aeraki_bin()
        conf = tmp / "rls-config"
        conf.mkdir()
        (conf / "production.yaml").write_text(RLS_YAML)
        self.redis_port, self.port, self.metrics_port = free_port(), free_port(), free_port()
        self.redis = Proc(["redis-server", "--port", self.redis_port, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], "redis")
        self.rls = Proc([binary, "ratelimit", "--config", conf, "--listen", f"127.0.0.1:{self.port}",
                         "--metrics", f"127.0.0.1:{self.metrics_port}",
                         "--redis", f"redis://127.0.0.1:{self.redis_port}"], "aeraki-ratelimit")

    def __enter__(self):
        self.redis.start()
        try:
            wait_port(self.redis_port, proc=self.redis)
            self.rls.start()
            wait_port(self.port, proc=self.rls)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.rls.stop()
        self.redis.stop()

    def metric(self, name: str, **labels) -> float:
        code, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert code == 200, body[:300]
        return metric_value(body, name, **labels)


def rls_service_entry(backend_port: int) -> dict:
    """The RLS as a plain gRPC service: translation emits its cluster (RLS_CLUSTER) only."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": "rate-limit-server", "namespace": "e2e"},
        "spec": {
            "hosts": [RLS_HOST],
            "addresses": [f"127.0.{NET}.9"],
            "ports": [{"number": RLS_PORT, "name": "grpc-rls", "protocol": "GRPC"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {"grpc-rls": int(backend_port)}}],
        },
    }


def local_rate_limit() -> dict:
    """Aeraki's metarouter-local-ratelimit: 5/60s for the service, 2/60s for method=sayHello."""
    return {
        "tokenBucket": {"maxTokens": 5, "tokensPerFill": 5, "fillInterval": "60s"},
        "conditions": [{
            "match": {"attributes": {"method": {"exact": "sayHello"}}},
            "tokenBucket": {"maxTokens": 2, "tokensPerFill": 2, "fillInterval": "60s"},
        }],
    }


def global_rate_limit(deny: bool = True) -> dict:
    """Aeraki's metarouter-global-ratelimit."""
    return {
        "match": {"attributes": {"method": {"exact": "sayHello"}}},
        "domain": "production",
        "rateLimitService": RLS_CLUSTER,
        "requestTimeout": "100ms",
        "denyOnFail": deny,
        "descriptors": [{"property": "method", "descriptorKey": "method"}],
    }


def assert_all_acked(cp: ControlPlane, node: str) -> None:
    """`aeraki status`: the sidecar's LDS/CDS/RDS/EDS are ACKed at the version sent, none NACKed."""
    res = cp.cli("status", "--admin-address", f"127.0.0.1:{cp.admin_port}")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(node)]
    assert sorted(r[3] for r in rows) == ["CDS", "EDS", "LDS", "RDS"], res.stdout
    for r in rows:
        assert r[4] == r[5] != "-", f"SENT != ACKED in {r}\n{res.stdout}"
        assert r[6] == "-", f"NACKED in {r}\n{res.stdout}"


@contextlib.contextmanager
def mesh(tmp_path, protocol: str, backend_port: int, limits: dict, rls_port: int | None = None,
         route_extra: dict | None = None, traffic_policy: dict | None = None):
    """One service (`protocol`, one endpoint v1) on its VIP with a MetaRouter carrying `limits`
    (localRateLimit / globalRateLimit) and `route_extra` on both routes, and a DestinationRule with
    `traffic_policy`; yields (vip, port, proxy) once the sidecar has ACKed everything."""
    host = DUBBO_HOST if protocol == "dubbo" else THRIFT_HOST
    d = tmp_path / "mesh"
    d.mkdir()
    vip, port = f"127.0.{NET}.1", free_port()
    routes = [mr_route("hello", host, "v1", match={"method": "sayHello"}), mr_route("others", host, "v1")]
    for r in routes:
        r.update(route_extra or {})
    router = meta_router(f"{protocol}-ratelimit", host, routes)
    router["spec"].update(limits)
    dr_spec = {"host": host, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
    if traffic_policy:
        dr_spec["trafficPolicy"] = traffic_policy
    docs = [
        service_entry(f"{protocol}-ratelimit", host, vip, port, protocol, {"v1": backend_port}),
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": f"{protocol}-ratelimit", "namespace": "e2e"},
            "spec": dr_spec,
        },
        router,
    ]
    if rls_port is not None:
        docs.append(rls_service_entry(rls_port))
    write_yaml(d / "mesh.yaml", docs)
    with ControlPlane(d) as cp, AdsProxy(f"rl-{protocol}", cp.xds_port) as proxy:
        proxy.wait_listening(vip, port, cp=cp)
        cp.wait_acked(proxy.node_id)
        assert_all_acked(cp, proxy.node_id)
        assert cp.status()["config"]["last_error"] is None
        yield vip, port, proxy


def sidecar_metric(proxy: AdsProxy, name: str, **labels) -> float:
    code, body = proxy.get("/metrics")
    assert code == 200, body[:300]
    return metric_value(body, name, **labels)


def calls(protocol: str, vip: str, port: int, method: str, n: int = 10) -> list[tuple[bool, str]]:
    """n calls of `method` through the sidecar → [(ok, answer or error text)]."""
    if protocol == "dubbo":
        args = ["x"] if method == "sayHello" else []
        got, _ = dubbo_calls(vip, port, method=method, args=args, count=n, timeout_ms=5000)
        assert len(got) == n, got
        return [(c["ok"], c["result"] if c["ok"] else c["error"]) for c in got]
    thrift_method = method if method == "sayHello" else "echo"
    return [thrift_call(vip, port, thrift_method, "x", timeout_ms=5000) for _ in range(n)]


def other_method(protocol: str) -> str:
    return "echoAttachments" if protocol == "dubbo" else "echo"


def assert_native_rate_limited(protocol: str, results, reason: str) -> None:
    for ok, text in results:
        if ok:
            continue
        assert reason in text, results
        if protocol == "thrift":
            assert text.startswith("TApplicationException"), results


# ----------------------------------------------------------------------------- local


@pytest.mark.parametrize("protocol", ["dubbo", "thrift"])
def test_metarouter_local_rate_limit(tmp_path, request, protocol):
    require_binaries()
    backend = request.getfixturevalue(f"{protocol}_v1")
    with mesh(tmp_path, protocol, backend, {"localRateLimit": local_rate_limit()}) as (vip, port, proxy):
        hello = calls(protocol, vip, port, "sayHello")
        assert sum(ok for ok, _ in hello) == 2, hello
        assert all("from v1" in text for ok, text in hello if ok), hello
        assert_native_rate_limited(protocol, hello, "local rate limit")
        other = calls(protocol, vip, port, other_method(protocol))
        assert sum(ok for ok, _ in other) == 5, other
        assert_native_rate_limited(protocol, other, "local rate limit")
        assert sidecar_metric(proxy, "meta_protocol_local_rate_limit_total", result="rate_limited") == 13


# ----------------------------------------------------------------------------- global


def first_success(protocol: str, vip: str, port: int, limit: int = 50) -> list[tuple[bool, str]]:
    """Aeraki's polling: sayHello calls until one succeeds (at most `limit`) → every result."""
    out = []
    for _ in range(limit):
        out += calls(protocol, vip, port, "sayHello", n=1)
        if out[-1][0]:
            return out
        time.sleep(0.1)
    raise AssertionError(f"no sayHello call succeeded in {limit} tries: {out[-3:]}")


@pytest.mark.parametrize("protocol", ["dubbo", "thrift"])
def test_metarouter_global_rate_limit_with_aeraki_ratelimit(tmp_path, request, protocol):
    require_binaries()
    backend = request.getfixturevalue(f"{protocol}_v1")
    with RateLimitService(tmp_path) as rls, \
            mesh(tmp_path, protocol, backend, {"globalRateLimit": global_rate_limit()}, rls.port) as (vip, port, proxy):
        hello = first_success(protocol, vip, port)
        hello += calls(protocol, vip, port, "sayHello")
        assert sum(ok for ok, _ in hello) == 5, hello
        assert all("from v1" in text for ok, text in hello if ok), hello
        assert_native_rate_limited(protocol, hello[-5:], "has been rate limited")
        assert not any(ok for ok, _ in hello[-5:]), hello
        # `match` limits the check to sayHello: another method is never sent to the RLS.
        other = calls(protocol, vip, port, other_method(protocol))
        assert all(ok for ok, _ in other), other
        assert sidecar_metric(proxy, "meta_protocol_global_rate_limit_total", result="ok") == 5
        assert rls.metric("ratelimit_requests_total", domain="production", result="ok") == 5
        over = sidecar_metric(proxy, "meta_protocol_global_rate_limit_total", result="over_limit")
        assert over >= 5 and rls.metric("ratelimit_requests_total", domain="production", result="over_limit") == over


@pytest.mark.parametrize("deny", [True, False], ids=["denyOnFail", "allowOnFail"])
@pytest.mark.parametrize("protocol", ["dubbo", "thrift"])
def test_metarouter_global_rate_limit_when_the_service_is_stopped(tmp_path, request, protocol, deny):
    require_binaries()
    backend = request.getfixturevalue(f"{protocol}_v1")
    limits = {"globalRateLimit": global_rate_limit(deny=deny)}
    with RateLimitService(tmp_path) as rls, mesh(tmp_path, protocol, backend, limits, rls.port) as (vip, port, proxy):
        assert first_success(protocol, vip, port), "the RLS answers before it is stopped"
        rls.rls.stop()
        hello = calls(protocol, vip, port, "sayHello", n=5)
        if deny:
            assert not any(ok for ok, _ in hello), hello
            assert_native_rate_limited(protocol, hello, "rate-limit service failed")
            assert sidecar_metric(proxy, "meta_protocol_global_rate_limit_total", result="error") == 5
        else:
            assert all(ok for ok, _ in hello), hello
            assert sidecar_metric(proxy, "meta_protocol_global_rate_limit_total",
                                  result="failure_mode_allowed") == 5


def test_every_new_field_is_acked_and_served(tmp_path, thrift_v1):
    """MetaRoute timeout/retries/fault, both rate limits, and DestinationRule connectionPool,
    outlierDetection and loadBalancer in one config: no NACK (checked in mesh()), and calls work."""
    require_binaries()
    route_extra = {
        "timeout": "2s",
        "retries": {"attempts": 2, "perTryTimeout": "500ms",
                    "retryOn": "connect-failure,refused-stream,reset,gateway-error,5xx,error-response,"
                               "status:INTERNAL_ERROR"},
        "fault": {"delay": {"fixedDelay": "1ms", "percentage": {"value": 100}},
                  "abort": {"percentage": {"value": 0.0001}, "errorCode": "OVER_LIMIT"}},
    }
    traffic_policy = {
        "loadBalancer": {"simple": "LEAST_REQUEST"},
        "connectionPool": {"tcp": {"maxConnections": 10, "connectTimeout": "1s"},
                           "http": {"http1MaxPendingRequests": 10, "http2MaxRequests": 100, "maxRetries": 3}},
        "outlierDetection": {"consecutive5xxErrors": 5, "consecutiveGatewayErrors": 3,
                             "consecutiveLocalOriginFailures": 3, "splitExternalLocalOriginErrors": True,
                             "interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 50,
                             "minHealthPercent": 10},
    }
    with RateLimitService(tmp_path) as rls:
        limits = {"localRateLimit": local_rate_limit(), "globalRateLimit": global_rate_limit()}
        with mesh(tmp_path, "thrift", thrift_v1, limits, rls.port, route_extra, traffic_policy) as (vip, port, proxy):
            ok, text = first_success("thrift", vip, port)[-1]
            assert ok and text == "hello x from v1", text
            code, body = proxy.get("/metrics")
            assert code == 200
            assert metric_value(body, "meta_protocol_faults_total", kind="delay") >= 1
            assert metric_value(body, "meta_protocol_global_rate_limit_total", result="ok") >= 1
            assert metric_value(body, "meta_protocol_local_rate_limit_total") >= 1
