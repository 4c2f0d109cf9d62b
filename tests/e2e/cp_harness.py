"""Control-plane end-to-end helpers: the `aeraki serve` process, mesh YAML builders, ADS-bootstrapped
proxies (meta-proxy and Envoy) and a paced Thrift load loop.

Used by test_control_plane.py (meta-proxy) and test_envoy_cp.py (Envoy 1.40). Everything binds
loopback addresses on free ports; every process is a harness.Proc (own process group, log file under
target/e2e-logs/, stopped on exit).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import (
    LOG_DIR,
    NODE_PEERS,
    REPO,
    VENV_PY,
    Proc,
    aeraki_bin,
    free_port,
    dubbo_client_cmd,
    meta_proxy_bin,
    parse_client_output,
)

if str(NODE_PEERS) not in sys.path:  # thrift_common (thriftpy2 client factory) lives with the peers
    sys.path.insert(0, str(NODE_PEERS))

from thrift_common import tp2_client  # noqa: E402

THRIFT_SERVER = NODE_PEERS / "thrift_server.py"
ENVOY_BIN = REPO / ".venv" / "bin" / "envoy"

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

DUBBO_HOST = "org.apache.dubbo.samples.basic.api.demoservice"


# ----------------------------------------------------------------------------- small HTTP / socket helpers


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET url → (status, body); (0, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1, details=None):
    """Poll predicate() until it returns a truthy value (returned); raise AssertionError naming
    `what` (plus details() if given) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- mesh YAML


def service_entry(name: str, host: str, vip: str, port: int, app: str, endpoints: dict[str, int],
                  namespace: str = "e2e") -> dict:
    """A ServiceEntry for `host` on vip:port (port name tcp-metaprotocol-<app>) whose endpoints are
    127.0.0.1 with a per-port override: {version label: backend port}."""
    port_name = f"tcp-metaprotocol-{app}"
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "addresses": [vip],
            "ports": [{"number": int(port), "name": port_name, "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": [
                {"address": "127.0.0.1", "ports": {port_name: int(p)}, "labels": {"version": v}}
                for v, p in endpoints.items()
            ],
        },
    }


def destination_rule(name: str, host: str, versions=("v1", "v2"), namespace: str = "e2e") -> dict:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "host": host,
            "subsets": [{"name": v, "labels": {"version": v}} for v in versions],
        },
    }


def mr_route(name: str, host: str, destinations, match: dict | None = None) -> dict:
    """A MetaRouter route. destinations: "v2" (one subset) or [("v1", 60), ("v2", 40)];
    match: {"method": "sayHello"} (exact) or {"method": {"prefix": "say"}}."""
    if isinstance(destinations, str):
        destinations = [(destinations, None)]
    out: dict = {"name": name}
    if match:
        out["match"] = {
            "attributes": {k: (v if isinstance(v, dict) else {"exact": v}) for k, v in match.items()}
        }
    dests = []
    for subset, weight in destinations:
        d: dict = {"destination": {"host": host, "subset": subset}}
        if weight is not None:
            d["weight"] = int(weight)
        dests.append(d)
    out["route"] = dests
    return out


def meta_router(name: str, host: str, routes, namespace: str = "e2e") -> dict:
    return {
        "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
        "kind": "MetaRouter",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "routes": list(routes)},
    }


def write_yaml(path: Path, docs, atomic: bool = True) -> None:
    """Write docs (a list of dicts) as a multi-document YAML file: atomically (temp file in the same
    directory, then rename) or as a plain in-place rewrite (truncate + write)."""
    text = yaml.safe_dump_all(list(docs), sort_keys=False)
    path = Path(path)
    if atomic:
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------- aeraki serve


