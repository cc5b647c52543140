"""`lab up --dry-run` prints equivalent commands, needs no privileges, and touches nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from calico_labs import renamed_copy
from conftest import REPO, netns_list, run_lab

pytestmark = pytest.mark.needs_root


def kernel_view(netns: str) -> list[str]:
    """What a user reads with ip/bridge (device MACs that both sides pick at random aside)."""
    out = []
    for argv in (["ip", "route"], ["ip", "neigh", "show", "nud", "permanent"], ["ip", "-br", "-4", "addr"],
                 ["bridge", "fdb", "show", "dev", "flannel.1"]):
        result = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True)
        out.append(sorted(result.stdout.splitlines()))  # neighbour and fdb dumps are in hash order
    return out


def test_dry_run_touches_nothing_and_needs_no_privilege():
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_ADMIN for this test")
    before = netns_list()
    argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin,-sys_admin",
            sys.executable, "-m", "lab.cli", "up", "--dry-run", "flannel-vxlan"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "ip -n flannel-vxlan.k8s-node01 link add flannel.1" in result.stdout
    assert "type vxlan id 1 local 192.168.10.72 dev eth0 nolearning" in result.stdout
    assert "bridge -n flannel-vxlan.k8s-node01 fdb replace" in result.stdout
    assert ("ip -n flannel-vxlan.k8s-node01 route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"
            in result.stdout)
    assert "sysctl -qw net.ipv4.ip_forward=1" in result.stdout
    assert netns_list() == before


@pytest.mark.parametrize("topology", ["flannel-vxlan", "flannel-directrouting"])
def test_replaying_the_dry_run_builds_the_same_kernel_state(topology, tmp_path):
    """Under a test-only lab name, so namespaces of a shipped-name lab someone runs are never touched."""
    lab = f"td-{topology}"
    path = str(renamed_copy(topology, lab, tmp_path))
    script = run_lab("up", "--dry-run", path).stdout
    nodes = ["k8s-master01", "k8s-node01", "k8s-node02", "k8s-node03"]
    replay = subprocess.run(["bash", "-e"], input=script, capture_output=True, text=True)
    try:
        assert replay.returncode == 0, replay.stderr
        replayed = {n: kernel_view(f"{lab}.{n}") for n in nodes}
    finally:
        for name in [n for n in netns_list() if n.startswith(f"{lab}.")]:
            subprocess.run(["ip", "netns", "del", name])
    run_lab("up", path)
    try:
        applied = {n: kernel_view(f"{lab}.{n}") for n in nodes}
    finally:
        run_lab("down", lab)
    assert applied == replayed
