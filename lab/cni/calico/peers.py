"""Which BGP sessions each node's BIRD gets: Calico confd's peer computation (v3.28).

Two stages, as in confd:

1. `peer_keys` is `client.go: updatePeersV1`. It turns the BGPPeer resources into the
   `/bgp/v1/global/peer_v4/<ip>` and `/bgp/v1/host/<node>/peer_v4/<ip>` keys: a global pass (BGPPeers
   without node/nodeSelector), a node-specific pass, then the automatic reverse peerings. The first
   value written for a key wins, and a node-specific key is dropped when a global key for that IP
   exists. `peerSelector` expands to the BGP IPs of the matching Calico nodes (`nodeAsBGPPeers`).
   confd keeps BGPPeers in a Go map, so its pass order is random; the lab takes them by name.
2. `entries` is `bird.cfg.template`: for one node, the keys it walks in each section (mesh hosts by
   name, then global keys, then node keys, both in key order, as confd's memkv sorts them) and what
   it makes of each: a `Peering`, or a "# Skipping ..." comment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import lab.cni.calico.config as calico_config
from lab.model import calico_selector
from lab.topology.model import BGPPeer, CalicoConfig, CalicoNode, Topology

IPv4Address = ipaddress.IPv4Address

KINDS = ("mesh", "global", "node")
MESH_SOURCE = "node-to-node mesh"


@dataclass(frozen=True)
class Peering:
    """One `protocol bgp` block of a node's bird.cfg."""

    name: str                    # Mesh_192_168_10_72, Node_..., Global_...
    kind: str                    # mesh | node | global
    ip: IPv4Address
    as_number: int
    passive: bool
    rr_cluster_id: str | None    # this node's cluster ID when `rr client; rr cluster id X;` is emitted
    source: str                  # why the session exists: a BGPPeer name or "node-to-node mesh"


@dataclass(frozen=True)
class PeerValue:
    """The JSON value confd stores under a peer_v4 key (the fields the template reads)."""

    ip: IPv4Address
    as_number: int
    rr_cluster_id: str           # the peer node's cluster ID; "" for non-reflectors and external peers
    calico_node: bool            # peerIP is a Calico node's address (global peers may then be passive)
    source: str


@dataclass(frozen=True)
class PeerKeys:
    """All peer_v4 keys confd writes: global ones, and node-specific ones per node."""

    global_peers: Mapping[IPv4Address, PeerValue]
    node_peers: Mapping[str, Mapping[IPv4Address, PeerValue]]


@dataclass(frozen=True)
class Entry:
    """One key the template walks for a node: the peering it renders, or why it skips the key."""

    key: str                     # e.g. /bgp/v1/host/k8s-node2/ip_addr_v4
    peering: Peering | None
    skipped: str | None = None   # e.g. "Skipping ourselves (192.168.10.71)"


def node_as(calico: CalicoConfig, node: CalicoNode) -> int:
    """The node's AS number: its own, else the BGPConfiguration's."""
    return node.as_number if node.as_number is not None else calico.bgp.as_number


def protocol_name(prefix: str, ip: IPv4Address) -> str:
    """`Mesh_192_168_10_72` and friends."""
    return f"{prefix}_{str(ip).replace('.', '_')}"


def _ip(node: CalicoNode) -> IPv4Address:
    return node.ipv4_address.ip


class _Matcher:
    """The Calico nodes by name, and selector matching over them with each selector parsed once."""

    def __init__(self, topology: Topology, calico: CalicoConfig) -> None:
        self.by_name = {n.name: n for n in calico.nodes}
        self.labels = {n.name: topology.node(n.name).labels for n in calico.nodes}
        self.parsed: dict[str, calico_selector.Selector] = {}

    def nodes(self, text: str) -> list[str]:
        """Names of the Calico nodes the selector matches (confd's nodesMatching)."""
        if text not in self.parsed:
            self.parsed[text] = calico_selector.parse(text)
        return [name for name, labels in self.labels.items() if self.parsed[text].matches(labels)]


class _Emitter:
    """confd's `emit`: first value per key wins; no node key where a global key has the IP."""

    def __init__(self) -> None:
        self.global_peers: dict[IPv4Address, PeerValue] = {}
        self.node_peers: dict[str, dict[IPv4Address, PeerValue]] = {}

    def global_peer(self, value: PeerValue) -> None:
        self.global_peers.setdefault(value.ip, value)

    def node_peer(self, node: str, value: PeerValue) -> None:
        if value.ip not in self.global_peers:
            self.node_peers.setdefault(node, {}).setdefault(value.ip, value)


def _node_as_peer(calico: CalicoConfig, match: _Matcher, name: str, source: str) -> list[PeerValue]:
    """confd's nodeAsBGPPeers (IPv4): the node's BGP address, AS and cluster ID."""
    node = match.by_name.get(name)
    if node is None:
        return []
    return [PeerValue(ip=_ip(node), as_number=node_as(calico, node), rr_cluster_id=node.rr_cluster_id or "",
                      calico_node=False, source=source)]


def _forward_peers(calico: CalicoConfig, match: _Matcher, peer: BGPPeer) -> list[PeerValue]:
    """The remote end(s) a BGPPeer names: its peerSelector's nodes, or its peerIP."""
    if peer.peer_selector:
        return [value for name in match.nodes(peer.peer_selector)
                for value in _node_as_peer(calico, match, name, peer.name)]
    if peer.peer_ip is None:
        return []
    as_number = peer.as_number if peer.as_number is not None else calico.bgp.as_number
    return [PeerValue(ip=peer.peer_ip, as_number=as_number, rr_cluster_id="",
                      calico_node=any(_ip(n) == peer.peer_ip for n in calico.nodes), source=peer.name)]


