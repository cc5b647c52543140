"""What `lab apply` / `lab delete` need to know of Calico's resources on a running lab (pure: the
registration in __init__.py names these functions, so the loader may import this module)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab.topology.model import BGPPeer, CalicoConfig, CalicoNode, IPPool

API_GROUP = "projectcalico.org"
IMPLICIT_KINDS = frozenset({"Node", "IPPool"})   # calico/node creates a Node per node, and the default pool if none


def held(calico: CalicoConfig) -> Mapping[str, Any]:
    """What a reload keeps of the running lab (entries.Overlay's fields): tunnel addresses, and each pool as it
    runs (its cidr and blockSize cannot change)."""
    return {"held_tunnels": dict(calico.ipam.tunnel_ips), "held_pools": {p.name: p for p in calico.pools}}


def view(calico: CalicoConfig, kind: str, name: str) -> Any:
    """The model object a (kind, name) Calico manifest became, or None."""
    if kind == "BGPConfiguration":
        return calico.bgp if name == "default" else None
    found: dict[str, tuple[IPPool | BGPPeer | CalicoNode, ...]] = {
        "IPPool": calico.pools, "BGPPeer": calico.peers, "Node": calico.nodes}
    return next((item for item in found.get(kind, ()) if item.name == name), None)
