"""Which nodes learn which nodes' routes over the BGP sessions a Calico configuration implies.

A session exists between two lab nodes when each one's bird.cfg has a `protocol bgp` for the other
(a one-sided peering never reaches Established). A route then travels by BGP's own rules:
- a node advertises its own routes to every peer;
- a route learned over iBGP is passed to another iBGP peer only by a route reflector, when either
  peer is one of its clients (RFC 4456), and never back into a cluster whose ID is already on the
  route's cluster list;
- eBGP (different AS numbers on the two ends) always passes routes on, except to an AS already on
  the AS path.
Peers outside the lab (a BGPPeer to an address no lab node has) are left out: nothing answers there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address

import lab.cni.calico.config as calico_config
import lab.cni.calico.peers as peers
from lab.topology.model import Topology


@dataclass(frozen=True)
class Session:
    """A session as one end sees it: the peer node, BIRD's protocol name for it, and whether that peer
    is this end's route-reflector client."""

    peer: str
    protocol: str
    peer_is_client: bool


def sessions(topology: Topology) -> dict[str, dict[str, Session]]:
    """Node -> {peer node -> session}, for the mutual sessions between lab nodes only."""
    by_ip: dict[IPv4Address, str] = {n.ip: n.name for n in topology.nodes}
    configured = {node: {by_ip[p.ip]: p for p in peerings if p.ip in by_ip}
                  for node, peerings in peers.peerings(topology).items()}
    return {node: {peer: Session(peer, peering.name, peering.rr_cluster_id is not None)
                   for peer, peering in mine.items() if node in configured.get(peer, {})}
            for node, mine in configured.items()}


def one_sided(topology: Topology) -> list[str]:
    """Peerings to lab nodes that the other node does not configure back (they never establish)."""
    by_ip = {n.ip: n.name for n in topology.nodes}
    configured = {node: {by_ip[p.ip]: p for p in peerings if p.ip in by_ip}
                  for node, peerings in peers.peerings(topology).items()}
    return [f"{node} -> {peer} ({peering.name})" for node, mine in configured.items()
            for peer, peering in mine.items() if node not in configured.get(peer, {})]


State = tuple[str, "str | None", frozenset[str], frozenset[int]]   # node, learned from, cluster list, AS path


def learners(topology: Topology) -> dict[str, set[str]]:
    """Origin node -> the other nodes that learn its routes."""
    calico = calico_config.of(topology)
    assert calico is not None, "BGP propagation is a Calico question"
    graph = sessions(topology)
    as_of = {n.name: peers.node_as(calico, n) for n in calico.nodes}
    cluster_of = {n.name: n.rr_cluster_id for n in calico.nodes}
    return {origin: _spread(origin, graph, as_of, cluster_of) for origin in graph}


def _spread(origin: str, graph: dict[str, dict[str, Session]], as_of: dict[str, int],
            cluster_of: dict[str, str | None]) -> set[str]:
    """Breadth-first over (node, learned from, cluster list, AS path) states."""
    start: State = (origin, None, frozenset(), frozenset({as_of[origin]}))
    seen: set[State] = {start}
    queue: deque[State] = deque([start])
    reached: set[str] = set()
    while queue:
        node, source, clusters, path = queue.popleft()
        for peer, session in graph.get(node, {}).items():
            if peer == source or peer == origin:
                continue
            ebgp = as_of[peer] != as_of[node]
            if source is not None and not _passes_on(node, source, session, graph, as_of):
                continue
            if ebgp and as_of[peer] in path:
                continue
            reflected = source is not None and not ebgp and as_of[source] == as_of[node]
            own_cluster = cluster_of[node]
            new_clusters = clusters | {own_cluster} if reflected and own_cluster else clusters
            if cluster_of[peer] is not None and cluster_of[peer] in new_clusters:
                continue
            state: State = (peer, node, new_clusters, path | {as_of[peer]})
            if state not in seen:
                seen.add(state)
                reached.add(peer)
                queue.append(state)
    return reached


def _passes_on(node: str, source: str, to: Session, graph: dict[str, dict[str, Session]],
               as_of: dict[str, int]) -> bool:
    """Whether `node` advertises a route it learned from `source` to the peer of session `to`."""
    if as_of[source] != as_of[node] or as_of[to.peer] != as_of[node]:
        return True
    return graph[node][source].peer_is_client or to.peer_is_client
