"""Golden dry-runs (no root): every shipped topology's `lab up --dry-run`, compared line by line with
tests/golden/dryrun/<name>.txt, as netlab's tests/topology compare transformed topologies with files.

The host facts a dry-run reads are pinned to the reference machine (kernel 6.18: no ipip module, no
netem; eBPF IPIP buildable; every tool installed; gc_thresh3 1024; 24 GiB), so the snapshots are the
same on every clone and host; the repository's own path is written as <repo>.

A difference is either a regression or an intended change of the plan. After an intended change,
regenerate the snapshots and review them with `git diff tests/golden/`:

    LAB_GOLDEN_UPDATE=1 python -m pytest tests/golden
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import cli
from lab.lifecycle import Lab
from lab.netns import bpfobj, capabilities, impairments, neighbours

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "dryrun"
UPDATE = os.environ.get("LAB_GOLDEN_UPDATE") == "1"
SHIPPED = sorted(REPO.glob("topologies/*.yaml")) + sorted(REPO.glob("experiments/topologies/*.yaml"))
REFERENCE_KINDS = {"veth": True, "bridge": True, "vxlan": True, "ipip": False, "dummy": False, "ipvlan": False}


def reference_capabilities() -> capabilities.Capabilities:
    """What Capabilities.assumed() finds on the reference machine."""
    return capabilities.Capabilities(
        kinds={kind: REFERENCE_KINDS[kind] for kind in capabilities.SCRATCH_KINDS}, br_netfilter=False,
        tools=dict.fromkeys(capabilities.TOOLS, True), probed=False, ebpf_ipip=True,
        ebpf_reason="assumed from the object or clang being there (not tried: dry run)")


@pytest.fixture
def reference_host(monkeypatch):
    monkeypatch.setattr(capabilities.Capabilities, "assumed", classmethod(lambda cls: reference_capabilities()))
    monkeypatch.setattr(neighbours, "host_limit", lambda *a, **k: 1024)
    monkeypatch.setattr(neighbours, "available_memory", lambda *a, **k: 24 << 30)
    monkeypatch.setattr(impairments, "netem_assumed", lambda: False)
    monkeypatch.setattr(bpfobj, "buildable", lambda name: True)


def dry_run(argument: str, capsys) -> str:
    """`lab up --dry-run <argument>` through the CLI's main, in this process."""
    capsys.readouterr()
    code = cli.main(["up", "--dry-run", argument])
    out, err = capsys.readouterr()
    assert code == 0, err
    return (out + "".join(f"# stderr: {line}\n" for line in err.splitlines())).replace(str(REPO), "<repo>")


def compare(name: str, text: str) -> None:
    snapshot = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        snapshot.write_text(text, encoding="utf-8")
        return
    assert snapshot.exists(), f"no snapshot {snapshot}: make it with LAB_GOLDEN_UPDATE=1 python -m pytest tests/golden"
    expected = snapshot.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            f"{snapshot.relative_to(REPO)} (snapshot)", "lab up --dry-run (now)", n=1))
        pytest.fail(f"the dry-run of {name} differs from its snapshot (intended? regenerate with "
                    f"LAB_GOLDEN_UPDATE=1 python -m pytest tests/golden and review git diff):\n{diff[:6000]}")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_dry_run_matches_its_snapshot(path, reference_host, capsys):
    # shipped topologies by name (as users type them), the experiments' own topologies by path
    argument = path.stem if path.parent.name == "topologies" and path.parent.parent == REPO else str(path)
    compare(path.stem, dry_run(argument, capsys))


def test_every_snapshot_belongs_to_a_shipped_topology():
    stale = {p.stem for p in SNAPSHOTS.glob("*.txt")} - {p.stem for p in SHIPPED}
    assert not stale, f"snapshots without a topology (remove them): {sorted(stale)}"


def test_the_dry_run_is_deterministic(reference_host, capsys):
    """Twice the same text in one process (sets and dicts are not allowed to leak their order)."""
    for name in ("calico-ipip", "netpol-xyz-kuberouter", "netpol-seed002"):
        assert dry_run(name, capsys) == dry_run(name, capsys), name


def unprivileged(*args: str) -> subprocess.CompletedProcess:
    """`lab <args>` without any capability: as root, in a child through setpriv with an empty bounding set
    (the uid stays 0, so an interpreter under /root still runs); as any other user, in this process."""
    if os.geteuid() != 0:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop every capability")
    return subprocess.run([setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m", "lab.cli", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_dry_run_needs_no_privilege():
    """Without capabilities: the same text as this process's dry-run on this host."""
    dry = unprivileged("up", "--dry-run", "calico-ipip")
    assert dry.returncode == 0, dry.stderr
    assert "ip netns add calico-ipip.k8s-node01\n" in dry.stdout
    assert dry.stdout == Lab().dry_run("calico-ipip")


def test_up_without_privilege_loads_and_plans_first_then_asks_for_root():
    """A good topology gets as far as the root check (exit 2, what to do) and creates nothing."""
    up = unprivileged("up", "flannel-vxlan")
    assert up.returncode == 2, up.stderr
    assert up.stderr.startswith("lab: error: lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"), up.stderr
    assert "sudo lab up flannel-vxlan" in up.stderr
    assert up.stdout == ""
