"""Bad Calico input: `lab up` refuses it precisely and creates nothing; `lab apply -f` refuses it and the
running lab is left exactly as it was (same BGP sessions, same BIRD configuration, same state).

The error format is that of tests/test_bad_input.py: `lab: error: <file>:<line>: <field path>: <message>`.
Line numbers are counted by hand from the texts below (line 1 is the first line of the text).
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from calico_kernel import bird_established, bird_pid, node_files, wait_sessions
from calico_labs import lab_starter
from conftest import run_lab_unprivileged

LAB_NAME = "bad-calico"

# lines 1-9
HEAD = """\
name: bad-calico
cluster:
  cni: calico
networks:
  - {name: lan, cidr: 192.168.10.0/24}
nodes:
  - {name: n1, ip: 192.168.10.11}
  - {name: n2, ip: 192.168.10.12}
resources:
"""
# lines 10-14: a good pool; a second resource then starts on line 15
POOL = HEAD + """\
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec:
      cidr: 10.244.0.0/16
"""


def case(id, text, line, field, message):
    return pytest.param(text, line, field, message, id=id)


CASES = [
    case("pool-overlaps-underlay", HEAD + """\
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec:
      cidr: 192.168.0.0/16
""", 14, "resources[0].spec.cidr", "overlaps the underlay network 'lan' (192.168.10.0/24)"),
    # no IPPool: calico/node's default pool 192.168.0.0/16 collides with the seed's node network
    case("default-pool-overlaps-underlay", HEAD.replace("resources:\n", ""), 2, "cluster.calico.env",
         "the IP pool 192.168.0.0/16 overlaps the underlay network 'lan'"),
    case("block-size-33", POOL + "      blockSize: 33\n", 15, "resources[0].spec.blockSize",
         "blockSize 33 must be an integer from 20 to 32"),
    case("block-size-19", POOL + "      blockSize: 19\n", 15, "resources[0].spec.blockSize",
         "blockSize 19 must be an integer from 20 to 32"),
    case("ipip-and-vxlan", POOL + "      ipipMode: Always\n      vxlanMode: CrossSubnet\n", 16,
         "resources[0].spec.vxlanMode", "ipipMode and vxlanMode cannot both be enabled"),
    case("ipip-mode-lower-case", POOL + "      ipipMode: always\n", 15, "resources[0].spec.ipipMode",
         "ipipMode 'always' must be Always, CrossSubnet or Never"),
    case("unknown-pool-field", POOL + "      ipipmode: Always\n", 15, "resources[0].spec.ipipmode",
         "unknown field 'ipipmode'"),
    case("pools-overlap", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: second}
    spec: {cidr: 10.244.128.0/17}
""", 18, "resources[1].spec.cidr", "overlaps IPPool 'default-ipv4-ippool'"),
    case("ipip-pool-with-vxlan-backend", HEAD.replace("  cni: calico\n", "  cni: calico\n  calico: {backend: vxlan}\n")
         + """\
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec: {cidr: 10.244.0.0/16, ipipMode: Always}
""", 4, "cluster.calico.backend", "ipipMode Always, which needs BIRD"),
    # the seed's selector with a single '=' (Calico's operator is '==')
    case("peer-selector-single-equals", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: peer-with-route-reflectors}
    spec:
      nodeSelector: all()
      peerSelector: route-reflector = 'true'
""", 20, "resources[1].spec.peerSelector", "invalid selector"),
    case("peer-ip-without-as-number", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: tor}
    spec:
      peerIP: 192.168.10.1
""", 18, "resources[1].spec", "a BGPPeer with peerIP needs asNumber"),
    case("peer-on-unknown-node", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: tor}
    spec:
      node: k8s-node09
      peerIP: 192.168.10.1
      asNumber: 64513
""", 19, "resources[1].spec.node", "no node named 'k8s-node09'"),
    case("node-resource-for-unknown-node", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: k8s-node01}
    spec:
      bgp: {routeReflectorClusterID: 244.0.0.1}
""", 17, "resources[1].metadata.name", "Calico Node 'k8s-node01' is not a node of this topology"),
    case("cluster-id-not-an-address", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n1}
    spec:
      bgp:
        ipv4Address: 192.168.10.11/24
        routeReflectorClusterID: rr-1
