"""pytest configuration for the end-to-end tests (helpers live in harness.py)."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NODE_PEERS, meta_proxy_bin  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "proxy: needs the meta-proxy binary (target/debug/meta-proxy or $META_PROXY_BIN)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


DEFAULT_TIMEOUT_S = 180  # per test (pytest-timeout): a hung peer must not eat CI's whole budget


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))


@pytest.fixture(scope="session")
def node_peers() -> Path:
    """tests/peers with its node_modules installed (scripts/test installs them)."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed")
    if not (NODE_PEERS / "node_modules" / "sofa-rpc-node").is_dir():
        pytest.fail("Node peers are not installed: run `npm ci --prefix tests/peers` (scripts/test does)")
    return NODE_PEERS


@pytest.fixture(scope="session")
def proxy_bin() -> Path:
    binary = meta_proxy_bin()
    if not binary.exists():
        pytest.fail(f"meta-proxy binary missing at {binary}: run `cargo build --bins` (scripts/test does)")
    return binary
