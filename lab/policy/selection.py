"""Which namespaces and pods a NetworkPolicy's selectors pick, for the enforcers' compilers.

Kubernetes semantics (apimachinery `labels.Selector`, NetworkPolicy peers):
  * matchLabels and every matchExpressions requirement must hold; an empty selector selects all;
  * In: the key is present with one of the values; NotIn: the key is absent or has none of them;
    Exists / DoesNotExist: the key is present / absent;
  * a peer with a namespaceSelector picks the pods of the matching namespaces (all of them when it has
    no podSelector); a peer with only a podSelector picks pods of the policy's own namespace; an
    ipBlock peer picks no pods.
The reference evaluator (lab/policy/evaluator.py) has its own copy of these rules on purpose:
an enforcer must not share code with the evaluator it is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.model.labels import LabelSelector, Requirement
from lab.model.network_policy import NetworkPolicy, Peer
from lab.topology.model import Namespace, Pod, Topology


def requirement_holds(requirement: Requirement, labels: Mapping[str, str]) -> bool:
    """Whether one matchExpressions entry holds for `labels`."""
    present = requirement.key in labels
    if requirement.operator == "In":
        return present and labels[requirement.key] in requirement.values
    if requirement.operator == "NotIn":
        return not present or labels[requirement.key] not in requirement.values
    if requirement.operator == "Exists":
        return present
    if requirement.operator == "DoesNotExist":
        return not present
    raise ValueError(f"unknown selector operator {requirement.operator!r}")


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether `selector` selects an object with `labels`."""
    if any(labels.get(key) != value for key, value in selector.match_labels):
        return False
    return all(requirement_holds(req, labels) for req in selector.match_expressions)


def matching_namespaces(topology: Topology, selector: LabelSelector) -> tuple[Namespace, ...]:
    """The namespaces whose labels `selector` selects."""
    return tuple(ns for ns in topology.namespaces if selector_matches(selector, ns.labels))


def pods_in(topology: Topology, namespace: str, selector: LabelSelector | None) -> tuple[Pod, ...]:
    """Pods of `namespace` that `selector` selects (every pod of it when `selector` is None)."""
    return tuple(pod for pod in topology.pods
                 if pod.namespace == namespace and (selector is None or selector_matches(selector, pod.labels)))


def policy_targets(topology: Topology, policy: NetworkPolicy) -> tuple[Pod, ...]:
    """The pods `policy.spec.podSelector` selects (always within the policy's namespace)."""
    return pods_in(topology, policy.namespace, policy.pod_selector)


def peer_pods(topology: Topology, policy_namespace: str, peer: Peer) -> tuple[Pod, ...]:
    """The pods one from/to peer selects; () for an ipBlock peer."""
    if peer.namespace_selector is not None:
        namespaces = matching_namespaces(topology, peer.namespace_selector)
        return tuple(pod for ns in namespaces for pod in pods_in(topology, ns.name, peer.pod_selector))
    if peer.pod_selector is not None:
        return pods_in(topology, policy_namespace, peer.pod_selector)
    return ()
