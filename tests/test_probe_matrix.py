"""Probe servers and the reachability matrix against a real flannel lab; truth-table rendering."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
from types import SimpleNamespace

import pytest

from lab import supervision
from lab.errors import LabError
from lab.lifecycle import Lab
from lab.netns import names
from lab.netns.state import StateStore
from lab.probe import matrix, servers, table
from lab.topology.model import ContainerPort, Pod

PREFIX = "tpm-"
PORTS = [{"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"},
         {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
         {"name": "serve-81-sctp", "containerPort": 81, "protocol": "SCTP"}]
TOPOLOGY = """\
name: {name}
cluster: {{cni: flannel}}
networks:
  - {{name: lan, cidr: 192.168.10.0/24}}
nodes:
  - {{name: n1, ip: 192.168.10.11}}
  - {{name: n2, ip: 192.168.10.12}}
namespaces:
  - {{name: x}}
pods:
  - {{name: a, namespace: x, node: n1, containerPorts: {ports}}}
  - {{name: b, namespace: x, node: n1, containerPorts: {ports}}}
  - {{name: c, namespace: x, node: n2, containerPorts: {ports}}}
"""
DENIED = {("x/a", "x/c"), ("x/b", "x/c")}   # x/c is alone on n2: a rule in n2's FORWARD catches these


def lab_namespaces(lab: str) -> list[str]:
    return [n for n in os.listdir("/run/netns") if n.startswith(f"{lab}.")] if os.path.isdir("/run/netns") else []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def recorded_servers(lab: str) -> int | None:
    """The pid of the probe servers `lab up` recorded, if it starts them."""
    state = StateStore().load(lab)
    return ((state.summary.get("runtime") or {}).get("probe_servers") or {}).get("pid") if state else None


needs_root = pytest.mark.needs_root  # the tests on the `lab` fixture


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2-node flannel lab with 3 pods and their probe servers; always taken down."""
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces")
    name = f"{PREFIX}{secrets.token_hex(4)}"
    path = tmp_path_factory.mktemp("tpm") / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, ports=str(PORTS).replace("'", "")))
    lifecycle = Lab()
    state_dir = StateStore().lab_dir(name)
    try:
        lifecycle.up(str(path))
        topology = lifecycle.load(str(path))
        if recorded_servers(name):              # if `lab up` started them, this test starts its own; the
            supervision.request(lifecycle.store, name, "stop", [supervision.PROBE_SERVERS])  # supervisor lets go
        runtime = servers.start(topology, state_dir)
        yield SimpleNamespace(name=name, topology=topology, runtime=runtime, state_dir=state_dir,
                              pods={p.key: p for p in topology.pods})
        servers.stop(runtime["pid"])
        assert not alive(runtime["pid"])
        with open(runtime["log"], encoding="utf-8") as handle:
            assert "stopped on signal" in handle.read()
        again = servers.start(topology, state_dir)       # `lab down` must stop it with the lab
    finally:
        lifecycle.down(name)
    assert not alive(again["pid"])
    assert lab_namespaces(name) == []


def iptables(lab, pod: str, action: str, protocol: str, target: str) -> None:
    """Insert (-I) or delete (-D) a FORWARD rule for port 80 to `pod`, on that pod's node."""
    node = names.node_netns(lab.name, lab.pods[pod].node)
    subprocess.run(["ip", "netns", "exec", node, "iptables", action, "FORWARD", "-d", str(lab.pods[pod].ip),
                    "-p", protocol.lower(), "--dport", "80", "-j", target], check=True)


@needs_root
def test_servers_report_what_they_serve(lab):
    sctp = lab.runtime["sctp"]
    assert lab.runtime["served"] == 3 * (3 if sctp else 2)
    with open(os.path.join(lab.state_dir, servers.READY_FILE), encoding="utf-8") as handle:
        ready = json.load(handle)
    assert ready["pid"] == lab.runtime["pid"]
    expected = {"served": ["80/TCP", "80/UDP"] + (["81/SCTP"] if sctp else []),
                "unsupported": [] if sctp else ["81/SCTP"]}
    assert ready["pods"] == {key: expected for key in ("x/a", "x/b", "x/c")}


@needs_root
def test_a_server_that_cannot_bind_says_why_and_where_to_look(lab, tmp_path):
    with pytest.raises(LabError) as caught:
        servers.start(lab.topology, str(tmp_path))     # the ports are taken by the running servers
    assert "Address already in use" in caught.value.message
    assert str(tmp_path / servers.LOG_FILE) in caught.value.hint


