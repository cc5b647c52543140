"""Dataplane modules, one per CNI: each turns a Topology into a LabPlan."""

from __future__ import annotations

from typing import Callable

from lab.cni import flannel
from lab.errors import LabError
from lab.netns.plan import LabPlan
from lab.topology.model import Topology

Planner = Callable[[Topology], LabPlan]

DATAPLANES: dict[str, Planner] = {
    "flannel": flannel.plan,
}


def plan(topology: Topology) -> LabPlan:
    """The plan of `topology` by its cluster's CNI."""
    try:
        planner = DATAPLANES[topology.cluster.cni]
    except KeyError:
        raise LabError(f"no dataplane for CNI {topology.cluster.cni!r}",
                       f"supported: {', '.join(sorted(DATAPLANES))}") from None
    return planner(topology)
