"""End-to-end test harness: processes, ports, meta-proxy bootstrap builders and a metrics reader.

Contract: /work/briefs/harness.md (shared by the Dubbo and Thrift end-to-end tests).

Everything started here binds 127.0.0.1 on free ports, logs to a file under `target/e2e-logs/`
(or `$E2E_LOG_DIR`) and is stopped when its context manager exits (whole process group:
SIGTERM, then SIGKILL after 5 s).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

try:  # PyYAML is in tests/requirements.txt; JSON is valid YAML, so fall back to it.
    import yaml as _yaml
except ImportError:  # pragma: no cover
    _yaml = None

REPO = Path(__file__).resolve().parents[2]
VENV_PY = REPO / ".venv" / "bin" / "python"
NODE_PEERS = REPO / "tests" / "peers"
LOG_DIR = Path(os.environ.get("E2E_LOG_DIR", REPO / "target" / "e2e-logs"))

META_PROTOCOL_PROXY_TYPE = "type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy"
TYPED_STRUCT_TYPE = "type.googleapis.com/udpa.type.v1.TypedStruct"

_counter = itertools.count()


def meta_proxy_bin() -> Path:
    """The meta-proxy binary under test (`$META_PROXY_BIN`, else target/debug/meta-proxy)."""
    env = os.environ.get("META_PROXY_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "meta-proxy"


def aeraki_bin() -> Path:
    """The control plane binary under test (`$AERAKI_BIN`, else target/debug/aeraki)."""
    env = os.environ.get("AERAKI_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "aeraki"


# ----------------------------------------------------------------------------- ports


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, proc: "Proc | None" = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port; raise TimeoutError otherwise.

    If `proc` is given and exits meanwhile, raise at once with its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.poll()}) before port {port} opened:\n{proc.log()}")
        if time.monotonic() >= deadline:
            extra = f"\n{proc.log()}" if proc is not None else ""
            raise TimeoutError(f"nothing accepts on 127.0.0.1:{port} after {timeout}s{extra}")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- processes


class Proc:
    """A child process in its own process group, output (stdout+stderr) to a log file.

    Use as a context manager; on exit the whole group is terminated (SIGKILL after 5 s)."""

    def __init__(self, args, name: str, env=None, cwd=None):
        self.args = [str(a) for a in args]
        self.name = name
        self.env = env
        self.cwd = cwd
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.log_path = LOG_DIR / f"{os.getpid()}-{next(_counter):04d}-{safe}.log"
        self.popen: subprocess.Popen | None = None

    # lifecycle
    def start(self) -> "Proc":
        full_env = None
        if self.env is not None:
            full_env = dict(os.environ)
            full_env.update({k: str(v) for k, v in self.env.items()})
        self._log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def __enter__(self) -> "Proc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def poll(self):
        return None if self.popen is None else self.popen.poll()

    def _signal_group(self, sig) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, wait up to `grace` seconds, then SIGKILL it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # children that ignored SIGTERM, or the leader if still running
        self.kill()
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if not self._log_file.closed:
            self._log_file.close()

    def wait(self, timeout: float | None = None) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    # output
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Wait until `text` appears in the log; raise (with the log) on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.log():
                return
            if self.poll() is not None:
                time.sleep(0.05)
                if text in self.log():
                    return
                raise RuntimeError(f"{self.name} exited ({self.poll()}) before printing {text!r}:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} did not print {text!r} within {timeout}s:\n{self.log()}")
            time.sleep(0.05)


# ----------------------------------------------------------------------------- config builders


def _duration(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return f"{value}s"
    return str(value)


def _key_values(items) -> list[dict]:
    if items is None:
        return []
    if isinstance(items, dict):
        items = list(items.items())
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(dict(item))
        else:
            key, value = item
            out.append({"key": key, "value": value})
    return out


def _matchers(match) -> list[dict]:
    if match is None:
        return []
    if isinstance(match, list):  # already a list of HeaderMatcher dicts
        return [dict(m) for m in match]
    out = []
    for name, value in match.items():
        if isinstance(value, dict):
            out.append({"name": name, **value})
        else:
            out.append({"name": name, "exact_match": value})
    return out


def route(name, match=None, cluster=None, weighted=None, request_mutation=None, response_mutation=None,
          timeout=None) -> dict:
    """One MetaProtocol route.

    match: {"method": "sayHello"} (exact), {"method": {"prefix_match": "say"}} (raw HeaderMatcher
    fields), or a list of HeaderMatcher dicts. cluster: one cluster name; weighted: [(cluster, weight)].
    request_mutation/response_mutation: dict or [(key, value)]. timeout: seconds or "0.5s"."""
    if (cluster is None) == (weighted is None):
        raise ValueError("route needs exactly one of cluster / weighted")
    action: dict = {}
    if cluster is not None:
        action["cluster"] = cluster
    else:
        action["weighted_clusters"] = {"clusters": [{"name": c, "weight": int(w)} for c, w in weighted]}
    if timeout is not None:
        action["timeout"] = _duration(timeout)
    matchers = _matchers(match)
    r: dict = {"name": name, "match": {"metadata": matchers} if matchers else {}, "route": action}
    if request_mutation:
        r["request_mutation"] = _key_values(request_mutation)
    if response_mutation:
        r["response_mutation"] = _key_values(response_mutation)
    return r


def meta_listener(name, port, protocol, routes, *, typed_struct=False, filters=None, idle_timeout=None,
                  max_message_size=None) -> dict:
    """An Envoy listener on 127.0.0.1:port whose network filter is the MetaProtocol proxy.

    The listener name and stat_prefix are both `name` (metrics label `listener`)."""
    proxy: dict = {
        "stat_prefix": name,
        "protocol": {"name": protocol, "codec": {"name": f"aeraki.meta_protocol.codec.{protocol}"}},
        "route_config": {"name": name, "routes": list(routes)},
        "meta_protocol_filters": filters if filters is not None else [{"name": "aeraki.meta_protocol.filters.router"}],
    }
    if idle_timeout is not None:
        proxy["idle_timeout"] = _duration(idle_timeout)
    if max_message_size is not None:
        proxy["max_message_size"] = int(max_message_size)
    if typed_struct:
        filt = {
            "name": "envoy.filters.network.meta_protocol_proxy",
            "typed_config": {"@type": TYPED_STRUCT_TYPE, "type_url": META_PROTOCOL_PROXY_TYPE, "value": proxy},
        }
    else:
        filt = {"name": "aeraki.meta_protocol_proxy", "typed_config": {"@type": META_PROTOCOL_PROXY_TYPE, **proxy}}
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": int(port)}},
        "filter_chains": [{"filters": [filt]}],
    }


def static_cluster(name, endpoints, connect_timeout="1s", lb_policy=None) -> dict:
    """A STATIC cluster; `endpoints` is [(host, port)] and may be empty (no healthy upstream)."""
    c: dict = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _duration(connect_timeout),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": int(p)}}}}
                        for h, p in endpoints
                    ]
                }
            ]
            if endpoints
            else [],
        },
    }
    if lb_policy is not None:
        c["lb_policy"] = lb_policy
    return c


def bootstrap(listeners, clusters, admin_port) -> dict:
    """A full Envoy v3 bootstrap with the admin server on 127.0.0.1:admin_port."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": int(admin_port)}}},
        "static_resources": {"listeners": list(listeners), "clusters": list(clusters)},
    }


