"""Every policy of the seed articles, applied to its lab, with the outcome the seed states.

The expectations are the seeds' own words (quoted in each test), checked with real traffic; each
probe matrix must also agree with the reference evaluator (`lab probe` exits 0).
  * seed 001 (kube-router on flannel): its five examples and six test cases, netpol-seed001;
  * seed 002 section 6.9 (Calico): pod isolation 6.9.1, namespace isolation 6.9.2 and the 6.9
    example, netpol-seed002;
  * seed 000 (ACK): its example policy, netpol-seed000 (Calico).
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import REPO, run_lab
from test_policy_xyz import expect, lab_starter, probe

pytestmark = pytest.mark.needs_root
POLICIES = REPO / "examples" / "policies"


@pytest.fixture(scope="module")
def seed_lab(tmp_path_factory):
    """`seed_lab(topology)` -> lab name (ts-seed00N), brought up once per module."""
    yield from lab_starter(tmp_path_factory, lambda topology, index: f"ts-{topology.rsplit('-', 1)[-1]}")


def apply(lab: str, example: str) -> str:
    return run_lab("apply", "-f", str(POLICIES / example), "--lab", lab).stdout


def delete(lab: str, example: str) -> None:
    run_lab("delete", "-f", str(POLICIES / example), "--lab", lab)


def matrix(lab: str, *args: str):
    code, seen = probe(lab, *args)
    assert code == 0, f"lab probe found probes that disagree with the reference evaluator: {seen.mismatches}"
    return seen


def ping(lab: str, src: str, dst: str) -> bool:
    return run_lab("ping", src, dst, "-c", "1", "--lab", lab, check=False).returncode == 0


# -- seed 001 --------------------------------------------------------------------------------------
def test_seed001_example1_namespace_isolated_inside_open(seed_lab):
    """"nsa namespace下的pod可互相访问,而不能被其它任何pod访问" / test case 1."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-1-nsa-isolated-namespace.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("nsa/web", "nsa/redis", 6379, "TCP"): True, ("nsa/redis", "nsa/web", 80, "TCP"): True,
                  ("nsb/client", "nsa/redis", 6379, "TCP"): False,   # same node (case 6)
                  ("nsc/client", "nsa/web", 80, "TCP"): False, ("default/web", "nsa/redis", 80, "TCP"): False,
                  ("nsa/redis", "nsb/client", 80, "TCP"): True})      # egress is not restricted
    delete(lab, "seed001-1-nsa-isolated-namespace.yaml")


def test_seed001_example2_namespace_closed(seed_lab):
    """"nsa namespace下的pod不能被任何pod访问" / test case 2 (pods of nsa isolated from each other too)."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-2-nsa-deny-all-ingress.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("nsa/web", "nsa/redis", 6379, "TCP"): False, ("nsa/redis", "nsa/web", 80, "TCP"): False,
                  ("nsb/client", "nsa/redis", 80, "TCP"): False, ("nsb/client", "default/web", 80, "TCP"): True})
    delete(lab, "seed001-2-nsa-deny-all-ingress.yaml")


def test_seed001_example3_whitelisted_namespace_on_6379(seed_lab):
    """"只在6379/TCP端口可以被带有标签app: nsb的namespace下的pod访问" / test case 3."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-3-nsa-from-nsb-6379.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("nsb/client", "nsa/redis", 6379, "TCP"): True,    # same node as nsa/redis
                  ("nsb/other", "nsa/redis", 6379, "TCP"): True,     # across nodes
                  ("nsb/client", "nsa/redis", 80, "TCP"): False, ("nsc/client", "nsa/redis", 6379, "TCP"): False,
                  ("nsa/web", "nsa/redis", 6379, "TCP"): False, ("default/web", "nsa/web", 6379, "TCP"): False})
    delete(lab, "seed001-3-nsa-from-nsb-6379.yaml")


