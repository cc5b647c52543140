"""The kube-router enforcer's compiler (lab/policy/kuberouter.py) against the reference and the kernel.

Literal names and rule texts come from dataplane-fidelity.md §7.1 (example `default/allow-frontend`,
sync version 1755000000000000000, web-0 10.244.0.2 on k8s-node1); the "…" and "<same>" shorthands of
the reference are written out in full, and its column-aligning double spaces are single spaces.
Other hashed names are computed here with the algorithm the reference gives, not with the module's own.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shutil
import subprocess

import pytest
import yaml

from lab.policy import kuberouter
from lab.policy.rules import IpSet, NodeRules
from lab.topology.loader import load_text
from lab.topology.model import Topology
from lab.topology.policy_manifest import network_policy

VERSION = "1755000000000000000"
POD_CHAIN = "KUBE-POD-FW-QL54SU5PK4ICAYS4"
POLICY_CHAIN = "KUBE-NWPLCY-R7IJAC3U7C7CRL6H"
TARGET_SET = "KUBE-DST-OZJU3H4AH5AOE3OW"
SOURCE_SET = "KUBE-SRC-A2WDX3VC4H4CL2ZV"

TOPOLOGY = """
name: kr-rules
cluster: {cni: flannel}
networks:
  - {name: lan, cidr: 192.168.10.0/24, gateway: 192.168.10.1}
nodes:
  - {name: k8s-node1, ip: 192.168.10.71, podCIDR: 10.244.0.0/24}
  - {name: k8s-node2, ip: 192.168.10.72, podCIDR: 10.244.1.0/24}
  - {name: k8s-node3, ip: 192.168.10.73, podCIDR: 10.244.2.0/24}
namespaces:
  - {name: prod, labels: {env: prod, team: a}}
  - {name: dev, labels: {env: dev}}
pods:
  - {name: web-0, node: k8s-node1, ip: 10.244.0.2, labels: {app: web},
     containerPorts: [{name: http, containerPort: 80, protocol: TCP}, {name: metrics, containerPort: 9090}]}
  - {name: web-1, node: k8s-node2, ip: 10.244.1.2, labels: {app: web, tier: x},
     containerPorts: [{name: http, containerPort: 8080, protocol: TCP}]}
  - {name: fe-0, node: k8s-node2, ip: 10.244.1.3, labels: {app: frontend}}
  - {name: db-0, node: k8s-node1, ip: 10.244.0.3, labels: {app: db},
     containerPorts: [{name: assoc, containerPort: 7777, protocol: SCTP}]}
  - {name: api-0, namespace: prod, node: k8s-node1, ip: 10.244.0.4, labels: {app: api, version: v1}}
  - {name: api-1, namespace: prod, node: k8s-node3, ip: 10.244.2.3, labels: {app: api}}
  - {name: tool-0, namespace: dev, node: k8s-node2, ip: 10.244.1.4, labels: {app: tool}}
resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: kube-flannel-cfg, namespace: kube-system}
    data:
      net-conf.json: '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'
"""

# The reference's lab (§0.1): web-0/1/2 on k8s-node1/2/3, plus a frontend pod for the example's peer.
REFERENCE_PODS = """
  - {name: web-0, node: k8s-node1, ip: 10.244.0.2, labels: {app: web}}
  - {name: web-1, node: k8s-node2, ip: 10.244.1.2, labels: {app: web}}
  - {name: web-2, node: k8s-node3, ip: 10.244.2.2, labels: {app: web}}
  - {name: frontend-0, node: k8s-node2, ip: 10.244.1.3, labels: {app: frontend}}
"""

ALLOW_FRONTEND = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{protocol: TCP, port: 80}]
"""

