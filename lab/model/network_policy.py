"""The NetworkPolicy model (networking.k8s.io/v1), immutable, with the API's defaults filled in.

Empty and missing fields keep their API meaning:
  * a rule's `peers` is () when `from`/`to` was missing or empty: the rule matches every peer;
  * a rule's `ports` is () when `ports` was missing or empty: the rule matches every port;
  * a peer's `pod_selector` / `namespace_selector` is None when the field was missing (not the same
    as {}: a peer with only namespaceSelector selects every pod of those namespaces; a peer with
    only podSelector selects pods of the policy's own namespace);
  * a policy with `policy_types` containing "Ingress" and no ingress rules denies all ingress.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.model.labels import LabelSelector

IPv4Network = ipaddress.IPv4Network

INGRESS, EGRESS = "Ingress", "Egress"
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class IPBlock:
    """An ipBlock peer: `cidr` minus every `except` range.

    `cidr` and `excepts` are the networks the values mean (host bits cleared, as the API server
    reads them); `written` and `excepts_written` keep the values as the manifest wrote them."""

    cidr: IPv4Network
    excepts: tuple[IPv4Network, ...] = ()
    written: str = ""
    excepts_written: tuple[str, ...] = ()

    def text(self) -> str:
        """The block as written: `cidr` or `cidr except a, b`."""
        cidr = self.written or str(self.cidr)
        excepts = self.excepts_written or tuple(str(e) for e in self.excepts)
        return f"{cidr} except {', '.join(excepts)}" if excepts else cidr


@dataclass(frozen=True)
class Peer:
    """A NetworkPolicyPeer: selectors (None when missing), or an ipBlock alone."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    """A NetworkPolicyPort: `port` is a number, a container port name, or None (every port)."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """An ingress (`from`) or egress (`to`) rule; empty peers or ports match everything."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    """A namespaced NetworkPolicy; `source` is `file:line` of its manifest, for messages."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: tuple[str, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    api_version: str = "networking.k8s.io/v1"
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def affects_ingress(self) -> bool:
        return INGRESS in self.policy_types

    @property
    def affects_egress(self) -> bool:
        return EGRESS in self.policy_types
