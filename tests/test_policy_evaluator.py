"""The reference evaluator against the NetworkPolicy semantics the Kubernetes documentation states.

Every expectation below is written from the API documentation (and the seeds), never computed by
lab code: the topology is the e2e suite's x/y/z with pods a/b/c.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
import yaml

from lab.policy import evaluator
from lab.topology import loader, policy_manifest

XYZ = """
name: tev
cluster: {cni: flannel}
networks: [{name: lan, cidr: 192.168.30.0/24}]
nodes: [{name: n1, ip: 192.168.30.11}, {name: n2, ip: 192.168.30.12}]
namespaces: [{name: x, labels: {ns: x}}, {name: y, labels: {ns: y, team: blue}}, {name: z, labels: {ns: z}}]
pods:
""" + "".join(
    f"  - {{name: {p}, namespace: {n}, node: n{1 + (i % 2)}, labels: {{pod: {p}}}, containerPorts: ["
    "{name: serve-80-tcp, containerPort: 80}, {name: serve-80-udp, containerPort: 80, protocol: UDP}, "
    "{name: serve-81-tcp, containerPort: 81}]}\n"
    for i, (n, p) in enumerate((n, p) for n in "xyz" for p in "abc"))


def fail(path, message, hint=None):
    return AssertionError(f"{path}: {message}")


@pytest.fixture(scope="module")
def base():
    return loader.load_text(XYZ, "<xyz>")


def with_policies(topology, *texts):
    return replace(topology, policies=tuple(policy_manifest.network_policy(yaml.safe_load(t), (), fail) for t in texts))


def ok(topology, src, dst, port=80, protocol="TCP"):
    source = topology.pod(src) if "/" in src else ipaddress.IPv4Address(src)
    target = topology.pod(dst) if "/" in dst else ipaddress.IPv4Address(dst)
    return evaluator.allowed(topology, source, target, port, protocol)


def test_no_policy_allows_everything(base):
    assert all(ok(base, s.key, d.key) for s in base.pods for d in base.pods)


DENY_X = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def test_deny_all_ingress_isolates_only_the_namespace(base):
    t = with_policies(base, DENY_X)
    assert not ok(t, "y/a", "x/a") and not ok(t, "x/b", "x/a")
    assert ok(t, "x/a", "y/b")                  # egress is not isolated
    assert ok(t, "x/a", "x/a")                  # a pod reaching itself never leaves its namespace
    assert ok(t, "y/a", "z/c")


def test_same_namespace_peer(base):
    t = with_policies(base, """
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: npa, namespace: x}
spec:
  ingress: [{from: [{podSelector: {}}]}]
  podSelector: {}
  policyTypes: [Ingress]
""")
    assert ok(t, "x/b", "x/a") and ok(t, "x/c", "x/a", 81)
    assert not ok(t, "y/b", "x/a") and not ok(t, "z/c", "x/b")


def test_namespace_and_pod_selector_in_one_peer_are_anded(base):
    anded = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
""")
    assert ok(anded, "y/b", "x/a")
    assert not ok(anded, "y/a", "x/a") and not ok(anded, "x/b", "x/a") and not ok(anded, "z/b", "x/a")
    assert ok(anded, "z/c", "x/b")              # x/b is not selected
    ored = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
""")
    assert ok(ored, "y/a", "x/a") and ok(ored, "x/b", "x/a")
    assert not ok(ored, "z/b", "x/a")            # a lone podSelector means the policy's own namespace


def test_empty_namespace_selector_means_every_namespace(base):
    t = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}]}]
""")
    assert ok(t, "y/c", "x/a") and ok(t, "z/c", "x/b") and not ok(t, "z/b", "x/b")


def test_match_expressions(base):
    t = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
      podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}
    - namespaceSelector: {matchExpressions: [{key: team, operator: DoesNotExist}, {key: ns, operator: In, values: [z]}]}
""")
    assert ok(t, "y/b", "x/a") and ok(t, "y/c", "x/b") and not ok(t, "y/a", "x/a")
    assert ok(t, "z/a", "x/a") and not ok(t, "x/b", "x/a")
    assert ok(t, "x/b", "x/c")                  # x/c is not selected by In [a, b]


def test_ports_numeric_named_range_and_default_protocol(base):
    t = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 80}]
  - ports: [{protocol: UDP, port: serve-80-udp}]
""")
    assert ok(t, "y/a", "x/a", 80, "TCP")       # protocol defaults to TCP
    assert not ok(t, "y/a", "x/a", 81, "TCP")
    assert ok(t, "y/a", "x/a", 80, "UDP")       # the named port resolves on the destination pod
    assert not ok(t, "y/a", "x/a", 81, "UDP")
    ranged = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{protocol: TCP, port: 79, endPort: 80}]}]
""")
    assert ok(ranged, "y/a", "x/a", 80) and not ok(ranged, "y/a", "x/a", 81)
    assert not ok(ranged, "y/a", "x/a", 80, "SCTP")


def test_policy_types_defaulting(base):
    # no policyTypes and an egress section: the API server adds Egress to Ingress
    t = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""")
    assert ok(t, "x/a", "y/b") and not ok(t, "x/a", "z/b")
    assert not ok(t, "z/b", "x/a")              # Ingress is isolated too, with no rule
    # no policyTypes and no egress: Ingress only, so egress stays open
    ingress_only = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{}]
""")
    assert ok(ingress_only, "x/a", "z/b") and ok(ingress_only, "z/b", "x/a")


def test_empty_rule_allows_all_but_missing_rules_deny(base):
    allow_all = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}], egress: [{}]}
""")
    assert ok(allow_all, "y/a", "x/a") and ok(allow_all, "x/a", "z/c", 81, "UDP")
    deny_egress = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
""")
    assert not ok(deny_egress, "x/a", "y/a") and not ok(deny_egress, "x/a", "x/b")
    assert ok(deny_egress, "y/a", "x/a")


def test_policies_add_up(base):
    t = with_policies(base, DENY_X, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""")
    assert ok(t, "y/a", "x/b") and not ok(t, "y/a", "x/a") and not ok(t, "z/a", "x/b")


def test_ip_block_with_except(base):
    t = with_policies(base, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}}]}]
  egress: [{to: [{ipBlock: {cidr: 14.215.0.0/16}}], ports: [{port: 5978}]}]
""")
    assert ok(t, "172.17.0.10", "x/a") and not ok(t, "172.17.1.10", "x/a") and not ok(t, "10.1.1.1", "x/a")
    assert ok(t, "x/a", "14.215.3.4", 5978) and not ok(t, "x/a", "14.215.3.4", 80)
    assert not ok(t, "x/a", "93.184.216.34", 5978)


def test_a_pods_own_node_always_reaches_it(base):
    t = with_policies(base, DENY_X)
    own = str(base.node(base.pod("x/a").node).ip)
    other = next(str(n.ip) for n in base.nodes if n.name != base.pod("x/a").node)
    assert ok(t, own, "x/a") and not ok(t, other, "x/a")
