"""The data-plane registry (lab/topology/dataplanes.py): what derives from it, and the layering it keeps.
Pure, no root. Expected values are the CNIs and policy enforcers the docs name (docs/topology.md), the
formats `lab status` has always printed, and the layering rule of docs/design.md (the topology layer
never imports the runtime)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.topology import dataplanes, loader

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = """\
name: t
cluster: {{cni: {cni}}}
networks:
  - {{name: lan, cidr: 172.16.10.0/24}}
nodes:
  - {{name: n1, ip: 172.16.10.11}}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "topo.yaml"
    path.write_text(text)
    return loader.load(str(path))


def test_the_registry_holds_flannel_calico_and_terway_in_schema_order():
    assert dataplanes.names() == ["flannel", "calico", "terway"]


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_each_cni_loads_into_its_own_tagged_config(tmp_path, cni):
    topology = load(tmp_path, TOPOLOGY.format(cni=cni))
    assert topology.cluster.cni == cni
    assert topology.cluster.config.kind == cni


def test_an_unregistered_cni_is_refused_naming_the_registered_ones(tmp_path):
    with pytest.raises(LabError) as caught:
        load(tmp_path, TOPOLOGY.format(cni="cilium"))
    message = str(caught.value)
    assert "topo.yaml:2" in message and "cluster.cni" in message
    assert '"flannel", "calico", "terway"' in message


def test_allowed_enforcers_come_from_the_data_planes(tmp_path):
    assert dataplanes.get("flannel").enforcers == ("none", "kube-router")   # the default first
    assert dataplanes.get("calico").enforcers == ("calico",)
    assert dataplanes.enforcers() == ["none", "kube-router", "calico"]
    text = TOPOLOGY.format(cni="calico").replace("{cni: calico}", "{cni: calico, networkPolicy: kube-router}")
    with pytest.raises(LabError, match="networkPolicy 'kube-router' cannot run with cni calico"):
        load(tmp_path, text)


def test_every_enforcer_a_data_plane_allows_exists():
    from lab.policy import enforce
    for record in dataplanes.registry().values():
        assert set(record.enforcers) - {"none"} <= set(enforce.ENFORCERS), record.name


def test_live_kinds_are_calico_s_resources():
    from lab import live
    assert live.LIVE_KINDS == {"IPPool", "BGPConfiguration", "BGPPeer", "Node"}


def test_every_data_plane_resolves_its_runtime_half():
    from lab import cni
    for name in dataplanes.names():
        hooks = cni.resolve(name)
        assert callable(hooks.plan) and callable(hooks.describe) and callable(hooks.status_lines), name
    assert cni.resolve("calico").checks is not None      # BIRD sessions and learned blocks
    assert cni.resolve("flannel").checks is None         # its routes are all in the plan
    assert cni.resolve("calico").reconfigure is not None


def test_status_lines_keep_their_format():
    from lab import cni
    flannel = {"cni": "flannel", "mode": "vxlan", "network": "10.244.0.0/16", "subnet_len": 24, "vni": 1,
               "port": 8472}
    assert cni.status_lines(flannel) == ["cni: flannel vxlan, pod network 10.244.0.0/16, SubnetLen 24, VNI 1, "
                                         "UDP port 8472"]
    calico = {"cni": "calico", "mode": "ipip", "backend": "bird", "ipip_implementation": "ebpf",
              "pools": [{"name": "p", "cidr": "10.48.0.0/16", "blockSize": 26, "ipipMode": "Always",
                         "vxlanMode": "Never", "natOutgoing": True}],
              "bgp": {"nodeToNodeMeshEnabled": True, "asNumber": 64512},
              "bgp_peers": [{"name": "rr", "peerIP": "192.168.10.2", "asNumber": 64512, "node": None}]}
    assert cni.status_lines(calico) == [
        "cni: calico ipip (calico_backend bird), IPIP implementation: ebpf",
        "  IPPool p: 10.48.0.0/16 blockSize 26 ipipMode Always vxlanMode Never natOutgoing true",
        "  BGPConfiguration default: nodeToNodeMeshEnabled true, asNumber 64512",
        "  BGPPeer rr: peerIP 192.168.10.2, asNumber 64512"]


def test_loading_a_topology_imports_no_runtime():
    """The topology layer finds the data planes' pure halves only: no substrate, BGP, policy or plan code."""
    script = textwrap.dedent(f"""
        import sys
        from lab.topology import loader
        for name in ("calico-ipip", "flannel-vxlan", "netpol-xyz-kuberouter"):
            loader.load("{REPO}/topologies/" + name + ".yaml")
        print("\\n".join(sorted(m for m in sys.modules if m.startswith("lab."))))
    """)
    loaded = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    runtime = [m for m in loaded if m.startswith(("lab.netns", "lab.bgp.birdc", "lab.bgp.daemons", "lab.bgp.channel",
                                                  "lab.bgp.route", "lab.policy.enforce", "lab.cni.routeagent",
                                                  "lab.cni.tunnel", "lab.cni.ipip", "lab.readiness", "lab.lifecycle"))
               or m.endswith((".runtime", ".plan", ".ready", ".status"))]
    assert runtime == [], f"loading a topology imported runtime modules: {runtime}"
