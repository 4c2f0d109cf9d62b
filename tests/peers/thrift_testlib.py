"""pytest-side helpers for the Thrift end-to-end tests: a pool of Thrift backend processes, client
factories by variant name and a few tiny TCP servers for failure cases. Imports the e2e harness, so it
is only usable from tests/e2e (pytest puts that folder on sys.path)."""

import contextlib
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from harness import VENV_PY, Proc, free_port  # noqa: E402
from thrift_common import ApacheClient, tp2_client  # noqa: E402

# A client/server variant: (implementation, protocol, transport)
TP2_VARIANTS = [("thriftpy2", p, t) for t in ("framed", "buffered") for p in ("binary", "compact")]
HEADER_VARIANTS = [("apache", p, "header") for p in ("binary", "compact")]


def variant_id(v):
    return "-".join(v)


class BackendPool:
    """Starts Thrift servers on demand and keeps them for the whole module (one per key)."""

    def __init__(self):
        self.stack = contextlib.ExitStack()
        self.ports = {}
        self.procs = {}

    def get(self, impl, protocol, transport, name="v1", multiplex="", delay_ms=0):
        key = (impl, protocol, transport, name, multiplex, delay_ms)
        if key in self.ports:
            return self.ports[key]
        port = free_port()
        script = {"thriftpy2": "thrift_server.py", "apache": "thrift_apache_server.py",
                  "ooo": "thrift_ooo_server.py"}[impl]
        args = [str(VENV_PY), os.path.join(HERE, script), "--port", str(port), "--name", name]
        if impl == "ooo":  # strict binary, framed; delay_ms = maximum random delay
            args += ["--max-delay-ms", str(delay_ms)]
        else:
            args += ["--protocol", protocol, "--transport", transport, "--delay-ms", str(delay_ms)]
        if multiplex:
            args += ["--multiplex", multiplex]
        proc = self.stack.enter_context(Proc(args, "thrift-%s-%s-%s-%s" % (impl, protocol, transport, name)))
        proc.wait_for("READY", timeout=20.0)
        self.ports[key] = port
        self.procs[key] = proc
        return port

    def close(self):
        self.stack.close()


def client(variant, port, timeout_ms=10000, service=None, headers=None):
    """A client of the given variant connected to 127.0.0.1:port."""
    impl, protocol, transport = variant
    if impl == "thriftpy2":
        assert service is None and not headers
        return tp2_client(port, protocol, transport, timeout_ms)
    return ApacheClient(port, protocol, transport, service=service, timeout_ms=timeout_ms, headers=headers)


def sample_items(impl, n=3):
    """(items, groups) for roundTrip built with the implementation's classes, and the expected result
    in canon() form."""
    if impl == "thriftpy2":
        from thrift_common import tp2_module

        Item = tp2_module().Item
    else:
        from thrift_common import apache_gen

        Item = apache_gen().ttypes.Item

    def item(i, depth=0):
        return Item(id=(1 << 40) + i, score=i / 3.0, tags=["t%d" % k for k in range(i % 4)],
                    counts={"k%d" % k: k * i for k in range(3)}, flag=bool(i % 2),
                    blob=bytes(range(i % 7)) * 20, small={1, 2, i % 100}, b=i % 100,
                    children=[item(i * 10 + k, depth + 1) for k in range(2)] if depth < 2 else None)

    items = [item(i) for i in range(n)]
    groups = {"g%d" % g: [item(100 + g * 10 + k) for k in range(2)] for g in range(2)}
    expected = canon(list(items) + groups["g0"] + groups["g1"])
    return items, groups, expected


def canon(x):
    """A comparable form of Thrift values of either implementation (sets may come back as lists)."""
    if isinstance(x, (list, tuple)):
        return [canon(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(canon(v) for v in x)
    if isinstance(x, dict):
        return {k: canon(v) for k, v in x.items()}
    if hasattr(x, "__dict__"):
        return {k: canon(v) for k, v in vars(x).items() if not k.startswith("_")}
    return x


def app_exc_classes():
    """The TApplicationException classes of both implementations."""
    from thrift.Thrift import TApplicationException as ApacheTAE
    from thriftpy2.thrift import TApplicationException as Tp2TAE

    return (ApacheTAE, Tp2TAE)


class ClosingServer:
    """A raw TCP server that accepts, reads up to `read_bytes` bytes (once) and closes the connection
    without answering: an upstream that dies mid-request. Context manager; `.accepted` counts."""

    def __init__(self, read_bytes=1):
        self.port = free_port()
        self.read_bytes = read_bytes
        self.accepted = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.settimeout(2.0)
                conn.recv(self.read_bytes)
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=2.0)
        self.sock.close()


def closed_port():
    """A 127.0.0.1 port with (very probably) nobody listening."""
    return free_port()


def timed(fn, *args):
    """Runs fn(*args) → (result or exception, elapsed seconds)."""
    start = time.monotonic()
    try:
        out = fn(*args)
    except Exception as e:  # the caller inspects the exception
        out = e
    return out, time.monotonic() - start


LISTENER = "thrift_in"


@contextlib.contextmanager
def thrift_proxy(routes, clusters, *, typed_struct=False, max_message_size=None, idle_timeout=None,
                 concurrency=2):
    """meta-proxy with one Thrift listener `thrift_in`; yields (MetaProxy, listener port). On an
    exception inside the block the tail of the proxy log is printed (pytest shows it for failures)."""
    from harness import MetaProxy, bootstrap, meta_listener

    port = free_port()
    cfg = bootstrap([meta_listener(LISTENER, port, "thrift", routes, typed_struct=typed_struct,
                                   max_message_size=max_message_size, idle_timeout=idle_timeout)],
                    clusters, free_port())
    with MetaProxy(cfg, concurrency=concurrency) as mp:
        try:
            yield mp, port
        except BaseException:
            print("---- meta-proxy log tail (%s) ----" % mp.proc.log_path)
            print(mp.log()[-6000:])
            raise


def backend_for(pool, variant, name="v1"):
    """A backend speaking the variant's protocol/transport: thriftpy2 for framed/buffered, Apache for
    THeader."""
    impl, protocol, transport = variant
    if transport == "header":
        return pool.get("apache", protocol, "header", name=name)
    return pool.get("thriftpy2", protocol, transport, name=name)


def poll(fn, want, timeout=5.0, interval=0.05):
    """Calls fn() until it returns want (bounded); returns the last value."""
    deadline = time.monotonic() + timeout
    got = fn()
    while got != want and time.monotonic() < deadline:
        time.sleep(interval)
        got = fn()
    return got