MORE_POLICIES = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-named, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: http}]
  - ports: [{port: metrics}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ports, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: prod}}}]
    ports: [{protocol: SCTP, port: 7777}, {protocol: TCP, port: 5432, endPort: 5440}, {protocol: UDP}]
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: no-such-port}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-egress, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}}]
    ports: [{protocol: TCP, port: 443}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [169.254.0.0/16]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: dev}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-expressions, namespace: prod}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: In, values: [api]}, {key: version, operator: DoesNotExist}]
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector:
        matchExpressions: [{key: tier, operator: NotIn, values: [x]}, {key: app, operator: Exists}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: http}]
  - ports: [{port: http}, {protocol: UDP, port: 53}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: tool-both, namespace: dev}
spec:
  podSelector: {matchLabels: {app: tool}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 192.168.10.0/24}}]
  egress:
  - {}
"""


def reference_lab() -> str:
    """TOPOLOGY with the reference's pods instead of the test's own."""
    head, _, rest = TOPOLOGY.partition("pods:\n")
    return head + "pods:" + REFERENCE_PODS + "resources:" + rest.partition("resources:")[2]


def fail(path, msg, hint=None):
    return AssertionError(f"{path}: {msg}")


def digest(text: str) -> str:
    """base32(sha256(text))[:16], written independently of the module under test."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def topology(*manifests: str, lab: str = TOPOLOGY) -> Topology:
    base = load_text(lab, "<test>")
    docs = [doc for text in manifests for doc in yaml.safe_load_all(text)]
    return dataclasses.replace(base, policies=tuple(network_policy(doc, (), fail) for doc in docs))


def chain_rules(rules: NodeRules, chain: str) -> list[str]:
    return [line for line in rules.tables[0].rules if line.split()[1] == chain]


def ipset(rules: NodeRules, name: str) -> IpSet:
    return next(s for s in rules.ipsets if s.name == name)


@pytest.fixture(scope="module")
def example() -> NodeRules:
    return kuberouter.compile_node(topology(ALLOW_FRONTEND, lab=reference_lab()), "k8s-node1", VERSION)


@pytest.fixture(scope="module")
def full() -> Topology:
    return topology(ALLOW_FRONTEND, MORE_POLICIES)


# -- 1. the reference's literal example ------------------------------------------------------------------
REFERENCE_HOOKS = [
    '-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT',
    '-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD',
    '-A OUTPUT -m comment --comment "kube-router netpol - VEAAIY32XVBHCSCY" -j KUBE-ROUTER-OUTPUT',
]
TO_POD = f"rule to jump traffic destined to POD name:web-0 namespace: default to chain {POD_CHAIN}"
FROM_POD = f"rule to jump traffic from POD name:web-0 namespace: default to chain {POD_CHAIN}"
EXPLICIT_ACCEPT = ('-m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies" '
                   "-m mark --mark 0x20000/0x20000 -j ACCEPT")
