"""The data-plane registry: one `DataPlane` record per CNI, declared once in its own folder.

Each data plane is a package under lab/cni/ (`lab/cni/flannel/`, `lab/cni/calico/`) whose `__init__.py`
holds its single registration, `DATAPLANE = DataPlane(...)`. `PACKAGES` below lists those packages: adding
a data plane is a new folder plus one line here. Everything else derives from the records: the topology
schema's `cluster.cni` enum and its `cluster.<cni>` settings, `cluster.networkPolicy`'s allowed values,
the loader's dispatch, which manifests a topology and `lab apply` accept, `lab status` lines, readiness,
and the runtime hooks (lab/cni/__init__.py).

Why this module lives in lab/topology and not in lab/cni: the loader needs the *pure* half of each
record (the config parser, the schema fragment, the enforcers), and lab/cni imports lab/topology (plans
are functions of the model). Were the loader to import lab/cni, the two packages would import each
other. So the topology layer defines the record and finds the packages by name (`importlib`), and a
package's `__init__` may import only its pure modules (config parsing, no substrate, no runtime). The
runtime half (plan builder, daemons, live changes, readiness, status) is named by module, relative to
the package, and imported only when first used (`DataPlane.module`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.topology.entries import PodEntry
    from lab.topology.model import DataPlaneConfig, Node, Pod
    from lab.topology.yamlsource import Path

# What a data plane's graph hook (`DataPlane.graph`: `edges`) gives `lab graph` per node-to-node edge: the fields of
# lab/graph/model.py's Edge, (a, b, kind, label) or (a, b, kind, label, state, role); kind is vxlan | ipip | direct
# | refused | bgp. CONFIGURED is a BGP session's state when read from the topology, not from a running daemon.
EdgeRow = tuple[str, str, str, str] | tuple[str, str, str, str, str, str]
CONFIGURED = "configured"


def weaker_state(earlier: str | None, state: str) -> str:
    """A BGP session seen from both ends: Established only when both ends say so."""
    if earlier is None or earlier == "Established":
        return state
    return earlier

# The data planes, in the order the schema lists them. One line per data plane.
PACKAGES = (
    "lab.cni.flannel",
    "lab.cni.calico",
    "lab.cni.terway",
)


class ClusterBuilder(Protocol):
    """What a data plane's config parser gives the loader: node checks, then IPAM over nodes and pods."""

    notes: list[str]     # what `lab up` prints about choices made (e.g. a default configuration)

    @property
    def node_labels(self) -> Mapping[str, Mapping[str, str]] | None:
        """Labels the data plane's own manifests give nodes (Calico's Node), by node name."""

    def check_pod_cidr(self, cidr: Any, path: Path, labels: Mapping[str, str]) -> None:
        """Refuse a node's `podCIDR` this data plane cannot use (TopologyError naming `path`)."""

    def build(self, nodes: tuple[Node, ...], requests: list[PodEntry]) -> tuple[tuple[Node, ...], tuple[Pod, ...],
                                                                             DataPlaneConfig]:
        """Nodes (with pod CIDRs), pods (with addresses) and the cluster's data-plane config."""


@dataclass(frozen=True)
class DataPlane:
    """One CNI: its pure descriptors, and where its runtime half lives."""

    name: str                                   # the `cluster.cni` value
    package: str                                # e.g. "lab.cni.calico"
    builder: Callable[..., ClusterBuilder]
    """Config parsing + IPAM, pure: `(data, overlay, fail, items, networks)` (lab/topology/entries.py) -> builder."""
    enforcers: tuple[str, ...]                  # allowed `cluster.networkPolicy`; the first is the default
    enforcer_hint: str                          # what to do when another networkPolicy is given
    schema: Mapping[str, Any] | None = None     # the `cluster.<name>` settings' JSON schema, if any
    kindless: Callable[[Any], bool] = lambda data: False    # a resource without `kind` it accepts
    resource: Callable[[Any, str], bool] = lambda item, cni: False
    """Whether a topology resource (a loader Item) is this data plane's; raises TopologyError when it is but
    cannot be used (a Calico kind with `cni: flannel`, a kube-flannel-cfg without net-conf.json)."""
    resource_help: str = ""                     # its resources, for "resource kind X is not supported"
    live: Callable[[Any], bool] = lambda data: False       # a manifest `lab apply` hands to this data plane
    live_kinds: frozenset[str] = frozenset()    # the kinds of those manifests
    live_help: str = ""                         # the same, for "cannot be applied live"
    api_group: str = ""                         # the API group of `live_kinds` (kubectl's `<kind>.<group>/<name>`)
    implicit_kinds: frozenset[str] = frozenset()    # live kinds that exist without a manifest (Calico's Node)
    live_held: Callable[[Any], Mapping[str, Any]] = lambda config: {}
    """What a running lab's config keeps across a live change: entries.Overlay's fields (e.g. held_pools)."""
    live_view: Callable[[Any, str, str], Any] = lambda config, kind, name: None
    """The model object a (kind, name) manifest of `live_kinds` became in the config, or None."""
    ipip_unused: Callable[[Any], str | None] = lambda config: "it makes no IPIP device"
    """Why options.ipipImplementation has no effect on a cluster config, or None when IPIP is in use."""
    ipip_devices: tuple[str, ...] = ()          # its IPIP tunnel devices (what `lab trace` follows as IPIP)
    node_daemons: Callable[[Any], int] = lambda config: 0
    """How many routing daemons each node runs with this config (Calico's BIRD), for the memory estimate; each
    one learns (and the route agent installs) a route to every other node's block."""
    # The runtime half: module names under `package`, imported when first used.
    plan: str = "plan"          # plan(topology, caps) -> LabPlan; describe(topology, caps) -> dict
    runtime: str = "runtime"    # tools(topology); start(topology, caps, store); reconfigure(...) if live
    ready: str | None = None    # checks: a readiness.DataplaneChecks (None: the plan is all there is)
    status: str = "status"      # lines(status); node_lines(node) if any -> the `lab status` lines
    caption: str | None = None  # route_programming(topology), datapath(topology, ipip): figure captions
    explain: str | None = None  # no_route(walker, last, packet, node): why `lab trace` found no route
    graph: str | None = None    # edges(topology, sessions), pod_cidrs, role: what `lab graph` draws

    def module(self, part: str) -> ModuleType:
        """`<package>.<part>`, imported now (the runtime half is never imported by the topology layer)."""
        return importlib.import_module(f"{self.package}.{part}")


@lru_cache(maxsize=1)
def registry() -> dict[str, DataPlane]:
    """Every data plane by `cni` name, in `PACKAGES` order."""
    found: dict[str, DataPlane] = {}
    for package in PACKAGES:
        record = importlib.import_module(package).DATAPLANE
        found[record.name] = record
    return found


def names() -> list[str]:
    return list(registry())


def get(name: str) -> DataPlane:
    try:
        return registry()[name]
    except KeyError:
        raise LabError(f"no dataplane for CNI {name!r}", f"supported: {', '.join(sorted(registry()))}") from None


def enforcers() -> list[str]:
    """Every `cluster.networkPolicy` value some data plane allows, in registry order."""
    seen: list[str] = []
    for record in registry().values():
        seen += [e for e in record.enforcers if e not in seen]
    return seen


def ipip_devices() -> tuple[str, ...]:
    """Every data plane's IPIP tunnel devices."""
    return tuple(device for record in registry().values() for device in record.ipip_devices)


def live_kinds() -> set[str]:
    """The manifest kinds some data plane takes live (`lab apply`), besides NetworkPolicy."""
    return {kind for record in registry().values() for kind in record.live_kinds}
