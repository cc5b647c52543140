"""Why a packet has no route, from what the kernel (and BIRD) report at the time of the trace.

What each data plane adds comes from its folder (the registration's `explain` module, `no_route`):
- host-gw across segments (lab/cni/flannel/explain.py): the kernel routes the far node's IP through the
  router (`ip route get`), and refuses flannel's route `<pod subnet> via <node IP> dev eth0` (the route is tried with
  NLM_F_EXCL: the refusal changes nothing; were it accepted, it is deleted at once);
- Calico BGP (lab/cni/calico/explain.py): the node's BIRD says which sessions are up and whether it holds
  a route for the destination (`show protocols`, `show route for`);
- a Calico blackhole for the node's own block; the underlay router, which knows only the lab's segments.
"""

from __future__ import annotations

from typing import Protocol

from lab.topology import dataplanes
from lab.topology.model import Topology
from lab.trace.kernel import Kernel, Link, Netns, RouteAnswer
from lab.trace.model import Hop, Packet, Trace
from lab.trace.view import LabView


class Walker(Protocol):
    """What an explanation reads of the path walker (lab/trace/path.py), which calls it."""

    view: LabView
    topology: Topology
    kernel: Kernel
    trace: Trace

    def cmd(self, netns: str, *words: str) -> str: ...

    def lab_cmd(self, *words: str) -> str: ...


def exits(ns: Netns, iif: Link | None) -> list[tuple[str, str]]:
    """Where a routed packet could leave `ns` (every other up interface with an IPv4 address): after a
    predicted no-route drop, a capture there must stay silent."""
    addressed = {index for _, _, index in ns.addresses()}
    return [(ns.name, link.name) for link in ns.links().values()
            if link.index in addressed and link.up and link.name != "lo" and (iif is None or link.index != iif.index)]


def no_route(walker: Walker, netns: str, packet: Packet, answer: RouteAnswer | None = None) -> list[str]:
    view = walker.view
    lines: list[str] = []
    if answer is not None and answer.type == "blackhole":
        lines.append(f"{answer.entry}: Calico's blackhole for this node's own block; the destination IP "
                     "is in the block but no workload has it here")
    owner = view.by_ip.get(packet.dst) or view.by_ip.get(walker.trace.dst.ip)
    node_hops = [h for h in walker.trace.hops if h.where.startswith("node ")]
    last = node_hops[-1] if node_hops else None
    if last is not None and owner is not None and owner[0] == "pod" and f"node {owner[2]['node']}" != last.where:
        lines += _left_by_default(walker, last, packet, owner[2]["node"])
        record = dataplanes.registry().get(str(view.summary.get("cni")))
        if record is not None and record.explain:
            lines += record.module(record.explain).no_route(walker, last, packet, owner[2]["node"])
    if not lines and view.kind(netns) == "underlay":
        lines.append(f"the lab's underlay router knows only the lab's segments (and, with external hosts, the pod "
                     f"subnets): {packet.dst} is outside the lab, which has no uplink")
    if not lines:
        lines.append(f"{view.where(netns)} has no route for {packet.dst}")
    return lines


def _left_by_default(walker: Walker, last: Hop, packet: Packet, pod_node: str) -> list[str]:
    used = next((s.data.get("route") for s in last.steps if s.kind == "route"), "")
    return [f"{last.where} sent {packet.dst} (a pod on {pod_node}) by `{used}`, not by a route for {pod_node}'s "
            "pod subnet, so it left towards the underlay router, which knows no pod subnets"]