REFERENCE_CHAINS = {
    "KUBE-ROUTER-INPUT": [
        '-A KUBE-ROUTER-INPUT -d 10.96.0.0/12 -m comment --comment "allow traffic to primary/secondary cluster IP '
        'range - BVHX2PIHDXXEO43X" -j RETURN',
        '-A KUBE-ROUTER-INPUT -p tcp -m comment --comment "allow LOCAL TCP traffic to node ports - LR7XO7NXDBGQJD2M" '
        "-m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN",
        '-A KUBE-ROUTER-INPUT -p udp -m comment --comment "allow LOCAL UDP traffic to node ports - 76UCBPIZNGJNWNUZ" '
        "-m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN",
        f'-A KUBE-ROUTER-INPUT -s 10.244.0.2/32 -m comment --comment "{FROM_POD}" -j {POD_CHAIN}',
        f"-A KUBE-ROUTER-INPUT {EXPLICIT_ACCEPT}",
    ],
    "KUBE-ROUTER-FORWARD": [
        f'-A KUBE-ROUTER-FORWARD -d 10.244.0.2/32 -m comment --comment "{TO_POD}" -j {POD_CHAIN}',
        f'-A KUBE-ROUTER-FORWARD -d 10.244.0.2/32 -m physdev --physdev-is-bridged -m comment --comment "{TO_POD}" '
        f"-j {POD_CHAIN}",
        f'-A KUBE-ROUTER-FORWARD -s 10.244.0.2/32 -m comment --comment "{FROM_POD}" -j {POD_CHAIN}',
        f'-A KUBE-ROUTER-FORWARD -s 10.244.0.2/32 -m physdev --physdev-is-bridged -m comment --comment "{FROM_POD}" '
        f"-j {POD_CHAIN}",
        f"-A KUBE-ROUTER-FORWARD {EXPLICIT_ACCEPT}",
    ],
    "KUBE-ROUTER-OUTPUT": [
        f'-A KUBE-ROUTER-OUTPUT -d 10.244.0.2/32 -m comment --comment "{TO_POD}" -j {POD_CHAIN}',
        f'-A KUBE-ROUTER-OUTPUT -s 10.244.0.2/32 -m comment --comment "{FROM_POD}" -j {POD_CHAIN}',
        f"-A KUBE-ROUTER-OUTPUT {EXPLICIT_ACCEPT}",
    ],
    POD_CHAIN: [
        f'-A {POD_CHAIN} -m comment --comment "rule for stateful firewall for pod" -m conntrack --ctstate '
        "RELATED,ESTABLISHED -j ACCEPT",
        f'-A {POD_CHAIN} -m comment --comment "rule to drop invalid state for pod" -m conntrack --ctstate INVALID '
        "-j DROP",
        f'-A {POD_CHAIN} -d 10.244.0.2/32 -m comment --comment "rule to permit the traffic traffic to pods when '
        "source is the pod's local node\" -m addrtype --src-type LOCAL -j ACCEPT",
        f'-A {POD_CHAIN} -s 10.244.0.2/32 -m comment --comment "run through default egress network policy chain" '
        "-j KUBE-NWPLCY-DEFAULT",
        f'-A {POD_CHAIN} -d 10.244.0.2/32 -m comment --comment "run through nw policy allow-frontend" '
        f"-j {POLICY_CHAIN}",
        f'-A {POD_CHAIN} -m comment --comment "rule to log dropped traffic POD name:web-0 namespace: default" '
        "-m mark ! --mark 0x10000/0x10000 -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100",
        f'-A {POD_CHAIN} -m comment --comment "rule to REJECT traffic destined for POD name:web-0 namespace: '
        'default" -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable',
        f"-A {POD_CHAIN} -j MARK --set-xmark 0x0/0x10000",
        f'-A {POD_CHAIN} -m comment --comment "set mark to ACCEPT traffic that comply to network policies" '
        "-j MARK --set-xmark 0x20000/0x20000",
    ],
    POLICY_CHAIN: [
        f'-A {POLICY_CHAIN} -p tcp -m comment --comment "rule to ACCEPT traffic from source pods to dest pods '
        f'selected by policy name allow-frontend namespace default" -m set --match-set {SOURCE_SET} src '
        f"-m set --match-set {TARGET_SET} dst -m tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000",
        f'-A {POLICY_CHAIN} -p tcp -m comment --comment "rule to ACCEPT traffic from source pods to dest pods '
        f'selected by policy name allow-frontend namespace default" -m set --match-set {SOURCE_SET} src '
        f"-m set --match-set {TARGET_SET} dst -m tcp --dport 80 -m mark --mark 0x10000/0x10000 -j RETURN",
    ],
    "KUBE-NWPLCY-DEFAULT": [
        '-A KUBE-NWPLCY-DEFAULT -p icmp -m comment --comment "allow icmp echo requests" -m icmp --icmp-type 8 '
        "-j ACCEPT",
        '-A KUBE-NWPLCY-DEFAULT -p icmp -m comment --comment "allow icmp destination unreachable messages" '
        "-m icmp --icmp-type 3 -j ACCEPT",
        '-A KUBE-NWPLCY-DEFAULT -p icmp -m comment --comment "allow icmp time exceeded messages" '
        "-m icmp --icmp-type 11 -j ACCEPT",
        '-A KUBE-NWPLCY-DEFAULT -m comment --comment "rule to mark traffic matching a network policy" '
        "-j MARK --set-xmark 0x10000/0x10000",
    ],
}