def test_seed001_example4_egress_whitelist_to_external_cidr(seed_lab):
    """"可以访问CIDR为14.215.0.0/16的network endpoint的5978/TCP端口,而不能访问其它任何network endpoints" / case 4."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-4-nsa-egress-to-cidr.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("nsa/redis", "cidr-in", 5978, "TCP"): True, ("nsa/web", "cidr-in", 5978, "TCP"): True,
                  ("nsa/redis", "cidr-out", 5978, "TCP"): False, ("nsa/redis", "nsb/client", 80, "TCP"): False,
                  ("nsa/web", "nsa/redis", 6379, "TCP"): False, ("nsb/client", "cidr-out", 5978, "TCP"): True,
                  ("nsb/client", "nsa/redis", 6379, "TCP"): True})   # ingress of nsa is not restricted
    delete(lab, "seed001-4-nsa-egress-to-cidr.yaml")


def test_seed001_example5_ingress_only_from_external_cidr(seed_lab):
    """"default namespace下的pod只在80/TCP端口可以被CIDR为14.215.0.0/16的network endpoint访问"."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-5-default-from-cidr-80.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("cidr-in", "default/web", 80, "TCP"): True, ("cidr-in", "default/web", 6379, "TCP"): False,
                  ("cidr-out", "default/web", 80, "TCP"): False, ("nsb/client", "default/web", 80, "TCP"): False,
                  ("nsa/redis", "default/web", 80, "TCP"): False, ("cidr-in", "nsa/web", 80, "TCP"): True})
    delete(lab, "seed001-5-default-from-cidr-80.yaml")


def test_seed001_case5_whitelisted_pod_and_port(seed_lab):
    """"不同namespace的pod互相隔离,白名单指定B可以访问A中对应的pod以及端口" / case 5, and case 6 (same node)."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-6-nsa-allow-nsb-pod-port.yaml")
    seen = matrix(lab, "--protocol", "TCP")
    expect(seen, {("nsb/client", "nsa/redis", 6379, "TCP"): True,    # B's client, same node as A's redis
                  ("nsb/client", "nsa/redis", 80, "TCP"): False, ("nsb/other", "nsa/redis", 6379, "TCP"): False,
                  ("nsc/client", "nsa/redis", 6379, "TCP"): False, ("nsb/client", "nsa/web", 80, "TCP"): True})
    delete(lab, "seed001-6-nsa-allow-nsb-pod-port.yaml")


def test_seed001_rules_are_kube_routers(seed_lab):
    """The firewall's layout: hooks, per-pod chains, per-policy chains and KUBE-SRC/DST ipsets on the node."""
    lab = seed_lab("netpol-seed001")
    apply(lab, "seed001-3-nsa-from-nsb-6379.yaml")
    saved = subprocess.run(["ip", "netns", "exec", f"{lab}.node1", "iptables-save", "-t", "filter"],
                           capture_output=True, text=True, check=True).stdout
    sets = subprocess.run(["ip", "netns", "exec", f"{lab}.node1", "ipset", "list", "-n"],
                          capture_output=True, text=True, check=True).stdout.split()
    delete(lab, "seed001-3-nsa-from-nsb-6379.yaml")
    assert '-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD' in saved
    assert saved.count(":KUBE-POD-FW-") == 3          # nsa/redis, nsb/client, default/web live on node1
    assert sum(1 for line in saved.splitlines() if line.startswith(":KUBE-NWPLCY-")) == 2   # DEFAULT + npa
    assert "--dport 6379" in saved and "-j REJECT --reject-with icmp-port-unreachable" in saved
    assert any(s.startswith("KUBE-DST-") for s in sets) and any(s.startswith("KUBE-SRC-") for s in sets)


# -- seed 002 --------------------------------------------------------------------------------------
WEB, WEB_TEST = "default/web-5dcb957ccc-4dlkf", "test/web-5dcb957ccc-9n9mp"


