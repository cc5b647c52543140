"""Shared fixtures: bring labs up through the real CLI and always take them down."""

from __future__ import annotations

import contextlib
import io
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


def run_lab_unprivileged(monkeypatch: pytest.MonkeyPatch, *args: str) -> subprocess.CompletedProcess:
    """`lab <args>` through the CLI's main in this process, as a user without CAP_NET_ADMIN would run it
    (capabilities.has_root() is False, so `lab up` stops at the root check at the latest): for the
    root-free bad-input tables. The exit code and both streams come back as from a child."""
    from lab import cli
    from lab.netns import capabilities

    monkeypatch.setattr(capabilities, "has_root", lambda: False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return subprocess.CompletedProcess(["lab", *args], code, out.getvalue(), err.getvalue())


def netns_list() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


# Fixtures that build labs or namespaces: a test that uses one needs root, marked or not.
ROOT_FIXTURES = frozenset({"labs", "scratch_netns"})


def pytest_collection_modifyitems(config, items):
    """Mark needs_root where a root fixture is used; without root, skip what needs it.

    The suite splits in two on this mark (what `make test` runs, in this order):
      python -m pytest -m "not needs_root" tests/golden tests   # root-free: loader, plans, golden files
      python -m pytest -m needs_root tests                      # kernel round-trips
    """
    for item in items:
        if "needs_root" not in item.keywords and ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_root)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: the tests build labs in network namespaces")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: builds network namespaces (the rest of the suite needs no root)")


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
