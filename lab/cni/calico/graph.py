"""How Calico's nodes reach each other, as `lab graph` draws it (lab/graph/model.py calls `edges`,
`pod_cidrs` and `role`): the IPPools' encapsulation, BIRD's routes and the BGP sessions confd configures."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

from lab.bgp import birdc
from lab.cni.calico import config as calico_config
from lab.cni.calico import peers
from lab.topology import dataplanes
from lab.topology.dataplanes import CONFIGURED, EdgeRow
from lab.topology.model import CalicoConfig, Topology


def _config(topology: Topology) -> CalicoConfig:
    calico = calico_config.find(topology)
    if calico is None:
        raise ValueError(f"{topology.name}: not a Calico cluster")
    return calico


def pod_cidrs(topology: Topology, node: str) -> tuple[str, ...]:
    """The node's IPAM blocks."""
    return tuple(str(b) for b in _config(topology).ipam.blocks.get(node, ()))


def role(topology: Topology, node: str) -> str:
    found = [n for n in _config(topology).nodes if n.name == node]
    return "route reflector" if found and found[0].rr_cluster_id else ""


def edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> tuple[str, list[EdgeRow]]:
    calico = _config(topology)
    found: list[EdgeRow] = []
    encap = [(p.ipip_mode, p.vxlan_mode) for p in calico.pools if not p.disabled]
    ipip = next((m for m, _ in encap if m != "Never"), "Never")
    vxlan = next((m for _, m in encap if m != "Never"), "Never")
    routed = {p.name for r in topology.routers for p in r.peers if p.kind == "node" and p.name}  # peer a router
    for a, b in itertools.combinations([n.name for n in topology.nodes], 2):
        same = topology.node(a).network == topology.node(b).network
        if not same and a in routed and b in routed and calico.backend == "bird" and (ipip, vxlan) == (
                "Never", "Never"):
            continue                        # their blocks travel through the routers, drawn as BGP sessions
        if ipip == "Always" or (ipip == "CrossSubnet" and not same):
            found.append((a, b, "ipip", "IP proto 4"))
        elif vxlan == "Always" or (vxlan == "CrossSubnet" and not same):
            found.append((a, b, "vxlan", "VNI 4096 UDP 4789"))
        elif calico.backend == "bird":      # BIRD's route to the node's block, via eth0: needs L2 adjacency
            found.append((a, b, "direct", "via eth0, proto bird") if same else
                         (a, b, "refused", "route refused: no L2 adjacency"))
    by_ip = {str(n.ipv4_address.ip): n.name for n in calico.nodes}
    seen: set[frozenset[str]] = set()
    if calico.backend == "bird":
        for node, sessions_of in peers.peerings(topology).items():
            for peering in sessions_of:
                other = by_ip.get(str(peering.ip))
                if other is None or frozenset((node, other)) in seen:
                    continue
                seen.add(frozenset((node, other)))
                kind = "mesh" if peering.kind == "mesh" else (
                    "reflector" if peering.rr_cluster_id or role(topology, other) else "peer")
                state = (sessions or {}).get((node, other), CONFIGURED if sessions is None else "absent")
                found.append((node, other, "bgp", f"BGP {kind}", state, kind))
    modes = [m for m, on in (("bgp", calico.backend == "bird"), (f"ipip {ipip}", ipip != "Never"),
                             (f"vxlan {vxlan}", vxlan != "Never")) if on]
    return "calico " + (" + ".join(modes) or "no routing"), found


def sessions(topology: Topology, socket_of: Callable[[str], str]) -> dict[tuple[str, str], str]:
    """(node, peer node or router) -> BGP state as the node's BIRD reports it ('Down' when BIRD does not answer)."""
    calico = _config(topology)
    if calico.backend != "bird":
        return {}
    by_ip = {str(n.ipv4_address.ip): n.name for n in calico.nodes}
    routers = {str(ip): r.name for r in topology.routers for _, ip in r.addresses()}
    found: dict[tuple[str, str], str] = {}
    for node, sessions_of in peers.peerings(topology).items():
        try:
            states = birdc.established(socket_of(node), timeout=2.0)
        except (OSError, birdc.BirdError):
            states = {}
        for peering in sessions_of:
            other = by_ip.get(str(peering.ip))
            if other is not None:
                state = states.get(peering.name, "Down")
                found[(node, other)] = found[(other, node)] = dataplanes.weaker_state(found.get((other, node)), state)
            router = routers.get(str(peering.ip))
            if router is not None:
                found[(node, router)] = found[(router, node)] = states.get(peering.name, "Down")
    return found