def test_reference_names(example):
    table = example.tables[0]
    assert table.chains == ("KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT", "KUBE-NWPLCY-DEFAULT",
                            POLICY_CHAIN, POD_CHAIN)
    assert [s.name for s in example.ipsets] == [TARGET_SET, SOURCE_SET]
    assert example.enforcer == "kube-router"
    assert example.chain_prefixes == ("KUBE-POD-FW-", "KUBE-NWPLCY-")
    assert example.ipset_prefixes == ("KUBE-SRC-", "KUBE-DST-")


def as_insert(saved: str) -> str:
    """`-A INPUT <rule>` as the insert at position 1 that puts the rule there."""
    _, builtin, rule = saved.split(" ", 2)
    return f"-I {builtin} 1 {rule}"


def test_reference_hooks_are_inserted_at_position_1(example):
    assert list(example.tables[0].hooks) == [as_insert(hook) for hook in REFERENCE_HOOKS]


@pytest.mark.parametrize("chain", list(REFERENCE_CHAINS))
def test_reference_rule_texts(example, chain):
    assert chain_rules(example, chain) == REFERENCE_CHAINS[chain]


def test_reference_sets(example):
    assert ipset(example, TARGET_SET).type == "hash:ip"
    assert ipset(example, TARGET_SET).members == ("10.244.0.2 timeout 0", "10.244.1.2 timeout 0",
                                                  "10.244.2.2 timeout 0")
    assert ipset(example, SOURCE_SET).members == ("10.244.1.3 timeout 0",)
    assert ipset(example, SOURCE_SET).create_options.endswith("timeout 0")


def test_rules_are_grouped_by_chain_in_declaration_order(example):
    order = [line.split()[1] for line in example.tables[0].rules]
    assert order == sorted(order, key=example.tables[0].chains.index)


# -- semantics --------------------------------------------------------------------------------------------
def test_chain_names_follow_the_sync_version_and_set_names_do_not(full):
    one = kuberouter.compile_node(full, "k8s-node1", "1")
    two = kuberouter.compile_node(full, "k8s-node1", "2")
    assert f"KUBE-POD-FW-{digest('defaultweb-01')}" in one.tables[0].chains
    assert f"KUBE-NWPLCY-{digest('defaultallow-frontend2IPv4')}" in two.tables[0].chains
    assert not set(one.tables[0].chains[4:]) & set(two.tables[0].chains[4:])
    assert [s.name for s in one.ipsets] == [s.name for s in two.ipsets]


def test_every_node_holds_every_policy_chain_but_only_its_own_pods(full):
    for node, pods in (("k8s-node1", ("defaultweb-0", "defaultdb-0", "prodapi-0")),
                       ("k8s-node2", ("defaultweb-1", "defaultfe-0", "devtool-0")),
                       ("k8s-node3", ("prodapi-1",))):
        chains = kuberouter.compile_node(full, node, VERSION).tables[0].chains
        policy_chains = [c for c in chains if c.startswith("KUBE-NWPLCY-") and c != "KUBE-NWPLCY-DEFAULT"]
        assert len(policy_chains) == 8
        assert {c for c in chains if c.startswith("KUBE-POD-FW-")} == {f"KUBE-POD-FW-{digest(p + VERSION)}"
                                                                          for p in pods}


def policy_chain(namespace: str, name: str) -> str:
    return f"KUBE-NWPLCY-{digest(namespace + name + VERSION + 'IPv4')}"


def jumps(full: Topology, node: str, namespace: str, pod: str) -> list[str]:
    chain = f"KUBE-POD-FW-{digest(namespace + pod + VERSION)}"
    rules = chain_rules(kuberouter.compile_node(full, node, VERSION), chain)
    return [line.replace(chain, "CHAIN") for line in rules if "run through" in line]