class ControlPlane:
    """`aeraki serve` on a config dir; fixed ports so that it can be killed and restarted in place."""

    def __init__(self, config_dir: Path, xds_port: int | None = None, admin_port: int | None = None):
        self.config_dir = Path(config_dir)
        self.xds_port = xds_port or free_port()
        self.admin_port = admin_port or free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.proc: Proc | None = None
        self.generations: list[Proc] = []

    def args(self) -> list:
        return [
            aeraki_bin(), "serve", "--config-dir", self.config_dir,
            "--xds-address", f"127.0.0.1:{self.xds_port}",
            "--admin-address", f"127.0.0.1:{self.admin_port}",
        ]

    def start(self, timeout: float = 15.0) -> "ControlPlane":
        binary = aeraki_bin()
        if not binary.exists():
            raise RuntimeError(f"aeraki binary not found at {binary} (cargo build --bins, or set AERAKI_BIN)")
        self.proc = Proc(self.args(), f"aeraki-{len(self.generations)}", env={"RUST_LOG": "info"})
        self.generations.append(self.proc)
        self.proc.start()
        deadline = time.monotonic() + timeout
        last = (0, "")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aeraki exited ({self.proc.poll()}) before /ready:\n{self.proc.log()}")
            last = http_get(self.admin_url + "/ready", timeout=1.0)
            if last[0] == 200:
                return self
            time.sleep(0.05)
        raise TimeoutError(f"aeraki not ready after {timeout}s (last answer {last}):\n{self.proc.log()}")

    def kill(self) -> None:
        """SIGKILL (no graceful shutdown) and reap."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=5)

    def stop(self) -> None:
        for p in self.generations:
            p.stop()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log()}" for p in self.generations)

    def status(self) -> dict:
        code, body = http_get(self.admin_url + "/status")
        if code != 200:
            raise RuntimeError(f"/status answered {code}: {body[:300]}")
        return json.loads(body)

    def proxy(self, node_id: str) -> dict | None:
        """The /status entry of a connected proxy, or None."""
        for p in self.status()["proxies"]:
            if p["node"] == node_id:
                return p
        return None

    def acked_types(self, node_id: str) -> dict[str, str]:
        """{type_url: acked version} of a proxy's types whose latest sent version is ACKed."""
        p = self.proxy(node_id)
        if p is None:
            return {}
        return {t["type_url"]: t["acked"] for t in p["types"] if t["acked"] is not None and t["acked"] == t["sent"]}

    def wait_acked(self, node_id: str, types=(LDS, CDS, RDS, EDS), timeout: float = 10.0) -> dict:
        """Wait until the proxy has ACKed the latest version of every type in `types`."""
        return wait_until(
            lambda: (lambda a: a if all(t in a for t in types) else None)(self.acked_types(node_id)),
            timeout, f"{node_id} to ACK {[t.rsplit('.', 1)[-1] for t in types]}",
            details=lambda: json.dumps(self.status(), indent=1),
        )

    def cli(self, *args, timeout: float = 20.0) -> subprocess.CompletedProcess:
        return subprocess.run([str(aeraki_bin()), *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- proxies bootstrapped over ADS


def ads_bootstrap(node_id: str, xds_port: int, admin_port: int, envoy: bool = False,
                  locality: dict | None = None) -> dict:
    """An Envoy-style ADS bootstrap: node (with `locality` {region, zone, sub_zone} if given), admin,
    LDS/CDS on ADS, static gRPC cluster `xds-grpc`."""
    cluster: dict = {
        "name": "xds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "xds-grpc",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": int(xds_port)}}}}]}],
        },
    }
    if envoy:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    node = {"id": node_id, "cluster": node_id.split("~")[2].split(".")[0] if "~" in node_id else "e2e"}
    if locality:
        node["locality"] = locality
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": int(admin_port)}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [cluster]},
    }


def node_id(name: str) -> str:
    """An Istio-style sidecar node id."""
    return f"sidecar~127.0.0.1~{name}.e2e~e2e.svc.cluster.local"


class AdsProxy:
    """meta-proxy (or Envoy) on an ADS bootstrap. Starting does NOT wait for config: use
    wait_listening() (the VIP listener came over LDS) or the control plane's status."""

    def __init__(self, name: str, xds_port: int, envoy: bool = False, locality: dict | None = None):
        self.node_id = node_id(name)
        self.envoy = envoy
        self.admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.config_path = LOG_DIR / f"{os.getpid()}-{name}-bootstrap.yaml"
        self.config_path.write_text(yaml.safe_dump(ads_bootstrap(self.node_id, xds_port, self.admin_port, envoy,
                                                                 locality),
                                                   sort_keys=False))
        if envoy:
            args = [ENVOY_BIN, "-c", self.config_path, "--disable-hot-restart", "--concurrency", "1",
                    "-l", "info", "--drain-time-s", "1"]
            self.proc = Proc(args, f"envoy-{name}")
        else:
            args = [meta_proxy_bin(), "--config", self.config_path, "--concurrency", "2"]
            self.proc = Proc(args, f"meta-proxy-{name}", env={"RUST_LOG": os.environ.get("RUST_LOG", "info")})

    def __enter__(self) -> "AdsProxy":
        binary = ENVOY_BIN if self.envoy else meta_proxy_bin()
        if not Path(binary).exists():
            raise RuntimeError(f"proxy binary not found at {binary}")
        self.proc.start()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stop()

    def log(self) -> str:
        return f"--- {self.proc.name} ({self.proc.log_path})\n{self.proc.log()}"

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.admin_url + path)

    def wait_listening(self, host: str, port: int, timeout: float = 10.0, cp: ControlPlane | None = None) -> None:
        def ok():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.name} exited ({self.proc.poll()}):\n{self.log()}")
            return accepts(host, port)

        def details():
            out = self.log()[-4000:]
            if cp is not None:
                out += "\n" + cp.log()[-4000:]
            return out

        wait_until(ok, timeout, f"{self.proc.name} to listen on {host}:{port}", details=details)


# ----------------------------------------------------------------------------- backends


class ThriftServer(Proc):
    """tests/peers/thrift_server.py (thriftpy2, binary framed) answering "hello X from <name>"."""

    def __init__(self, name: str, port: int | None = None):
        self.port = port or free_port()
        super().__init__([VENV_PY, THRIFT_SERVER, "--port", self.port, "--name", name], f"thrift-server-{name}")

    def start(self) -> "ThriftServer":
        super().start()
        try:
            self.wait_for("READY", 20.0)
        except BaseException:
            self.stop()
            raise
        return self


