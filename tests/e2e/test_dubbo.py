"""Dubbo end-to-end: real sofa-rpc-node/dubbo-remoting clients and providers through meta-proxy.

Topology (one meta-proxy for the module, two listeners):
  dubbo_routes   routes by attachment / method to v1 and v2, a mutation route, and one route per
                 local-reply case (selected by the `target` attachment)
  dubbo_weighted one weighted route v1:30 / v2:70, configured as Aeraki emits it (TypedStruct)
Metrics are checked as deltas, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time

import pytest

from harness import (
    DUBBO_INTERFACE,
    REPO,
    MetaProxy,
    bootstrap,
    dubbo_client,
    dubbo_client_cmd,
    dubbo_server,
    free_port,
    meta_listener,
    parse_client_output,
    route,
    static_cluster,
)

CLIENT_TIMEOUT_MS = 5000
PROMPT_MS = 2000  # a local reply must reach the client well before its own timeout


# ----------------------------------------------------------------------------- raw peers


class ReadThenCloseServer:
    """A TCP server that reads whatever arrives and closes the connection (upstream closed mid-request)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.recv(65536)
                except OSError:
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def closed_port() -> int:
    """A port with nothing listening (bound then released)."""
    return free_port()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def h_str(s: str) -> bytes:
    """A hessian2 string (UTF-8; lengths in characters, BMP only)."""
    data = s.encode()
    n = len(s)
    if n < 32:
        return bytes([n]) + data
    if n < 1024:
        return bytes([0x30 + (n >> 8), n & 0xFF]) + data
    return b"S" + struct.pack(">H", n) + data


def dubbo_request(request_id: int, method: str, arg: str, two_way: bool = True, attachments=None) -> bytes:
    """A dubbo2 request frame calling DemoService.<method>(String arg), built by hand."""
    atts = {"path": DUBBO_INTERFACE, "interface": DUBBO_INTERFACE, "version": "1.0.0", **(attachments or {})}
    body = h_str("2.0.2") + h_str(DUBBO_INTERFACE) + h_str("1.0.0") + h_str(method)
    body += h_str("Ljava/lang/String;") + h_str(arg)
    body += b"H" + b"".join(h_str(k) + h_str(v) for k, v in atts.items()) + b"Z"
    flag = 0x80 | 0x02 | (0x40 if two_way else 0)
    return b"\xda\xbb" + bytes([flag, 0]) + struct.pack(">qi", request_id, len(body)) + body


def read_frame(sock: socket.socket) -> tuple[bytes, bytes]:
    header = recv_exact(sock, 16)
    assert header[:2] == b"\xda\xbb", header
    return header, recv_exact(sock, struct.unpack(">i", header[12:16])[0])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backends(node_peers):
    with (
        dubbo_server("v1") as v1,
        dubbo_server("v2") as v2,
        dubbo_server("slow", delay_ms=3000) as slow,
        ReadThenCloseServer() as resetter,
    ):
        yield {"v1": v1, "v2": v2, "slow": slow, "resetter": resetter}


@pytest.fixture(scope="module")
def proxy(backends, proxy_bin):
    routes_port, weighted_port, admin_port = free_port(), free_port(), free_port()
    routes = [
        # local-reply cases, chosen by the `target` attachment
        route("to-unknown-cluster", {"target": "nowhere"}, cluster="no-such-cluster"),
        route("to-empty", {"target": "empty"}, cluster="empty"),
        route("to-closed", {"target": "closed"}, cluster="closed"),
        route("to-resetter", {"target": "resetter"}, cluster="resetter"),
        route("to-slow", {"target": "slow"}, cluster="slow", timeout="0.5s"),
        # routing by attachment, then by method
        route("canary", {"env": "canary"}, cluster="v2"),
        route(
            "echo",
            {"method": "echoAttachments"},
            cluster="v1",
            request_mutation=[("foo", "bar"), ("x-mesh", "meta-proxy")],
        ),
        route("fail-to-v2", {"method": "fail"}, cluster="v2"),
        route("crash-to-v1", {"method": "crash"}, cluster="v1"),
        route("hello", {"method": "sayHello", "interface": {"prefix_match": "org.apache.dubbo."}}, cluster="v1"),
        # anything else: no route
    ]
    config = bootstrap(
        [
            meta_listener("dubbo_routes", routes_port, "dubbo", routes),
            meta_listener(
                "dubbo_weighted",
                weighted_port,
                "dubbo",
                [route("split", weighted=[("v1", 30), ("v2", 70)])],
                typed_struct=True,
            ),
        ],
        [
            static_cluster("v1", [("127.0.0.1", backends["v1"].port)]),
            static_cluster("v2", [("127.0.0.1", backends["v2"].port)]),
            static_cluster("slow", [("127.0.0.1", backends["slow"].port)]),
            static_cluster("resetter", [("127.0.0.1", backends["resetter"].port)]),
            static_cluster("closed", [("127.0.0.1", closed_port())], connect_timeout="1s"),
            static_cluster("empty", []),
        ],
        admin_port,
    )
    with MetaProxy(config, concurrency=2) as mp:
        mp.routes_port = routes_port
        mp.weighted_port = weighted_port
        yield mp


