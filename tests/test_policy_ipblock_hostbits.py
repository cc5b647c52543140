"""ipBlock CIDRs with host bits set, in `cidr` and in `except`, on both enforcers (issue 9, point 2).

The API server accepts `10.244.1.2/4` in an ipBlock and means the network the prefix covers
(upstream conformance builds ipBlocks as `<pod IP>/<len>`). So must the lab: `lab apply` accepts
them and prints kubectl's warning, `lab policy list` shows the values as written, the kernel's rules
(kube-router's ipsets, Felix's iptables) hold the masked networks, and real traffic follows the
masked meaning. Each except is chosen so that reading it unmasked (as the single address written)
would give the opposite verdict for one external host.

kube-router: netpol-seed001 (externals cidr-in 14.215.10.10, cidr-out 93.184.216.34).
Calico/Felix: netpol-seed000 (externals office 172.17.0.10, branch 172.17.1.10, redis 10.0.0.10,
cache 10.0.1.10).
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import run_lab
from test_policy_xyz import expect, lab_starter, probe

pytestmark = pytest.mark.needs_root

KUBE_ROUTER = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hostbits, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from:
        - ipBlock: {cidr: 14.215.99.1/16, except: [14.215.10.77/24]}
      ports: [{protocol: TCP, port: 80}]
"""
FELIX = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hostbits, namespace: data}
spec:
  podSelector: {matchLabels: {role: data_centerevent}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: {cidr: 172.17.5.5/16, except: [172.17.1.99/24]}
      ports: [{protocol: TCP, port: 8080}]
  egress:
    - to:
        - ipBlock: {cidr: 10.0.0.77/24, except: [10.0.0.200/25]}
      ports: [{protocol: TCP, port: 6379}]
    - to:
        - ipBlock: {cidr: 10.0.1.99/24}
      ports: [{protocol: TCP, port: 6379}]
"""


@pytest.fixture(scope="module")
def hb_lab(tmp_path_factory):
    yield from lab_starter(tmp_path_factory, lambda topology, index: f"thb-{topology.rsplit('-', 1)[-1]}")


def _apply(lab: str, text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "hostbits.yaml"
    path.write_text(text)
    return run_lab("apply", "-f", str(path), "--lab", lab)


def _in_netns(netns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True).stdout


def test_kube_router_uses_the_masked_networks(hb_lab, tmp_path):
    lab = hb_lab("netpol-seed001")
    applied = _apply(lab, KUBE_ROUTER, tmp_path)
    assert 'Warning: ' in applied.stderr and '"14.215.99.1/16" is ambiguous' in applied.stderr
    assert '"14.215.10.77/24" is ambiguous' in applied.stderr
    listed = run_lab("policy", "list", "--lab", lab).stdout
    assert "14.215.99.1/16 except 14.215.10.77/24" in listed
    sets = _in_netns(f"{lab}.node1", "ipset", "list")
    assert "14.215.0.0/16 timeout 0\n" in sets and "14.215.10.0/24 timeout 0 nomatch" in sets
    code, seen = probe(lab, "--protocol", "TCP", "--port", "80")
    assert code == 0, f"probes disagree with the evaluator: {seen.mismatches}"
    # cidr-in (14.215.10.10) is in the masked except 14.215.10.0/24 (not the address 14.215.10.77)
    expect(seen, {("cidr-in", "default/web", 80, "TCP"): False, ("cidr-out", "default/web", 80, "TCP"): False,
                  ("nsb/client", "default/web", 80, "TCP"): False})
    moved = KUBE_ROUTER.replace("14.215.10.77/24", "14.215.200.1/24")
    _apply(lab, moved, tmp_path)
    code, seen = probe(lab, "--protocol", "TCP", "--port", "80")
    assert code == 0, f"probes disagree with the evaluator: {seen.mismatches}"
    # the cidr 14.215.99.1/16 means 14.215.0.0/16, which holds cidr-in (14.215.10.10)
    expect(seen, {("cidr-in", "default/web", 80, "TCP"): True, ("cidr-out", "default/web", 80, "TCP"): False})
    run_lab("delete", "-f", str(tmp_path / "hostbits.yaml"), "--lab", lab)


def test_felix_uses_the_masked_networks(hb_lab, tmp_path):
    lab = hb_lab("netpol-seed000")
    applied = _apply(lab, FELIX, tmp_path)
    assert '"172.17.5.5/16" is ambiguous' in applied.stderr and '"10.0.0.200/25" is ambiguous' in applied.stderr
    listed = run_lab("policy", "list", "--lab", lab).stdout
    assert "172.17.5.5/16 except 172.17.1.99/24" in listed and "10.0.1.99/24" in listed
    saved = "".join(_in_netns(f"{lab}.{node}", "iptables-save", "-t", "filter") +
                    _in_netns(f"{lab}.{node}", "ipset", "list")
                    for node in ("node1", "node2"))
    for masked in ("172.17.0.0/16", "172.17.1.0/24", "10.0.0.0/24", "10.0.0.128/25", "10.0.1.0/24"):
        assert masked in saved, f"{masked} not in Felix's rules"
    for written in ("172.17.5.5/16", "172.17.1.99/24", "10.0.0.77/24"):
        assert written not in saved
    code, seen = probe(lab, "--protocol", "TCP")
    assert code == 0, f"probes disagree with the evaluator: {seen.mismatches}"
    expect(seen, {("office", "data/centerevent", 8080, "TCP"): True,      # 172.17.0.10: in /16, not in except
                  ("branch", "data/centerevent", 8080, "TCP"): False,     # 172.17.1.10: in the masked except
                  ("data/centerevent", "redis", 6379, "TCP"): True,       # 10.0.0.10: not in 10.0.0.128/25
                  ("data/centerevent", "cache", 6379, "TCP"): True})      # 10.0.1.10: in 10.0.1.0/24
    run_lab("delete", "-f", str(tmp_path / "hostbits.yaml"), "--lab", lab)
