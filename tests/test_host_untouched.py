"""The host's root namespace is the same before `lab up` and after `lab down`, and while labs run."""

from __future__ import annotations

import difflib

import pytest
from conftest import run_lab
from hoststate import snapshot
from traffic import ping

pytestmark = pytest.mark.needs_root


def assert_same(before: dict[str, str], after: dict[str, str]) -> None:
    assert set(before) == set(after)
    for key in before:
        if before[key] != after[key]:
            diff = "\n".join(difflib.unified_diff(before[key].splitlines(), after[key].splitlines(), lineterm=""))
            pytest.fail(f"host {key} changed:\n{diff}")


def test_snapshot_is_stable_without_a_lab():
    assert_same(snapshot(), snapshot())


@pytest.mark.parametrize("topology", ["flannel-vxlan", "flannel-hostgw", "flannel-directrouting",
                                      "flannel-hostgw-crosssubnet", "terway-eniip"])
def test_host_is_untouched(topology):
    before = snapshot()
    run_lab("up", topology)
    try:
        during = snapshot()
        assert_same(before, during)
    finally:
        run_lab("down", topology)
    assert_same(before, snapshot())


def test_traffic_does_not_touch_the_host():
    before = snapshot()
    run_lab("up", "flannel-vxlan")
    try:
        assert ping("flannel-vxlan.default.bs1", "10.244.5.124", count=3)
    finally:
        run_lab("down", "flannel-vxlan")
    assert_same(before, snapshot())