@needs_root
@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_every_pair_is_allowed(lab, protocol):
    cases = matrix.cases_for(lab.topology, port=80, protocol=protocol)
    assert len(cases) == 9
    seen = matrix.observe(lab.topology, cases)
    assert {c: o for c, o in seen.items() if o != matrix.ALLOWED} == {}


@needs_root
@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
@pytest.mark.parametrize("target, details", [("REJECT", {"refused", "unreachable"}), ("DROP", {"timeout"})])
def test_a_forward_rule_denies_exactly_its_pairs(lab, protocol, target, details):
    cases = matrix.cases_for(lab.topology, port=f"serve-80-{protocol.lower()}")
    iptables(lab, "x/c", "-I", protocol, target)
    try:
        seen = matrix.observe(lab.topology, cases, timeout=1.0)
    finally:
        iptables(lab, "x/c", "-D", protocol, target)
    denied = {(c.src, c.dst) for c, o in seen.items() if o.allowed is False}
    assert denied == DENIED
    assert {o.detail for c, o in seen.items() if (c.src, c.dst) in DENIED} <= details
    assert all(o == matrix.ALLOWED for c, o in seen.items() if (c.src, c.dst) not in DENIED)


@needs_root
def test_sctp_is_unsupported_without_kernel_sctp(lab):
    if lab.runtime["sctp"]:
        pytest.skip("this kernel has SCTP: the probes would be real, not unsupported")
    assert sorted(lab.runtime["unsupported"]) == ["x/a:81/SCTP", "x/b:81/SCTP", "x/c:81/SCTP"]
    seen = matrix.observe(lab.topology, matrix.cases_for(lab.topology, protocol="sctp"))
    assert len(seen) == 9 and set(seen.values()) == {matrix.UNSUPPORTED}


@needs_root
def test_whole_matrix_renders(lab):
    seen = matrix.observe(lab.topology, matrix.cases_for(lab.topology))
    grouped = matrix.verdicts(seen)
    assert set(grouped) == {(80, "TCP"), (80, "UDP"), (81, "SCTP")}
    text = table.render(sorted(lab.pods), grouped[(80, "TCP")], "80/TCP")
    assert text.splitlines()[3] == "| x/a    | .   | .   | .   |"


# -- no lab needed -----------------------------------------------------------------------------------
def pod(name: str, *ports: ContainerPort) -> Pod:
    return Pod(name=name, namespace="x", node="n1", container_ports=ports)


def test_cases_resolve_named_ports_per_destination():
    topology = SimpleNamespace(name="t", externals=(), pods=(
        pod("a", ContainerPort(80, "TCP", "web"), ContainerPort(53, "UDP", "dns")),
        pod("b", ContainerPort(8080, "TCP", "web")),
        pod("c")))
    web = matrix.cases_for(topology, port="web")
    assert {(c.dst, c.port) for c in web} == {("x/a", 80), ("x/b", 8080)}
    assert len(web) == 6 and ("x/a", "x/a") in {(c.src, c.dst) for c in web}
    assert {c.dst for c in matrix.cases_for(topology, port="8080")} == {"x/b"}
    assert len(matrix.cases_for(topology, protocol="udp")) == 3
    assert len(matrix.cases_for(topology)) == 9
    assert matrix.cases_for(topology, port=80, protocol="UDP") == []


def test_identify_names_the_peer():
    assert matrix.identify(b"x/a\n", "x/a") == matrix.ALLOWED
    assert matrix.identify(b"x/b\n", "x/a") == matrix.Observation(False, "wrong-peer:x/b")
    assert matrix.identify(b"", "x/a") == matrix.Observation(False, "wrong-peer:(nothing)")


def test_table_renders_like_cyclonus():
    pods = ["x/a", "x/b", "y/long-name"]
    verdicts = {("x/a", "x/a"): True, ("x/a", "x/b"): False, ("x/a", "y/long-name"): None,
                ("x/b", "x/a"): True, ("x/b", "x/b"): True,
                ("y/long-name", "x/a"): False, ("y/long-name", "x/b"): True}
    expected = textwrap.dedent("""\
        +-------------+-----+-----+-------------+
        |   80/TCP    | x/a | x/b | y/long-name |
        +-------------+-----+-----+-------------+
        | x/a         | .   | X   | ?           |
        | x/b         | .   | .   | -           |
        | y/long-name | X   | .   | -           |
        +-------------+-----+-----+-------------+""")
    assert table.render(pods, verdicts, "80/TCP") == expected
