"""Dataplane modules, one per CNI: each turns a Topology into a LabPlan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lab.cni.calico import plan as calico
from lab.cni.calico import ready as calico_ready
from lab.cni.calico import runtime as calico_runtime
from lab.cni.flannel import plan as flannel
from lab.cni.flannel import runtime as flannel_runtime
from lab.errors import LabError
from lab.netns.capabilities import Capabilities
from lab.netns.plan import LabPlan
from lab.netns.state import StateStore
from lab.readiness import DataplaneChecks
from lab.topology.model import Topology


@dataclass(frozen=True)
class Dataplane:
    """A CNI's two entry points: its plan, and what `lab status` says about its settings."""

    plan: Callable[[Topology, Capabilities | None], LabPlan]
    describe: Callable[[Topology, Capabilities | None], dict[str, Any]]
    tools: Callable[[Topology], list[str]] = lambda topology: []
    start: Callable[[Topology, Capabilities, StateStore], dict[str, Any]] | None = None   # daemons after apply
    reconfigure: Callable[[Topology, Topology, StateStore, dict[str, Any]], list[str]] | None = None  # live changes
    checks: DataplaneChecks | None = None     # what `lab up` / `lab wait` wait for, beyond the plan


DATAPLANES: dict[str, Dataplane] = {
    "flannel": Dataplane(plan=flannel.plan, describe=flannel.describe, tools=flannel_runtime.tools,
                         start=flannel_runtime.start),
    "calico": Dataplane(plan=calico.plan, describe=calico.describe, tools=calico_runtime.tools,
                        start=calico_runtime.start, reconfigure=calico_runtime.reconfigure,
                        checks=calico_ready.checks),
}


def dataplane(topology: Topology) -> Dataplane:
    try:
        return DATAPLANES[topology.cluster.cni]
    except KeyError:
        raise LabError(f"no dataplane for CNI {topology.cluster.cni!r}",
                       f"supported: {', '.join(sorted(DATAPLANES))}") from None


def plan(topology: Topology, caps: Capabilities | None = None) -> LabPlan:
    """The plan of `topology` by its cluster's CNI, for a kernel with `caps` (a guess when None)."""
    return dataplane(topology).plan(topology, caps)


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    """Start the CNI's daemons once the plan is applied; what they are goes into `lab status`."""
    hook = dataplane(topology).start
    return hook(topology, caps, store) if hook else {}
