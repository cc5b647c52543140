"""The data planes' runtime half: each CNI's plan builder, daemons, live changes, readiness and status
lines, found through the registry (lab/topology/dataplanes.py) and imported when first used.

Each data plane is a folder here (lab/cni/flannel/, lab/cni/calico/) whose `__init__.py` registers it;
the modules beside them are shared: underlay.py (switches and router), bridge_plugin.py (the CNI bridge +
host-local plugins), ipip.py (IPIP devices on the implementation the kernel allows), tunnel.py and
routeagent.py (the userspace tunnel and the agent that serves it), identity.py (derived MACs and names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from lab.topology import dataplanes
from lab.topology.model import Topology

if TYPE_CHECKING:
    from lab.netns.capabilities import Capabilities
    from lab.netns.plan import LabPlan
    from lab.netns.state import StateStore
    from lab.readiness import DataplaneChecks


@dataclass(frozen=True)
class Dataplane:
    """A CNI's runtime entry points, as its registration names them."""

    plan: Callable[[Topology, Capabilities | None], LabPlan]
    describe: Callable[[Topology, Capabilities | None], dict[str, Any]]
    tools: Callable[[Topology], list[str]]
    status_lines: Callable[[dict[str, Any]], list[str]]                # `lab status` lines about the data plane
    node_lines: Callable[[dict[str, Any]], list[str]]                  # `lab status` lines about one node
    start: Callable[[Topology, Capabilities, StateStore], dict[str, Any]] | None = None   # daemons after apply
    reconfigure: Callable[[Topology, Topology, StateStore, dict[str, Any]], list[str]] | None = None  # live
    checks: DataplaneChecks | None = None     # what `lab up` / `lab wait` wait for, beyond the plan


@cache
def resolve(name: str) -> Dataplane:
    """The runtime hooks of the data plane registered as `name` (imports its plan, runtime, ready, status)."""
    record = dataplanes.get(name)
    planner = record.module(record.plan)
    runtime = record.module(record.runtime)
    ready = record.module(record.ready) if record.ready else None
    status = record.module(record.status)
    return Dataplane(plan=planner.plan, describe=planner.describe, tools=getattr(runtime, "tools", lambda t: []),
                     status_lines=status.lines, node_lines=getattr(status, "node_lines", lambda node: []),
                     start=getattr(runtime, "start", None),
                     reconfigure=getattr(runtime, "reconfigure", None), checks=ready.checks if ready else None)


def dataplane(topology: Topology) -> Dataplane:
    return resolve(topology.cluster.cni)


def plan(topology: Topology, caps: Capabilities | None = None) -> LabPlan:
    """The plan of `topology` by its cluster's CNI, for a kernel with `caps` (a guess when None)."""
    return dataplane(topology).plan(topology, caps)


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    """Start the CNI's daemons once the plan is applied; what they are goes into `lab status`."""
    hook = dataplane(topology).start
    return hook(topology, caps, store) if hook else {}


def status_lines(status: dict[str, Any]) -> list[str]:
    """The `lab status` lines about a lab's data plane, from its recorded status."""
    return resolve(status["cni"]).status_lines(status)


def node_status_lines(status: dict[str, Any], node: dict[str, Any]) -> list[str]:
    """The `lab status` lines about one node of a lab (a row of `status["nodes"]`), by its data plane."""
    return resolve(status["cni"]).node_lines(node)
