"""Why a packet has no route, from what the kernel (and BIRD) report at the time of the trace.

- host-gw across segments: the kernel routes the far node's IP through the router (`ip route get`),
  and refuses flannel's route `<pod subnet> via <node IP> dev eth0` (the route is tried with
  NLM_F_EXCL: the refusal changes nothing; were it accepted, it is deleted at once);
- Calico BGP: the node's BIRD says which sessions are up and whether it holds a route for the
  destination (`show protocols`, `show route for`);
- a Calico blackhole for the node's own block; the underlay router, which knows only the lab's segments.
"""

from __future__ import annotations

from typing import Any, Protocol

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
        summary = view.summary
        if summary.get("cni") == "flannel":
            lines += _hostgw_refused(walker, last, owner[2]["node"])
        elif summary.get("cni") == "calico" and summary.get("runtime", {}).get("bird"):
            lines += _bgp(walker, last, packet)
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


def _node_row(walker: Walker, name: str) -> dict[str, Any]:
    return next((n for n in walker.view.summary.get("nodes", []) if n["name"] == name), {})


def _hostgw_refused(walker: Walker, last: Hop, pod_node: str) -> list[str]:
    """flannel host-gw: is the far node on this node's link? The kernel's own answers."""
    row = _node_row(walker, pod_node)
    if not row.get("ip") or not row.get("subnet"):
        return []
    ns = walker.kernel.ns(last.netns)
    gateway, subnet = row["ip"], row["subnet"]
    reach = ns.route_get(gateway)
    lines = []
    if reach.gateway:
        lines.append(f"the kernel of {last.where} reaches {pod_node}'s IP {gateway} only through a gateway "
                     f"(`{reach.entry}`, via {reach.gateway}): {gateway} is on none of its links "
                     f"({walker.cmd(last.netns, 'ip', 'route', 'get', gateway)})")
    eth0 = ns.link_named("eth0")
    if eth0 is None:
        return lines
    refusal = ns.try_route(subnet, gateway, eth0.index)
    route = f"{subnet} via {gateway} dev eth0"
    if refusal:
        lines.append(f"so the kernel refuses the host-gw route `{route}` that flanneld would add: {refusal} "
                     "(tried just now; the gateway of a route must be on a directly connected network)")
        lines.append(f"host-gw needs every node on one L2 segment; use vxlan, or vxlan with DirectRouting, "
                     f"across segments ({walker.cmd(last.netns, 'ip', 'route', 'add', route)} shows the refusal)")
    else:
        lines.append(f"the kernel accepts `{route}` (tried just now, and removed again), yet it is not installed: "
                     "is flanneld's sync done?")
    return lines


def _bgp(walker: Walker, last: Hop, packet: Packet) -> list[str]:
    """Calico: what the node's BIRD says about its sessions and the destination's route."""
    from lab.bgp import birdc
    from lab.cni.calico import peers
    node = last.where[len("node "):]
    if walker.view.bird_socket is None:
        return []
    sock = walker.view.bird_socket(node)
    try:
        states = birdc.established(sock, timeout=2.0)
        route = birdc.command(sock, f"show route for {packet.dst}", timeout=2.0).strip()
    except (OSError, birdc.BirdError) as exc:
        return [f"BIRD on {node} does not answer ({exc}): without BIRD no BGP route is learned "
                f"({walker.lab_cmd('status')} lists the daemons)"]
    by_ip = {row["ip"]: row["name"] for row in walker.view.summary.get("nodes", [])}
    sessions = [f"{p.name} ({by_ip.get(str(p.ip), p.ip)}) {states.get(p.name, 'absent')}"
                for p in peers.peerings(walker.topology).get(node, ())]
    down = [s for s in sessions if not s.endswith(" Established")]
    names = tuple(f"[{p.name} " for p in peers.peerings(walker.topology).get(node, ()))
    learned = [line.strip() for line in route.splitlines() if any(n in line for n in names)]
    best = route.splitlines()[-1].strip() if route and "not found" not in route.lower() else ""
    lines = [f"BIRD on {node} has no BGP route for {packet.dst}" + (f" (its best match: `{best}`)" if best else "")
             if not learned else f"BIRD on {node} learned `{learned[0]}` over BGP, but the kernel has no such route "
             "(is BIRD's kernel protocol exporting it?)"]
    lines.append(f"its BGP sessions: {', '.join(sessions) or 'none'}" + (
        f"; not Established: {', '.join(s.split(' (')[0] for s in down)}" if down else ""))
    lines.append(f"see them: {walker.lab_cmd('calicoctl', 'node', 'status', node)} and "
                 f"{walker.lab_cmd('birdc', node, 'show', 'route', 'for', packet.dst)}")
    return lines
