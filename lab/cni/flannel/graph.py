"""How flannel's nodes reach each other, as `lab graph` draws it (lab/graph/model.py calls `edges`)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from lab.cni.flannel import config as flannel_config
from lab.topology.dataplanes import EdgeRow
from lab.topology.model import Topology


def edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> tuple[str, list[EdgeRow]]:
    """vxlan: a tunnel per pair (DirectRouting: a route on one segment); host-gw: a route on one segment,
    refused across; ipip: `via <node> dev flannel.ipip onlink` to every node (DirectRouting: a route on one
    segment), reaching nodes across segments through the underlay router."""
    config = flannel_config.find(topology)
    if config is None:
        raise ValueError(f"{topology.name}: not a flannel cluster")
    backend = config.backend
    mode = backend.type + ("+DirectRouting" if backend.direct_routing else "")
    found: list[EdgeRow] = []
    port = backend.port or 8472
    for a, b in itertools.combinations([n.name for n in topology.nodes], 2):
        same = topology.node(a).network == topology.node(b).network
        direct = same and (backend.type == "host-gw" or backend.direct_routing)
        if direct:
            found.append((a, b, "direct", "host-gw route"))
        elif backend.type == "vxlan":
            found.append((a, b, "vxlan", f"VNI {backend.vni} UDP {port}"))
        elif backend.type == "ipip":
            found.append((a, b, "ipip", "IP proto 4"))
        else:
            found.append((a, b, "refused", "route refused: no L2 adjacency"))
    return f"flannel {mode}", found
