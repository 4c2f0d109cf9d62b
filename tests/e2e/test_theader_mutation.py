"""Header mutation for Thrift, the codec's header-carrying transport (THeader), configured the Aeraki
way: MetaRouter `requestMutation` / `responseMutation` → `aeraki serve` → ADS → meta-proxy, between
an Apache Thrift THeader client and an Apache Thrift THeader server (test_traffic.py covers Dubbo;
test_thrift.py covers THeader request mutation from a static bootstrap).

- requestMutation foo=bar, foo1=bar1 (Aeraki's TestHeaderMutation values): the server's
  `requestHeaders()` reports them next to the client's own header, and a client value for the same
  key is overwritten;
- responseMutation x-served-by=mesh: the client reads it from the reply's THeader info headers.
"""

from __future__ import annotations

import pytest

from cp_harness import AdsProxy, ControlPlane, meta_router, require_binaries, service_entry, write_yaml
from harness import NODE_PEERS, VENV_PY, Proc, free_port
from thrift_common import ApacheClient

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

HOST = "thrift-theader.e2e.svc.cluster.local"
NET = 70  # VIP 127.0.70.1


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_theader_request_and_response_mutation(tmp_path, protocol):
    require_binaries()
    backend = free_port()
    args = [VENV_PY, NODE_PEERS / "thrift_apache_server.py", "--port", backend, "--name", "v1",
            "--protocol", protocol, "--transport", "header"]
    with Proc(args, f"thrift-apache-theader-{protocol}") as server:
        server.wait_for("READY", 20.0)
        vip, port = f"127.0.{NET}.1", free_port()
        d = tmp_path / "mesh"
        d.mkdir()
        write_yaml(d / "mesh.yaml", [
            service_entry("thrift-theader", HOST, vip, port, "thrift", {"v1": backend}),
            meta_router("thrift-theader", HOST, [{
                "name": "mutate",
                "route": [{"destination": {"host": HOST}}],
                "requestMutation": [{"key": "foo", "value": "bar"}, {"key": "foo1", "value": "bar1"}],
                "responseMutation": [{"key": "x-served-by", "value": "mesh"}],
            }]),
        ])
        with ControlPlane(d) as cp, AdsProxy(f"theader-{protocol}", cp.xds_port) as proxy:
            proxy.wait_listening(vip, port, cp=cp)
            cp.wait_acked(proxy.node_id)
            client = ApacheClient(port, protocol, "header", headers={"foo": "client", "keep": "k"}, host=vip)
            try:
                seen = client.requestHeaders()
                assert seen.get("foo") == "bar" and seen.get("foo1") == "bar1", seen
                assert seen.get("keep") == "k", seen
                reply_headers = client.trans.get_headers()
                assert reply_headers.get(b"x-served-by") == b"mesh", reply_headers
                # An ordinary call on the same connection: answered, mutated again.
                assert client.sayHello("t") == "hello t from v1"
                assert client.trans.get_headers().get(b"x-served-by") == b"mesh"
            finally:
                client.close()