def test_pod_chain_jumps_follow_policy_types_in_reverse_write_order(full):
    assert jumps(full, "k8s-node1", "prod", "api-0") == [
        '-A CHAIN -d 10.244.0.4/32 -m comment --comment "run through default ingress network policy chain" '
        "-j KUBE-NWPLCY-DEFAULT",
        '-A CHAIN -s 10.244.0.4/32 -m comment --comment "run through nw policy api-egress" '
        f"-j {policy_chain('prod', 'api-egress')}",
    ]
    assert jumps(full, "k8s-node3", "prod", "api-1") == [
        '-A CHAIN -d 10.244.2.3/32 -m comment --comment "run through nw policy api-expressions" '
        f"-j {policy_chain('prod', 'api-expressions')}",
        '-A CHAIN -s 10.244.2.3/32 -m comment --comment "run through nw policy api-egress" '
        f"-j {policy_chain('prod', 'api-egress')}",
    ]
    assert jumps(full, "k8s-node2", "dev", "tool-0") == [
        f'-A CHAIN -m comment --comment "run through nw policy tool-both" -j {policy_chain("dev", "tool-both")}',
        '-A CHAIN -d 10.244.1.4/32 -m comment --comment "run through nw policy deny-ingress" '
        f"-j {policy_chain('dev', 'deny-ingress')}",
    ]


def test_unselected_pod_gets_both_default_jumps_and_no_sets():
    rules = kuberouter.compile_node(topology(), "k8s-node2", VERSION)
    assert jumps(topology(), "k8s-node2", "dev", "tool-0") == [
        '-A CHAIN -s 10.244.1.4/32 -m comment --comment "run through default egress network policy chain" '
        "-j KUBE-NWPLCY-DEFAULT",
        '-A CHAIN -d 10.244.1.4/32 -m comment --comment "run through default ingress network policy chain" '
        "-j KUBE-NWPLCY-DEFAULT",
    ]
    assert rules.ipsets == ()


def rules_of(full: Topology, namespace: str, name: str, node: str = "k8s-node1") -> list[str]:
    """A policy chain's rules, the chain name replaced by CHAIN."""
    chain = policy_chain(namespace, name)
    return [line.replace(chain, "CHAIN") for line in chain_rules(kuberouter.compile_node(full, node, VERSION), chain)]


def marks(lines: list[str]) -> list[str]:
    """The MARK halves of MARK/RETURN pairs, after checking every pair."""
    for mark, back in zip(lines[::2], lines[1::2], strict=False):
        assert mark.endswith(" -j MARK --set-xmark 0x10000/0x10000")
        assert back == mark.removesuffix(" -j MARK --set-xmark 0x10000/0x10000") + \
            " -m mark --mark 0x10000/0x10000 -j RETURN"
    return lines[::2]


def set_name(prefix: str, text: str) -> str:
    return prefix + digest(text)


def test_ipblock_with_except_is_a_hash_net_set_with_nomatch_members(full):
    rules = kuberouter.compile_node(full, "k8s-node1", VERSION)
    narrow = ipset(rules, set_name("KUBE-DST-", "prodapi-egressegressrule0IPv4ipblock"))
    everything = ipset(rules, set_name("KUBE-DST-", "prodapi-egressegressrule1IPv4ipblock"))
    assert (narrow.type, everything.type) == ("hash:net", "hash:net")
    assert narrow.members == ("10.0.0.0/8 timeout 0", "10.1.0.0/16 timeout 0 nomatch",
                              "10.2.0.0/16 timeout 0 nomatch")
    assert everything.members == ("0.0.0.0/1 timeout 0", "128.0.0.0/1 timeout 0", "169.254.0.0/16 timeout 0 nomatch")
    source = set_name("KUBE-SRC-", "prodapi-egressIPv4")
    comment = ("rule to ACCEPT traffic from source pods to specified ipBlocks selected by policy name: "
               "api-egress namespace prod")
    assert marks(rules_of(full, "prod", "api-egress")) == [
        f'-A CHAIN -p tcp -m comment --comment "{comment}" -m set --match-set {source} src '
        f"-m set --match-set {narrow.name} dst -m tcp --dport 443 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -m comment --comment "{comment}" -m set --match-set {source} src '
        f"-m set --match-set {everything.name} dst -j MARK --set-xmark 0x10000/0x10000",
    ]
    assert ipset(rules, source).members == ("10.244.0.4 timeout 0", "10.244.2.3 timeout 0")


