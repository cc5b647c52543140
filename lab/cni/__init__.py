"""Dataplane modules, one per CNI: each turns a Topology into a LabPlan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lab.cni import flannel
from lab.errors import LabError
from lab.netns.plan import LabPlan
from lab.topology.model import Topology


@dataclass(frozen=True)
class Dataplane:
    """A CNI's two entry points: its plan, and what `lab status` says about its settings."""

    plan: Callable[[Topology], LabPlan]
    describe: Callable[[Topology], dict[str, Any]]


DATAPLANES: dict[str, Dataplane] = {
    "flannel": Dataplane(plan=flannel.plan, describe=flannel.describe),
}


def dataplane(topology: Topology) -> Dataplane:
    try:
        return DATAPLANES[topology.cluster.cni]
    except KeyError:
        raise LabError(f"no dataplane for CNI {topology.cluster.cni!r}",
                       f"supported: {', '.join(sorted(DATAPLANES))}") from None


def plan(topology: Topology) -> LabPlan:
    """The plan of `topology` by its cluster's CNI."""
    return dataplane(topology).plan(topology)
