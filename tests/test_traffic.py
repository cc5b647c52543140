"""ICMP and TCP pod to pod, on the same node and across nodes, in every flannel mode."""

from __future__ import annotations

import json

import expect
import pytest
from conftest import TOPOLOGIES, run_lab
from traffic import ping, tcp

pytestmark = pytest.mark.needs_root


def pairs(spec: expect.Expected, same_node: bool):
    pods = spec.pods
    node_of = {id(p): n for n in spec.nodes for p in n.pods}
    for a in pods:
        for b in pods:
            if a is not b and (node_of[id(a)] is node_of[id(b)]) == same_node:
                yield a, b, node_of[id(a)], node_of[id(b)]


@pytest.mark.parametrize("topology", ["flannel-vxlan", "flannel-hostgw", "flannel-directrouting"])
def test_every_pod_reaches_every_pod(labs, topology):
    spec = expect.load(TOPOLOGIES / f"{topology}.yaml")
    labs(topology)
    cross = list(pairs(spec, same_node=False))
    same = list(pairs(spec, same_node=True))
    assert cross, "the topology must have pods on different nodes"
    for a, b, _, _ in cross + same:
        assert ping(spec.pod_netns(a), str(b.ip)), f"ICMP {a.name} -> {b.name}"
    a, b, _, _ = cross[0]
    assert tcp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"TCP {a.name} -> {b.name} across nodes"
    if same:
        a, b, _, _ = same[0]
        assert tcp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"TCP {a.name} -> {b.name} on one node"


def test_hostgw_across_segments_only_works_within_a_segment(labs):
    spec = expect.load(TOPOLOGIES / "flannel-hostgw-crosssubnet.yaml")
    labs("flannel-hostgw-crosssubnet")
    for a, b, na, nb in pairs(spec, same_node=False):
        reachable = ping(spec.pod_netns(a), str(b.ip), wait=1)
        assert reachable == spec.same_segment(na, nb), f"{a.name}@{na.name} -> {b.name}@{nb.name}"
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    master = next(n for n in status["nodes"] if n["name"] == "k8s-master01")
    assert any("NOT installed" in note and "ENETUNREACH" in note for note in master["notes"])


def test_lab_ping_command(labs):
    labs("flannel-vxlan")
    result = run_lab("ping", "--lab", "flannel-vxlan", "default/bs1", "default/bs8", "-c", "2")
    assert "2 received" in result.stdout
