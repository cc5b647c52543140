"""`lab apply` and `lab delete` say what kubectl says: created, configured, unchanged, deleted, NotFound.

The expected words are kubectl's (`<kind>.<group>/<name> <verb>`); the objects and their changes are
written here, so whether each is new, changed or the same is known without asking the lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from calico_labs import renamed_copy
from conftest import run_lab

pytestmark = pytest.mark.needs_root

DENY_X = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""
DENY_X_CHANGED = DENY_X.replace("podSelector: {}", "podSelector: {matchLabels: {pod: a}}")
POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: extra-pool}
spec: {cidr: 10.250.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never, nodeSelector: "!all()"}
"""
NO_MESH = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: true, asNumber: 64512}
"""
PEER = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-node01}
spec: {node: k8s-master01, peerIP: 192.168.10.72, asNumber: 64512}
"""


def _apply(lab: str, tmp_path: Path, text: str, verb: str = "apply") -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return run_lab(verb, "--lab", lab, "-f", str(path)).stdout


def _lab_up(tmp_path_factory, topology: str, name: str):
    """A renamed copy of a shipped topology, up for the module, always taken down."""
    run_lab("up", str(renamed_copy(topology, name, tmp_path_factory.mktemp("tw"))))
    yield name
    run_lab("down", name, check=False)


@pytest.fixture(scope="module")
def policy_lab(tmp_path_factory):
    yield from _lab_up(tmp_path_factory, "netpol-xyz-kuberouter", "tw-netpol")


@pytest.fixture(scope="module")
def calico_lab(tmp_path_factory):
    yield from _lab_up(tmp_path_factory, "calico-bgp-mesh", "tr2-calico")


def test_network_policy_created_unchanged_configured_deleted(policy_lab, tmp_path):
    name = "networkpolicy.networking.k8s.io/deny-ingress"
    assert f"{name} created" in _apply(policy_lab, tmp_path, DENY_X)
    assert f"{name} unchanged" in _apply(policy_lab, tmp_path, DENY_X)
    assert f"{name} configured" in _apply(policy_lab, tmp_path, DENY_X_CHANGED)
    assert f"{name} deleted" in _apply(policy_lab, tmp_path, DENY_X_CHANGED, "delete")
    assert f"{name} created" in _apply(policy_lab, tmp_path, DENY_X)
    _apply(policy_lab, tmp_path, DENY_X, "delete")


def test_deleting_what_does_not_exist_is_not_found(policy_lab, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(DENY_X)
    result = run_lab("delete", "--lab", policy_lab, "-f", str(path), check=False)
    assert result.returncode == 2
    assert 'networkpolicies.networking.k8s.io "deny-ingress" not found' in result.stderr, result.stderr
    assert f"{path}:3" in result.stderr


@pytest.mark.parametrize("old,new,words", [("blockSize: 26", "blockSize: 28", "IPPool BlockSize cannot be modified"),
                                           ("10.250.0.0/16", "10.251.0.0/16", "IPPool CIDR cannot be modified")])
def test_a_pools_cidr_and_block_size_cannot_change(calico_lab, tmp_path, old, new, words):
    """As Calico refuses the update: exit 2, file:line, and nothing changed (the pool as it was)."""
    assert "extra-pool created" in _apply(calico_lab, tmp_path, POOL)
    path = tmp_path / "changed.yaml"
    path.write_text(POOL.replace(old, new))
    result = run_lab("apply", "--lab", calico_lab, "-f", str(path), check=False)
    assert result.returncode == 2
    assert f"{path}:4: spec." in result.stderr and words in result.stderr, result.stderr
    assert "extra-pool unchanged" in _apply(calico_lab, tmp_path, POOL)
    assert "extra-pool deleted" in _apply(calico_lab, tmp_path, POOL, "delete")


def test_calico_kinds(calico_lab, tmp_path):
    assert "ippool.projectcalico.org/extra-pool created" in _apply(calico_lab, tmp_path, POOL)
    assert "ippool.projectcalico.org/extra-pool unchanged" in _apply(calico_lab, tmp_path, POOL)
    assert "ippool.projectcalico.org/extra-pool configured" in _apply(
        calico_lab, tmp_path, POOL.replace('nodeSelector: "!all()"', 'nodeSelector: "!all()", natOutgoing: true'))
    # the shipped topology declares no BGPConfiguration: the first apply creates it, with the defaults' values
    assert "bgpconfiguration.projectcalico.org/default created" in _apply(calico_lab, tmp_path, NO_MESH)
    assert "bgpconfiguration.projectcalico.org/default unchanged" in _apply(calico_lab, tmp_path, NO_MESH)
    assert "bgppeer.projectcalico.org/peer-with-node01 created" in _apply(calico_lab, tmp_path, PEER)
    assert "bgppeer.projectcalico.org/peer-with-node01 deleted" in _apply(calico_lab, tmp_path, PEER, "delete")
    assert "ippool.projectcalico.org/extra-pool deleted" in _apply(calico_lab, tmp_path, POOL, "delete")
