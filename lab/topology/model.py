"""The immutable topology model that every dataplane module plans from."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar

from lab.model.network_policy import NetworkPolicy
from lab.topology.impair import ImpairSpec

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


K = TypeVar("K")
V = TypeVar("V")


def frozen_labels(labels: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only copy of a label map (or of any map)."""
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
class External:
    """A host outside the cluster, on an underlay network: the seeds' external CIDRs (ipBlock peers)."""

    name: str
    network: str
    ip: IPv4Address
    container_ports: tuple[ContainerPort, ...] = ()
    gateway: IPv4Address | None = None    # its default route's next hop; None: the network's gateway

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class RouterLink:
    """A further interface of an external router (eth1, eth2, ...) on another underlay network."""

    network: str
    ip: IPv4Address


@dataclass(frozen=True)
class RouterPeer:
    """One BGP session of an external router: a node, another router, or a bare address."""

    ip: IPv4Address
    as_number: int
    local_ip: IPv4Address        # the router's own address the session runs from
    name: str | None = None      # the node or router it names; None for a bare address
    kind: str = "address"        # node | router | address


@dataclass(frozen=True)
class Router:
    """An external BGP router (a ToR, an edge router): an ExaBGP speaker in its own namespace."""

    name: str
    network: str
    ip: IPv4Address
    as_number: int
    announce: tuple[IPv4Network, ...] = ()
    peers: tuple[RouterPeer, ...] = ()
    links: tuple[RouterLink, ...] = ()
    hold_time: int = 180         # ExaBGP's default; the session uses the smaller of both ends' offers
    monitor_ip: IPv4Address | None = None   # where `lab bgp monitor` peers from, on the router's network

    def addresses(self) -> tuple[tuple[str, IPv4Address], ...]:
        """(network, address) of every interface, eth0 first."""
        return ((self.network, self.ip),) + tuple((link.network, link.ip) for link in self.links)


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
    kind: Literal["flannel"] = "flannel"      # the tag of DataPlaneConfig


@dataclass(frozen=True)
class IPPool:
    """projectcalico.org/v3 IPPool (spec fields the lab models)."""

    name: str
    cidr: IPv4Network
    block_size: int = 26
    ipip_mode: str = "Never"          # Always | CrossSubnet | Never
    vxlan_mode: str = "Never"         # Always | CrossSubnet | Never
    nat_outgoing: bool = False
    node_selector: str = "all()"
    disabled: bool = False


@dataclass(frozen=True)
class BGPConfiguration:
    """projectcalico.org/v3 BGPConfiguration `default`."""

    node_to_node_mesh: bool = True
    as_number: int = 64512
    log_severity: str = "Info"


@dataclass(frozen=True)
class BGPPeer:
    """projectcalico.org/v3 BGPPeer: an explicit peering (global without node/nodeSelector)."""

    name: str
    peer_ip: IPv4Address | None = None
    as_number: int | None = None
    node: str | None = None
    node_selector: str | None = None
    peer_selector: str | None = None


@dataclass(frozen=True)
class CalicoNode:
    """projectcalico.org/v3 Node: the BGP settings calico/node reads for one node."""

    name: str
    ipv4_address: ipaddress.IPv4Interface      # spec.bgp.ipv4Address, e.g. 192.168.10.72/24
    as_number: int | None = None
    rr_cluster_id: str | None = None


@dataclass(frozen=True)
class CalicoIpam:
    """Calico IPAM's result: affine blocks per node and each node's tunnel address."""

    blocks: Mapping[str, tuple[IPv4Network, ...]] = field(default_factory=frozen_labels)
    tunnel_ips: Mapping[str, IPv4Address] = field(default_factory=frozen_labels)


@dataclass(frozen=True)
class CalicoConfig:
    """Calico's resources as the lab holds them, with Calico's defaults filled in."""

    backend: str = "bird"             # calico_backend: bird (BGP) | vxlan (Felix only, no BIRD)
    pools: tuple[IPPool, ...] = ()
    bgp: BGPConfiguration = field(default_factory=BGPConfiguration)
    peers: tuple[BGPPeer, ...] = ()
    nodes: tuple[CalicoNode, ...] = ()
    ipam: CalicoIpam = field(default_factory=CalicoIpam)
    kind: Literal["calico"] = "calico"        # the tag of DataPlaneConfig

    def node(self, name: str) -> CalicoNode:
        return next(n for n in self.nodes if n.name == name)


