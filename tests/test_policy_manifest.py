"""NetworkPolicy manifests in topologies: accepted forms, and bad input refused with file:line and field."""

from __future__ import annotations

import textwrap

import pytest

from lab.errors import TopologyError
from lab.topology import loader

HEAD = """\
name: tpm
cluster: {cni: flannel, networkPolicy: kube-router}
networks: [{name: lan, cidr: 192.168.30.0/24}]
nodes: [{name: n1, ip: 192.168.30.11}]
namespaces: [{name: x, labels: {ns: x}}]
pods: [{name: a, namespace: x, node: n1, labels: {pod: a}, containerPorts: [{name: serve-80-tcp, containerPort: 80}]}]
resources:
"""


def load(policy: str):
    return loader.load_text(HEAD + textwrap.indent(textwrap.dedent(policy).strip("\n"), "  ") + "\n", "topo.yaml")


def error_of(policy: str) -> str:
    with pytest.raises(TopologyError) as caught:
        load(policy)
    return str(caught.value)


def test_v1_and_v1beta1_are_read_with_defaults():
    topology = load("""
    - apiVersion: extensions/v1beta1
      kind: NetworkPolicy
      metadata: {name: npa, namespace: x}
      spec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}
    - apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: eg}
      spec: {podSelector: {matchLabels: {a: b}}, egress: [{ports: [{port: 53, protocol: UDP}]}]}
    """)
    npa, eg = topology.policies
    assert (npa.key, npa.policy_types, npa.api_version) == ("x/npa", ("Ingress",), "extensions/v1beta1")
    assert npa.ingress[0].peers[0].namespace_selector is None       # missing, not {}
    assert npa.ingress[0].peers[0].pod_selector.is_empty
    assert (eg.key, eg.policy_types) == ("default/eg", ("Ingress", "Egress"))
    assert eg.egress[0].peers == () and eg.egress[0].ports[0].port == 53


def test_namespaces_carry_their_name_label():
    topology = load("[]")
    assert all(n.labels["kubernetes.io/metadata.name"] == n.name for n in topology.namespaces)


@pytest.mark.parametrize("policy, expected", [
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {matchExpressions: [{key: pod, operator: Equals, values: [a]}]}
     """, "topo.yaml:12: resources[0].spec.podSelector.matchExpressions[0].operator: 'Equals' is not a valid "
          "label selector operator"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         ingress: [{ports: [{port: 70000}]}]
     """, "topo.yaml:13: resources[0].spec.ingress[0].ports[0].port: port 70000 is out of range"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         ingress:
         - from:
           - ipBlock:
               cidr: 172.17.0.0/16
               except: [172.18.1.0/24]
     """, "topo.yaml:17: resources[0].spec.ingress[0].from[0].ipBlock.except[0]: except 172.18.1.0/24 must be a "
          "strict subset of cidr 172.17.0.0/16"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         ingres: []
     """, "topo.yaml:13: resources[0].spec.ingres: unknown field 'ingres' in spec"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: nope}
       spec: {podSelector: {}}
     """, 'topo.yaml:10: resources[0].metadata.namespace: namespace "nope" not found'),
    ("""
     - apiVersion: v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec: {podSelector: {}}
     """, "topo.yaml:8: resources[0].apiVersion: apiVersion 'v1' has no NetworkPolicy"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]
     """, "resources[0].spec.ingress[0].from[0].ipBlock: ipBlock cannot be combined"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         egress: [{ports: [{port: serve-80-tcp, endPort: 90}]}]
     """, "resources[0].spec.egress[0].ports[0].endPort: endPort needs a numeric port"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec:
         podSelector: {}
         policyTypes: [Ingress, Outbound]
     """, "resources[0].spec.policyTypes[1]: policy type 'Outbound' is not Ingress or Egress"),
    ("""
     - apiVersion: networking.k8s.io/v1
       kind: NetworkPolicy
       metadata: {name: p, namespace: x}
       spec: {}
     """, "resources[0].spec: spec.podSelector is required"),
    ("""
     - apiVersion: apps/v1
       kind: Deployment
       metadata: {name: web}
     """, "topo.yaml:9: resources[0].kind: resource kind 'Deployment' is not supported"),
])
def test_bad_policies_name_the_field(policy, expected):
    assert expected in error_of(policy)


def test_calico_enforcer_needs_calico():
    with pytest.raises(TopologyError) as caught:
        loader.load_text(HEAD.replace("kube-router", "calico") + "  []\n", "topo.yaml")
    assert "cluster.networkPolicy: networkPolicy 'calico' cannot run with cni flannel" in str(caught.value)