def dump_config(config: dict, fmt: str = "yaml") -> str:
    if fmt == "json" or _yaml is None:
        return json.dumps(config, indent=2)
    return _yaml.safe_dump(config, sort_keys=False)


# ----------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(v: str) -> str:
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text → [(sample name, labels, value)] (comments skipped)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(3) or "")}
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, value))
    return out


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of the samples called `name` whose labels include all of `labels`."""
    want = {k: str(v) for k, v in labels.items()}
    return sum(
        value
        for sample, have, value in parse_metrics(text)
        if sample == name and all(have.get(k) == v for k, v in want.items())
    )


# ----------------------------------------------------------------------------- meta-proxy


class MetaProxy:
    """meta-proxy on a bootstrap dict; context manager that waits for /ready and stops it on exit."""

    def __init__(self, config: dict, concurrency=2, fmt="yaml", extra_args=None, env=None):
        self.config = config
        self.concurrency = concurrency
        self.fmt = fmt
        sock = config["admin"]["address"]["socket_address"]
        self.admin_port = int(sock["port_value"])
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        suffix = ".json" if fmt == "json" else ".yaml"
        fd, path = tempfile.mkstemp(prefix="meta-proxy-", suffix=suffix, dir=LOG_DIR)
        with os.fdopen(fd, "w") as f:
            f.write(dump_config(config, fmt))
        self.config_path = Path(path)
        args = [meta_proxy_bin(), "--config", self.config_path]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        args += list(extra_args or [])
        proxy_env = {"RUST_LOG": os.environ.get("RUST_LOG", "info"), **(env or {})}
        self.proc = Proc(args, "meta-proxy", env=proxy_env)

    def __enter__(self) -> "MetaProxy":
        binary = meta_proxy_bin()
        if not binary.exists():
            raise RuntimeError(f"meta-proxy binary not found at {binary} (run `cargo build --bins` or set META_PROXY_BIN)")
        self.proc.start()
        try:
            self._wait_ready(10.0)
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"meta-proxy exited ({self.proc.poll()}) before /ready; config {self.config_path}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(self.admin_url + "/ready", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
                    last = f"status {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.05)
        raise TimeoutError(f"meta-proxy not ready after {timeout}s ({last}); config {self.config_path}:\n{self.log()}")

    def log(self) -> str:
        return self.proc.log()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET an admin path → (status, body)."""
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics returned {status}: {body[:500]}")
        return body

    def metric(self, name, **labels) -> float:
        return metric_value(self.metrics(), name, **labels)

    def wait_metric(self, name, at_least: float, timeout: float = 5.0, **labels) -> float:
        """Poll until metric(name, **labels) >= at_least; return the last value (no raise)."""
        deadline = time.monotonic() + timeout
        value = self.metric(name, **labels)
        while value < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.metric(name, **labels)
        return value