def test_seed002_691_pod_isolation(seed_lab):
    """6.9.1: "都不能ping,client1 可以访问,client2 不能访问"."""
    lab = seed_lab("netpol-seed002")
    seen = matrix(lab)
    assert seen[("default/client2", WEB, 80, "TCP")] and ping(lab, "default/client2", WEB)   # before: open
    apply(lab, "seed002-6.9.1-pod-policy.yaml")
    seen = matrix(lab)
    expect(seen, {("default/client1", WEB, 80, "TCP"): True, ("default/client2", WEB, 80, "TCP"): False,
                  ("test/client", WEB, 80, "TCP"): False, ("default/client2", WEB_TEST, 80, "TCP"): True})
    assert not ping(lab, "default/client1", WEB) and not ping(lab, "default/client2", WEB)
    delete(lab, "seed002-6.9.1-pod-policy.yaml")


def test_seed002_692_namespace_isolation(seed_lab):
    """6.9.2: test/client cannot fetch 10.244.85.202 (default's web) but fetches 10.244.85.203 (test's web)."""
    lab = seed_lab("netpol-seed002")
    apply(lab, "seed002-6.9.2-ns-acl.yaml")
    seen = matrix(lab)
    expect(seen, {("test/client", WEB, 80, "TCP"): False, ("test/client", WEB_TEST, 80, "TCP"): True,
                  ("default/client1", WEB, 80, "TCP"): True, ("default/client2", WEB, 80, "TCP"): True,
                  ("default/client1", WEB_TEST, 80, "TCP"): True})
    delete(lab, "seed002-6.9.2-ns-acl.yaml")


def test_seed002_69_example_follows_labels(seed_lab):
    """6.9's example selects role=db pods: inert until a pod carries the label, then 6379 only from frontends."""
    lab = seed_lab("netpol-seed002")
    apply(lab, "seed002-6.9-example.yaml")
    assert matrix(lab)[("default/client2", WEB, 80, "TCP")] is True
    run_lab("label", "pod", WEB, "role=db", "--lab", lab)
    seen = matrix(lab)
    expect(seen, {("default/client2", WEB, 80, "TCP"): False, ("test/client", WEB, 80, "TCP"): False})
    run_lab("label", "pod", WEB, "role-", "--lab", lab)
    assert matrix(lab)[("default/client2", WEB, 80, "TCP")] is True
    delete(lab, "seed002-6.9-example.yaml")


def test_seed002_rules_are_felix(seed_lab):
    lab = seed_lab("netpol-seed002")
    apply(lab, "seed002-6.9.1-pod-policy.yaml")
    saved = subprocess.run(["ip", "netns", "exec", f"{lab}.k8s-node01", "iptables-save", "-t", "filter"],
                           capture_output=True, text=True, check=True).stdout
    delete(lab, "seed002-6.9.1-pod-policy.yaml")
    assert "-j cali-FORWARD" in saved and ":cali-to-wl-dispatch" in saved
    assert ":cali-tw-cali" in saved and ":cali-pi-" in saved


# -- seed 000 --------------------------------------------------------------------------------------
def test_seed000_example_policy(seed_lab):
    """The data namespace's role=data_centerevent pods: 8080 from 172.17.0.0/16 except 172.17.1.0/24, from
    namespaces labelled project=apps_project, from data's role=apps pods; egress only to 10.0.0.0/24:6379."""
    lab = seed_lab("netpol-seed000")
    apply(lab, "seed000-test-network-policy.yaml")
    seen = matrix(lab)
    expect(seen, {("office", "data/centerevent", 8080, "TCP"): True, ("branch", "data/centerevent", 8080, "TCP"): False,
                  ("apps/client", "data/centerevent", 8080, "TCP"): True,
                  ("other/client", "data/centerevent", 8080, "TCP"): False,
                  ("data/apps", "data/centerevent", 8080, "TCP"): True,
                  ("data/batch", "data/centerevent", 8080, "TCP"): False,
                  ("data/centerevent", "redis", 6379, "TCP"): True, ("data/centerevent", "cache", 6379, "TCP"): False,
                  ("data/batch", "cache", 6379, "TCP"): True})
    delete(lab, "seed000-test-network-policy.yaml")
