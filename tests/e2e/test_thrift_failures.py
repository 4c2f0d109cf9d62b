"""Thrift through meta-proxy: local replies seen by real clients, bad input, concurrency.

Every local-reply case must reach the real client as a prompt TApplicationException in its own
protocol/transport (a THeader client only accepts THeader frames), and the client connection must stay
usable afterwards."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))

from harness import VENV_PY, route, static_cluster  # noqa: E402
from thrift_common import (  # noqa: E402
    EXCEPTION,
    binary_message,
    connect,
    parse_binary_message,
    read_framed_binary_reply,
)
from thrift_testlib import (  # noqa: E402
    HEADER_VARIANTS,
    HERE,
    LISTENER,
    TP2_VARIANTS,
    BackendPool,
    ClosingServer,
    app_exc_classes,
    backend_for,
    client,
    closed_port,
    thrift_proxy,
    timed,
    variant_id,
)

pytestmark = pytest.mark.proxy
LOCAL = "127.0.0.1"
CLIENT_TIMEOUT_MS = 10000
LOCAL_REPLY_VARIANTS = [TP2_VARIANTS[0], TP2_VARIANTS[3], HEADER_VARIANTS[0], HEADER_VARIANTS[1]]
REASONS = ["no_route", "unknown_cluster", "no_healthy_upstream", "connect_failure", "upstream_reset", "timeout"]


@pytest.fixture(scope="module")
def pool(proxy_bin):
    p = BackendPool()
    yield p
    p.close()


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("variant", LOCAL_REPLY_VARIANTS, ids=variant_id)
def test_local_reply(pool, variant, reason):
    good = backend_for(pool, variant, "v1")
    hello = route("hello", {"method": "sayHello"}, cluster="good")
    clusters = [static_cluster("good", [(LOCAL, good)])]
    call = ("echo", "x")
    expect_in_message = None
    closer = None
    if reason == "no_route":
        routes = [hello]
        expect_in_message = "route"
    elif reason == "unknown_cluster":
        routes = [hello, route("bad", {"method": "echo"}, cluster="missing-cluster")]
        expect_in_message = "missing-cluster"
    elif reason == "no_healthy_upstream":
        routes = [hello, route("bad", {"method": "echo"}, cluster="empty")]
        clusters.append(static_cluster("empty", []))
    elif reason == "connect_failure":
        routes = [hello, route("bad", {"method": "echo"}, cluster="dead")]
        clusters.append(static_cluster("dead", [(LOCAL, closed_port())]))
        expect_in_message = "connect"
    elif reason == "upstream_reset":
        closer = ClosingServer(read_bytes=1)
        routes = [hello, route("bad", {"method": "echo"}, cluster="closer")]
        clusters.append(static_cluster("closer", [(LOCAL, closer.port)]))
    else:  # timeout: the server answers after 1.5 s, the route gives up after 0.3 s
        routes = [hello, route("bad", {"method": "slow"}, cluster="good", timeout="0.3s")]
        call = ("slow", 1500)
    try:
        if closer is not None:
            closer.__enter__()
        with thrift_proxy(routes, clusters) as (mp, port):
            c = client(variant, port, timeout_ms=CLIENT_TIMEOUT_MS)
            try:
                out, elapsed = timed(getattr(c, call[0]), call[1])
                assert isinstance(out, app_exc_classes()), "expected a TApplicationException, got %r" % (out,)
                assert str(out), "empty TApplicationException message"
                if expect_in_message:
                    assert expect_in_message in str(out), str(out)
                if reason == "timeout":
                    assert 0.25 <= elapsed < 1.4, elapsed
                else:
                    assert elapsed < 2.0, elapsed
                # the downstream connection survives a per-request error
                assert c.sayHello("after") == "hello after from v1"
            finally:
                c.close()
            assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER, reason=reason) >= 1
    finally:
        if closer is not None:
            closer.__exit__(None, None, None)


def test_local_reply_keeps_seqid_and_name(pool):
    """Raw check of the on_error frame: EXCEPTION message, caller's method name and seqid."""
    good = backend_for(pool, TP2_VARIANTS[0], "v1")
    routes = [route("hello", {"method": "sayHello"}, cluster="good")]
    with thrift_proxy(routes, [static_cluster("good", [(LOCAL, good)])]) as (_, port):
        s = connect(port)
        try:
            s.sendall(binary_message("echo", 1, 4242, "x"))
            name, mtype, seqid, fields = read_framed_binary_reply(s)
        finally:
            s.close()
    assert (name, mtype, seqid) == ("echo", EXCEPTION, 4242)
    assert isinstance(fields.get(1), str) and fields[1]  # message
    assert isinstance(fields.get(2), int)  # TApplicationException type