""", 21, "resources[1].spec.bgp.routeReflectorClusterID", "'rr-1' is not a cluster ID"),
    case("cluster-id-octet-256", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n1}
    spec:
      bgp:
        routeReflectorClusterID: 244.0.0.256
""", 20, "resources[1].spec.bgp.routeReflectorClusterID", "'244.0.0.256' is not a cluster ID"),
    case("node-address-not-the-node-s", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n2}
    spec:
      bgp:
        ipv4Address: 192.168.10.99/24
""", 20, "resources[1].spec.bgp.ipv4Address", "192.168.10.99 is not this node's address (192.168.10.12)"),
    case("mesh-flag-as-string", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPConfiguration
    metadata: {name: default}
    spec:
      nodeToNodeMeshEnabled: "false"
""", 19, "resources[1].spec.nodeToNodeMeshEnabled", "must be true or false"),
    case("as-number-zero", POOL + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPConfiguration
    metadata: {name: default}
    spec:
      asNumber: 0
""", 19, "resources[1].spec.asNumber", "AS number 0 must be an integer from 1 to 4294967295"),
    case("pod-cidr-not-a-block", POOL.replace("  - {name: n1, ip: 192.168.10.11}",
                                              "  - {name: n1, ip: 192.168.10.11, podCIDR: 10.244.1.0/24}"),
         7, "nodes[0].podCIDR", "10.244.1.0/24 is not a /26 block of IP pool default-ipv4-ippool"),
    case("pod-ip-outside-its-node-s-block", POOL + """\
pods:
  - {name: web-0, node: n1, ip: 10.244.0.70}
""", 16, "pods[0].ip", "10.244.0.70 is not in a block of node n1 (10.244.0.0/26)"),
]


def _ours(path: str) -> set[str]:
    try:
        return {e for e in os.listdir(path) if e == LAB_NAME or e.startswith(f"{LAB_NAME}.")}
    except FileNotFoundError:
        return set()


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=60)


def assert_precise(result: subprocess.CompletedProcess, path: str, line: int | None, field: str | None,
                   message: str) -> None:
    shown = f"\n--- stderr ---\n{result.stderr}--- stdout ---\n{result.stdout}"
    assert result.returncode == 2, f"exit {result.returncode}, expected 2{shown}"
    assert "Traceback" not in result.stderr, shown
    assert result.stderr.startswith("lab: error: "), shown
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    header = f"{where}{field}: " if field else where
    assert result.stderr.startswith(f"lab: error: {header}"), f"error does not start with {header!r}{shown}"
    assert message in result.stderr.splitlines()[0], f"error does not say {message!r}{shown}"


def assert_refused_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int | None,
                                field: str | None, message: str) -> None:
    """`lab up` and `lab up --dry-run` of `text`, without root (in this process), both refuse it precisely and
    alike: the loader's error comes before `lab up` asks for root."""
    path = str(tmp_path / "topo.yaml")
    Path(path).write_text(text)
    up = run_lab_unprivileged(monkeypatch, "up", path)
    assert up.stdout == "", up.stdout
    assert_precise(up, path, line, field, message)
    dry = run_lab_unprivileged(monkeypatch, "up", "--dry-run", path)
    assert dry.returncode == 2 and dry.stdout == "" and dry.stderr == up.stderr, dry.stderr


@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_calico_topology_is_refused_precisely_without_root(tmp_path, monkeypatch, text, line, field, message):
    """The table without root (in this process): the loader's error comes before `lab up` asks for root."""
    assert_refused_without_root(tmp_path, monkeypatch, text, line, field, message)


@pytest.mark.needs_root
@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_calico_topology_is_refused_precisely_and_creates_nothing(tmp_path, text, line, field, message):
    path = str(tmp_path / "topo.yaml")
    Path(path).write_text(text)
    assert not _ours("/run/netns") and not _ours("/run/lab"), "a bad-calico lab is already there"
    up = _lab("up", path)
    try:
        assert _ours("/run/netns") == set(), "lab up created network namespaces"
        assert _ours("/run/lab") == set(), "lab up left state under /run/lab"
        assert up.stdout == "", up.stdout
        assert_precise(up, path, line, field, message)
        dry = _lab("up", "--dry-run", path)
        assert dry.returncode == 2 and dry.stdout == "" and dry.stderr == up.stderr, dry.stderr
    finally:
        if up.returncode == 0:
            _lab("down", LAB_NAME)


def test_good_calico_head_is_accepted(tmp_path, monkeypatch):
    """The shared head with its pool is itself valid, so every case above fails for its own reason."""
    path = tmp_path / "good.yaml"
    path.write_text(POOL)
    dry = run_lab_unprivileged(monkeypatch, "up", "--dry-run", str(path))
    assert dry.returncode == 0 and dry.stdout, dry.stderr


# -- lab apply -f on a running lab -----------------------------------------------------------------------
LIVE_CASES = [
    pytest.param("bgppeer.yaml", """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector = 'true'
""", 7, "spec.peerSelector", "invalid selector", id="seed-selector-typo"),
    pytest.param("ippool.yaml", """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
""", 6, "spec.cidr", "overlaps the underlay network 'lan'", id="pool-overlaps-underlay"),
    pytest.param("pod.yaml", """\
apiVersion: v1
kind: Pod
metadata: {name: bs9}
spec: {nodeName: k8s-node01}
""", 2, "kind", "a Pod cannot be added to a running lab", id="pod"),
    pytest.param("rr-node.yaml", """\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: k8s-node09
spec:
  bgp:
    routeReflectorClusterID: 244.0.0.1
""", 4, "metadata.name", "Calico Node 'k8s-node09' is not a node of this topology", id="unknown-node"),
    pytest.param("cluster-id.yaml", """\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: k8s-node01
spec:
  bgp:
    ipv4Address: 192.168.10.72/24
    routeReflectorClusterID: 244.0.0
""", 8, "spec.bgp.routeReflectorClusterID", "is not a cluster ID", id="cluster-id"),
    # the error is in the second document: the line must be the file's, not a re-serialisation's
    pytest.param("two-docs.yaml", """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.168.10.1}
""", 9, "spec", "a BGPPeer with peerIP needs asNumber", id="second-document"),
    pytest.param("flow.yaml", """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor, labels: {a: b, c: d}}
spec: {peerIP: 192.168.10.1}
""", 4, "spec", "a BGPPeer with peerIP needs asNumber", id="flow-style"),
]


@pytest.fixture(scope="module")
def live(labs, tmp_path_factory):
    spec = lab_starter(labs, tmp_path_factory, "tv")("calico-bgp-mesh")
    got = wait_sessions(spec)
    assert all(got[n.name] == spec.sessions(n) for n in spec.nodes), got
    return spec


def _sessions(spec) -> dict[str, dict]:
    """Per node: BIRD's Established peers, the TCP 4-tuples of its sessions (a reset makes new ones) and its pid.

    (`since` is not compared: stock BIRD 1.6 prints it from two clocks sampled separately, so one session
    shows times a second apart from one query to the next.)"""
    view = {}
    for node in spec.nodes:
        sockets = subprocess.run(["ip", "netns", "exec", spec.node_netns(node), "ss", "-Htn", "state", "established",
                                  "(", "sport", "=", ":179", "or", "dport", "=", ":179", ")"],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        view[node.name] = {"peers": sorted(bird_established(spec.lab, node.name)),
                           "sockets": sorted(" ".join(line.split()[2:4]) for line in sockets if line.strip()),
                           "bird pid": bird_pid(spec.lab, node.name)}
    return view


def _snapshot(spec) -> dict:
    """Everything a refused change must leave alone: sessions, BIRD configs, lab state."""
    return {
        "sessions": _sessions(spec),
        "bird files": {n.name: {p.name: p.read_text() for p in
                                sorted((node_files(spec.lab, n.name) / "etc/calico/confd/config").iterdir())}
                       for n in spec.nodes},
        "status": json.loads(_lab("status", spec.lab, "--json").stdout),
        "state": json.loads((Path("/run/lab") / spec.lab / "state.json").read_text()),
    }


@pytest.mark.needs_root
@pytest.mark.parametrize("name, text, line, field, message", LIVE_CASES)
def test_bad_live_apply_is_refused_and_changes_nothing(live, tmp_path, name, text, line, field, message):
    before = _snapshot(live)
    assert all(len(v["peers"]) == 3 and len(v["sockets"]) == 3 for v in before["sessions"].values()), before
    path = tmp_path / name
    path.write_text(text)
    result = _lab("apply", "-f", str(path), "--lab", live.lab)
    after = _snapshot(live)
    for key in before:
        if after[key] != before[key]:
            diff = "\n".join(difflib.unified_diff(json.dumps(before[key], indent=1).splitlines(),
                                                   json.dumps(after[key], indent=1).splitlines(), lineterm=""))
            raise AssertionError(f"a refused apply changed the lab's {key}:\n{diff}")
    assert result.stdout == "", result.stdout
    assert_precise(result, str(path), line, field, message)
