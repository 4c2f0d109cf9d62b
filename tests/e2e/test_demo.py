"""`aeraki demo` (the README's run command) end to end: control plane + sample servers + sidecar
meta-proxy over ADS + clients, and a live MetaRouter edit that moves the traffic.

The demo's sample servers and clients are our own small implementations (crates/aeraki/src/samples.rs);
third-party peers are exercised by test_control_plane.py and test_envoy_cp.py."""

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import REPO, aeraki_bin, free_port

pytestmark = pytest.mark.proxy


def demo_dir(tmp_path: Path) -> Path:
    """examples/demo with free endpoint ports and VIPs private to this test."""
    d = tmp_path / "demo"
    shutil.copytree(REPO / "examples" / "demo", d)
    text = (d / "services.yaml").read_text()
    for old in ("20881", "20882", "9091", "9092"):
        text = text.replace(f": {old}\n", f": {free_port()}\n")
    text = text.replace("127.0.10.1", "127.0.61.1").replace("127.0.10.2", "127.0.61.2")
    (d / "services.yaml").write_text(text)
    return d


def last_share(output: str, service: str, version: str) -> float:
    """The LAST 5s share of `version` in the last table printed for `service`."""
    share = None
    current = None
    for line in output.splitlines():
        if line.startswith(service):
            current = service
        elif line and not line.startswith(" "):
            current = None
        m = re.match(r"^.*?\s(v\d)\s+([\d.]+)%\s+\d+$", line)
        if current == service and m and m.group(1) == version:
            share = float(m.group(2))
    assert share is not None, f"no {version} row for {service} in:\n{output[-3000:]}"
    return share


def test_demo_routes_and_follows_a_live_edit(tmp_path):
    binary = aeraki_bin()
    if not binary.exists():
        pytest.fail(f"aeraki binary missing at {binary}: run `cargo build --bins` (scripts/test does)")
    d = demo_dir(tmp_path)
    args = [
        str(binary), "demo", "--config-dir", str(d), "--duration", "16", "--rate", "40",
        "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        time.sleep(7)
        early = "".join(chunks)
        assert "hello" not in early  # the table shows versions, not raw replies
        # 90/10 -> 10/90 on the Dubbo router, in place (as an editor would save it)
        router = d / "dubbo-router.yaml"
        text = router.read_text().replace("weight: 90", "weight: X").replace("weight: 10", "weight: 90")
        router.write_text(text.replace("weight: X", "weight: 10"))
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    out = "".join(chunks)
    assert proc.returncode == 0, out[-3000:]
    before = early.rsplit("SERVICE", 1)[-1]
    assert last_share("SERVICE" + before, "org.apache.dubbo", "v1") > 70, early[-2000:]
    final = out.rsplit("final counts:", 1)[0].rsplit("SERVICE", 1)[-1]
    assert last_share("SERVICE" + final, "org.apache.dubbo", "v2") > 70, out[-3000:]
    # the Thrift router was not edited: still mostly v1
    assert last_share("SERVICE" + final, "thrift-sample-server", "v1") > 70, out[-3000:]
    assert "error" not in final and "timeout" not in final, out[-3000:]