def call(port, method="sayHello", args=None, attachments=None, **kw):
    calls, summary = dubbo_client(port, method, args if args is not None else ["e2e"], attachments,
                                  timeout_ms=kw.pop("timeout_ms", CLIENT_TIMEOUT_MS), **kw)
    return calls, summary


# ----------------------------------------------------------------------------- without the proxy


def test_peers_talk_directly(backends):
    """The third-party peers work on their own (client → provider, no proxy)."""
    port = backends["v1"].port
    calls, summary = call(port, "sayHello", ["direct-{i}"], count=3)
    assert summary["ok"] == 3, calls
    assert [c["result"] for c in calls] == [f"hello direct-{i} from v1" for i in range(3)]

    calls, _ = call(port, "echoAttachments", [], {"k": "v"})
    echoed = json.loads(calls[0]["result"])
    assert echoed["server"] == "v1" and echoed["attachments"]["k"] == "v"

    calls, _ = call(port, "fail", [])
    assert not calls[0]["ok"] and "fail() raised in v1" in calls[0]["error"]


def test_raw_frames_understood_by_provider(backends):
    """The hand-built frames used below are valid Dubbo: the real provider answers them (no proxy)."""
    v1 = backends["v1"]
    with socket.create_connection(("127.0.0.1", v1.port), timeout=5) as s:
        s.sendall(dubbo_request(77, "sayHello", "raw-direct"))
        header, body = read_frame(s)
        assert header[3] == 20 and struct.unpack(">q", header[4:12])[0] == 77
        assert b"hello raw-direct from v1" in body
        s.sendall(heartbeat_frame(78))
        header, _ = read_frame(s)
        assert header[2] == 0x22 and header[3] == 20 and struct.unpack(">q", header[4:12])[0] == 78


# ----------------------------------------------------------------------------- routing


@pytest.mark.proxy
def test_route_by_method_and_attachment(proxy):
    calls, _ = call(proxy.routes_port, "sayHello", ["a"])
    assert calls[0] == {**calls[0], "ok": True, "result": "hello a from v1"}, calls

    calls, _ = call(proxy.routes_port, "sayHello", ["b"], {"env": "canary"})
    assert calls[0]["ok"] and calls[0]["result"] == "hello b from v2", calls

    # method routing: fail() goes to v2 (the error text names the provider)
    calls, _ = call(proxy.routes_port, "fail", [])
    assert not calls[0]["ok"] and "in v2" in calls[0]["error"], calls

    assert proxy.metric("meta_protocol_upstream_requests_total", listener="dubbo_routes", route="canary",
                        cluster="v2") >= 1
    assert proxy.metric("meta_protocol_downstream_requests_total", listener="dubbo_routes", protocol="dubbo",
                        kind="request") >= 3


@pytest.mark.proxy
def test_weighted_split(proxy):
    n = 200
    calls, summary = call(proxy.weighted_port, "sayHello", ["w{i}"], count=n, concurrency=10)
    assert summary["ok"] == n, [c for c in calls if not c["ok"]][:5]
    v1 = sum(c["result"].endswith("from v1") for c in calls)
    v2 = sum(c["result"].endswith("from v2") for c in calls)
    assert v1 + v2 == n
    # expected 60 / 140; sd = sqrt(200 * 0.3 * 0.7) ≈ 6.5: accept ±4 sd
    assert abs(v1 - 60) <= 26, (v1, v2)


