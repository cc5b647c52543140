"""What `lab graph` draws, as plain data: built from the topology model and, for a running lab, from the
kernel (tunnels and routes) and BIRD (BGP session states).

The model never imports matplotlib; `lab/graph/draw.py` turns it into a figure. How a data plane's nodes
reach each other comes from its folder (the registration's `graph` module: `edges`, and optionally
`pod_cidrs` and `role`), imported when a graph is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.topology import dataplanes
from lab.topology.model import Topology

SESSION_STATES_UNKNOWN = dataplanes.CONFIGURED


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
    mode, edges = _edges(topology, sessions)
    edges += _router_edges(topology, sessions)     # ExaBGP routers (`routers:`), whatever the CNI
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


def _hook(topology: Topology, name: str) -> Callable[..., Any] | None:
    """The data plane's graph hook `name` (its folder's graph.py), or None when it has none."""
    record = dataplanes.get(topology.cluster.cni)
    if record.graph is None:
        return None
    return getattr(record.module(record.graph), name, None)


def _pod_cidrs(topology: Topology, node: str) -> tuple[str, ...]:
    hook = _hook(topology, "pod_cidrs")
    if hook is not None:
        return tuple(hook(topology, node))
    cidr = topology.node(node).pod_cidr
    return (str(cidr),) if cidr else ()


def _role(topology: Topology, node: str) -> str:
    hook = _hook(topology, "role")
    return str(hook(topology, node)) if hook is not None else ""


def _edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> tuple[str, list[Edge]]:
    """The data plane's node-to-node edges and mode caption; none (every path via the underlay) without a hook."""
    hook = _hook(topology, "edges")
    if hook is None:
        return f"{topology.cluster.cni} (node to node through the underlay)", []
    mode, rows = hook(topology, sessions)
    return str(mode), [Edge(*row) for row in rows]


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