def test_ingress_named_ports_resolve_per_target_pod(full):
    rules = kuberouter.compile_node(full, "k8s-node2", VERSION)
    source = set_name("KUBE-SRC-", "defaultweb-namedingressrule0IPv4pod")
    port_80 = set_name("KUBE-DST-", "defaultweb-namedingressrule00IPv4namedport")
    port_8080 = set_name("KUBE-DST-", "defaultweb-namedingressrule01IPv4namedport")
    metrics = set_name("KUBE-DST-", "defaultweb-namedingressrule10IPv4namedport")
    assert ipset(rules, port_80).members == ("10.244.0.2 timeout 0",)
    assert ipset(rules, port_8080).members == ("10.244.1.2 timeout 0",)
    assert ipset(rules, metrics).members == ("10.244.0.2 timeout 0",)
    from_pods = ("rule to ACCEPT traffic from source pods to dest pods selected by policy name web-named "
                 "namespace default")
    from_all = ("rule to ACCEPT traffic from all sources to dest pods selected by policy name: "
                "web-named namespace default")
    assert marks(rules_of(full, "default", "web-named")) == [
        f'-A CHAIN -p tcp -m comment --comment "{from_pods}" -m set --match-set {source} src '
        f"-m set --match-set {port_80} dst -m tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{from_pods}" -m set --match-set {source} src '
        f"-m set --match-set {port_8080} dst -m tcp --dport 8080 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{from_all}" '
        f"-m set --match-set {metrics} dst -m tcp --dport 9090 -j MARK --set-xmark 0x10000/0x10000",
    ]


def test_named_port_sets_of_an_ipblock_only_rule_are_hash_net():
    policy = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-lan, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 192.168.10.0/24}}]
    ports: [{port: http}]
