"""What `lab graph` reads from a running lab: tunnels and node-to-node routes from each node's kernel
(VXLAN FDB entries, routes via tunl0 or straight to another node), and BGP session states from each
node's BIRD. The drawing then says which parts are live and which come from the topology file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.graph.model import Edge
from lab.topology import dataplanes
from lab.topology.model import Topology


def sessions(topology: Topology, socket_of: Callable[[str], str]) -> dict[tuple[str, str], str]:
    """(node, peer node) -> BGP state as the node's routing daemon reports it: the data plane's graph hook
    `sessions` (Calico's BIRD, with its nodes' sessions to routers), and the sessions between ExaBGP routers."""
    record = dataplanes.get(topology.cluster.cni)
    hook = getattr(record.module(record.graph), "sessions", None) if record.graph else None
    found = dict(hook(topology, socket_of)) if hook is not None else {}
    found.update(_router_sessions(topology))
    return found


def _router_sessions(topology: Topology) -> dict[tuple[str, str], str]:
    """(router, peer router) -> Established when the router's namespace holds the TCP session on port 179."""
    from lab.bgp import router_ready
    from lab.netns import names, namespace
    pairs = [(r, p) for r in topology.routers for p in r.peers if p.kind == "router" and p.name]
    if not pairs:
        return {}
    held = dict(zip([r.name for r in topology.routers],
                    namespace.run_in_each([names.node_netns(topology.name, r.name) for r in topology.routers],
                                          lambda _: router_ready.established_peers()), strict=True))
    found: dict[tuple[str, str], str] = {}
    for router, peer in pairs:
        state = "Established" if peer.ip in held[router.name] else "Down"
        assert peer.name is not None
        found[(router.name, peer.name)] = found[(peer.name, router.name)] = dataplanes.weaker_state(
            found.get((peer.name, router.name)), state)
    return found


def kernel_edges(summary: dict[str, Any]) -> list[Edge]:
    """Node-to-node tunnels and routes as each node's kernel holds them: a VXLAN FDB entry whose dst is
    another node (`bridge fdb show dev flannel.1`), a route via tunl0 to another node (IPIP), or a route
    straight to another node's IP on eth0 (host-gw, Calico BGP). An edge held by one end only says so."""
    from lab.trace.kernel import Kernel  # pyroute2: loaded only to graph a running lab
    nodes = summary.get("nodes", [])
    by_ip = {row["ip"]: row["name"] for row in nodes}
    seen: dict[tuple[str, str, str], tuple[str, set[str]]] = {}     # (a, b, kind) sorted -> (label, holders)
    kernel = Kernel()
    try:
        for row in nodes:
            ns = kernel.ns(row["netns"])
            for other, kind, label in _node_edges(ns, by_ip):
                if other == row["name"]:
                    continue
                a, b = sorted((row["name"], other))
                entry = seen.setdefault((a, b, kind), (label, set()))
                entry[1].add(row["name"])
    finally:
        kernel.close()
    edges = []
    for (a, b, kind), (label, holders) in sorted(seen.items()):
        state = "" if len(holders) == 2 else f"only {next(iter(holders))} holds it"
        edges.append(Edge(a, b, kind, label, state=state))
    return edges


def _node_edges(ns: Any, by_ip: dict[str, str]) -> list[tuple[str, str, str]]:
    found = []
    tunnels = set(dataplanes.ipip_devices())      # tunl0, flannel.ipip
    links = ns.links()
    for link in links.values():
        if link.kind == "vxlan" and link.vxlan:
            label = f"VNI {link.vxlan.get('vni')} UDP {link.vxlan.get('port') or 8472}"
            for _mac, dst, _port in ns.fdb(ifindex=link.index):
                if dst in by_ip:
                    found.append((by_ip[dst], "vxlan", label))
    for _dst, gateway, oif, proto in ns.routes():
        link = links.get(oif) if oif is not None else None
        if gateway not in by_ip or link is None:
            continue
        if link.name in tunnels:
            found.append((by_ip[gateway], "ipip", "IP proto 4"))
        elif link.name == "eth0":
            found.append((by_ip[gateway], "direct", f"via eth0, proto {proto}"))
    return found