def test_connect_failure_then_recovery(pool):
    """A backend that is down gives connect_failure; once it listens, calls go through."""
    port_backend = closed_port()
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, port_backend)])]) as (mp, port):
        c = client(TP2_VARIANTS[0], port)
        try:
            with pytest.raises(app_exc_classes()):
                c.sayHello("down")
            from harness import Proc

            args = [str(VENV_PY), os.path.join(HERE, "thrift_server.py"), "--port", str(port_backend),
                    "--name", "late"]
            with Proc(args, "thrift-late") as srv:
                srv.wait_for("READY", timeout=20.0)
                assert c.sayHello("up") == "hello up from late"
        finally:
            c.close()
        assert mp.metric("meta_protocol_upstream_connect_failures_total", cluster="c1") >= 1


def run_threads(n_threads, n_calls, make_client, label):
    errors = []
    done = [0] * n_threads

    def worker(i):
        try:
            c = make_client()
        except Exception as e:
            errors.append("client %d connect: %r" % (i, e))
            return
        try:
            for j in range(n_calls):
                arg = "%s-%d-%d" % (label, i, j)
                got = c.sayHello(arg)
                if got != "hello %s from v1" % arg:
                    errors.append("client %d call %d: got %r" % (i, j, got))
                    return
                done[i] += 1
        except Exception as e:
            errors.append("client %d after %d calls: %r" % (i, done[i], e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "client threads still running after 120 s"
    assert not errors, errors[:5]
    assert sum(done) == n_threads * n_calls


@pytest.mark.parametrize("variant", [TP2_VARIANTS[0], TP2_VARIANTS[3], HEADER_VARIANTS[1]], ids=variant_id)
def test_concurrent_clients(pool, variant):
    """20 client connections x 50 calls at once, every result must belong to its caller (thriftpy2
    clients all use seqid 0, so the proxy must rewrite ids on the shared upstream connection)."""
    backend = backend_for(pool, variant, "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        run_threads(20, 50, lambda: client(variant, port), variant_id(variant))
        upstream = mp.metric("meta_protocol_upstream_connections_total", cluster="c1")
        assert 1 <= upstream < 20, upstream
        assert mp.metric("meta_protocol_downstream_connections_total", listener=LISTENER) >= 20
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER) == 0


def test_concurrent_client_processes(pool):
    """6 thrift_client.py processes (different variants' code paths: thriftpy2 and Apache framed) x 40 calls."""
    backend = backend_for(pool, TP2_VARIANTS[0], "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (_, port):
        procs = []
        for i in range(6):
            impl = "thriftpy2" if i % 2 == 0 else "apache"
            args = [str(VENV_PY), os.path.join(HERE, "thrift_client.py"), "--target", "%s:%d" % (LOCAL, port),
                    "--protocol", "binary", "--transport", "framed", "--impl", impl,
                    "--method", "sayHello", "--arg", "proc%d" % i, "--count", "40"]
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for i, p in enumerate(procs):
            try:
                out, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            assert len(lines) == 40, (out, err)
            bad = [x for x in lines if not x["ok"] or x["result"] != "hello proc%d from v1" % i]
            assert not bad, bad[:3]


def _closed_within(sock, timeout):
    """True if the peer closes (EOF or reset) within timeout; any bytes received before are ignored."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\x00\x00\x10" + b"\xde\xad\xbe\xef" * 4,
    b"\x80\x01\x00\x01\xff\xff\xff\xf0garbage-name",
], ids=["http", "framed-junk", "binary-negative-name"])
def test_garbage_does_not_disturb_others(pool, garbage):
    variant = TP2_VARIANTS[0]
    backend = backend_for(pool, variant, "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        good = client(variant, port)
        try:
            assert good.sayHello("before") == "hello before from v1"
            bad = connect(port)
            try:
                bad.sendall(garbage)
                closed = _closed_within(bad, 5.0)
            finally:
                bad.close()
            assert closed, "meta-proxy kept a connection open after garbage %r" % garbage
            for i in range(5):
                assert good.sayHello("during%d" % i) == "hello during%d from v1" % i
            fresh = client(variant, port)
            try:
                assert fresh.sayHello("fresh") == "hello fresh from v1"
            finally:
                fresh.close()
        finally:
            good.close()
        assert mp.metric("meta_protocol_decode_errors_total", listener=LISTENER, side="downstream") >= 1


def test_oversized_frame_rejected(pool):
    """A framed call above max_message_size gets a TApplicationException for its seqid, then the
    connection is closed; other connections keep working."""
    variant = TP2_VARIANTS[0]
    backend = backend_for(pool, variant, "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])], max_message_size=1024) as (mp, port):
        s = connect(port)
        try:
            s.sendall(binary_message("sayHello", 1, 99, "x" * 4000))
            s.settimeout(5.0)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        assert len(data) > 4, "no reply before close: %r" % data
        name, mtype, seqid, fields = parse_binary_message(data[4:4 + int.from_bytes(data[:4], "big")])
        assert (name, mtype, seqid) == ("sayHello", EXCEPTION, 99)
        assert fields.get(1)
        c = client(variant, port)
        try:
            assert c.sayHello("small") == "hello small from v1"
        finally:
            c.close()
        assert mp.metric("meta_protocol_decode_errors_total", listener=LISTENER, side="downstream") >= 1
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER, reason="bad_request") >= 1


def test_out_of_order_backend_multiplexing(pool):
    """30 thriftpy2 clients (all seqid 0) x 40 calls through a backend that answers pipelined calls in
    random order with random delays: every reply must reach its own caller."""
    backend = pool.get("ooo", "binary", "framed", name="v1", delay_ms=15)
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        run_threads(30, 40, lambda: client(TP2_VARIANTS[0], port), "ooo")
        assert mp.metric("meta_protocol_upstream_connections_total", cluster="c1") < 30
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER) == 0


def test_out_of_order_raw_pipelining(pool):
    """Several raw connections pipeline 100 calls each with arbitrary seqids through the out-of-order
    backend; every reply carries the caller's seqid and its own argument."""
    backend = pool.get("ooo", "binary", "framed", name="v1", delay_ms=15)
    routes = [route("all", cluster="c1")]
    errors = []

    def worker(k):
        try:
            s = connect(port, timeout=20.0)
            try:
                seqids = [(k * 7919 + i * 104729) % 2147483647 - (i % 3) * 1000000 for i in range(100)]
                s.sendall(b"".join(binary_message("sayHello", 1, sid, "k%d-%d" % (k, i))
                                   for i, sid in enumerate(seqids)))
                got = sorted((r[2], r[3].get(0)) for r in (read_framed_binary_reply(s) for _ in seqids))
            finally:
                s.close()
            want = sorted((sid, "hello k%d-%d from v1" % (k, i)) for i, sid in enumerate(seqids))
            if got != want:
                errors.append((k, [g for g, w in zip(got, want) if g != w][:3]))
        except Exception as e:
            errors.append((k, repr(e)))

    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (_, port):
        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors


def _start_server(script_args, name):
    from harness import Proc

    proc = Proc([str(VENV_PY)] + script_args, name)
    proc.start()
    proc.wait_for("READY", timeout=20.0)
    return proc


def test_backend_killed_with_requests_in_flight(pool):
    """10 calls wait on a backend that is then killed: each gets a prompt TApplicationException
    (upstream_reset); once a backend listens again on that port, calls succeed."""
    backend_port = closed_port()
    ooo = [os.path.join(HERE, "thrift_ooo_server.py"), "--port", str(backend_port), "--name", "v1"]
    srv = _start_server(ooo + ["--max-delay-ms", "5000"], "thrift-ooo-slow")
    results = [None] * 10
    try:
        routes = [route("all", cluster="c1")]
        with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend_port)])]) as (mp, port):
            clients = [client(TP2_VARIANTS[0], port, timeout_ms=CLIENT_TIMEOUT_MS) for _ in range(10)]

            def worker(i):
                results[i] = timed(clients[i].sayHello, "k%d" % i)

            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(10)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            killed_at = time.monotonic()
            srv.kill()
            for t in threads:
                t.join(timeout=15)
            after_kill = time.monotonic() - killed_at
            answered = [r for r in results if r is not None]
            assert len(answered) == 10
            ok = [r[0] for r in answered if isinstance(r[0], str)]
            failed = [r[0] for r in answered if not isinstance(r[0], str)]
            # a few may have been answered before the kill; all others fail promptly
            assert all(o.startswith("hello k") for o in ok), ok
            assert all(isinstance(f, app_exc_classes()) for f in failed), failed
            assert after_kill < 3.0, after_kill
            if failed:
                assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER,
                                 reason="upstream_reset") >= 1
            srv.stop()
            srv = _start_server(ooo + ["--max-delay-ms", "5"], "thrift-ooo-fast")
            for i, c in enumerate(clients):
                assert c.sayHello("again%d" % i) == "hello again%d from v1" % i
                c.close()
    finally:
        srv.stop()