"""
    rules = kuberouter.compile_node(topology(policy), "k8s-node1", VERSION)
    named = ipset(rules, set_name("KUBE-DST-", "defaultweb-from-laningressrule00IPv4namedport"))
    assert (named.type, named.members) == ("hash:net", ("10.244.0.2 timeout 0",))
    assert ipset(rules, set_name("KUBE-SRC-", "defaultweb-from-laningressrule0IPv4ipblock")).type == "hash:net"


def test_end_port_sctp_and_protocol_only_ports(full):
    source = set_name("KUBE-SRC-", "defaultdb-portsingressrule0IPv4pod")
    target = set_name("KUBE-DST-", "defaultdb-portsIPv4")
    sets = f"-m set --match-set {source} src -m set --match-set {target} dst"
    comment = "rule to ACCEPT traffic from source pods to dest pods selected by policy name db-ports namespace default"
    assert marks(rules_of(full, "default", "db-ports"))[:3] == [
        f'-A CHAIN -p sctp -m comment --comment "{comment}" {sets} -m sctp --dport 7777 '
        "-j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{comment}" {sets} -m tcp --dport 5432:5440 '
        "-j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p udp -m comment --comment "{comment}" {sets} -j MARK --set-xmark 0x10000/0x10000',
    ]
    rules = kuberouter.compile_node(full, "k8s-node1", VERSION)
    assert ipset(rules, source).members == ("10.244.0.4 timeout 0", "10.244.2.3 timeout 0")   # namespaceSelector


def test_unresolved_named_port_matches_every_port_as_kube_router_does(full):
    source = set_name("KUBE-SRC-", "defaultdb-portsingressrule1IPv4pod")
    target = set_name("KUBE-DST-", "defaultdb-portsIPv4")
    comment = "rule to ACCEPT traffic from source pods to dest pods selected by policy name db-ports namespace default"
    assert marks(rules_of(full, "default", "db-ports"))[3:] == [
        f'-A CHAIN -m comment --comment "{comment}" -m set --match-set {source} src '
        f"-m set --match-set {target} dst -j MARK --set-xmark 0x10000/0x10000",
    ]


def test_empty_ingress_writes_no_rules_but_keeps_chain_and_target_set(full):
    rules = kuberouter.compile_node(full, "k8s-node2", VERSION)
    assert policy_chain("dev", "deny-ingress") in rules.tables[0].chains
    assert rules_of(full, "dev", "deny-ingress", "k8s-node2") == []
    assert ipset(rules, set_name("KUBE-DST-", "devdeny-ingressIPv4")).members == ("10.244.1.4 timeout 0",)


def test_match_expressions_and_namespace_selector(full):
    rules = kuberouter.compile_node(full, "k8s-node3", VERSION)
    targets = ipset(rules, set_name("KUBE-DST-", "prodapi-expressionsIPv4"))
    sources = ipset(rules, set_name("KUBE-SRC-", "prodapi-expressionsingressrule0IPv4pod"))
    assert targets.members == ("10.244.2.3 timeout 0",)                       # In [api], version DoesNotExist
    assert sorted(sources.members) == sorted(f"{ip} timeout 0" for ip in (    # every namespace, app Exists,
        "10.244.0.2", "10.244.1.3", "10.244.0.3", "10.244.0.4", "10.244.2.3", "10.244.1.4"))  # tier NotIn [x]


def test_egress_is_the_mirror_image(full):
    source = set_name("KUBE-SRC-", "defaultfrontend-egressIPv4")
    port_80 = set_name("KUBE-DST-", "defaultfrontend-egressegressrule00IPv4namedport")
    port_8080 = set_name("KUBE-DST-", "defaultfrontend-egressegressrule01IPv4namedport")
    to_pods = ("rule to ACCEPT traffic from source pods to dest pods selected by policy name frontend-egress "
               "namespace default")
    to_all = ("rule to ACCEPT traffic from source pods to all destinations selected by policy name: "
              "frontend-egress namespace default")
    assert marks(rules_of(full, "default", "frontend-egress")) == [
        f'-A CHAIN -p tcp -m comment --comment "{to_pods}" -m set --match-set {source} src '
        f"-m set --match-set {port_80} dst -m tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{to_pods}" -m set --match-set {source} src '
        f"-m set --match-set {port_8080} dst -m tcp --dport 8080 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p udp -m comment --comment "{to_all}" -m set --match-set {source} src '
        "-m udp --dport 53 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{to_all}" -m set --match-set {source} src '
        "-m tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000",
        f'-A CHAIN -p tcp -m comment --comment "{to_all}" -m set --match-set {source} src '
        "-m tcp --dport 8080 -j MARK --set-xmark 0x10000/0x10000",
    ]
    rules = kuberouter.compile_node(full, "k8s-node2", VERSION)
    assert ipset(rules, source).members == ("10.244.1.3 timeout 0",)
    assert set_name("KUBE-DST-", "defaultfrontend-egressIPv4") not in {s.name for s in rules.ipsets}


def test_both_types_ipblock_ingress_and_allow_all_egress(full):
    block = set_name("KUBE-SRC-", "devtool-bothingressrule0IPv4ipblock")
    target_in = set_name("KUBE-DST-", "devtool-bothIPv4")
    target_out = set_name("KUBE-SRC-", "devtool-bothIPv4")
    assert marks(rules_of(full, "dev", "tool-both")) == [
        '-A CHAIN -m comment --comment "rule to ACCEPT traffic from specified ipBlocks to dest pods selected by '
        f'policy name: tool-both namespace dev" -m set --match-set {block} src -m set --match-set {target_in} dst '
        "-j MARK --set-xmark 0x10000/0x10000",
        '-A CHAIN -m comment --comment "rule to ACCEPT traffic from source pods to all destinations selected by '
        f'policy name: tool-both namespace dev" -m set --match-set {target_out} src '
        "-j MARK --set-xmark 0x10000/0x10000",
    ]


# -- 2. the kernel accepts what the compiler writes, and prints it back unchanged -------------------------
def run(netns: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
                          timeout=60)


def restore_text(rules: NodeRules) -> str:
    """iptables-restore --noflush input: declare (flush) the chains, append the rules, insert the hooks."""
    table = rules.tables[0]
    lines = [f"*{table.table}", *(f":{chain} - [0:0]" for chain in table.chains), *table.rules, *table.hooks,
             "COMMIT"]
    return "\n".join(lines) + "\n"


def ipset_text(rules: NodeRules) -> str:
    lines = []
    for entry in rules.ipsets:
        lines.append(f"create {entry.name} {entry.type} {entry.create_options}")
        lines += [f"add {entry.name} {member}" for member in entry.members]
    return "\n".join(lines) + "\n"


def saved_chains(text: str) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    return chains


def saved_sets(text: str) -> dict[str, tuple[str, set[str]]]:
    sets: dict[str, tuple[str, set[str]]] = {}
    for line in text.splitlines():
        words = line.split()
        if words[0] == "create":
            sets[words[1]] = (words[2], set())
        elif words[0] == "add":
            sets[words[1]][1].add(" ".join(words[2:]))
    return sets


def load(netns: str, rules: NodeRules, iptables: str = "iptables") -> str:
    """Restore the sets and the rules in `netns`; returns iptables-save's filter table."""
    result = run(netns, "ipset", "restore", stdin=ipset_text(rules))
    assert result.returncode == 0, result.stderr
    result = run(netns, f"{iptables}-restore", "--noflush", stdin=restore_text(rules))
    assert result.returncode == 0, result.stderr
    saved = run(netns, f"{iptables}-save", "-t", "filter")
    assert saved.returncode == 0, saved.stderr
    return saved.stdout


