"""What `lab graph` draws, as plain data: built from the topology model and, for a running lab, from the
kernel (tunnels and routes) and BIRD (BGP session states).

The model never imports matplotlib; `lab/graph/draw.py` turns it into a figure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping

from lab.cni.calico import config as calico_config
from lab.cni.flannel import config as flannel_config
from lab.topology.model import Topology

SESSION_STATES_UNKNOWN = "configured"


@dataclass(frozen=True)
class Segment:
    """An underlay L2 segment (one switch) and its gateway on the lab's router."""

    name: str
    cidr: str
    gateway: str
    mtu: int


@dataclass(frozen=True)
class PodBox:
    key: str
    ip: str


@dataclass(frozen=True)
class NodeBox:
    """A node (or an external host) drawn as one box on its segment."""

    name: str
    segment: str
    ip: str
    pod_cidrs: tuple[str, ...] = ()
    pods: tuple[PodBox, ...] = ()
    external: bool = False
    role: str = ""            # "route reflector" for Calico reflectors; "AS <n>" for a router
    router: bool = False      # an external BGP router (`routers:`), drawn like an external host


@dataclass(frozen=True)
class Edge:
    """A node-to-node edge: a tunnel (vxlan, ipip), a direct route (host-gw), a refused route, or a BGP session."""

    a: str
    b: str
    kind: str                 # vxlan | ipip | direct | refused | bgp
    label: str = ""
    state: str = ""           # BGP: Established, Active, ... or "configured" (from a file); kernel: "" or a caveat
    role: str = ""            # BGP: mesh | reflector | peer


@dataclass(frozen=True)
class LabGraph:
    name: str
    mode: str
    segments: tuple[Segment, ...]
    nodes: tuple[NodeBox, ...]
    edges: tuple[Edge, ...]
    live: bool = False
    notes: tuple[str, ...] = field(default=())
    sources: tuple[str, ...] = ()     # where each part comes from, e.g. "tunnels and routes: each node's kernel"


def build(topology: Topology, sessions: Mapping[tuple[str, str], str] | None = None,
          kernel: list[Edge] | None = None) -> LabGraph:
    """The graph of `topology`. For a running lab, `kernel` holds the node-to-node tunnels and routes each
    node's kernel has (they replace the ones the topology implies; an implied one the kernel lacks becomes a
    `refused` edge), and `sessions` maps (node, peer node) to the BGP state BIRD reports."""
    segments = tuple(Segment(n.name, str(n.cidr), str(n.gateway), n.mtu) for n in topology.networks)
    boxes = [NodeBox(n.name, n.network, str(n.ip), _pod_cidrs(topology, n.name),
                     tuple(PodBox(p.key, str(p.ip)) for p in topology.pods_on(n.name)), role=_role(topology, n.name))
             for n in topology.nodes]
    boxes += [NodeBox(e.name, e.network, str(e.ip), external=True) for e in topology.externals]
    boxes += [NodeBox(r.name, r.network, str(r.ip), external=True, role=f"AS {r.as_number}", router=True)
              for r in topology.routers]
    if topology.cluster.cni == "flannel":
        mode, edges = _flannel_edges(topology)
    elif topology.cluster.cni == "terway":      # no node-to-node edge: every path crosses the VPC router
        mode, edges = f"terway {getattr(topology.cluster.config, 'mode', '?')} (via the VPC router)", []
    else:
        mode, edges = _calico_edges(topology, sessions)
    sources = []
    if kernel is not None:
        edges = _from_kernel(edges, kernel)
        sources.append("tunnels and routes: each node's kernel (FDB, routes)")
    if sessions is not None and any(e.kind == "bgp" for e in edges):
        sources.append("BGP states: each node's BIRD")
    if not sources:
        sources.append("everything from the topology file" + (" (lab not running)" if kernel is None else ""))
    elif any(e.kind == "bgp" for e in edges) and sessions is None:
        sources.append("BGP sessions: the topology")
    return LabGraph(topology.name, mode, segments, tuple(boxes), tuple(edges),
                    live=kernel is not None or sessions is not None, sources=tuple(sources))


def _from_kernel(implied: list[Edge], kernel: list[Edge]) -> list[Edge]:
    """The kernel's tunnels and routes, the BGP sessions, and a `refused` edge for each implied tunnel or
    route between two nodes that the kernel does not hold."""
    held = {frozenset((e.a, e.b)) for e in kernel}
    missing = [Edge(e.a, e.b, "refused", "no route or tunnel in the kernel", state="missing") for e in implied
               if e.kind in ("vxlan", "ipip", "direct", "refused") and frozenset((e.a, e.b)) not in held]
    return list(kernel) + missing + [e for e in implied if e.kind == "bgp"]


