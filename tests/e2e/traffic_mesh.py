"""The shared mesh of test_traffic.py: one `aeraki serve` + one meta-proxy sidecar (ADS) in front of real
Dubbo (sofa-rpc-node) and Thrift (thriftpy2) peers, reconfigured live between tests.

Each protocol has one ServiceEntry on its own loopback VIP whose endpoints are
- v1, v2, v3: ordinary providers, also labelled `app: sample` (the 3-endpoint subsets);
- slow: a provider that delays every answer by SLOW_MS (a slow mirror);
- dead: a port nothing listens on (a dead mirror).
The DestinationRule has a subset per version plus `sample` (ROUND_ROBIN over v1..v3), `ring`
(ring hash on the `method` key) and `maglev` (maglev on the `method` key), all over `app: sample`.

`TrafficMesh.apply_*` rewrites one MetaRouter file and waits until the control plane has published
it and the sidecar has ACKed every type of the new generation (polling `/status`, no sleeps).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from cp_harness import (
    DUBBO_HOST,
    AdsProxy,
    ControlPlane,
    meta_router,
    wait_until,
    write_yaml,
)
from harness import (
    NODE_PEERS,
    VENV_PY,
    Proc,
    dubbo_client_cmd,
    dubbo_server,
    free_port,
    metric_value,
    parse_client_output,
)

THRIFT_HOST = "thrift-traffic.e2e.svc.cluster.local"
NET = 62  # VIPs 127.0.62.1 (Thrift) and 127.0.62.2 (Dubbo)
SLOW_MS = 1000  # the slow mirror's delay
VERSIONS = ("v1", "v2", "v3")


class LoggingThriftServer(Proc):
    """tests/peers/thrift_server.py with --log-calls (one `CALL <method> <args>` line per call)."""

    def __init__(self, name: str, delay_ms: int = 0):
        self.port = free_port()
        args = [VENV_PY, NODE_PEERS / "thrift_server.py", "--port", self.port, "--name", name, "--log-calls"]
        if delay_ms:
            args += ["--delay-ms", delay_ms]
        super().__init__(args, f"thrift-server-{name}")

    def start(self) -> "LoggingThriftServer":
        super().start()
        try:
            self.wait_for("READY", 20.0)
        except BaseException:
            self.stop()
            raise
        return self


def calls_seen(proc: Proc, method: str, tag: str) -> int:
    """How many `CALL <method> ...` lines of a provider's log mention `tag`."""
    prefix = f"CALL {method} "
    return sum(1 for line in proc.log().splitlines() if line.startswith(prefix) and tag in line)


def settled_count(proc: Proc, method: str, tag: str, at_least: int = 1, timeout: float = 5.0) -> int:
    """calls_seen once it has reached `at_least` (or `timeout` passed) and stopped growing for 0.5 s."""
    deadline = time.monotonic() + timeout
    last, since = calls_seen(proc, method, tag), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = calls_seen(proc, method, tag)
        if now != last:
            last, since = now, time.monotonic()
        elif now >= at_least and time.monotonic() - since >= 0.5:
            break
    return last


def _service_entry(name: str, host: str, vip: str, port: int, app: str, endpoints: dict[str, int]) -> dict:
    port_name = f"tcp-metaprotocol-{app}"
    eps = []
    for version, backend in endpoints.items():
        labels = {"version": version}
        if version in VERSIONS:
            labels["app"] = "sample"
        eps.append({"address": "127.0.0.1", "ports": {port_name: int(backend)}, "labels": labels})
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "e2e"},
        "spec": {
            "hosts": [host],
            "addresses": [vip],
            "ports": [{"number": int(port), "name": port_name, "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": eps,
        },
    }


def _destination_rule(name: str, host: str) -> dict:
    sample = {"app": "sample"}
    subsets = [{"name": v, "labels": {"version": v}} for v in (*VERSIONS, "slow", "dead")]
    subsets += [
        {"name": "sample", "labels": sample, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
        {"name": "ring", "labels": sample, "trafficPolicy": {"loadBalancer": {"consistentHash": {
            "httpHeaderName": "method", "ringHash": {"minimumRingSize": 1024}}}}},
        {"name": "maglev", "labels": sample, "trafficPolicy": {"loadBalancer": {"consistentHash": {
            "httpHeaderName": "method", "maglev": {"tableSize": 65537}}}}},
    ]
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "e2e"},
        "spec": {"host": host, "subsets": subsets},
    }


def route(name: str, host: str, destinations, match: dict | None = None, **extra) -> dict:
    """A MetaRoute. destinations: "v1" or [("v1", 20), ("v2", 80)]; match: {"method": "sayHello"} (exact)
    or {"method": {"prefix": "say"}}; extra: other MetaRoute fields in YAML spelling (mirror,
    mirrorPercentage, requestMutation, responseMutation, ...) passed through."""
    if isinstance(destinations, str):
        destinations = [(destinations, None)]
    out: dict = {"name": name}
    if match:
        out["match"] = {"attributes": {k: (v if isinstance(v, dict) else {"exact": v}) for k, v in match.items()}}
    out["route"] = [
        {"destination": {"host": host, "subset": s}, **({"weight": int(w)} if w is not None else {})}
        for s, w in destinations
    ]
    out.update(extra)
    return out


