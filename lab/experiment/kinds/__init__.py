"""The registry of measurement kinds: one module per kind in this package, each defining `KIND`.

A kind declares its parameters (`SCHEMA`, JSON-schema properties with defaults), the tools it
needs, an estimate of its duration (for the progress bar), and `measure`, which runs one
repetition on one pair (or on the whole lab when `pair_based` is False) and returns values.
Adding a kind is adding one module here.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lab.topology.model import Pod, Topology

# Debian package of each tool, for the hint of a missing-tool error.
PACKAGES = {"iperf3": "iperf3", "sockperf": "sockperf", "ping": "iputils-ping", "tcpdump": "tcpdump",
            "ip": "iproute2", "ss": "iproute2", "netperf": "netperf", "birdc": "bird", "iptables-save": "iptables",
            "ipset": "ipset"}


@dataclass(frozen=True)
class Value:
    """One measured value of one repetition."""

    metric: str
    value: float
    unit: str
    param: str = ""
    param_value: str = ""


@dataclass
class Endpoint:
    """A pod taking part in a measurement, with where it runs."""

    pod: Pod
    netns: str
    node: str
    node_netns: str
    node_ip: str

    @property
    def ip(self) -> str:
        return str(self.pod.ip)


@dataclass
class PairContext:
    """What a kind needs to measure one pair in one lab. `implementations` is filled by the kind
    (e.g. {"latency_tool": "sockperf"}) and ends in environment.json under the mode. A kind adds to
    `untimed_s` the time its tool spent outside its measuring window (sockperf's start-up and warm-up):
    the runner counts it as tool set-up, not as measurement time."""

    lab: str
    topology: Topology
    placement: str
    src: Endpoint
    dst: Endpoint
    tools: dict[str, str]
    implementations: dict[str, str] = field(default_factory=dict)
    timings: list[float] = field(default_factory=list)
    note: Callable[[str], None] = lambda text: None
    untimed_s: float = 0.0      # seconds of the current repetition a tool spent outside its measuring window
    servers: dict[str, Any] = field(default_factory=dict)   # the session's servers (proc.Server), by tool

    @property
    def pair(self) -> str:
        return f"{self.src.pod.key}->{self.dst.pod.key}"

    def has(self, tool: str) -> bool:
        return tool in self.tools


@dataclass
class LabContext:
    """What a kind that owns its lab's lifecycle (`owns_lab`) gets: it brings the lab up and down itself
    (through `up` and `down`, which the runner tracks, so an interrupted run still takes it down), and
    may record time series (`timeline`)."""

    lab: str
    topology: Topology
    up: Callable[[], float]
    down: Callable[[], float]
    timeline: Callable[[str, float, float, str], None]
    implementations: dict[str, str] = field(default_factory=dict)
    note: Callable[[str], None] = lambda text: None
    endpoints: Callable[[str], tuple[Endpoint, Endpoint]] | None = None   # placement -> the experiment's pair
    placement: str = ""          # set by a kind that measures a pair: written into its samples
    pair: str = ""


class Kind:
    """Base of every measurement kind; subclasses override what differs.

    `owns_lab`: the kind brings the mode's lab up and down itself in every repetition (it measures
    `lab up` itself); `measure` then gets a LabContext instead of a PairContext."""

    id: str = ""
    pair_based: bool = True
    owns_lab: bool = False
    serve_http: bool = False                 # the experiment pods need the lab's probe server on TCP 80
    placements: tuple[str, ...] = ()         # the placements the kind measures by default (empty: all)
    caveat: str = ""                         # what its figures include that a real cluster's would not
    SCHEMA: dict[str, Any] = {}

    def with_defaults(self, params: dict[str, Any]) -> dict[str, Any]:
        filled = {key: spec["default"] for key, spec in self.SCHEMA.items() if "default" in spec}
        filled.update(params)
        return filled

    def check(self, params: dict[str, Any]) -> tuple[str, str, str] | None:
        """A problem the schema cannot express: (key, message, hint), or None."""
        return None

    def check_topology(self, topology: Topology, params: dict[str, Any]) -> str | None:
        """Why the kind cannot measure this topology (checked before anything runs), or None."""
        return None

    def tools(self, params: dict[str, Any]) -> list[str]:
        """Tools that must be on PATH."""
        return []

    def optional_tools(self, params: dict[str, Any]) -> list[str]:
        """Tools used when present (the kind has a fallback and records which ran)."""
        return []

    def estimate(self, params: dict[str, Any]) -> float:
        """Seconds one repetition takes on one pair (for the progress bar's ETA)."""
        return 1.0

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[None]:
        """Set-up around all repetitions of one pair (servers in the destination pod); stopped on exit."""
        return contextlib.nullcontext()

    def measure(self, ctx: Any, params: dict[str, Any]) -> list[Value]:
        """One repetition: a PairContext for pair kinds, a LabContext for `owns_lab` kinds."""
        raise NotImplementedError


@lru_cache(maxsize=1)
def registry() -> dict[str, Kind]:
    """Every kind in this package, by id."""
    found: dict[str, Kind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, Kind):
            found[kind.id] = kind
    return found


def iter_kinds() -> Iterator[Kind]:
    yield from registry().values()
