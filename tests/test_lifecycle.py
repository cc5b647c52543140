"""up / down / cleanup: idempotence, name clashes, labs side by side, rollback, crashes, no leftovers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, TOPOLOGIES, netns_list, run_lab
from traffic import ping

pytestmark = pytest.mark.needs_root
STATE_ROOT = Path("/run/lab")


def lab_namespaces(lab: str) -> set[str]:
    return {n for n in netns_list() if n.startswith(f"{lab}.")}


def renamed_copy(tmp_path: Path, name: str, source: str = "flannel-vxlan", edit=lambda text: text) -> Path:
    text = (TOPOLOGIES / f"{source}.yaml").read_text().replace(f"name: {source}\n", f"name: {name}\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(edit(text))
    return path


def assert_gone(lab: str) -> None:
    """No namespace, state or lock file of the lab is left (processes: test_down_stops_processes...)."""
    assert lab_namespaces(lab) == set()
    assert not (STATE_ROOT / lab).exists()
    assert not (STATE_ROOT / f"{lab}.lock").exists()


def test_up_is_idempotent_and_down_is_too():
    run_lab("up", "flannel-vxlan")
    try:
        before = {n: os.stat(f"/run/netns/{n}").st_ino for n in lab_namespaces("flannel-vxlan")}
        assert len(before) == 1 + 4 + 4  # underlay, 4 nodes, 4 pods
        again = run_lab("up", "flannel-vxlan")
        assert "already up" in again.stdout
        assert {n: os.stat(f"/run/netns/{n}").st_ino for n in lab_namespaces("flannel-vxlan")} == before
    finally:
        first = run_lab("down", "flannel-vxlan")
    assert "removed 9 namespaces" in first.stdout
    second = run_lab("down", "flannel-vxlan")
    assert "not up" in second.stdout
    assert_gone("flannel-vxlan")


def test_another_topology_with_a_name_in_use_is_refused(tmp_path):
    run_lab("up", "flannel-vxlan")
    try:
        clash = renamed_copy(tmp_path, "flannel-vxlan", edit=lambda t: t.replace("10.244.3.123", "10.244.3.99"))
        before = netns_list()
        result = run_lab("up", str(clash), check=False)
        assert result.returncode == 2
        assert "already up" in result.stderr and "lab down flannel-vxlan" in result.stderr
        assert netns_list() == before
    finally:
        run_lab("down", "flannel-vxlan")


def test_two_labs_side_by_side(tmp_path):
    twin = renamed_copy(tmp_path, "twin")
    run_lab("up", "flannel-vxlan")
    run_lab("up", str(twin))
    try:
        assert ping("flannel-vxlan.default.bs1", "10.244.5.124")
        assert ping("twin.default.bs1", "10.244.5.124")
        assert lab_namespaces("twin").isdisjoint(lab_namespaces("flannel-vxlan"))
        listing = run_lab("list").stdout
        assert "flannel-vxlan" in listing and "twin" in listing
        run_lab("down", "twin")
        assert_gone("twin")
        assert ping("flannel-vxlan.default.bs1", "10.244.5.124"), "taking one lab down must not touch the other"
    finally:
        run_lab("down", "twin", check=False)
        run_lab("down", "flannel-vxlan")
    assert_gone("flannel-vxlan")


def test_down_stops_processes_started_in_the_lab():
    run_lab("up", "flannel-hostgw")
    sleeper = subprocess.Popen(["ip", "netns", "exec", "flannel-hostgw.default.bs1", "sleep", "300"])
    try:
        result = run_lab("down", "flannel-hostgw")
        assert "stopped 2 processes" in result.stdout   # the sleeper, and the probe servers every lab runs
        assert sleeper.wait(timeout=5) is not None
    finally:
        sleeper.kill()
    assert_gone("flannel-hostgw")


def test_rollback_after_a_failure_halfway_through_up():
    code = textwrap.dedent("""
        from lab.lifecycle import Lab
        from lab.netns.apply import FaultInjected
        try:
            Lab().up("flannel-vxlan", fail_after=4)
        except FaultInjected as exc:
            print("injected:", exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "injected: fault injected after 4 namespaces" in result.stdout, result.stderr
    assert_gone("flannel-vxlan")


def test_rollback_when_iptables_restore_fails(tmp_path):
    """A failure in the last stage (iptables) still removes every namespace already configured."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "iptables-restore").write_text("#!/bin/sh\necho 'iptables-restore: line 3 failed' >&2\nexit 1\n")
    (fake / "iptables-restore").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = run_lab("up", "flannel-vxlan", check=False, env=env)
    assert result.returncode == 2
    assert "iptables-restore refused the rules" in result.stderr and "rolled back" in result.stderr
    assert_gone("flannel-vxlan")


def test_an_enforcer_without_ipset_is_refused_before_the_kernel_is_touched(tmp_path):
    """Only ipset is missing from PATH: `lab up` of a kube-router lab names it and builds nothing."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ip", "bridge", "iptables", "iptables-restore", "iptables-save", "nsenter", "sysctl", "tcpdump"):
        if shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))
    path = renamed_copy(tmp_path, "tlc-noipset", source="netpol-xyz-kuberouter")
    result = run_lab("up", str(path), check=False, env={**os.environ, "PATH": str(tools)})
    assert result.returncode == 2
    assert f"{path} needs ipset, which is not installed" in result.stderr
    assert "install-deps.sh" in result.stderr
    assert_gone("tlc-noipset")


