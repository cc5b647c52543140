"""kube-router's network-policy names: chains, ipsets and rule comments (v2.5, IPv4).

Every hashed name is `base32(sha256(text))[:16]` over a concatenation without separators, as in
pkg/controllers/netpol (policy.go, pod.go, network_policy_controller.go). Chain names include the
sync version (the full sync's start time in ns) and change on every sync; ipset names do not.
"""

from __future__ import annotations

import base64
import hashlib

FAMILY = "IPv4"                       # Kubernetes' api.IPv4Protocol: IPv4 sets carry no "inet6:" prefix

POD_CHAIN_PREFIX = "KUBE-POD-FW-"
POLICY_CHAIN_PREFIX = "KUBE-NWPLCY-"
SOURCE_SET_PREFIX = "KUBE-SRC-"
DESTINATION_SET_PREFIX = "KUBE-DST-"

INPUT_CHAIN = "KUBE-ROUTER-INPUT"
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
OUTPUT_CHAIN = "KUBE-ROUTER-OUTPUT"
DEFAULT_CHAIN = "KUBE-NWPLCY-DEFAULT"
TOP_LEVEL_CHAINS = {"INPUT": INPUT_CHAIN, "FORWARD": FORWARD_CHAIN, "OUTPUT": OUTPUT_CHAIN}


def digest(text: str) -> str:
    """base32(sha256(text))[:16], kube-router's hash for names and rule ids."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def rule_uuid(chain: str, args: list[str]) -> str:
    """The id ensureTopLevelChains appends to a comment: the hash of chain + args joined without spaces."""
    return digest(chain + "".join(args))


def pod_chain(namespace: str, pod: str, version: str) -> str:
    """podFirewallChainName."""
    return POD_CHAIN_PREFIX + digest(namespace + pod + version)


def policy_chain(namespace: str, policy: str, version: str) -> str:
    """networkPolicyChainName."""
    return POLICY_CHAIN_PREFIX + digest(namespace + policy + version + FAMILY)


def target_ingress_set(namespace: str, policy: str) -> str:
    """policyDestinationPodIPSetName: the pods an ingress policy selects."""
    return DESTINATION_SET_PREFIX + digest(namespace + policy + FAMILY)


def target_egress_set(namespace: str, policy: str) -> str:
    """policySourcePodIPSetName: the pods an egress policy selects."""
    return SOURCE_SET_PREFIX + digest(namespace + policy + FAMILY)


def _indexed(prefix: str, namespace: str, policy: str, direction: str, rule: int, suffix: str) -> str:
    return prefix + digest(f"{namespace}{policy}{direction}rule{rule}{suffix}")


def ingress_pod_set(namespace: str, policy: str, rule: int) -> str:
    """policyIndexedSourcePodIPSetName: the source pods of ingress rule `rule`."""
    return _indexed(SOURCE_SET_PREFIX, namespace, policy, "ingress", rule, FAMILY + "pod")


def egress_pod_set(namespace: str, policy: str, rule: int) -> str:
    """policyIndexedDestinationPodIPSetName: the destination pods of egress rule `rule`."""
    return _indexed(DESTINATION_SET_PREFIX, namespace, policy, "egress", rule, FAMILY + "pod")


def ingress_block_set(namespace: str, policy: str, rule: int) -> str:
    """policyIndexedSourceIPBlockIPSetName: the ipBlocks of ingress rule `rule`."""
    return _indexed(SOURCE_SET_PREFIX, namespace, policy, "ingress", rule, FAMILY + "ipblock")


def egress_block_set(namespace: str, policy: str, rule: int) -> str:
    """policyIndexedDestinationIPBlockIPSetName: the ipBlocks of egress rule `rule`."""
    return _indexed(DESTINATION_SET_PREFIX, namespace, policy, "egress", rule, FAMILY + "ipblock")


def ingress_named_port_set(namespace: str, policy: str, rule: int, endpoint: int) -> str:
    """policyIndexedIngressNamedPortIPSetName (a KUBE-DST- set: it holds destination pods)."""
    return _indexed(DESTINATION_SET_PREFIX, namespace, policy, "ingress", rule, f"{endpoint}{FAMILY}namedport")


def egress_named_port_set(namespace: str, policy: str, rule: int, endpoint: int) -> str:
    """policyIndexedEgressNamedPortIPSetName."""
    return _indexed(DESTINATION_SET_PREFIX, namespace, policy, "egress", rule, f"{endpoint}{FAMILY}namedport")


def commented(chain: str, args: list[str]) -> str:
    """A top-level rule's comment text with its id, as ensureTopLevelChains writes it."""
    text = args[args.index("--comment") + 1]
    return f"{text} - {rule_uuid(chain, args)}"