def thrift_call(host: str, port: int, method: str = "sayHello", arg: str = "e2e", timeout_ms: int = 3000):
    """One call on a fresh thriftpy2 connection → (ok, result-or-error text)."""
    client = None
    try:
        client = tp2_client(port, "binary", "framed", timeout_ms, host)
        return True, getattr(client, method)(*([arg] if method != "slow" else [int(arg)]))
    except Exception as e:  # noqa: BLE001 - any failure is a result here
        return False, f"{type(e).__name__}: {e}"
    finally:
        if client is not None:
            client.close()


def thrift_calls(host: str, port: int, n: int, method: str = "sayHello", arg: str = "e2e", timeout_ms: int = 3000):
    """n calls on ONE thriftpy2 connection → list of (ok, result-or-error text)."""
    out = []
    client = tp2_client(port, "binary", "framed", timeout_ms, host)
    try:
        for i in range(n):
            try:
                args = [int(arg)] if method == "slow" else [f"{arg}-{i}"]
                out.append((True, getattr(client, method)(*args)))
            except Exception as e:  # noqa: BLE001
                out.append((False, f"{type(e).__name__}: {e}"))
                break
    finally:
        client.close()
    return out


def version_of(answer: str) -> str:
    """"hello x from v2" → "v2"; "slept 0 on v1" → "v1"."""
    for sep in (" from ", " on "):
        if sep in answer:
            return answer.rsplit(sep, 1)[1]
    return answer


def wait_thrift_version(host: str, port: int, version: str, timeout: float, what: str = "", details=None) -> float:
    """Poll (fresh connection each time) until sayHello answers from `version`; return seconds taken."""
    start = time.monotonic()
    seen = []

    def ok():
        good, text = thrift_call(host, port, timeout_ms=1000)
        seen.append(text)
        return good and version_of(text) == version

    def more():
        out = f"last answers: {seen[-3:]}"
        if details is not None:
            out += "\n" + details()
        return out

    wait_until(ok, timeout, what or f"sayHello via {host}:{port} to answer from {version}", interval=0.1,
               details=more)
    return time.monotonic() - start


class ThriftLoad(threading.Thread):
    """Calls sayHello at a fixed rate on ONE thriftpy2 connection (reconnecting only after a failure)
    and records (monotonic time, ok, answer or error) per call."""

    def __init__(self, host: str, port: int, rps: float = 50.0, timeout_ms: int = 2000):
        super().__init__(daemon=True)
        self.host, self.port, self.period, self.timeout_ms = host, port, 1.0 / rps, timeout_ms
        self.records: list[tuple[float, bool, str]] = []
        self.connections = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        client = None
        i = 0
        next_at = time.monotonic()
        while not self._halt.is_set():
            t = time.monotonic()
            try:
                if client is None:
                    client = tp2_client(self.port, "binary", "framed", self.timeout_ms, self.host)
                    self.connections += 1
                record = (t, True, client.sayHello(f"load-{i}"))
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                record = (t, False, f"{type(e).__name__}: {e}")
                if client is not None:
                    client.close()
                client = None
            with self._lock:
                self.records.append(record)
            i += 1
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                next_at = time.monotonic()
        if client is not None:
            client.close()

    def __enter__(self) -> "ThriftLoad":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def snapshot(self) -> list[tuple[float, bool, str]]:
        with self._lock:
            return list(self.records)

    def failures(self) -> list[tuple[float, bool, str]]:
        return [r for r in self.snapshot() if not r[1]]

    def since(self, t: float) -> list[tuple[float, bool, str]]:
        return [r for r in self.snapshot() if r[0] >= t]

    def count_after(self, t: float) -> int:
        return len(self.since(t))

    def wait_calls_after(self, t: float, n: int, timeout: float) -> None:
        wait_until(lambda: self.count_after(t) >= n, timeout, f"{n} load calls", interval=0.05)

    def versions(self, records) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, ok, text in records:
            key = version_of(text) if ok else "FAILED"
            out[key] = out.get(key, 0) + 1
        return out


def require_binaries(*extra: Path) -> None:
    """Fail (not skip) when a binary under test is missing: CI builds them."""
    for b in (aeraki_bin(), meta_proxy_bin(), *extra):
        if not Path(b).exists():
            pytest.fail(f"binary missing at {b}: run `cargo build --bins` (scripts/test does), "
                        "or set AERAKI_BIN / META_PROXY_BIN")


def dubbo_calls(host: str, port: int, method: str = "sayHello", args=None, attachments=None, count: int = 1,
                timeout_ms: int = 3000):
    """tests/peers/dubbo_client.js against host:port (one connection) → (calls, summary)."""
    cmd = dubbo_client_cmd(port, method, args, attachments, count, 1, timeout_ms)
    cmd[cmd.index("--target") + 1] = f"{host}:{port}"
    done = subprocess.run(cmd, cwd=NODE_PEERS, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return parse_client_output(done.stdout, done.stderr)
