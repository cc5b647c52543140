"""`lab up` returns when the lab works: BGP Established, every block routed, probe servers answering.

The README's Calico tour runs back to back with no sleep: `lab up`, then `ip route` on a node, then
`lab ping`. Expected routes and sessions come from tests/expect_calico.py (derived from the
topology, never from lab code). Also: `--no-wait`, `lab wait`, and a timeout that names what is not
ready and leaves the lab up. The BGP propagation model behind the wait is checked without root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import expect_calico
import pytest
from calico_kernel import main_routes, node_files, route_diff, stop_bird
from calico_labs import renamed_copy
from conftest import TOPOLOGIES, netns_list, run_lab

from lab.cni.calico import propagation
from lab.topology import loader


# -- the propagation model (no root) -------------------------------------------------------------------------
def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return str(path)


CHAIN = """\
name: chain
cluster: {cni: calico}
networks: [{name: lan, cidr: 192.168.10.0/24, gateway: 192.168.10.1}]
nodes:
  - {name: a, ip: 192.168.10.11}
  - {name: b, ip: 192.168.10.12}
  - {name: c, ip: 192.168.10.13}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec: {cidr: 10.244.0.0/16}
  - apiVersion: projectcalico.org/v3
    kind: BGPConfiguration
    metadata: {name: default}
    spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: a-to-b}
    spec: {node: a, peerIP: 192.168.10.12, asNumber: 64512}
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: b-to-c}
    spec: {node: b, peerIP: 192.168.10.13, asNumber: 64512}
"""
REFLECTOR_B = """\
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: b}
    spec: {bgp: {ipv4Address: 192.168.10.12/24, routeReflectorClusterID: 244.0.0.1}}
"""


def test_full_mesh_everyone_learns_everyone():
    topology = loader.load(str(TOPOLOGIES / "calico-bgp-mesh.yaml"))
    nodes = {"k8s-master01", "k8s-node01", "k8s-node02", "k8s-node03"}
    assert propagation.learners(topology) == {n: nodes - {n} for n in nodes}


def test_route_reflector_passes_clients_routes_on():
    topology = loader.load(str(TOPOLOGIES / "calico-rr.yaml"))
    nodes = {"k8s-master01", "k8s-node01", "k8s-node02", "k8s-node03"}
    assert propagation.learners(topology) == {n: nodes - {n} for n in nodes}
    # every client has one session, to the reflector k8s-node01
    sessions = propagation.sessions(topology)
    assert {n: set(s) for n, s in sessions.items() if n != "k8s-node01"} == {
        n: {"k8s-node01"} for n in nodes - {"k8s-node01"}}


def test_ibgp_chain_without_reflector_does_not_pass_routes_on(tmp_path):
    """a - b - c over plain iBGP: b learns both, but never passes a's routes to c (RFC 4271 9.2)."""
    topology = loader.load(_write(tmp_path, CHAIN))
    assert propagation.learners(topology) == {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}


def test_ibgp_chain_through_a_reflector_reaches_everyone(tmp_path):
    topology = loader.load(_write(tmp_path, CHAIN + REFLECTOR_B))
    assert propagation.learners(topology) == {"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}}


# -- live labs -----------------------------------------------------------------------------------------------
needs_root = pytest.mark.needs_root


def _up(tmp_path: Path, topology: str, name: str, *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    path = renamed_copy(topology, name, tmp_path)
    return run_lab("up", *flags, str(path)), path


@pytest.fixture
def cleanup():
    names: list[str] = []
    yield names
    for name in names:
        run_lab("down", name, check=False)


@needs_root
@pytest.mark.parametrize("topology", ["calico-bgp-mesh", "calico-rr"])
def test_readme_calico_tour_back_to_back(tmp_path, cleanup, topology):
    """`lab up`, then at once every node's routes as expected and bs1 -> bs8 answering."""
    name = f"tr-{topology}"
    cleanup.append(name)
    up, path = _up(tmp_path, topology, name)
    assert f"lab {name} is ready after" in up.stdout, up.stdout
    spec = expect_calico.load(path)
    for node in spec.nodes:
        got = main_routes(spec.node_netns(node))
        assert got == spec.routes(node), f"{node.name}:\n{route_diff(got, spec.routes(node))}"
    status = run_lab("calicoctl", "node", "status", spec.nodes[0].name, "--lab", name).stdout
    assert status.count("Established") == len(spec.sessions(spec.nodes[0])), status
    ping = run_lab("ping", "--lab", name, "default/bs1", "default/bs8", "-c", "1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert " 0% packet loss" in ping.stdout


@needs_root
def test_flannel_is_ready_at_once(tmp_path, cleanup):
    cleanup.append("tr-flannel")
    up, _ = _up(tmp_path, "flannel-vxlan", "tr-flannel")
    assert "lab tr-flannel is ready after" in up.stdout and "probe servers answering 1/1" in up.stdout, up.stdout
    ping = run_lab("ping", "--lab", "tr-flannel", "default/bs1", "default/bs8", "-c", "1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


@needs_root
def test_no_wait_then_lab_wait(tmp_path, cleanup):
    cleanup.append("tr-nowait")
    up, path = _up(tmp_path, "calico-bgp-mesh", "tr-nowait", "--no-wait")
    assert "is ready" not in up.stdout, up.stdout
    waited = run_lab("wait", "tr-nowait", "--timeout", "60")
    spec = expect_calico.load(path)
    sessions = sum(len(spec.sessions(n)) for n in spec.nodes)
    assert f"BGP sessions Established {sessions}/{sessions}" in waited.stdout, waited.stdout
    for node in spec.nodes:
        assert main_routes(spec.node_netns(node)) == spec.routes(node)


@needs_root
def test_timeout_names_what_is_not_ready_and_keeps_the_lab(tmp_path, cleanup):
    cleanup.append("tr-stuck")
    _, path = _up(tmp_path, "calico-bgp-mesh", "tr-stuck")
    spec = expect_calico.load(path)
    victim = spec.nodes[-1]
    stop_bird("tr-stuck", victim.name)
    waited = run_lab("wait", "tr-stuck", "--timeout", "2", check=False)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "is not ready after" in waited.stderr and "stays up for inspection" in waited.stderr
    # every other node's session to the victim is named, with BIRD's state
    for node in spec.nodes[:-1]:
        assert f"{node.name} -> {victim.name} Mesh_{str(victim.ip).replace('.', '_')}" in waited.stderr, waited.stderr
    assert f"{victim.name} -> " in waited.stderr
    assert {spec.node_netns(n) for n in spec.nodes} <= netns_list()
    assert os.path.isdir(node_files("tr-stuck", victim.name))


@needs_root
def test_progress_is_shown_on_a_terminal(tmp_path, cleanup):
    """Through a pty, as a person sees it: the spinner names what `lab up` waits for, then the result."""
    import pty
    import select
    import sys
    cleanup.append("tr-tty")
    path = renamed_copy("calico-bgp-mesh", "tr-tty", tmp_path)
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "lab.cli", "up", str(path)], stdin=secondary,
                               stdout=secondary, stderr=secondary, env={**os.environ, "TERM": "xterm"})
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0
    text = screen.decode(errors="replace")
    assert "waiting for BGP sessions Established" in text, text
    assert "lab tr-tty is ready after" in text, text


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_wait_timeout_must_be_seconds(value):
    result = run_lab("wait", "--timeout", value, check=False)
    assert result.returncode == 2
    assert f"argument --timeout: '{value}' is not a number of seconds" in result.stderr, result.stderr