@pytest.mark.proxy
def test_request_mutation_reaches_provider(proxy):
    calls, _ = call(proxy.routes_port, "echoAttachments", [], {"keep": "me", "foo": "original"})
    assert calls[0]["ok"], calls
    echoed = json.loads(calls[0]["result"])
    attachments = echoed["attachments"]
    assert echoed["server"] == "v1"
    assert attachments["foo"] == "bar"  # overridden by the route
    assert attachments["x-mesh"] == "meta-proxy"  # added by the route
    assert attachments["keep"] == "me"  # the caller's own attachment survives
    assert attachments["path"] == "org.apache.dubbo.samples.basic.api.DemoService"


@pytest.mark.proxy
def test_exceptions_pass_through(proxy):
    before = proxy.metric("meta_protocol_responses_total", listener="dubbo_routes", status="error")
    # exception result (status OK + exception flag), as a Java provider sends for a business exception
    calls, _ = call(proxy.routes_port, "fail", [])
    assert not calls[0]["ok"] and "fail() raised in v2" in calls[0]["error"], calls
    # error status (SERVER_ERROR) with a message
    calls, _ = call(proxy.routes_port, "crash", [])
    assert not calls[0]["ok"] and "crash() in v1" in calls[0]["error"], calls
    assert proxy.wait_metric("meta_protocol_responses_total", before + 2, listener="dubbo_routes",
                             status="error") >= before + 2


# ----------------------------------------------------------------------------- local replies


LOCAL_REPLY_CASES = [
    # (name, method, attachments, reason label)
    ("no_route", "echoNothing", {}, "no_route"),
    ("unknown_cluster", "sayHello", {"target": "nowhere"}, "unknown_cluster"),
    ("no_healthy_upstream", "sayHello", {"target": "empty"}, "no_healthy_upstream"),
    ("connect_failure", "sayHello", {"target": "closed"}, "connect_failure"),
    ("upstream_closed", "sayHello", {"target": "resetter"}, "upstream_reset"),
    ("route_timeout", "sayHello", {"target": "slow"}, "timeout"),
]


@pytest.mark.proxy
@pytest.mark.parametrize("case,method,attachments,reason", LOCAL_REPLY_CASES, ids=[c[0] for c in LOCAL_REPLY_CASES])
def test_local_reply_is_prompt_client_error(proxy, case, method, attachments, reason):
    before = proxy.metric("meta_protocol_local_replies_total", listener="dubbo_routes", reason=reason)
    calls, summary = call(proxy.routes_port, method, ["lr"], attachments, count=2)
    assert summary["failed"] == 2, calls
    for c in calls:
        assert not c["ok"]
        assert c["ms"] < PROMPT_MS, f"{case}: the client waited {c['ms']} ms (its timeout is {CLIENT_TIMEOUT_MS})"
    if case == "route_timeout":
        assert all(c["ms"] >= 400 for c in calls), calls  # the route timeout is 0.5 s
    after = proxy.wait_metric("meta_protocol_local_replies_total", before + 2, listener="dubbo_routes", reason=reason)
    assert after >= before + 2, f"local_replies_total{{reason={reason}}}: {before} → {after}"
    # the connection stays usable after a local reply: a normal call right after works
    calls, _ = call(proxy.routes_port, "sayHello", ["after"])
    assert calls[0]["ok"], calls


# ----------------------------------------------------------------------------- concurrency


@pytest.mark.proxy
@pytest.mark.slow
def test_many_concurrent_clients_share_upstream_connections(proxy, backends):
    clients, per_client = 20, 50
    before_conns = proxy.metric("meta_protocol_upstream_connections_total", cluster="v1")
    before_seen = backends["v1"].log().count("CONNECTION ")
    procs = []
    deadline = time.monotonic() + 120
    for k in range(clients):
        cmd = dubbo_client_cmd(proxy.routes_port, "sayHello", [f"c{k}-{{i}}"], None, per_client, 5, CLIENT_TIMEOUT_MS)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      stdin=subprocess.DEVNULL))
    try:
        for k, p in enumerate(procs):
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            calls, summary = parse_client_output(out, err)
            assert summary["ok"] == per_client, (k, [c for c in calls if not c["ok"]][:3])
            for c in calls:
                assert c["result"] == f"hello c{k}-{c['i']} from v1", (k, c)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    opened = proxy.metric("meta_protocol_upstream_connections_total", cluster="v1") - before_conns
    # 20 downstream connections, 1000 requests: the proxy multiplexes them on a few upstream connections
    assert opened <= 4, f"{opened} new upstream connections for {clients} clients"
    seen = backends["v1"].log().count("CONNECTION ") - before_seen  # the provider's own count
    assert seen <= 4, f"provider v1 accepted {seen} new connections for {clients} clients"


