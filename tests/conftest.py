"""Shared fixtures: bring labs up through the real CLI and always take them down."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = REPO / "topologies"


def run_lab(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `lab` CLI as a user would, in a child process."""
    result = subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def netns_list() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: the tests build labs in network namespaces")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: builds network namespaces")


@pytest.fixture(scope="module")
def labs():
    """Bring labs up by topology name or path; everything started is taken down at the end."""
    started: list[str] = []

    def up(topology: str, name: str | None = None) -> str:
        run_lab("up", topology)
        lab_name = name or Path(topology).stem
        started.append(lab_name)
        return lab_name

    yield up
    for name in started:
        run_lab("down", name, check=False)


@pytest.fixture
def scratch_netns():
    """An empty network namespace with a random name (tsn-<hex>), deleted afterwards."""
    name = f"tsn-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)
