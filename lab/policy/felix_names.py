"""Felix's names and hashes (Calico v3.28), and libcalico-go's conversion of NetworkPolicy selectors.

Names:
  * chains longer than 28 characters become `prefix + "_" + base64url(sha256(suffix))` cut to 28
    (felix/hashutils GetLengthLimitedID);
  * every rule Felix writes carries `-m comment --comment "cali:<hash>"`: a sha224 chain seeded with
    the chain name, fed each rule as Felix renders it (felix/iptables/rules.go RuleHashes);
  * an ipset ID is `<kind>:` + base64url(sha224("<kind>:<content>")) (libcalico-go lib/hash), and the
    set is `cali40<ID>` cut to ipset's 31 characters (felix/ipsets NameForMainIPSet);
  * a policy group chain is `cali-gi-`/`cali-go-` + 20 characters of base64url(sha3-224(...)).

Selectors (libcalico-go k8s/conversion and syncersv1/updateprocessors): a pod selector becomes
`projectcalico.org/orchestrator == 'k8s' && <terms>`, a namespace selector's keys get the `pcns.`
prefix (an empty one becomes `has(projectcalico.org/namespace)`), and a namespaced rule is limited
to its namespace with `projectcalico.org/namespace == '<ns>'`. Felix hashes and matches the selector
in its normal form, which lab.model.calico_selector prints exactly as libcalico-go's parser does.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re

from lab.model import calico_selector
from lab.model.labels import LabelSelector
from lab.model.network_policy import NetworkPolicy, Peer

MAX_CHAIN_NAME = 28
MAX_IPSET_NAME = 31
RULE_HASH_LENGTH = 16
IPSET_PREFIX = "cali40"
ORCHESTRATOR = "projectcalico.org/orchestrator == 'k8s'"
NAMESPACE_LABEL = "projectcalico.org/namespace"
NAMESPACE_PREFIX = "pcns."
ALL_SELECTOR = "all()"
_COMMENT_UNSAFE = re.compile(r"[^\w @%+=:,./-]", re.ASCII)


def _b64(digest: bytes) -> str:
    """base64.RawURLEncoding."""
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def length_limited(prefix: str, suffix: str, max_length: int = MAX_CHAIN_NAME) -> str:
    """hashutils.GetLengthLimitedID: the name, or the prefix and a hash when it would be too long."""
    total = len(prefix) + len(suffix)
    if total > max_length or (total == max_length and suffix.startswith("_")):
        return prefix + "_" + _b64(hashlib.sha256(suffix.encode()).digest())[:max_length - 1 - len(prefix)]
    return prefix + suffix


def rule_hashes(chain: str, bodies: list[str]) -> list[str]:
    """Chain.RuleHashes: each rule's hash chains in the previous one (bodies as Felix renders them)."""
    digest = hashlib.sha224(chain.encode()).digest()
    hashes = []
    for body in bodies:
        rendered = f"-A {chain} HASH" + (f" {body}" if body else "")
        digest = hashlib.sha224(digest + rendered.encode()).digest()
        hashes.append(_b64(digest)[:RULE_HASH_LENGTH])
    return hashes


def comment(text: str) -> str:
    """A `-m comment` match as Felix writes it: unsafe characters become '_', at most 256 characters."""
    return f'-m comment --comment "{_COMMENT_UNSAFE.sub("_", text)[:256]}"'


def unique_id(kind: str, content: str) -> str:
    """hash.MakeUniqueID: `<kind>:` and the base64url sha224 of `<kind>:<content>`."""
    return f"{kind}:" + _b64(hashlib.sha224(f"{kind}:{content}".encode()).digest())


def selector_set_id(selector: str) -> str:
    """The ID of the ipset of a (normalised) selector."""
    return unique_id("s", selector)


def named_port_set_id(selector: str, protocol: str, port_name: str) -> str:
    """The ID of a named-port ipset: the selector's ID, the protocol and the port's name."""
    return unique_id("n", f"{selector_set_id(selector)},{protocol},{port_name}")