# ----------------------------------------------------------------------------- raw protocol


def heartbeat_frame(request_id: int) -> bytes:
    # magic, flag = request | two-way | event | hessian2, status 0, id, body length 1, body: hessian null
    return b"\xda\xbb\xe2\x00" + struct.pack(">qi", request_id, 1) + b"\x4e"


@pytest.mark.proxy
def test_heartbeat_answered(proxy):
    with socket.create_connection(("127.0.0.1", proxy.routes_port), timeout=3) as s:
        for request_id in (7, 0x0102030405060708):
            s.sendall(heartbeat_frame(request_id))
            header = recv_exact(s, 16)
            assert header[:2] == b"\xda\xbb"
            assert header[2] & 0x80 == 0, "a response"
            assert header[2] & 0x20, "an event (heartbeat)"
            assert header[2] == 0x22, hex(header[2])
            assert header[3] == 20, "status OK"
            assert struct.unpack(">q", header[4:12])[0] == request_id
            body_len = struct.unpack(">i", header[12:16])[0]
            assert 0 <= body_len <= 16
            recv_exact(s, body_len)


@pytest.mark.proxy
def test_request_ids_restored(proxy):
    """Ids are rewritten upstream; the caller gets its own ids back, even extreme ones, pipelined."""
    ids = [0, 1, 2**63 - 1, -1, 0x0102030405060708]
    with socket.create_connection(("127.0.0.1", proxy.routes_port), timeout=5) as s:
        s.sendall(b"".join(dubbo_request(i, "sayHello", f"id{n}") for n, i in enumerate(ids)))
        got = {}
        for _ in ids:
            header, body = read_frame(s)
            assert header[3] == 20, header
            got[struct.unpack(">q", header[4:12])[0]] = body
    assert sorted(got) == sorted(ids)
    for n, i in enumerate(ids):
        assert f"hello id{n} from v1".encode() in got[i]


@pytest.mark.proxy
def test_oneway_forwarded(proxy, backends):
    """A one-way request reaches the provider; the provider's stray reply never reaches the caller."""
    marker = f"oneway-{time.monotonic_ns()}"
    with socket.create_connection(("127.0.0.1", proxy.routes_port), timeout=5) as s:
        s.sendall(dubbo_request(501, "sayHello", marker, two_way=False))
        backends["v1"].wait_for(marker, timeout=5)
        s.sendall(dubbo_request(502, "sayHello", "after-oneway"))
        header, body = read_frame(s)
        assert struct.unpack(">q", header[4:12])[0] == 502, "a reply to the one-way request reached the caller"
        assert b"hello after-oneway from v1" in body
    assert proxy.metric("meta_protocol_downstream_requests_total", listener="dubbo_routes", kind="oneway") >= 1


@pytest.mark.proxy
def test_malformed_input_closes_only_that_connection(proxy):
    before = proxy.metric("meta_protocol_decode_errors_total", listener="dubbo_routes", side="downstream")
    good = subprocess.Popen(
        dubbo_client_cmd(proxy.routes_port, "sayHello", ["steady-{i}"], None, 40, 2, CLIENT_TIMEOUT_MS),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        with socket.create_connection(("127.0.0.1", proxy.routes_port), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
            closed = False
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    closed = True
                    break
                except socket.timeout:
                    break
                if not data:
                    closed = True
                    break
            assert closed, "meta-proxy kept a connection that sent garbage"
        out, err = good.communicate(timeout=60)
    finally:
        if good.poll() is None:
            good.kill()
            good.wait()
    calls, summary = parse_client_output(out, err)
    assert summary["ok"] == 40, [c for c in calls if not c["ok"]][:3]
    assert proxy.wait_metric("meta_protocol_decode_errors_total", before + 1, listener="dubbo_routes",
                             side="downstream") >= before + 1


@pytest.mark.proxy
def test_proxy_survives_and_logs(proxy):
    """Runs last in this module: the proxy is still alive after everything above."""
    assert proxy.proc.poll() is None, proxy.log()
    status, _ = proxy.get("/ready")
    assert status == 200



@pytest.mark.proxy
def test_demo_config_validates(proxy_bin):
    """examples/configs/demo-dubbo.yaml (used by scripts/demo-dubbo-static) stays loadable."""
    config = REPO / "examples" / "configs" / "demo-dubbo.yaml"
    done = subprocess.run([str(proxy_bin), "--config", str(config), "--mode", "validate"], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
