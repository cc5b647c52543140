"""How Terway's nodes reach each other, as `lab graph` draws it (lab/graph/model.py calls `edges`)."""

from __future__ import annotations

from collections.abc import Mapping

from lab.topology.dataplanes import EdgeRow
from lab.topology.model import Topology


def edges(topology: Topology, sessions: Mapping[tuple[str, str], str] | None) -> tuple[str, list[EdgeRow]]:
    """No node-to-node edge: every pod path between nodes crosses the VPC router (the underlay)."""
    return f"terway {getattr(topology.cluster.config, 'mode', '?')} (via the VPC router)", []
