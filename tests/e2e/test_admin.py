"""Admin server end-to-end: /ready, /config_dump, and /metrics (valid for promtool, counters that move)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from harness import (
    MetaProxy,
    bootstrap,
    dubbo_client,
    dubbo_server,
    free_port,
    meta_listener,
    metric_value,
    parse_metrics,
    route,
    static_cluster,
)

pytestmark = pytest.mark.proxy


@pytest.fixture(scope="module")
def admin_proxy(node_peers, proxy_bin):
    with dubbo_server("v1") as v1:
        port, admin = free_port(), free_port()
        config = bootstrap(
            [meta_listener("admin_l", port, "dubbo", [route("hello", {"method": "sayHello"}, cluster="v1")])],
            [static_cluster("v1", [("127.0.0.1", v1.port)])],
            admin,
        )
        with MetaProxy(config, fmt="json") as mp:  # the YAML path is covered by the other tests
            mp.port = port
            yield mp


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


def test_ready_and_config_dump(admin_proxy):
    status, _ = admin_proxy.get("/ready")
    assert status == 200
    status, body = admin_proxy.get("/config_dump")
    assert status == 200
    dump = json.loads(body)
    text = json.dumps(dump)
    assert "admin_l" in text and "hello" in text, text[:2000]


def test_metrics_move_and_pass_promtool(admin_proxy):
    before = admin_proxy.metrics()
    calls, summary = dubbo_client(admin_proxy.port, "sayHello", ["m{i}"], count=5)
    assert summary["ok"] == 5, calls
    calls, summary = dubbo_client(admin_proxy.port, "notRouted", [], count=1)
    assert summary["failed"] == 1
    after = admin_proxy.metrics()

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("meta_protocol_downstream_requests_total", listener="admin_l", protocol="dubbo", kind="request") >= 6
    assert delta("meta_protocol_upstream_requests_total", listener="admin_l", route="hello", cluster="v1") >= 5
    assert delta("meta_protocol_responses_total", listener="admin_l", route="hello", cluster="v1", status="ok") >= 5
    assert delta("meta_protocol_local_replies_total", listener="admin_l", reason="no_route") >= 1
    assert delta("meta_protocol_request_duration_seconds_count", listener="admin_l", route="hello", cluster="v1") >= 5
    assert delta("meta_protocol_downstream_connections_total", listener="admin_l") >= 2
    assert metric_value(after, "meta_protocol_upstream_connections_total", cluster="v1") >= 1
    names = {name for name, _, _ in parse_metrics(after)}
    for expected in (
        "meta_protocol_requests_active",
        "meta_protocol_downstream_connections_active",
        "meta_protocol_upstream_connections_active",
    ):
        assert expected in names, f"{expected} missing from /metrics"

    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (scripts/test installs Debian's prometheus package)")
    checked = promtool_check(after)
    assert checked.returncode == 0, f"promtool check metrics:\n{checked.stdout}{checked.stderr}"