@dataclass(frozen=True)
class ENI:
    """An elastic network interface attached to a node: `eth<n>` in the node, its primary private IP (the
    VPC's, not configured on the device: Terway puts the node's IP there as a /32) and the pods whose
    secondary private IPs it holds, by `namespace/name`."""

    node: str
    device: str
    primary_ip: IPv4Address
    pods: tuple[str, ...] = ()

    @property
    def slot(self) -> int:
        """1 for eth1, 2 for eth2, ..."""
        return int(self.device[3:])


@dataclass(frozen=True)
class TerwayConfig:
    """Terway's mode and settings, and (ENIIP) every node's ENIs (lab/cni/terway parses and allocates them)."""

    mode: str = "eniip"
    datapath: str = "veth"
    max_enis: int = 3
    ips_per_eni: int = 10
    pod_cidr: IPv4Network | None = None           # VPC mode: the cluster's pod CIDR
    node_cidr_mask: int = 24
    enis: Mapping[str, tuple[ENI, ...]] = field(default_factory=frozen_labels)
    # `file:line` of the settings a run-time refusal names (datapath); not part of the lab's identity
    sources: Mapping[str, str] = field(default_factory=frozen_labels, compare=False, repr=False)
    kind: Literal["terway"] = "terway"        # the tag of DataPlaneConfig

    def enis_of(self, node: str) -> tuple[ENI, ...]:
        return self.enis.get(node, ())

    def eni_of_pod(self, node: str, pod_key: str) -> ENI:
        return next(eni for eni in self.enis_of(node) if pod_key in eni.pods)

    @property
    def pods_per_node(self) -> int:
        """ENIIP: the pod IPs a node's ENIs can hold (secondary IPs only; the primary IP is the ENI's own)."""
        return self.max_enis * (self.ips_per_eni - 1)


# A cluster's data-plane settings, tagged by `kind` (the `cluster.cni` value). A new data plane adds its
# config type here (lab/topology/dataplanes.py registers the rest).
DataPlaneConfig = FlannelConfig | CalicoConfig | TerwayConfig


@dataclass(frozen=True)
class Cluster:
    """The cluster's CNI, its settings, and what enforces NetworkPolicy (none | kube-router | calico)."""

    cni: str
    config: DataPlaneConfig
    enforcer: str = "none"


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
    policies: tuple[NetworkPolicy, ...] = ()
    externals: tuple[External, ...] = ()
    routers: tuple[Router, ...] = ()   # `routers:`: external BGP speakers (lab/topology/routers.py)
    notes: tuple[str, ...] = ()
    static_neighbours: str = "auto"   # auto | static | dynamic
    resources: frozenset[tuple[str, str]] = frozenset()   # (kind, name) of every manifest declared or applied
    impairments: tuple[ImpairSpec, ...] = ()   # `impair:` of networks and nodes (lab/topology/impair.py)
    warnings: tuple[str, ...] = ()    # what the API server would warn about, as `file:line: field: text`
    # `file:line` of entries the runtime's refusals name: "options.staticNeighbours", "networks.<name>",
    # "options.ipipImplementation",
    # "nodes.<name>" (not part of the lab's identity: no repr, no comparison)
    sources: Mapping[str, str] = field(default_factory=frozen_labels, compare=False, repr=False)
    ipip_implementation: str = "auto"          # options.ipipImplementation: auto | kernel | ebpf | userspace

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def namespace(self, name: str) -> Namespace:
        return next(n for n in self.namespaces if n.name == name)

    def pod(self, key: str) -> Pod:
        return next(p for p in self.pods if p.key == key)

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return self._pods_by_node.get(node, ())

    @functools.cached_property
    def _pods_by_node(self) -> dict[str, tuple[Pod, ...]]:
        """Pods per node, in pod order (built once: per-node loops over a big lab stay linear)."""
        found: dict[str, list[Pod]] = {}
        for pod in self.pods:
            found.setdefault(pod.node, []).append(pod)
        return {node: tuple(pods) for node, pods in found.items()}


C = TypeVar("C", bound=DataPlaneConfig)


def find_config(where: Topology | Cluster, kind: type[C]) -> C | None:
    """The data-plane config of a topology or cluster when it is a `kind`, else None (its CNI is another)."""
    cluster = where.cluster if isinstance(where, Topology) else where
    return cluster.config if isinstance(cluster.config, kind) else None


def config_of(where: Topology | Cluster, kind: type[C], cni: str) -> C:
    """The `kind` config of a topology or cluster whose CNI is `cni` (anything else is the caller's bug)."""
    config = find_config(where, kind)
    if config is None:
        raise TypeError(f"cni {where.cluster.cni if isinstance(where, Topology) else where.cni} is not {cni}")
    return config
