"""The reference evaluator: what the NetworkPolicy API says about one connection.

A pure function of the cluster (pods, namespaces, nodes) and the policies, written from the API
documentation and nothing else: it shares no code with the enforcers (lab/policy/kuberouter.py,
lab/policy/felix.py), so the probes can hold the kernel's behaviour against it.

Semantics, as the Kubernetes documentation states them:
  * a pod is isolated for ingress (egress) when some policy of its namespace selects it and has
    Ingress (Egress) in policyTypes; an isolated pod admits only what some such policy's rule allows,
    and the allowances of all policies add up;
  * a connection needs both the source's egress and the destination's ingress to allow it;
  * replies of an allowed connection are allowed (the probes' connections test this implicitly);
  * traffic from a pod's own node is always allowed into that pod (kubelet health checks);
  * a pod reaching itself never leaves its own network namespace, so no policy applies to it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lab.model.labels import LabelSelector, Requirement
from lab.model.network_policy import IPBlock, NetworkPolicy, Peer, PolicyPort, Rule
from lab.topology.model import Pod, Topology

IPv4Address = ipaddress.IPv4Address
Endpoint = Pod | IPv4Address


@dataclass(frozen=True)
class Verdict:
    """Whether a connection is allowed, and the policies that decided each direction."""

    allowed: bool
    egress: str          # "not isolated" | "allowed by <ns/name>" | "denied: isolated by <ns/name,...>"
    ingress: str


def allowed(topology: Topology, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
            policies: Iterable[NetworkPolicy] | None = None) -> bool:
    """Is a `protocol` connection from `src` to `dst`:`port` allowed?"""
    return verdict(topology, src, dst, port, protocol, policies).allowed


def verdict(topology: Topology, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
            policies: Iterable[NetworkPolicy] | None = None) -> Verdict:
    """The decision for one connection, with the reason on each side."""
    rules = tuple(topology.policies if policies is None else policies)
    if isinstance(src, Pod) and isinstance(dst, Pod) and src.key == dst.key:
        return Verdict(True, "loopback", "loopback")
    egress = _side(topology, rules, src, dst, port, protocol, "Egress") if isinstance(src, Pod) else "not a pod"
    if isinstance(dst, Pod) and isinstance(src, IPv4Address) and _is_node_of(topology, src, dst):
        ingress = "from the pod's own node"
    else:
        ingress = _side(topology, rules, dst, src, port, protocol, "Ingress") if isinstance(dst, Pod) else "not a pod"
    return Verdict(not egress.startswith("denied") and not ingress.startswith("denied"), egress, ingress)


def _side(topology: Topology, policies: tuple[NetworkPolicy, ...], pod: Pod, peer: Endpoint, port: int,
          protocol: str, direction: str) -> str:
    """The verdict of `pod`'s policies of one direction on traffic with `peer`."""
    isolating = [p for p in policies if p.namespace == pod.namespace and direction in p.policy_types
                 and _selects(p.pod_selector, pod.labels)]
    if not isolating:
        return "not isolated"
    target = pod if direction == "Ingress" else peer          # named ports resolve on the destination pod
    for policy in isolating:
        rules = policy.ingress if direction == "Ingress" else policy.egress
        if any(_rule_admits(topology, policy, rule, peer, target, port, protocol) for rule in rules):
            return f"allowed by {policy.key}"
    return "denied: isolated by " + ",".join(p.key for p in isolating)


def _rule_admits(topology: Topology, policy: NetworkPolicy, rule: Rule, peer: Endpoint, target: Endpoint,
                 port: int, protocol: str) -> bool:
    if rule.ports and not any(_port_matches(p, target, port, protocol) for p in rule.ports):
        return False
    return not rule.peers or any(_peer_matches(topology, policy, p, peer) for p in rule.peers)


def _port_matches(entry: PolicyPort, target: Endpoint, port: int, protocol: str) -> bool:
    if entry.protocol != protocol:
        return False
    if entry.port is None:
        return True
    if isinstance(entry.port, str):
        if not isinstance(target, Pod):
            return False                       # a named port names a pod's container port
        return any(cp.name == entry.port and cp.port == port and cp.protocol == protocol
                   for cp in target.container_ports)
    if entry.end_port is not None:
        return entry.port <= port <= entry.end_port
    return entry.port == port


def _peer_matches(topology: Topology, policy: NetworkPolicy, peer: Peer, endpoint: Endpoint) -> bool:
    if peer.ip_block is not None:
        address = endpoint.ip if isinstance(endpoint, Pod) else endpoint
        return address is not None and _in_block(peer.ip_block, address)
    if not isinstance(endpoint, Pod):
        return False                           # selectors select pods only
    if peer.namespace_selector is None:
        in_namespace = endpoint.namespace == policy.namespace
    else:
        labels = next((n.labels for n in topology.namespaces if n.name == endpoint.namespace), {})
        in_namespace = _selects(peer.namespace_selector, labels)
    if not in_namespace:
        return False
    return peer.pod_selector is None or _selects(peer.pod_selector, endpoint.labels)


def _in_block(block: IPBlock, address: IPv4Address) -> bool:
    return address in block.cidr and not any(address in excluded for excluded in block.excepts)


def _selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression hold."""
    return (all(labels.get(key) == value for key, value in selector.match_labels)
            and all(_requirement_holds(req, labels) for req in selector.match_expressions))


def _requirement_holds(req: Requirement, labels: Mapping[str, str]) -> bool:
    present = req.key in labels
    if req.operator == "In":
        return present and labels[req.key] in req.values
    if req.operator == "NotIn":
        return not present or labels[req.key] not in req.values
    if req.operator == "Exists":
        return present
    return not present                          # DoesNotExist


def _is_node_of(topology: Topology, address: IPv4Address, pod: Pod) -> bool:
    return any(node.name == pod.node and node.ip == address for node in topology.nodes)
