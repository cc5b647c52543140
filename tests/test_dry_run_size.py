"""The dry run's size (no root): policy-set entries are counted before anything is rendered, a lab
past the cap is refused naming the policy and what to change, and the streamed text is the text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.lifecycle import Lab
from lab.policy import enforce
from lab.topology import loader

POLICY = """\
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow-a1, namespace: web}
    spec:
      podSelector: {matchLabels: {app: a1}}
      ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]
"""


def topology(tmp_path: Path, cni: str, nodes: int, per_node: int) -> str:
    """`nodes` nodes of `per_node` pods in namespace web (labels app: a0..a9), and POLICY."""
    lines = ["name: size", "cluster: {cni: calico}" if cni == "calico" else
             "cluster: {cni: flannel, networkPolicy: kube-router}",
             "networks:", "  - {name: lan, cidr: 192.168.0.0/16}", "namespaces:", "  - {name: web}", "nodes:"]
    lines += [f"  - {{name: n{i}, ip: 192.168.1.{10 + i}}}" for i in range(nodes)]
    lines.append("pods:")
    lines += [f"  - {{name: p{i}-{j}, namespace: web, node: n{i}, labels: {{app: a{j % 10}}}}}"
              for i in range(nodes) for j in range(per_node)]
    lines += ["options: {staticNeighbours: false}", "resources:"]
    if cni == "calico":
        lines.append("  - {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: pool}, "
                     "spec: {cidr: 10.0.0.0/16, ipipMode: Always}}")
    path = tmp_path / f"{cni}.yaml"
    path.write_text("\n".join(lines) + "\n" + POLICY)
    return str(path)


def adds(text: str, prefix: str) -> int:
    """`add` lines of sets whose real name starts with `prefix` (each set is filled as TMP-LAB-n)."""
    count, current = 0, None
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["create"] and not words[1].startswith("TMP-LAB-"):
            current = words[1]
        elif words[:1] == ["add"] and current and current.startswith(prefix):
            count += 1
    return count


@pytest.mark.parametrize("cni,prefix", [("flannel", "KUBE-"), ("calico", "cali40s:")])
def test_the_count_is_the_number_of_set_entries_the_dry_run_prints(tmp_path, cni, prefix):
    """Each node holds every pod the peers select: 4 nodes x 20 pods, from: podSelector {} -> 80 per set."""
    topo = loader.load(topology(tmp_path, cni, nodes=4, per_node=20))
    size = enforce.set_size(topo)
    text = Lab().dry_run(topo)
    assert size.total == adds(text, prefix) > 0
    assert size.biggest_members == 80 and size.nodes == 4


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_a_lab_past_the_set_cap_is_refused_before_rendering(tmp_path, cni, monkeypatch):
    path = topology(tmp_path, cni, nodes=4, per_node=20)
    topo = loader.load(path)
    total = enforce.set_size(topo).total
    monkeypatch.setattr(enforce, "MAX_SET_ENTRIES", total - 1)

    def rendered(*args, **kwargs):
        raise AssertionError("rendered before the refusal")
    monkeypatch.setattr(enforce, "node_rules", rendered)
    out = io.StringIO()
    with pytest.raises(LabError) as caught:
        Lab().dry_run(topo, out)
    error = str(caught.value)
    line = Path(path).read_text().splitlines().index("  - apiVersion: networking.k8s.io/v1") + 1
    assert error.startswith(f"{path}:{line}: spec: NetworkPolicy web/allow-a1: lab size's NetworkPolicies need "
                            f"{total:,} ipset entries over its 4 nodes, more than the lab's limit of "
                            f"{total - 1:,}"), error
    assert "has 80" in error and "select fewer pods in the policies' from/to peers" in error
    assert out.getvalue() == ""
    assert enforce.check_size(topo, limit=total).total == total      # at the cap: accepted


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_the_streamed_dry_run_is_the_same_text(tmp_path, cni):
    topo = loader.load(topology(tmp_path, cni, nodes=3, per_node=5))
    out = io.StringIO()
    assert Lab().dry_run(topo, out) == ""
    assert out.getvalue() == Lab().dry_run(topo)