class TrafficMesh:
    """Config dir + control plane + sidecar over the given backends (see the module doc)."""

    def __init__(self, root: Path, dubbo_ports: dict[str, int], thrift_ports: dict[str, int]):
        self.dir = Path(root) / "mesh"
        self.dir.mkdir()
        self.thrift_vip, self.dubbo_vip = f"127.0.{NET}.1", f"127.0.{NET}.2"
        self.thrift_port, self.dubbo_port = free_port(), free_port()
        write_yaml(self.dir / "services.yaml", [
            _service_entry("thrift-traffic", THRIFT_HOST, self.thrift_vip, self.thrift_port, "thrift", thrift_ports),
            _service_entry("dubbo-traffic", DUBBO_HOST, self.dubbo_vip, self.dubbo_port, "dubbo", dubbo_ports),
        ])
        write_yaml(self.dir / "destination-rules.yaml", [
            _destination_rule("thrift-traffic", THRIFT_HOST),
            _destination_rule("dubbo-traffic", DUBBO_HOST),
        ])
        write_yaml(self.dir / "thrift-router.yaml", [meta_router("thrift-traffic", THRIFT_HOST,
                                                                [route("all", THRIFT_HOST, "v1")])])
        write_yaml(self.dir / "dubbo-router.yaml", [meta_router("dubbo-traffic", DUBBO_HOST,
                                                               [route("all", DUBBO_HOST, "v1")])])
        self.cp = ControlPlane(self.dir)
        self.proxy: AdsProxy | None = None

    def __enter__(self) -> "TrafficMesh":
        self.cp.start()
        try:
            self.proxy = AdsProxy("traffic", self.cp.xds_port).__enter__()
            self.proxy.wait_listening(self.thrift_vip, self.thrift_port, cp=self.cp)
            self.proxy.wait_listening(self.dubbo_vip, self.dubbo_port, cp=self.cp)
            self.wait_synced(0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proxy is not None:
            self.proxy.__exit__()
        self.cp.stop()

    def diag(self) -> str:
        out = self.proxy.log()[-3000:] if self.proxy is not None else ""
        return out + "\n" + self.cp.log()[-3000:]

    def wait_synced(self, after_version: int, timeout: float = 10.0) -> None:
        """Wait until the control plane serves a config generation newer than `after_version` (and no
        refused change), the sidecar has been sent that generation for some type, and every type it
        was sent is ACKed."""
        node = self.proxy.node_id

        def synced():
            status = self.cp.status()
            cfg = status["config"]
            if cfg["last_error"] is not None:
                raise AssertionError(f"config refused: {cfg['last_error']}")
            if cfg["version"] <= after_version:
                return None
            entry = next((p for p in status["proxies"] if p["node"] == node), None)
            if entry is None or not entry["types"]:
                return None
            types = entry["types"]
            if any(t["nack"] is not None and t["nack"]["version"] == t["sent"] for t in types):
                raise AssertionError(f"sidecar NACKed: {json.dumps(types)}")
            newest = str(cfg["version"])
            if not any(t["sent"] == newest for t in types):
                return None
            return all(t["sent"] is not None and t["acked"] == t["sent"] for t in types)

        wait_until(synced, timeout, "the sidecar to ACK the new config",
                   details=lambda: json.dumps(self.cp.status(), indent=1) + "\n" + self.diag())

    def cluster(self, protocol: str, subset: str) -> str:
        """The name of a subset's cluster (`outbound|<port>|<subset>|<host>`)."""
        if protocol == "dubbo":
            return f"outbound|{self.dubbo_port}|{subset}|{DUBBO_HOST}"
        return f"outbound|{self.thrift_port}|{subset}|{THRIFT_HOST}"

    def metric(self, name: str, **labels) -> float:
        """A sidecar metric (sum over the samples carrying `labels`)."""
        code, body = self.proxy.get("/metrics")
        assert code == 200, f"/metrics answered {code}: {body[:300]}"
        return metric_value(body, name, **labels)

    def _apply(self, file: str, doc: dict) -> None:
        before = self.cp.status()["config"]["version"]
        write_yaml(self.dir / file, [doc])
        self.wait_synced(before)

    def apply_dubbo(self, routes) -> None:
        self._apply("dubbo-router.yaml", meta_router("dubbo-traffic", DUBBO_HOST, routes))

    def apply_thrift(self, routes) -> None:
        self._apply("thrift-router.yaml", meta_router("thrift-traffic", THRIFT_HOST, routes))


def dubbo_backends(stack) -> tuple[dict[str, int], dict[str, Proc]]:
    """Starts v1..v3 and the slow Dubbo providers on `stack` (an ExitStack) → (ports incl. dead, procs)."""
    procs = {v: stack.enter_context(dubbo_server(v)) for v in VERSIONS}
    procs["slow"] = stack.enter_context(dubbo_server("slow", delay_ms=SLOW_MS))
    ports = {name: p.port for name, p in procs.items()}
    ports["dead"] = free_port()
    return ports, procs


def thrift_backends(stack) -> tuple[dict[str, int], dict[str, Proc]]:
    """Starts v1..v3 and the slow thriftpy2 servers (all logging calls) → (ports incl. dead, procs)."""
    procs = {v: stack.enter_context(LoggingThriftServer(v)) for v in VERSIONS}
    procs["slow"] = stack.enter_context(LoggingThriftServer("slow", delay_ms=SLOW_MS))
    ports = {name: p.port for name, p in procs.items()}
    ports["dead"] = free_port()
    return ports, procs


def dubbo_calls_with_props(host: str, port: int, method: str, args, attachments, count: int = 1):
    """Like cp_harness.dubbo_calls, with each call's response attachments (`responseProps`)."""
    cmd = dubbo_client_cmd(port, method, args, attachments, count, 1, 3000) + ["--response-props"]
    cmd[cmd.index("--target") + 1] = f"{host}:{port}"
    done = subprocess.run(cmd, cwd=NODE_PEERS, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return parse_client_output(done.stdout, done.stderr)
