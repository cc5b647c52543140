"""Live BGP session states of a running lab, for `lab graph` (asked of each node's BIRD)."""

from __future__ import annotations

from typing import Callable

from lab.bgp import birdc, peers
from lab.topology.model import Topology


def sessions(topology: Topology, socket_of: Callable[[str], str]) -> dict[tuple[str, str], str]:
    """(node, peer node) -> BGP state as the node's BIRD reports it ('Down' when BIRD does not answer)."""
    calico = topology.cluster.calico
    if calico is None or calico.backend != "bird":
        return {}
    by_ip = {str(n.ipv4_address.ip): n.name for n in calico.nodes}
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
                found[(node, other)] = found[(other, node)] = _worse(found.get((other, node)), state)
    return found


def _worse(earlier: str | None, state: str) -> str:
    """A session is Established only when both ends say so."""
    if earlier is None or earlier == "Established":
        return state
    return earlier
