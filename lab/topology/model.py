"""The immutable topology model that every dataplane module plans from."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


def frozen_labels(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of a label map."""
    return MappingProxyType(dict(labels or {}))


@dataclass(frozen=True)
class Network:
    """An underlay L2 segment: one switch, one subnet, one gateway on the lab's router."""

    name: str
    cidr: IPv4Network
    gateway: IPv4Address
    mtu: int = 1500


@dataclass(frozen=True)
class Node:
    """A Kubernetes node: one network namespace with eth0 on an underlay segment."""

    name: str
    network: str
    ip: IPv4Address
    labels: Mapping[str, str] = field(default_factory=frozen_labels)
    pod_cidr: IPv4Network | None = None


@dataclass(frozen=True)
class Namespace:
    """A Kubernetes namespace and its labels (always with kubernetes.io/metadata.name)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=frozen_labels)


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's containers declare, as in the Kubernetes Pod spec."""

    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    """A pod: one network namespace wired to its node by the CNI."""

    name: str
    namespace: str
    node: str
    labels: Mapping[str, str] = field(default_factory=frozen_labels)
    container_ports: tuple[ContainerPort, ...] = ()
    ip: IPv4Address | None = None

    @property
    def key(self) -> str:
        """The pod's `namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class FlannelBackend:
    """net-conf.json `Backend`."""

    type: str = "vxlan"
    vni: int = 1
    port: int = 0
    direct_routing: bool = False
    mtu: int = 0          # vxlan `MTU`: replaces the external interface's MTU; 0 = use eth0's


@dataclass(frozen=True)
class FlannelConfig:
    """flannel's net-conf.json, with flanneld's defaults filled in."""

    network: IPv4Network
    subnet_len: int = 24
    backend: FlannelBackend = field(default_factory=FlannelBackend)
    ip_masq: bool = True
    source: str = "default"


@dataclass(frozen=True)
class Cluster:
    """The cluster's CNI and its settings."""

    cni: str
    flannel: FlannelConfig | None = None


@dataclass(frozen=True)
class Topology:
    """A whole lab: underlay, nodes, namespaces, pods and the CNI configuration."""

    name: str
    source: str
    cluster: Cluster
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    notes: tuple[str, ...] = ()
    static_neighbours: str = "auto"   # auto | static | dynamic

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)
