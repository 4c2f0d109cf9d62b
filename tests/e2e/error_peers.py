"""Real peers that answer one method with an error response, for the retry-class and outlier tests:
a sofa-rpc-node Dubbo provider whose method throws (Dubbo status SERVER_ERROR) and a thriftpy2
server raising a TApplicationException INTERNAL_ERROR (tests/peers/thrift_server.py --fail-method)."""

from __future__ import annotations

import contextlib

from harness import NODE_PEERS, VENV_PY, Proc, dubbo_server, free_port


class FailingThriftServer(Proc):
    """tests/peers/thrift_server.py; with fail_method, that method answers a TApplicationException."""

    def __init__(self, name: str, fail_method: str | None = None):
        self.port = free_port()
        args = [VENV_PY, NODE_PEERS / "thrift_server.py", "--port", self.port, "--name", name]
        if fail_method:
            args += ["--fail-method", fail_method]
        super().__init__(args, f"thrift-server-{name}")

    def start(self) -> "FailingThriftServer":
        super().start()
        try:
            self.wait_for("READY", 20.0)
        except BaseException:
            self.stop()
            raise
        return self


@contextlib.contextmanager
def failing_and_healthy(protocol: str):
    """v1 answering sayHello with an error response, v2 healthy → {version: port}."""
    if protocol == "dubbo":
        with dubbo_server("v1", fail_method="sayHello") as v1, dubbo_server("v2") as v2:
            yield {"v1": v1.port, "v2": v2.port}
    else:
        with FailingThriftServer("v1", "sayHello") as v1, FailingThriftServer("v2") as v2:
            yield {"v1": v1.port, "v2": v2.port}