def save_form(line: str) -> str:
    """How iptables-save (1.8.9, nft and legacy) prints a rule: it escapes ' in a quoted comment as \\'."""
    return line.replace("'", "\\'")


@pytest.mark.needs_root
def test_kernel_prints_the_reference_text(scratch_netns, example):
    chains = saved_chains(load(scratch_netns, example))
    for hook in REFERENCE_HOOKS:
        assert chains[hook.split()[1]] == [hook]
    for chain, lines in REFERENCE_CHAINS.items():
        assert chains[chain] == [save_form(line) for line in lines]


BACKENDS = [pytest.param("iptables", id="nft"),
            pytest.param("iptables-legacy", id="legacy",
                         marks=pytest.mark.skipif(not shutil.which("iptables-legacy-restore"),
                                                  reason="no iptables-legacy"))]


@pytest.mark.needs_root
@pytest.mark.parametrize("iptables", BACKENDS)
@pytest.mark.parametrize("node", ["k8s-node1", "k8s-node2", "k8s-node3"])
def test_kernel_round_trip(scratch_netns, full, node, iptables):
    rules = kuberouter.compile_node(full, node, VERSION)
    table = rules.tables[0]
    chains = saved_chains(load(scratch_netns, rules, iptables))
    for chain in table.chains:
        assert chains.get(chain, []) == [save_form(line) for line in chain_rules(rules, chain)], chain
    for hook in table.hooks:
        assert [as_insert(line) for line in chains[hook.split()[1]]] == [hook]
    sets = saved_sets(run(scratch_netns, "ipset", "save").stdout)
    assert {name: (kind, members) for name, (kind, members) in sets.items()} == {
        s.name: (s.type, set(s.members)) for s in rules.ipsets}