def test_cleanup_after_a_killed_up():
    # The process dies (os._exit) in the middle of configuring namespaces: no rollback can run.
    code = textwrap.dedent("""
        import os
        from lab.lifecycle import Lab
        from lab.netns import netlink
        real, count = netlink.apply_namespace, [0]
        def dying(plan, fds, *rest):
            count[0] += 1
            if count[0] == 5:
                os._exit(9)
            return real(plan, fds, *rest)
        netlink.apply_namespace = dying
        Lab().up("flannel-vxlan")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 9
    assert lab_namespaces("flannel-vxlan"), "the killed up should have left namespaces behind"
    assert "creating" in run_lab("list").stdout
    cleaned = run_lab("cleanup")
    assert "flannel-vxlan: removed 9 namespaces" in cleaned.stdout
    assert_gone("flannel-vxlan")


def test_cleanup_finds_namespaces_of_a_lab_without_state():
    for name in ("ghost._underlay", "ghost.k8s-node01", "ghost.default.web"):
        subprocess.run(["ip", "netns", "add", name], check=True)
    cleaned = run_lab("cleanup")
    assert "ghost: removed 3 namespaces" in cleaned.stdout
    assert lab_namespaces("ghost") == set()


def test_not_root_gets_a_clear_message():
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    before = netns_list()
    result = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin,-sys_admin",
                             sys.executable, "-m", "lab.cli", "up", "flannel-vxlan"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "needs root" in result.stderr and "sudo lab up" in result.stderr
    assert netns_list() == before


def test_topologies_lists_the_shipped_ones():
    listing = run_lab("topologies").stdout
    for name in ("flannel-vxlan", "flannel-hostgw", "flannel-directrouting", "flannel-hostgw-crosssubnet"):
        assert name in listing


def test_exec_and_shell_run_inside_nodes_and_pods(labs):
    labs("flannel-vxlan")
    routes = run_lab("exec", "k8s-node03", "--", "ip", "route").stdout
    assert "10.244.5.0/24 via 10.244.5.0 dev flannel.1 onlink" in routes
    pod_routes = run_lab("exec", "default/bs1", "--", "ip", "route").stdout
    assert "default via 10.244.3.1 dev eth0" in pod_routes
    shell = subprocess.run([sys.executable, "-m", "lab.cli", "shell", "k8s-node01"],
                           input="ip -br -4 addr show eth0\nexit\n",
                           capture_output=True, text=True, cwd=REPO, env={**os.environ, "SHELL": "/bin/bash"})
    assert "192.168.10.72/24" in shell.stdout
    missing = run_lab("exec", "no-such-node", "--", "true", check=False)
    assert missing.returncode == 2 and "no node or pod 'no-such-node'" in missing.stderr
    late_option = run_lab("exec", "k8s-node01", "--lab", "flannel-vxlan", "--", "ip", "-br", "link", "show", "eth0")
    assert late_option.stdout.startswith("eth0@")


def test_lab_names_are_checked_before_any_path_is_built():
    for name in ("..", "/", "a/b", "UPPER"):
        result = run_lab("down", name, check=False)
        assert result.returncode == 2 and "is not a lab name" in result.stderr, name
    assert Path("/run").is_dir() and Path("/run/netns").exists()
