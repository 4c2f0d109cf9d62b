"""End to end: `aeraki serve` → ADS → meta-proxy → real Thrift (thriftpy2) and Dubbo (sofa-rpc-node) peers.

Each test writes its own mesh (ServiceEntries on unique loopback VIPs 127.0.<4x>.1/2, DestinationRule
subsets v1/v2, MetaRouters) into tmp_path, starts its own control plane and sidecar, and checks what
the traffic does: routing per MetaRouter, live edits under load with zero failed calls, invalid edits
refused, the control plane killed and restarted under load, a proxy started before the control plane.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time

import pytest

from cp_harness import (
    CDS,
    DUBBO_HOST,
    EDS,
    LDS,
    RDS,
    AdsProxy,
    ControlPlane,
    ThriftLoad,
    dubbo_calls,
    ThriftServer,
    destination_rule,
    meta_router,
    mr_route,
    require_binaries,
    service_entry,
    thrift_calls,
    version_of,
    wait_thrift_version,
    wait_until,
    write_yaml,
)
from harness import REPO, aeraki_bin, dubbo_server, free_port

pytestmark = [pytest.mark.proxy, pytest.mark.slow]

THRIFT_HOST = "thrift-e2e.e2e.svc.cluster.local"


@pytest.fixture(scope="module")
def backends(node_peers):
    require_binaries()
    with (
        ThriftServer("v1") as t1,
        ThriftServer("v2") as t2,
        dubbo_server("v1") as d1,
        dubbo_server("v2") as d2,
    ):
        yield {"thrift": {"v1": t1.port, "v2": t2.port}, "dubbo": {"v1": d1.port, "v2": d2.port}}


class Mesh:
    """The mesh config directory of one test: a Thrift and a Dubbo service on their own VIPs."""

    def __init__(self, root, backends, net: int):
        self.dir = root / "mesh"
        self.dir.mkdir()
        self.thrift_vip, self.dubbo_vip = f"127.0.{net}.1", f"127.0.{net}.2"
        self.thrift_port, self.dubbo_port = free_port(), free_port()
        write_yaml(self.dir / "services.yaml", [
            service_entry("thrift-e2e", THRIFT_HOST, self.thrift_vip, self.thrift_port, "thrift",
                          backends["thrift"]),
            service_entry("dubbo-e2e", DUBBO_HOST, self.dubbo_vip, self.dubbo_port, "dubbo", backends["dubbo"]),
        ])
        write_yaml(self.dir / "destination-rules.yaml", [
            destination_rule("thrift-e2e", THRIFT_HOST),
            destination_rule("dubbo-e2e", DUBBO_HOST),
        ])

    def thrift_router(self, routes, atomic: bool = True) -> float:
        """(Re)write thrift-router.yaml; returns the monotonic time the write finished."""
        write_yaml(self.dir / "thrift-router.yaml", [meta_router("thrift-e2e", THRIFT_HOST, routes)], atomic)
        return time.monotonic()

    def thrift_to(self, subset: str, atomic: bool = True) -> float:
        return self.thrift_router([mr_route("hello", THRIFT_HOST, subset, {"method": "sayHello"})], atomic)

    def dubbo_router(self, routes, atomic: bool = True) -> float:
        write_yaml(self.dir / "dubbo-router.yaml", [meta_router("dubbo-e2e", DUBBO_HOST, routes)], atomic)
        return time.monotonic()


@contextlib.contextmanager
def mesh_with_proxy(tmp_path, backends, net: int, name: str, thrift_subset: str = "v2", dubbo_routes=None):
    """Mesh (Thrift sayHello → thrift_subset; Dubbo per dubbo_routes, else no MetaRouter), control plane,
    sidecar; yields once Thrift answers from thrift_subset through the sidecar."""
    mesh = Mesh(tmp_path, backends, net)
    mesh.thrift_to(thrift_subset)
    if dubbo_routes is not None:
        mesh.dubbo_router(dubbo_routes)
    with ControlPlane(mesh.dir) as cp, AdsProxy(name, cp.xds_port) as proxy:
        diag = lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]  # noqa: E731
        proxy.wait_listening(mesh.thrift_vip, mesh.thrift_port, cp=cp)
        wait_thrift_version(mesh.thrift_vip, mesh.thrift_port, thrift_subset, 10.0, details=diag)
        yield mesh, cp, proxy


def assert_no_failures(load: ThriftLoad, diag) -> None:
    failed = load.failures()
    assert not failed, f"{len(failed)} of {len(load.snapshot())} calls failed, first: {failed[:3]}\n{diag()}"


def assert_switched(load: ThriftLoad, t_edit: float, to: str, within: float, diag) -> None:
    """Every call that started `within` seconds after t_edit answered from `to` (and there were some)."""
    after = load.since(t_edit + within)
    assert len(after) >= 20, f"only {len(after)} calls after the switch window\n{diag()}"
    wrong = [r for r in after if not r[1] or version_of(r[2]) != to]
    assert not wrong, (
        f"{len(wrong)} of {len(after)} calls {within}s after the edit did not answer from {to}: {wrong[:3]}; "
        f"versions since the edit: {load.versions(load.since(t_edit))}\n{diag()}"
    )


# ----------------------------------------------------------------------------- 1. validate


def test_validate_demo_valid_and_bad_weights_named(tmp_path):
    require_binaries()

    ok = subprocess.run([str(aeraki_bin()), "validate", str(REPO / "examples" / "demo")], capture_output=True,
                        text=True, timeout=30)
    assert ok.returncode == 0, f"examples/demo should be valid:\n{ok.stdout}\n{ok.stderr}"
    assert "valid" in ok.stdout

    bad = tmp_path / "bad"
    shutil.copytree(REPO / "examples" / "demo", bad)
    text = (bad / "dubbo-router.yaml").read_text()
    assert "weight: 90" in text and "weight: 10" in text
    (bad / "dubbo-router.yaml").write_text(text.replace("weight: 90", "weight: 60").replace("weight: 10", "weight: 30"))
    res = subprocess.run([str(aeraki_bin()), "validate", str(bad)], capture_output=True, text=True, timeout=30)
    out = res.stdout + res.stderr
    assert res.returncode == 1, f"weights 60+30 must be refused (exit 1), got {res.returncode}:\n{out}"
    assert "dubbo-router.yaml" in out, out
    assert "spec.routes[0].route" in out, out
    assert "thrift-router.yaml" not in out, f"only the bad file should be named:\n{out}"


# ----------------------------------------------------------------------------- 2 + 7. routing and status


@pytest.fixture(scope="module")
def routed(tmp_path_factory, backends):
    """Thrift: sayHello → v2 (no other route). Dubbo: attachment user=beta → v2, anything else → v1."""
    tmp = tmp_path_factory.mktemp("routed")
    dubbo_routes = [
        mr_route("beta", DUBBO_HOST, "v2", {"user": "beta"}),
        mr_route("default", DUBBO_HOST, "v1"),
    ]
    with mesh_with_proxy(tmp, backends, 41, "routing", "v2", dubbo_routes) as (mesh, cp, proxy):
        yield mesh, cp, proxy


def test_thrift_method_route_to_v2(routed):
    mesh, cp, proxy = routed
    calls = thrift_calls(mesh.thrift_vip, mesh.thrift_port, 10)
    assert [ok for ok, _ in calls] == [True] * 10, calls
    assert {version_of(text) for _, text in calls} == {"v2"}, calls
    assert calls[0][1] == "hello e2e-0 from v2"


def test_dubbo_attachment_route(routed):
    mesh, cp, proxy = routed

    def run(attachments):
        return dubbo_calls(mesh.dubbo_vip, mesh.dubbo_port, "sayHello", ["dubbo-{i}"], attachments, count=10)

    # the Dubbo listener may come a moment after the Thrift one was first seen working
    wait_until(lambda: run({})[1]["ok"] == 10, 10.0, "Dubbo calls through the sidecar",
               details=lambda: proxy.log()[-3000:])
    beta, summary = run({"user": "beta"})
    assert summary["ok"] == 10 and summary["failed"] == 0, beta
    assert {c["result"] for c in beta} == {f"hello dubbo-{i} from v2" for i in range(10)}
    plain, summary = run({"user": "alpha"})
    assert summary["ok"] == 10, plain
    assert {c["result"].rsplit(" from ", 1)[1] for c in plain} == {"v1"}, plain


def test_status_lists_proxy_with_acked_versions(routed):
    mesh, cp, proxy = routed
    acked = cp.wait_acked(proxy.node_id, (LDS, CDS, RDS, EDS), timeout=5.0)
    entry = cp.proxy(proxy.node_id)
    assert entry["flavor"] == "meta-proxy", entry
    assert entry["peer"].startswith("127.0.0.1:"), entry
    for t in entry["types"]:
        assert t["nack"] is None, f"{t['type_url']} was NACKed: {t['nack']}"
    assert all(acked[t] for t in (LDS, CDS, RDS, EDS)), acked

    # the CLI: JSON and table
    res = cp.cli("status", "--admin-address", f"127.0.0.1:{cp.admin_port}", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["config"]["last_error"] is None
    assert report["config"]["services"] == 2, report["config"]
    assert [p["node"] for p in report["proxies"]] == [proxy.node_id]
    res = cp.cli("status", "--admin-address", f"127.0.0.1:{cp.admin_port}")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(proxy.node_id)]
    assert sorted(r[3] for r in rows) == ["CDS", "EDS", "LDS", "RDS"], res.stdout
    for r in rows:
        assert r[4] == r[5] != "-", f"SENT != ACKED in {r}\n{res.stdout}"  # SENT, ACKED columns
        assert r[6] == "-", f"NACKED in {r}"


# ----------------------------------------------------------------------------- 3. live edit under load


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic-rename", "in-place-rewrite"])
def test_live_edit_under_load(tmp_path, backends, atomic):
    net = 42 if atomic else 43
    with mesh_with_proxy(tmp_path, backends, net, f"live-{net}", "v2") as (mesh, cp, proxy):
        diag = lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]  # noqa: E731
        with ThriftLoad(mesh.thrift_vip, mesh.thrift_port, rps=50) as load:
            load.wait_calls_after(time.monotonic(), 25, 5.0)
            assert load.versions(load.snapshot()) == {"v2": len(load.snapshot())}
            t_edit = mesh.thrift_to("v1", atomic=atomic)
            load.wait_calls_after(t_edit + 3.0, 50, 8.0)
        assert_no_failures(load, diag)
        assert_switched(load, t_edit, "v1", 3.0, diag)
        assert load.connections == 1, f"the client had to reconnect {load.connections - 1} times"


# ----------------------------------------------------------------------------- 4. invalid edit


def test_invalid_edit_changes_nothing_then_fix_applies(tmp_path, backends):
    with mesh_with_proxy(tmp_path, backends, 44, "invalid", "v2") as (mesh, cp, proxy):
        diag = lambda: proxy.log()[-3000:] + "\n" + cp.log()[-3000:]  # noqa: E731
        good_version = cp.status()["config"]["version"]
        with ThriftLoad(mesh.thrift_vip, mesh.thrift_port, rps=50) as load:
            mesh.thrift_router([
                mr_route("split", THRIFT_HOST, [("v1", 60), ("v2", 30)], {"method": "sayHello"}),
            ])
            status = wait_until(lambda: (lambda s: s if s["config"]["last_error"] else None)(cp.status()), 5.0,
                                "/status to report the refused edit", details=diag)
            error = status["config"]["last_error"]
            assert "thrift-router.yaml" in error and "spec.routes[0].route" in error, error
            assert status["config"]["version"] == good_version, status["config"]
            assert "config change refused" in cp.log()

            res = cp.cli("status", "--admin-address", f"127.0.0.1:{cp.admin_port}", "--json")
            assert res.returncode == 1, f"status must exit 1 while the config is refused:\n{res.stdout}"
            assert "spec.routes[0].route" in json.loads(res.stdout)["config"]["last_error"]

            t_bad = time.monotonic()
            load.wait_calls_after(t_bad + 1.5, 25, 5.0)
            still = load.since(t_bad)
            assert load.versions(still) == {"v2": len(still)}, f"old routes must keep serving: {load.versions(still)}"

            t_fix = mesh.thrift_to("v1")
            wait_until(lambda: cp.status()["config"]["last_error"] is None, 5.0, "the fix to clear last_error",
                       details=diag)
            assert cp.status()["config"]["version"] > good_version
            load.wait_calls_after(t_fix + 3.0, 25, 6.0)
        assert_no_failures(load, diag)
        assert_switched(load, t_fix, "v1", 3.0, diag)


# ----------------------------------------------------------------------------- 5. control plane killed


def test_control_plane_killed_and_restarted_under_load(tmp_path, backends):
    with mesh_with_proxy(tmp_path, backends, 45, "restart", "v2") as (mesh, cp, proxy):
        diag = lambda: proxy.log()[-4000:] + "\n" + cp.log()[-4000:]  # noqa: E731
        cp.wait_acked(proxy.node_id, (LDS, CDS, RDS, EDS))
        with ThriftLoad(mesh.thrift_vip, mesh.thrift_port, rps=50) as load:
            load.wait_calls_after(time.monotonic(), 10, 5.0)
            cp.kill()
            t_kill = time.monotonic()
            # Dubbo too keeps working on the last good config (no MetaRouter: default route, v1 and v2)
            calls, summary = dubbo_calls(mesh.dubbo_vip, mesh.dubbo_port, "sayHello", ["down-{i}"], count=10)
            assert summary["ok"] == 10, f"Dubbo calls failed while the CP is down: {calls}\n{diag()}"
            load.wait_calls_after(t_kill + 3.0, 1, 6.0)
            down = [r for r in load.since(t_kill) if r[0] < t_kill + 3.0]
            assert len(down) >= 100, f"only {len(down)} calls in the 3 s without control plane"
            assert load.versions(down) == {"v2": len(down)}, f"while the CP is down: {load.versions(down)}\n{diag()}"

            cp.start()  # same ports
            wait_until(lambda: cp.proxy(proxy.node_id), 10.0, "the proxy to reconnect to the restarted CP",
                       details=diag)
            cp.wait_acked(proxy.node_id, (LDS, CDS, RDS, EDS), timeout=10.0)
            t_edit = mesh.thrift_to("v1")
            load.wait_calls_after(t_edit + 3.0, 50, 8.0)
        assert_no_failures(load, diag)
        assert_switched(load, t_edit, "v1", 3.0, diag)
        assert load.connections == 1, f"the client had to reconnect {load.connections - 1} times"


# ----------------------------------------------------------------------------- 6. proxy before control plane


def test_proxy_started_before_control_plane(tmp_path, backends):
    mesh = Mesh(tmp_path, backends, 46)
    mesh.thrift_to("v2")
    cp = ControlPlane(mesh.dir)
    with AdsProxy("early", cp.xds_port) as proxy:
        time.sleep(1.5)  # the proxy has tried (and failed) to reach the control plane at least once
        assert proxy.proc.poll() is None, f"meta-proxy must keep running without its control plane:\n{proxy.log()}"
        with cp:
            t_up = time.monotonic()
            diag = lambda: proxy.log()[-4000:] + "\n" + cp.log()[-3000:]  # noqa: E731
            wait_thrift_version(mesh.thrift_vip, mesh.thrift_port, "v2", 10.0, details=diag)
            took = time.monotonic() - t_up
            assert took < 10.0
            calls = thrift_calls(mesh.thrift_vip, mesh.thrift_port, 5)
            assert {version_of(t) for ok, t in calls if ok} == {"v2"} and all(ok for ok, _ in calls), calls
            assert cp.proxy(proxy.node_id) is not None