def _pod_cidrs(topology: Topology, node: str) -> tuple[str, ...]:
    calico = calico_config.find(topology)
    if calico is not None:
        return tuple(str(b) for b in calico.ipam.blocks.get(node, ()))
    cidr = topology.node(node).pod_cidr
    return (str(cidr),) if cidr else ()


def _role(topology: Topology, node: str) -> str:
    calico = calico_config.find(topology)
    if calico is None:
        return ""
    found = [n for n in calico.nodes if n.name == node]
    return "route reflector" if found and found[0].rr_cluster_id else ""


def _same_segment(topology: Topology, a: str, b: str) -> bool:
    return topology.node(a).network == topology.node(b).network


def _router_peers(topology: Topology) -> set[str]:
    """The nodes some router peers with."""
    return {p.name for r in topology.routers for p in r.peers if p.kind == "node" and p.name}


def _router_edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> list[Edge]:
    """A BGP edge per router session with a node or another router (each router pair once)."""
    edges = []
    seen: set[frozenset[str]] = set()
    for router in topology.routers:
        for peer in router.peers:
            if peer.name is None or frozenset((router.name, peer.name)) in seen:
                continue
            seen.add(frozenset((router.name, peer.name)))
            state = (sessions or {}).get((peer.name, router.name),
                                         SESSION_STATES_UNKNOWN if sessions is None else "absent")
            edges.append(Edge(peer.name, router.name, "bgp", "BGP peer", state=state, role="peer"))
    return edges


def _pairs(topology: Topology) -> list[tuple[str, str]]:
    return list(itertools.combinations([n.name for n in topology.nodes], 2))


def _flannel_edges(topology: Topology) -> tuple[str, list[Edge]]:
    config = flannel_config.find(topology)
    assert config is not None
    backend = config.backend
    mode = backend.type + ("+DirectRouting" if backend.direct_routing else "")
    edges = []
    port = backend.port or 8472
    for a, b in _pairs(topology):
        same = _same_segment(topology, a, b)
        if backend.type == "vxlan" and not (backend.direct_routing and same):
            edges.append(Edge(a, b, "vxlan", f"VNI {backend.vni} UDP {port}"))
        elif same:
            edges.append(Edge(a, b, "direct", "host-gw route"))
        else:
            edges.append(Edge(a, b, "refused", "route refused: no L2 adjacency"))
    return f"flannel {mode}", edges


def _calico_edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> tuple[str, list[Edge]]:
    from lab.cni.calico import peers  # the BGP peer computation (pure; imports only the model)
    calico = calico_config.find(topology)
    assert calico is not None
    edges: list[Edge] = []
    encap = [(p.ipip_mode, p.vxlan_mode) for p in calico.pools if not p.disabled]
    ipip = next((m for m, _ in encap if m != "Never"), "Never")
    vxlan = next((m for _, m in encap if m != "Never"), "Never")
    routed = _router_peers(topology)
    for a, b in _pairs(topology):
        same = _same_segment(topology, a, b)
        if not same and a in routed and b in routed and calico.backend == "bird" and (ipip, vxlan) == (
                "Never", "Never"):
            continue                        # their blocks travel through the routers, drawn as BGP sessions
        if ipip == "Always" or (ipip == "CrossSubnet" and not same):
            edges.append(Edge(a, b, "ipip", "IP proto 4"))
        elif vxlan == "Always" or (vxlan == "CrossSubnet" and not same):
            edges.append(Edge(a, b, "vxlan", "VNI 4096 UDP 4789"))
        elif calico.backend == "bird":      # BIRD's route to the node's block, via eth0: needs L2 adjacency
            edges.append(Edge(a, b, "direct", "via eth0, proto bird") if same else
                         Edge(a, b, "refused", "route refused: no L2 adjacency"))
    by_ip = {str(n.ipv4_address.ip): n.name for n in calico.nodes}
    seen: set[frozenset[str]] = set()
    if calico.backend == "bird":
        for node, sessions_of in peers.peerings(topology).items():
            for peering in sessions_of:
                other = by_ip.get(str(peering.ip))
                if other is None or frozenset((node, other)) in seen:
                    continue
                seen.add(frozenset((node, other)))
                role = "mesh" if peering.kind == "mesh" else (
                    "reflector" if peering.rr_cluster_id or _role(topology, other) else "peer")
                state = (sessions or {}).get((node, other), SESSION_STATES_UNKNOWN if sessions is None else "absent")
                edges.append(Edge(node, other, "bgp", f"BGP {role}", state=state, role=role))
    edges += _router_edges(topology, sessions)
    modes = [m for m, on in (("bgp", calico.backend == "bird"), (f"ipip {ipip}", ipip != "Never"),
                             (f"vxlan {vxlan}", vxlan != "Never")) if on]
    return "calico " + (" + ".join(modes) or "no routing"), edges
