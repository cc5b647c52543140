"""Daemon supervision and `lab fault` on live labs (issue 13).

A Calico IPIP CrossSubnet lab on two racks (a router between them): BIRD killed with SIGKILL comes back
and `lab status` counts the restart; a second kill within kubelet's back-off is a crash loop and the
lab is degraded; every fault and its undo, read back from the kernel (routes from BIRD, link state,
iptables) and with traffic; bad input changes nothing; `lab down` after faults leaves nothing.
Expected routes come from tests/expect_calico.py, which reads the topology, never the lab's code.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

import expect_calico
import pytest
from calico_kernel import assert_routes, bird_pid, main_routes, netns_exec, running, wait_for, wait_sessions
from conftest import run_lab
from traffic import ping

TOPOLOGY = """\
name: {name}
cluster: {{cni: calico}}
networks:
  - {{name: rack1, cidr: 192.168.10.0/24, gateway: 192.168.10.1}}
  - {{name: rack2, cidr: 192.168.20.0/24, gateway: 192.168.20.1}}
nodes:
  - {{name: n1, network: rack1, ip: 192.168.10.71}}
  - {{name: n2, network: rack1, ip: 192.168.10.72}}
  - {{name: n3, network: rack2, ip: 192.168.20.73}}
  - {{name: n4, network: rack2, ip: 192.168.20.74}}
pods:
  - {{name: p1, node: n1, containerPorts: [{{containerPort: 80}}]}}
  - {{name: p2, node: n2}}
  - {{name: p3, node: n3}}
  - {{name: p4, node: n4}}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {{name: default-ipv4-ippool}}
    spec: {{cidr: 10.244.0.0/16, blockSize: 26, ipipMode: CrossSubnet, vxlanMode: Never, natOutgoing: true}}
"""

FLANNEL = """\
name: {name}
cluster: {{cni: flannel}}
networks:
  - {{name: lan, cidr: 192.168.10.0/24, gateway: 192.168.10.1}}
nodes:
  - {{name: f1, network: lan, ip: 192.168.10.71}}
  - {{name: f2, network: lan, ip: 192.168.10.72}}
resources:
  - {{Network: 10.244.0.0/16, Backend: {{Type: host-gw}}}}