def test_backend_closing_idle_connections(pool):
    """The backend closes connections idle for 300 ms; the next call after an idle period must still
    succeed (the proxy notices the closed upstream connection and reconnects)."""
    backend_port = closed_port()
    srv = _start_server([os.path.join(HERE, "thrift_server.py"), "--port", str(backend_port), "--name", "v1",
                         "--idle-close-ms", "300"], "thrift-idle-closer")
    try:
        routes = [route("all", cluster="c1")]
        with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend_port)])]) as (mp, port):
            c = client(TP2_VARIANTS[0], port)
            try:
                for i in range(3):
                    assert c.sayHello("idle%d" % i) == "hello idle%d from v1" % i
                    time.sleep(0.8)
            finally:
                c.close()
            assert mp.metric("meta_protocol_upstream_connections_total", cluster="c1") >= 2
            assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER) == 0
    finally:
        srv.stop()


def test_client_gone_with_request_in_flight(pool):
    """A client that sends slow(800) and disconnects: the request is cleaned up (gauges back to 0) and
    the late reply is dropped without disturbing another client."""
    backend = backend_for(pool, TP2_VARIANTS[0], "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        s = connect(port)
        body = binary_message("slow", 1, 5, None)[4:-1] + b"\x08\x00\x01" + (800).to_bytes(4, "big") + b"\x00"
        s.sendall(len(body).to_bytes(4, "big") + body)
        time.sleep(0.2)
        s.close()
        other = client(TP2_VARIANTS[0], port)
        try:
            assert other.sayHello("other") == "hello other from v1"
        finally:
            other.close()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (
                mp.metric("meta_protocol_requests_active", listener=LISTENER) != 0
                or mp.metric("meta_protocol_downstream_connections_active", listener=LISTENER) != 0):
            time.sleep(0.1)
        assert mp.metric("meta_protocol_requests_active", listener=LISTENER) == 0
        assert mp.metric("meta_protocol_downstream_connections_active", listener=LISTENER) == 0


def test_graceful_shutdown_finishes_in_flight(pool):
    """SIGTERM while a call is in flight: the call still gets its real reply, then the proxy exits."""
    backend = backend_for(pool, TP2_VARIANTS[0], "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        c = client(TP2_VARIANTS[0], port)
        result = []
        t = threading.Thread(target=lambda: result.append(timed(c.slow, 800)), daemon=True)
        t.start()
        time.sleep(0.3)
        mp.proc.terminate()
        t.join(timeout=10)
        c.close()
        assert result and result[0][0] == "slept 800 on v1", result
        mp.proc.wait(timeout=10)


@pytest.mark.parametrize("variant", TP2_VARIANTS + HEADER_VARIANTS, ids=variant_id)
def test_oversized_request_real_client(pool, variant):
    """A real client sending a call above max_message_size gets a TApplicationException (in its own
    dialect) before the connection is closed; a new connection works."""
    backend = backend_for(pool, variant, "v1")
    routes = [route("all", cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])], max_message_size=2048) as (mp, port):
        c = client(variant, port)
        try:
            assert c.sayHello("small") == "hello small from v1"
            out, elapsed = timed(c.sayHello, "x" * 10000)
            assert isinstance(out, app_exc_classes()), "expected a TApplicationException, got %r" % (out,)
            assert elapsed < 2.0
        finally:
            c.close()
        fresh = client(variant, port)
        try:
            assert fresh.sayHello("fresh") == "hello fresh from v1"
        finally:
            fresh.close()
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER, reason="bad_request") >= 1
