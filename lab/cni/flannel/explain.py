"""Why `lab trace` found no route on a flannel lab (lab/trace/explain.py calls `no_route`)."""

from __future__ import annotations

from typing import Any


def no_route(walker: Any, last: Any, packet: Any, pod_node: str) -> list[str]:
    """(`walker`: lab/trace/explain.py's Walker; `last`: the last node Hop; `packet`: the trace's Packet.)
    flannel host-gw: is the far node on this node's link? The kernel's own answers."""
    row: dict[str, Any] = next((n for n in walker.view.summary.get("nodes", []) if n["name"] == pod_node), {})
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