def _is_global(peer: BGPPeer) -> bool:
    """A BGPPeer without node or nodeSelector applies to every node as a global peer."""
    return not peer.node and not peer.node_selector


def _local_nodes(match: _Matcher, peer: BGPPeer) -> list[str]:
    """The nodes a BGPPeer applies to (node or nodeSelector)."""
    if peer.node_selector:
        return match.nodes(peer.node_selector)
    return [peer.node] if peer.node else []


def _nodes_with_ip_and_as(calico: CalicoConfig, peer: BGPPeer) -> list[str]:
    """confd's nodesWithIPPortAndAS: the Calico nodes a peerIP BGPPeer points at."""
    wanted = peer.as_number if peer.as_number is not None else calico.bgp.as_number
    return [n.name for n in calico.nodes if _ip(n) == peer.peer_ip and node_as(calico, n) == wanted]


def peer_keys(topology: Topology) -> PeerKeys:
    """confd's updatePeersV1: every peer_v4 key and its value."""
    calico = calico_config.of(topology)
    match = _Matcher(topology, calico)
    emitter = _Emitter()
    bgp_peers = sorted(calico.peers, key=lambda p: p.name)
    for global_pass in (True, False):
        for peer in bgp_peers:
            if global_pass != _is_global(peer):
                continue
            for value in _forward_peers(calico, match, peer):
                if global_pass:
                    emitter.global_peer(value)
                else:
                    for local in _local_nodes(match, peer):
                        emitter.node_peer(local, value)
    for peer in bgp_peers:
        reverse_on = (match.nodes(peer.peer_selector) if peer.peer_selector
                      else _nodes_with_ip_and_as(calico, peer))
        if not reverse_on:
            continue
        remote = match.nodes("all()") if _is_global(peer) else _local_nodes(match, peer)
        source = f"{peer.name} (automatic reverse peering)"
        for value in (v for name in remote for v in _node_as_peer(calico, match, name, source)):
            for local in reverse_on:
                emitter.node_peer(local, value)
    return PeerKeys(
        global_peers=MappingProxyType(dict(sorted(emitter.global_peers.items(), key=lambda kv: str(kv[0])))),
        node_peers=MappingProxyType({
            node: MappingProxyType(dict(sorted(values.items(), key=lambda kv: str(kv[0]))))
            for node, values in sorted(emitter.node_peers.items())}))


def mesh_mode(calico: CalicoConfig, node: CalicoNode) -> str:
    """What the template's mesh section does on this node: reflector | disabled | enabled."""
    if node.rr_cluster_id:
        return "reflector"
    return "enabled" if calico.bgp.node_to_node_mesh else "disabled"


def _mesh_entries(calico: CalicoConfig, me: CalicoNode) -> tuple[Entry, ...]:
    """The mesh section: one entry per Calico node, by host name."""
    if mesh_mode(calico, me) != "enabled":
        return ()
    entries = []
    for other in sorted(calico.nodes, key=lambda n: n.name):
        key = f"/bgp/v1/host/{other.name}/ip_addr_v4"
        if _ip(other) == _ip(me):
            entries.append(Entry(key, None, f"Skipping ourselves ({_ip(me)})"))
        elif other.rr_cluster_id:
            entries.append(Entry(key, None, f"Skipping {_ip(other)} ({other.name}) as it is a route reflector "
                                            f"with cluster ID {other.rr_cluster_id}"))
        else:
            entries.append(Entry(key, Peering(
                name=protocol_name("Mesh", _ip(other)), kind="mesh", ip=_ip(other),
                as_number=node_as(calico, other), passive=str(_ip(other)) > str(_ip(me)),
                rr_cluster_id=None, source=MESH_SOURCE)))
    return tuple(entries)


def _explicit_entry(calico: CalicoConfig, me: CalicoNode, kind: str, key: str, value: PeerValue) -> Entry:
    """A global or node-specific key: the template's peering block, or the self-skip."""
    if value.ip == _ip(me):
        return Entry(key, None, f"Skipping ourselves ({_ip(me)})")
    own_as = node_as(calico, me)
    cluster_id = me.rr_cluster_id or ""
    rr_client = value.as_number == own_as and cluster_id != "" and value.rr_cluster_id != cluster_id
    passive = kind == "global" and value.calico_node and str(value.ip) > str(_ip(me))
    return Entry(key, Peering(
        name=protocol_name("Global" if kind == "global" else "Node", value.ip), kind=kind, ip=value.ip,
        as_number=value.as_number, passive=passive, rr_cluster_id=cluster_id if rr_client else None,
        source=value.source))


def entries(topology: Topology, node: str, keys: PeerKeys | None = None) -> dict[str, tuple[Entry, ...]]:
    """The template's walk for one node: kind (mesh, global, node) -> its entries in order."""
    calico = calico_config.of(topology)
    keys = keys if keys is not None else peer_keys(topology)
    me = calico.node(node)
    return {
        "mesh": _mesh_entries(calico, me),
        "global": tuple(_explicit_entry(calico, me, "global", f"/bgp/v1/global/peer_v4/{ip}", value)
                        for ip, value in keys.global_peers.items()),
        "node": tuple(_explicit_entry(calico, me, "node", f"/bgp/v1/host/{node}/peer_v4/{ip}", value)
                      for ip, value in keys.node_peers.get(node, {}).items()),
    }


def peerings(topology: Topology) -> dict[str, tuple[Peering, ...]]:
    """Node name -> its BGP sessions, in bird.cfg order (mesh, global, node-specific)."""
    keys = peer_keys(topology)
    result = {}
    for calico_node in calico_config.of(topology).nodes:
        walk = entries(topology, calico_node.name, keys)
        result[calico_node.name] = tuple(e.peering for kind in KINDS for e in walk[kind] if e.peering)
    return result