def ipset_name(set_id: str) -> str:
    """The main ipset of an ID: `cali40<ID>`, truncated to 31 characters."""
    return (IPSET_PREFIX + set_id)[:MAX_IPSET_NAME]


def policy_group_uid(tier: str, selector: str, direction: str, names: tuple[str, ...]) -> str:
    """PolicyGroup.UniqueID: sha3-224 over tier, selector, direction, count and names, cut to fit."""
    hasher = hashlib.sha3_224()
    for part in (tier, selector, direction, str(len(names)), *names):
        hasher.update(part.encode() + b"\n")
    return _b64(hasher.digest())[:MAX_CHAIN_NAME - len("cali-gi-")]


# -- selectors ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> calico_selector.Selector:
    """A parsed selector, cached: the same selectors are matched against every endpoint."""
    return calico_selector.parse(text)


def normalise(text: str) -> str:
    """The selector's normal form (libcalico-go selector String())."""
    return str(_parse(text))


def matches(text: str, labels: dict[str, str]) -> bool:
    """Whether a selector selects an endpoint with these labels."""
    return _parse(text).matches(labels)


def k8s_selector(selector: LabelSelector | None, for_pods: bool) -> str:
    """converter.k8sSelectorToCalico: a label selector as a Calico selector ('' for a missing one)."""
    terms = [ORCHESTRATOR] if for_pods else []
    if selector is None:
        return " && ".join(terms)
    if not for_pods and selector.is_empty:
        return ALL_SELECTOR
    terms += [f"{key} == '{value}'" for key, value in sorted(selector.match_labels)]
    for req in selector.match_expressions:
        values = "', '".join(req.values)
        terms.append({"In": f"{req.key} in {{ '{values}' }}", "NotIn": f"{req.key} not in {{ '{values}' }}",
                      "Exists": f"has({req.key})", "DoesNotExist": f"! has({req.key})"}[req.operator])
    return " && ".join(terms)


def policy_selector(policy: NetworkPolicy) -> str:
    """The selector of the policy's own pods, normalised (convertNetworkPolicyV2ToV1Value)."""
    own = k8s_selector(policy.pod_selector, for_pods=True)
    return normalise(f"({own}) && {NAMESPACE_LABEL} == '{policy.namespace}'")


def peer_selector(peer: Peer | None, namespace: str) -> str:
    """A rule peer's endpoint selector, normalised; '' when the peer selects no endpoints."""
    if peer is None or peer.ip_block is not None:
        return ""
    pods = k8s_selector(peer.pod_selector, for_pods=True)
    namespaces = k8s_selector(peer.namespace_selector, for_pods=False)
    if namespaces:
        namespaces = _prefixed(namespaces, NAMESPACE_PREFIX).replace(ALL_SELECTOR, f"has({NAMESPACE_LABEL})")
    else:
        namespaces = f"{NAMESPACE_LABEL} == '{namespace}'"
    return normalise(f"({namespaces}) && ({pods})")


def _prefixed(text: str, prefix: str) -> str:
    """parseSelectorAttachPrefix: every label key of the selector prefixed, in normal form."""
    return str(_prefix_keys(_parse(text).root, prefix))


def _prefix_keys(node: calico_selector.Node, prefix: str) -> calico_selector.Node:
    """parser.PrefixVisitor over the selector tree."""
    if isinstance(node, (calico_selector.Has, calico_selector.Compare, calico_selector.InSet)):
        return dataclasses.replace(node, key=prefix + node.key)
    if isinstance(node, calico_selector.Not):
        return calico_selector.Not(_prefix_keys(node.operand, prefix))
    if isinstance(node, (calico_selector.And, calico_selector.Or)):
        return type(node)(tuple(_prefix_keys(op, prefix) for op in node.operands))
    return node