# ----------------------------------------------------------------------------- Dubbo peers (Node)

DUBBO_INTERFACE = "org.apache.dubbo.samples.basic.api.DemoService"


def dubbo_server(name: str, port: int | None = None, delay_ms: int = 0, fail_method: str | None = None) -> Proc:
    """A sofa-rpc-node Dubbo provider (tests/peers/dubbo_server.js), not started yet; `.port` is its port.

    Use `with dubbo_server("v1") as s:` (waits for READY)."""
    port = port or free_port()
    args = ["node", NODE_PEERS / "dubbo_server.js", "--port", port, "--name", name]
    if delay_ms:
        args += ["--delay-ms", delay_ms]
    if fail_method:
        args += ["--fail-method", fail_method]
    proc = _ReadyProc(args, f"dubbo-server-{name}", cwd=NODE_PEERS, ready_text="READY")
    proc.port = port
    return proc


class _ReadyProc(Proc):
    """A Proc whose start waits until its log shows `ready_text`."""

    def __init__(self, args, name, ready_text: str, ready_timeout: float = 15.0, **kw):
        super().__init__(args, name, **kw)
        self.ready_text = ready_text
        self.ready_timeout = ready_timeout

    def start(self) -> "Proc":
        super().start()
        try:
            self.wait_for(self.ready_text, self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self


def dubbo_client(port: int, method: str = "sayHello", args=None, attachments=None, count: int = 1,
                 concurrency: int = 1, timeout_ms: int = 3000, wait: float = 60.0):
    """Run tests/peers/dubbo_client.js against 127.0.0.1:port → (calls, summary).

    calls: one dict per call {"i", "ok", "result"|"error", "ms"}; summary: the last line."""
    cmd = dubbo_client_cmd(port, method, args, attachments, count, concurrency, timeout_ms)
    done = subprocess.run(cmd, cwd=NODE_PEERS, capture_output=True, text=True, timeout=wait, stdin=subprocess.DEVNULL)
    return parse_client_output(done.stdout, done.stderr)


def dubbo_client_cmd(port, method="sayHello", args=None, attachments=None, count=1, concurrency=1,
                     timeout_ms=3000) -> list[str]:
    return [
        "node", str(NODE_PEERS / "dubbo_client.js"), "--target", f"127.0.0.1:{port}", "--method", method,
        "--args", json.dumps(args if args is not None else []), "--attachments", json.dumps(attachments or {}),
        "--count", str(count), "--concurrency", str(concurrency), "--timeout-ms", str(timeout_ms),
    ]


def parse_client_output(stdout: str, stderr: str = ""):
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if not lines or not lines[-1].get("summary"):
        raise RuntimeError(f"client printed no summary:\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return lines[:-1], lines[-1]