"""

pytestmark = pytest.mark.needs_root


def _up(tmp_path_factory, template: str, prefix: str) -> tuple[str, Path]:
    name = f"{prefix}{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp(prefix) / f"{name}.yaml"
    path.write_text(template.format(name=name))
    run_lab("up", str(path))
    return name, path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    name, path = _up(tmp_path_factory, TOPOLOGY, "flt-")
    try:
        spec = expect_calico.load(path)
        wait_sessions(spec)
        assert_routes(spec)
        yield spec
    finally:
        run_lab("down", name, check=False)


def status(lab: str) -> tuple[int, dict]:
    result = run_lab("status", lab, "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def daemon_row(lab: str, name: str) -> dict:
    return next(row for row in status(lab)[1]["supervisor"]["daemons"] if row["name"] == name)


def withdrawn(spec, victim) -> dict:
    """Every other node's main table without the victim's block."""
    return {n.name: spec.routes(n) - spec.remote_block_routes(n, victim) for n in spec.nodes if n is not victim}


def tables(spec, victim) -> dict:
    return {n.name: main_routes(spec.node_netns(n)) for n in spec.nodes if n is not victim}


def link(netns: str, device: str) -> dict:
    return json.loads(netns_exec(netns, "ip", "-j", "link", "show", device).stdout)[0]


# -- supervision ------------------------------------------------------------------------------------------
def test_bird_killed_with_sigkill_comes_back_and_status_counts_it(lab):
    victim = lab.node("n2")
    code, before = status(lab.lab)
    assert code == 0 and before["status"] == "up", before.get("degraded")
    assert daemon_row(lab.lab, "bird/n2")["restarts"] == 0
    old = bird_pid(lab.lab, victim.name)
    os.kill(old, signal.SIGKILL)
    row = wait_for(lambda: daemon_row(lab.lab, "bird/n2"),
                   lambda r: r["state"] == "running" and r["pid"] not in (None, old), timeout=30)
    assert row["state"] == "running" and row["restarts"] == 1, row
    assert bird_pid(lab.lab, victim.name) == row["pid"] != old
    text = run_lab("status", lab.lab).stdout       # exit 0: running again
    line = next(entry for entry in text.splitlines() if entry.startswith("bird/n2 "))
    assert line.split()[1:4] == ["running", str(row["pid"]), "1"], line
    wait_sessions(lab)
    assert_routes(lab)


def test_a_crash_loop_degrades_the_lab_until_the_daemon_runs_again(lab):
    """Kubelet restarts at once after the first crash, then after 10 s: a second kill leaves BIRD in
    crash-loop for 10 s, during which `lab status` exits 1 and names it."""
    name = "bird/n3"
    first = bird_pid(lab.lab, "n3")
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: daemon_row(lab.lab, name),
                      lambda r: r["state"] == "running" and r["pid"] not in (None, first), timeout=30)
    assert second["state"] == "running", second
    os.kill(second["pid"], signal.SIGKILL)
    looping = wait_for(lambda: daemon_row(lab.lab, name), lambda r: r["state"] == "crash-loop", timeout=30)
    assert looping["state"] == "crash-loop" and looping["pid"] is None, looping
    assert "killed by SIGKILL" in looping["last_exit"] and looping["delay_s"] == 10, looping
    result = run_lab("status", lab.lab, check=False)
    assert result.returncode == 1, result.stdout
    assert f"lab {lab.lab} (degraded)" in result.stdout and f"DEGRADED: {name} is crash-loop" in result.stdout
    back = wait_for(lambda: daemon_row(lab.lab, name), lambda r: r["state"] == "running", timeout=60)
    assert back["state"] == "running" and back["restarts"] == 2, back
    assert status(lab.lab)[0] == 0
    wait_sessions(lab)
    assert_routes(lab)


# -- faults -----------------------------------------------------------------------------------------------
def test_bird_stop_withdraws_the_block_and_bird_start_brings_it_back(lab):
    victim = lab.node("n4")
    out = run_lab("fault", "bird-stop", "n4", "--lab", lab.lab).stdout
    assert "bird-stop n4" in out
    want = withdrawn(lab, victim)
    got = wait_for(lambda: tables(lab, victim), lambda g: g == want)
    assert got == want
    assert bird_pid(lab.lab, "n4") is None
    code, data = status(lab.lab)
    assert code == 1 and data["status"] == "degraded"
    assert [(f["fault"], f["target"]) for f in data["faults"]] == [("bird-stop", "n4")]
    assert daemon_row(lab.lab, "bird/n4")["state"] == "stopped-by-fault"       # not restarted
    assert {"kind": "fault", "what": "lab fault bird-stop n4 (undo: lab fault bird-start n4)"} in data["degraded"]
    assert "FAULT: bird-stop n4" in run_lab("status", lab.lab, check=False).stdout
    again = run_lab("fault", "bird-stop", "n4", "--lab", lab.lab).stdout
    assert "already in force; nothing changed" in again
    run_lab("fault", "bird-start", "n4", "--lab", lab.lab)
    assert bird_pid(lab.lab, "n4") is not None
    wait_sessions(lab)
    assert_routes(lab)
    code, data = status(lab.lab)
    assert code == 0 and data["faults"] == [] and daemon_row(lab.lab, "bird/n4")["restarts"] == 0


def test_link_down_cuts_the_node_and_link_up_restores_it(lab):
    victim, other = lab.node("n3"), lab.node("n4")
    assert ping(lab.node_netns(other), str(victim.ip), count=1)
    run_lab("fault", "link-down", "n3", "--lab", lab.lab)
    port = link(lab.underlay_netns, "n3")
    assert "UP" not in port["flags"], port                       # the switch port, as a pulled cable
    eth0 = link(lab.node_netns(victim), "eth0")
    assert "NO-CARRIER" in eth0["flags"] and "UP" in eth0["flags"], eth0
    assert not ping(lab.node_netns(other), str(victim.ip), count=1, wait=1)
    code, data = status(lab.lab)
    assert code == 1 and [(f["fault"], f["target"]) for f in data["faults"]] == [("link-down", "n3")]
    run_lab("fault", "link-up", "n3", "--lab", lab.lab)
    assert "UP" in link(lab.underlay_netns, "n3")["flags"]
    assert wait_for(lambda: ping(lab.node_netns(other), str(victim.ip), count=1), bool)
    assert status(lab.lab)[1]["faults"] == []
    wait_sessions(lab, timeout=300)       # sessions the peers held until their hold timer (240 s) re-establish
    assert_routes(lab)


def test_node_down_takes_every_interface_and_daemon_and_node_up_restores_them(lab):
    victim = lab.node("n2")
    netns = lab.node_netns(victim)
    before = {(r["ifname"], r["operstate"]) for r in json.loads(netns_exec(netns, "ip", "-j", "link").stdout)}
    run_lab("fault", "node-down", "n2", "--lab", lab.lab)
    links = json.loads(netns_exec(netns, "ip", "-j", "link").stdout)
    assert {link["ifname"] for link in links if "UP" in link["flags"]} == {"lo"}, links
    assert bird_pid(lab.lab, "n2") is None and daemon_row(lab.lab, "bird/n2")["state"] == "stopped-by-fault"
    assert not ping(lab.pod_netns(lab.pod("p1")), str(lab.pod("p2").ip), count=1, wait=1)
    run_lab("fault", "node-up", "n2", "--lab", lab.lab)
    after = {(r["ifname"], r["operstate"]) for r in json.loads(netns_exec(netns, "ip", "-j", "link").stdout)}
    assert wait_for(lambda: {(r["ifname"], r["operstate"]) for r in
                             json.loads(netns_exec(netns, "ip", "-j", "link").stdout)},
                    lambda a: a == before) == before, after
    assert daemon_row(lab.lab, "bird/n2")["state"] == "running"
    wait_sessions(lab, timeout=300)
    assert_routes(lab, timeout=60)          # the victim's own routes (sent again) and BIRD's, every node
    assert ping(lab.pod_netns(lab.pod("p1")), str(lab.pod("p2").ip), count=2)


def test_partition_cuts_a_rack_off_and_heal_joins_it(lab):
    n1, n2, n3, n4 = (lab.node(n) for n in ("n1", "n2", "n3", "n4"))
    run_lab("fault", "partition", "rack2", "--lab", lab.lab)
    rules = netns_exec(lab.underlay_netns, "iptables", "-S", "FORWARD").stdout
    assert rules.count("lab fault partition rack2") == 2, rules
    assert not ping(lab.node_netns(n1), str(n3.ip), count=1, wait=1)
    assert ping(lab.node_netns(n3), str(n4.ip), count=1)             # inside the rack, still switched
    assert ping(lab.node_netns(n1), str(n2.ip), count=1)
    code, data = status(lab.lab)
    assert code == 1 and [(f["fault"], f["target"]) for f in data["faults"]] == [("partition", "rack2")]
    run_lab("fault", "heal", "rack2", "--lab", lab.lab)
    assert "lab fault" not in netns_exec(lab.underlay_netns, "iptables", "-S", "FORWARD").stdout
    assert ping(lab.node_netns(n1), str(n3.ip), count=1)
    assert "nothing changed" in run_lab("fault", "heal", "rack2", "--lab", lab.lab).stdout


def test_bad_input_is_refused_and_changes_nothing(lab, tmp_path_factory):
    before = status(lab.lab)[1]
    for argv, words in ((["bird-stop", "nope"], "no node 'nope'"), (["partition", "nope"], "no network 'nope'"),
                        (["link-down", "rack1"], "no node 'rack1'"), (["partition", "n1"], "no network 'n1'")):
        result = run_lab("fault", *argv, "--lab", lab.lab, check=False)
        assert result.returncode == 2 and words in result.stderr and "hint:" in result.stderr, result.stderr
    after = status(lab.lab)[1]
    assert after["faults"] == [] and after["supervisor"]["daemons"] == before["supervisor"]["daemons"]
    name, _ = _up(tmp_path_factory, FLANNEL, "flf-")
    try:
        result = run_lab("fault", "bird-stop", "f1", "--lab", name, check=False)
        assert result.returncode == 2 and "runs no BIRD" in result.stderr, result.stderr
        one = run_lab("fault", "partition", "lan", "--lab", name, check=False)
        assert one.returncode == 2 and "nothing to partition it from" in one.stderr, one.stderr
        assert status(name)[1]["faults"] == [] and status(name)[0] == 0
    finally:
        run_lab("down", name)


def test_down_after_faults_leaves_nothing(tmp_path_factory):
    name, _ = _up(tmp_path_factory, TOPOLOGY, "fld-")
    try:
        for argv in (["bird-stop", "n1"], ["link-down", "n2"], ["node-down", "n3"], ["partition", "rack2"]):
            run_lab("fault", *argv, "--lab", name)
        data = status(name)[1]
        assert len(data["faults"]) == 4
        pids = [row["pid"] for row in data["supervisor"]["daemons"] if row["pid"]] + [data["supervisor"]["pid"]]
    finally:
        run_lab("down", name)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{name}.")]
    assert not os.path.exists(f"/run/lab/{name}") and not os.path.exists(f"/run/lab/{name}.lock")
    assert not [pid for pid in pids if running(pid)]
    mine = subprocess.run(["pgrep", "-f", f"/run/lab/{name}/"], capture_output=True, text=True).stdout.split()
    assert mine == [], mine
