"""Shipped Calico topologies brought up once per test module, under test-only lab names.

A pytest plugin: test modules load it with `pytest_plugins = ("calico_labs",)`, so the
module-scoped `calico_lab` fixture serves each of test_calico_state.py and test_calico_bgp.py (a
BGP lab converges once per module; module scope means no lab outlives its module, so later tests
that expect no lab to be up are not disturbed). Each topology is copied with its `name:`
changed to `tc-<topology>`, so labs other people run under the shipped names are never touched;
the expectations are derived from that same copy. Every lab brought up is taken down at the end
of the module, whatever happened.

Tests that change a lab (stopping BIRD, `lab apply`) must put it back as they found it, or bring
up their own lab with the module-scoped `labs` fixture of conftest.py instead.

PYTEST_DONT_REWRITE (it holds no assertions; test modules import it before pytest registers it as a plugin)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import expect_calico
import pytest
from conftest import TOPOLOGIES, run_lab

CALICO_TOPOLOGIES = ["calico-bgp-mesh", "calico-rr", "calico-ipip", "calico-ipip-crosssubnet", "calico-vxlan",
                     "calico-vxlan-crosssubnet"]
SESSION_PREFIX = os.environ.get("LAB_TEST_PREFIX", "tc")   # another prefix keeps parallel runs apart


def renamed_copy(topology: str, name: str, directory: Path) -> Path:
    return expect_calico.renamed(TOPOLOGIES / f"{topology}.yaml", name, directory / f"{name}.yaml")


def lab_starter(up: Callable[..., str], tmp_path_factory, prefix: str) -> Callable[[str], expect_calico.Expected]:
    """`start(topology)` -> Expected for a renamed copy of topologies/<topology>.yaml, brought up with
    `up(path, name)` (the `labs` fixture, or the session's own); each topology once."""
    started: dict[str, expect_calico.Expected] = {}

    def start(topology: str) -> expect_calico.Expected:
        if topology not in started:
            name = f"{prefix}-{topology}"
            path = renamed_copy(topology, name, tmp_path_factory.mktemp(topology))
            up(str(path), name)
            spec = expect_calico.load(path)
            spec.source = path
            started[topology] = spec
        return started[topology]

    return start


@pytest.fixture(scope="module")
def calico_lab(tmp_path_factory):
    """`calico_lab(topology)` -> Expected; the lab is up (BGP may still be converging)."""
    names: list[str] = []

    def up(path: str, name: str) -> str:
        names.append(name)            # before `up`: a failed up still gets a `down`
        run_lab("up", path)
        return name

    yield lab_starter(up, tmp_path_factory, SESSION_PREFIX)
    for name in names:
        run_lab("down", name, check=False)
