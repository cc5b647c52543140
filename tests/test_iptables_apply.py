"""lab/netns/iptables.py: each namespace's rules are loaded by an iptables-restore started from inside it
(no nsenter), land in that namespace only, and a refusal names the namespace and rolls the lab back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_up  # noqa: E402  (the generated N x M topologies)
import hoststate  # noqa: E402
from conftest import netns_list, run_lab  # noqa: E402

from lab.netns import apply, iptables, namespace  # noqa: E402
from lab.netns.plan import IptablesRules, LabPlan, NamespacePlan  # noqa: E402

pytestmark = pytest.mark.needs_root


def rules(i: int) -> tuple[IptablesRules, ...]:
    comment = '-m comment --comment "flanneld forward"'
    return (IptablesRules("filter", ("FLANNEL-FWD",), (f"-A FORWARD {comment} -j FLANNEL-FWD",
                                                       f"-A FLANNEL-FWD -s 10.{i}.0.0/16 {comment} -j ACCEPT")),
            IptablesRules("nat", ("FLANNEL-POSTRTG",), (f"-A POSTROUTING -d 10.{i}.0.0/16 -j FLANNEL-POSTRTG",)))


def saved(netns: str) -> list[str]:
    text = namespace.run_in(netns, lambda: subprocess.run(["iptables-save"], capture_output=True, text=True,
                                                          check=True).stdout)
    return [line for line in text.splitlines() if "FLANNEL" in line]


def test_each_namespace_gets_its_own_rules_and_the_host_none():
    names = [f"ipt-apply.{i}" for i in range(3)]
    plan = LabPlan("ipt-apply", tuple(NamespacePlan(n, "node", n, iptables=rules(i) if i != 1 else ())
                                      for i, n in enumerate(names)))
    host = hoststate.snapshot()
    namespace.create_many(names)
    try:
        assert apply.configure_all(plan) == []
        for i, name in enumerate(names):
            expected = [] if i == 1 else [
                ":FLANNEL-FWD - [0:0]", '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
                f'-A FLANNEL-FWD -s 10.{i}.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
                ":FLANNEL-POSTRTG - [0:0]", f"-A POSTROUTING -d 10.{i}.0.0/16 -j FLANNEL-POSTRTG"]
            assert saved(name) == expected, name
    finally:
        apply.remove_namespaces(names)
    assert hoststate.snapshot() == host


def test_a_refused_table_names_its_namespace():
    names = [f"ipt-refuse.{i}" for i in range(2)]
    bad = (IptablesRules("filter", (), ("-A NO-SUCH-CHAIN -j ACCEPT",)),)
    plan = LabPlan("ipt-refuse", (NamespacePlan(names[0], "node", "a", iptables=rules(0)),
                                  NamespacePlan(names[1], "node", "b", iptables=bad)))
    namespace.create_many(names)
    try:
        failures = apply.configure_all(plan)
        assert [(f.netns, f.what) for f in failures] == [("ipt-refuse.1", iptables.WHAT)]
        assert str(failures[0]).startswith("ipt-refuse.1: iptables rules: iptables-restore: line 2 failed")
    finally:
        apply.remove_namespaces(names)


def test_lab_up_rolls_back_when_iptables_restore_fails(tmp_path):
    """The last stage's failure still removes every namespace already configured (a lab of its own name)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "iptables-restore").write_text("#!/bin/sh\necho 'iptables-restore: line 3 failed' >&2\nexit 1\n")
    (fake / "iptables-restore").chmod(0o755)
    topology = tmp_path / "ipt-rollback.yaml"
    topology.write_text(bench_up.topology_yaml("ipt-rollback", 2, 1))
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = run_lab("up", str(topology), check=False, env=env)
    assert result.returncode == 2, result.stderr
    assert "iptables-restore refused the rules" in result.stderr and "rolled back" in result.stderr
    assert not [n for n in netns_list() if n == "ipt-rollback" or n.startswith("ipt-rollback.")]
    assert not Path("/run/lab/ipt-rollback").exists()
