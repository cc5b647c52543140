"""ARP: dynamic as in a real cluster for small labs; permanent when the host's shared table is too small."""

from __future__ import annotations

import json
from pathlib import Path

import expect
import pytest
from conftest import TOPOLOGIES, run_lab
from kernel import Snapshot
from traffic import ping

pytestmark = pytest.mark.needs_root


def test_shipped_labs_keep_dynamic_arp(labs):
    spec = expect.load(TOPOLOGIES / "flannel-vxlan.yaml")
    labs("flannel-vxlan")
    assert ping(spec.pod_netns(spec.pods[0]), str(spec.pods[1].ip))
    for node in spec.nodes:
        snap = Snapshot(spec.node_netns(node))
        for dev in ("eth0", "cni0"):
            if dev in snap.links:
                assert snap.permanent_neighbours(dev) == set(), f"{node.name} {dev}: no static ARP in a real cluster"
    status = json.loads(run_lab("status", "flannel-vxlan", "--json").stdout)
    assert status["neighbours"]["mode"] == "dynamic"


def test_static_neighbours_cover_every_segment(tmp_path: Path, labs):
    text = (TOPOLOGIES / "flannel-hostgw.yaml").read_text().replace("name: flannel-hostgw\n", "name: arp\n")
    path = tmp_path / "arp.yaml"
    path.write_text(text + "options:\n  staticNeighbours: true\n")
    spec = expect.load(path)
    labs(str(path), "arp")
    snaps = {n.name: Snapshot(spec.node_netns(n)) for n in spec.nodes}
    underlay = Snapshot("arp._underlay")
    gateway_mac = underlay.mac("lan")
    for node in spec.nodes:
        expected = {(str(p.ip), snaps[p.name].mac("eth0")) for p in spec.nodes if p is not node}
        expected.add((str(node.gateway), gateway_mac))
        assert snaps[node.name].permanent_neighbours("eth0") == expected
        for pod in node.pods:
            pod_snap = Snapshot(spec.pod_netns(pod))
            gateway = (str(node.subnet.network_address + 1), snaps[node.name].mac("cni0"))
            assert gateway in pod_snap.permanent_neighbours("eth0")
            assert (str(pod.ip), pod_snap.mac("eth0")) in snaps[node.name].permanent_neighbours("cni0")
    a, b = spec.pods[0], spec.pods[1]
    assert ping(spec.pod_netns(a), str(b.ip))
    status = json.loads(run_lab("status", "arp", "--json").stdout)
    assert status["neighbours"]["mode"] == "static"
