"""Read a NetworkPolicy manifest (networking.k8s.io/v1 or extensions/v1beta1) into the model.

Validation follows the API server's (pkg/apis/networking/validation) plus kubectl's refusal of
unknown fields, and every error names the manifest's own field: `fail(path, message, hint)`
returns the error to raise, pointing at `path` inside the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lab.errors import TopologyError
from lab.model import labels
from lab.model.labels import OPERATORS, LabelSelector, Requirement
from lab.model.network_policy import EGRESS, INGRESS, PROTOCOLS, IPBlock, NetworkPolicy, Peer, PolicyPort, Rule
from lab.topology import cidr as cidrs
from lab.topology.yamlsource import Path

KIND = "NetworkPolicy"
API_VERSIONS = ("networking.k8s.io/v1", "extensions/v1beta1")
TOP_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}
METADATA_KEYS = {"name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "managedFields", "selfLink", "finalizers", "ownerReferences", "generateName",
                 "deletionTimestamp", "deletionGracePeriodSeconds"}
SPEC_KEYS = {"podSelector", "policyTypes", "ingress", "egress"}
SELECTOR_KEYS = {"matchLabels", "matchExpressions"}
EXPRESSION_KEYS = {"key", "operator", "values"}
PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}
IPBLOCK_KEYS = {"cidr", "except"}
PORT_KEYS = {"protocol", "port", "endPort"}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")

Fail = Callable[[Path, str, str | None], TopologyError]
Warn = Callable[[Path, str], None]


def _no_warnings(path: Path, message: str) -> None:
    return None


def is_network_policy(item: Any) -> bool:
    return isinstance(item, dict) and item.get("kind") == KIND


def network_policy(item: Any, path: Path, fail: Fail, source: str = "", warn: Warn = _no_warnings) -> NetworkPolicy:
    """The policy a manifest describes, or the error of its first invalid field; `warn(path, text)`
    hears the warnings the API server would return (non-canonical ipBlock CIDRs)."""
    if not isinstance(item, dict) or item.get("kind") != KIND:
        raise fail(path, "not a NetworkPolicy manifest", "give apiVersion: networking.k8s.io/v1, kind: NetworkPolicy")
    version = item.get("apiVersion")
    if version not in API_VERSIONS:
        raise fail(path + ("apiVersion",), f"apiVersion {version!r} has no NetworkPolicy",
                   f"use {' or '.join(API_VERSIONS)}")
    _known(item, TOP_KEYS, path, fail, "a NetworkPolicy")
    meta = _mapping(item.get("metadata"), path + ("metadata",), fail, "metadata", required=True)
    _known(meta, METADATA_KEYS, path + ("metadata",), fail, "metadata")
    name = meta.get("name")
    if name is None:
        raise fail(path + ("metadata",), "a NetworkPolicy needs metadata.name",
                   "the lab has no generateName: set metadata.name" if "generateName" in meta else
                   "set metadata.name: a DNS subdomain (lower-case letters, digits, '-' and '.')")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise fail(path + ("metadata", "name"), f"metadata.name {_short(name)} is not a valid name",
                   "a NetworkPolicy name is a DNS subdomain: lower-case letters, digits, '-' and '.'")
    namespace = meta.get("namespace", "default")
    if not isinstance(namespace, str) or not namespace:
        raise fail(path + ("metadata", "namespace"), f"metadata.namespace {namespace!r} is not a namespace name", None)
    where = path + ("spec",)
    spec = _mapping(item.get("spec"), where, fail, "spec", required=True)
    _known(spec, SPEC_KEYS, where, fail, "spec")
    if "podSelector" not in spec:
        raise fail(where, "spec.podSelector is required", "`podSelector: {}` selects every pod of the namespace")
    pod_selector = label_selector(spec["podSelector"], where + ("podSelector",), fail)
    ingress = _rules(spec, "ingress", "from", where, fail, warn)
    egress = _rules(spec, "egress", "to", where, fail, warn)
    types = _policy_types(spec, where, fail)
    return NetworkPolicy(namespace=namespace, name=name, pod_selector=pod_selector, policy_types=types,
                         ingress=ingress, egress=egress, api_version=version, source=source)


def _policy_types(spec: dict[str, Any], where: Path, fail: Fail) -> tuple[str, ...]:
    """spec.policyTypes, defaulted as the API server does: Ingress, plus Egress when egress rules exist."""
    given = spec.get("policyTypes")
    if given is None or given == []:
        return (INGRESS, EGRESS) if spec.get("egress") else (INGRESS,)
    if not isinstance(given, list):
        raise fail(where + ("policyTypes",), "policyTypes must be a list", "e.g. policyTypes: [Ingress, Egress]")
    types: list[str] = []
    for index, value in enumerate(given):
        if value not in (INGRESS, EGRESS):
            raise fail(where + ("policyTypes", index), f"policy type {value!r} is not Ingress or Egress", None)
        if value in types:
            raise fail(where + ("policyTypes", index), f"duplicate policy type {value!r}", None)
        types.append(value)
    return tuple(types)


def _rules(spec: dict[str, Any], field: str, peers_field: str, where: Path, fail: Fail, warn: Warn) -> tuple[Rule, ...]:
    value = spec.get(field)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(where + (field,), f"{field} must be a list of rules", f"e.g. {field}: [{{{peers_field}: [...]}}]")
    rules = []
    for index, entry in enumerate(value):
        at = where + (field, index)
        rule = _mapping(entry, at, fail, f"an {field} rule")
        _known(rule, {peers_field, "ports"}, at, fail, f"an {field} rule")
        peers = tuple(_peer(p, at + (peers_field, i), fail, warn)
                      for i, p in enumerate(_list(rule, peers_field, at, fail)))
        ports = tuple(_port(p, at + ("ports", i), fail) for i, p in enumerate(_list(rule, "ports", at, fail)))
        rules.append(Rule(peers=peers, ports=ports))
    return tuple(rules)


def _peer(value: Any, at: Path, fail: Fail, warn: Warn) -> Peer:
    peer = _mapping(value, at, fail, "a peer")
    _known(peer, PEER_KEYS, at, fail, "a peer")
    if not peer:
        raise fail(at, "a peer needs podSelector, namespaceSelector or ipBlock", None)
    if "ipBlock" in peer and len(peer) > 1:
        raise fail(at + ("ipBlock",), "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
                   "make the ipBlock a peer of its own (a separate `- ipBlock:` entry)")
    if "ipBlock" in peer:
        return Peer(ip_block=_ip_block(peer["ipBlock"], at + ("ipBlock",), fail, warn))
    pods = label_selector(peer["podSelector"], at + ("podSelector",), fail) if "podSelector" in peer else None
    spaces = (label_selector(peer["namespaceSelector"], at + ("namespaceSelector",), fail)
              if "namespaceSelector" in peer else None)
    return Peer(pod_selector=pods, namespace_selector=spaces)


def _ip_block(value: Any, at: Path, fail: Fail, warn: Warn) -> IPBlock:
    """cidr and except as the API server reads them: host bits allowed, meaning the masked network
    (ValidateIPBlock: each except inside cidr, with a longer prefix), with its warnings."""
    block = _mapping(value, at, fail, "ipBlock", required=True)
    _known(block, IPBLOCK_KEYS, at, fail, "ipBlock")
    if "cidr" not in block:
        raise fail(at, "ipBlock needs cidr", "e.g. ipBlock: {cidr: 172.17.0.0/16}")
    cidr = _cidr(block["cidr"], at + ("cidr",), fail, warn)
    excepts = []
    for index, entry in enumerate(_list(block, "except", at, fail)):
        excluded = _cidr(entry, at + ("except", index), fail, warn)
        if not excluded.network.subnet_of(cidr.network) or excluded.network.prefixlen <= cidr.network.prefixlen:
            raise fail(at + ("except", index), f"except {_shown(excluded)} must be a strict subset of cidr "
                       f"{_shown(cidr)}", "list only ranges inside the block's cidr")
        excepts.append(excluded)
    return IPBlock(cidr=cidr.network, excepts=tuple(e.network for e in excepts), written=cidr.written,
                   excepts_written=tuple(e.written for e in excepts))


def _shown(block: cidrs.Block) -> str:
    """A CIDR as written, with the network it means when that differs."""
    return block.written if block.written == str(block.network) else f"{block.written} (that is {block.network})"


def _cidr(value: Any, at: Path, fail: Fail, warn: Warn) -> cidrs.Block:
    try:
        block = cidrs.block(value)
    except cidrs.CidrError as exc:
        raise fail(at, exc.message, exc.hint) from None
    for text in block.warnings:
        warn(at, text)
    return block


def _port(value: Any, at: Path, fail: Fail) -> PolicyPort:
    entry = _mapping(value, at, fail, "a port")
    _known(entry, PORT_KEYS, at, fail, "a port")
    protocol = entry.get("protocol", "TCP")
    if protocol not in PROTOCOLS:
        raise fail(at + ("protocol",), f"protocol {protocol!r} is not TCP, UDP or SCTP", None)
    port = entry.get("port")
    if isinstance(port, bool) or (port is not None and not isinstance(port, (int, str))):
        raise fail(at + ("port",), f"port {port!r} must be a number or a container port name", None)
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise fail(at + ("port",), f"port {port} is out of range", "ports are 1 to 65535")
    if isinstance(port, str) and not _service_name(port):
        raise fail(at + ("port",), f"port {port!r} is neither a number nor a valid port name",
                   "a named port is at most 15 lower-case letters, digits and '-', with at least one letter")
    end = entry.get("endPort")
    if end is not None:
        if not isinstance(port, int):
            raise fail(at + ("endPort",), "endPort needs a numeric port", "set port to the first number of the range")
        if isinstance(end, bool) or not isinstance(end, int) or not 1 <= end <= 65535:
            raise fail(at + ("endPort",), f"endPort {end!r} is out of range", "ports are 1 to 65535")
        if end < port:
            raise fail(at + ("endPort",), f"endPort {end} is below port {port}", "endPort must be >= port")
    return PolicyPort(protocol=protocol, port=port, end_port=end)


def _service_name(name: str) -> bool:
    """IANA_SVC_NAME, as validation.IsValidPortName checks it."""
    return (len(name) <= 15 and bool(_SVC_NAME.match(name)) and "--" not in name
            and any(c.isalpha() for c in name))


def label_selector(value: Any, at: Path, fail: Fail) -> LabelSelector:
    """A metav1.LabelSelector; None and {} are both the empty selector."""
    selector = _mapping(value, at, fail, "a label selector")
    _known(selector, SELECTOR_KEYS, at, fail, "a label selector")
    pairs = _mapping(selector.get("matchLabels"), at + ("matchLabels",), fail, "matchLabels")
    match_labels = []
    for key, raw in pairs.items():
        if not isinstance(raw, str):
            raise fail(at + ("matchLabels", key), f"label value {_short(raw)} is not a string",
                       'quote it, as kubectl wants: key: "value"')
        text = raw
        problem = labels.key_problem(str(key)) or labels.value_problem(text)
        if problem:
            raise fail(at + ("matchLabels", key), problem, None)
        match_labels.append((str(key), text))
    expressions = tuple(_requirement(e, at + ("matchExpressions", i), fail)
                        for i, e in enumerate(_list(selector, "matchExpressions", at, fail)))
    return LabelSelector(match_labels=tuple(match_labels), match_expressions=expressions)


def _requirement(value: Any, at: Path, fail: Fail) -> Requirement:
    entry = _mapping(value, at, fail, "a match expression", required=True)
    _known(entry, EXPRESSION_KEYS, at, fail, "a match expression")
    key, operator = entry.get("key"), entry.get("operator")
    if not isinstance(key, str) or labels.key_problem(key):
        raise fail(at + ("key",), (labels.key_problem(key) or "invalid key") if isinstance(key, str)
                   else "key is required", None)
    if operator not in OPERATORS:
        raise fail(at + ("operator",), f"{operator!r} is not a valid label selector operator",
                   f"use one of {', '.join(OPERATORS)}")
    values = entry.get("values") or []
    if not isinstance(values, list):
        raise fail(at + ("values",), "values must be a list", None)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise fail(at + ("values", index), f"value {_short(value)} is not a string", 'quote it: "value"')
    texts = tuple(values)
    if operator in ("In", "NotIn") and not texts:
        raise fail(at + ("values",), f"operator {operator} needs at least one value", None)
    if operator in ("Exists", "DoesNotExist") and texts:
        raise fail(at + ("values",), f"operator {operator} takes no values", "remove values:")
    for index, text in enumerate(texts):
        problem = labels.value_problem(text)
        if problem:
            raise fail(at + ("values", index), problem, None)
    return Requirement(key=key, operator=operator, values=texts)


# -- small shape checks ------------------------------------------------------------------------------
def _mapping(value: Any, at: Path, fail: Fail, what: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise fail(at, f"{what} must be a mapping", None)
    return value


def _list(entry: dict[str, Any], key: str, at: Path, fail: Fail) -> list[Any]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(at + (key,), f"{key} must be a list", None)
    return value


def _known(entry: dict[str, Any], allowed: set[str], at: Path, fail: Fail, what: str) -> None:
    for key in entry:
        if key not in allowed:
            raise fail(at + (key,), f"unknown field {key!r} in {what}", f"{what} takes: {', '.join(sorted(allowed))}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def warnings_of(document: Any) -> list[str]:
    """The warnings the API server returns for a NetworkPolicy document (a yamlsource.Document), as
    `file:line: field: text`; an invalid manifest has none here (the loader reports its error)."""
    found: list[str] = []
    if not is_network_policy(document.data):
        return found
    try:
        network_policy(document.data, (), document.error, "",
                       lambda path, text: found.append(str(document.error(path, text))))
    except TopologyError:
        return []
    return found
