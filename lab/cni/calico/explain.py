"""Why `lab trace` found no route on a Calico lab (lab/trace/explain.py calls `no_route`)."""

from __future__ import annotations

from typing import Any


def no_route(walker: Any, last: Any, packet: Any, pod_node: str) -> list[str]:
    """(`walker`: lab/trace/explain.py's Walker; `last`: the last node Hop; `packet`: the trace's Packet.)
    With BIRD: what the node's BIRD says about its sessions and the destination's route."""
    if not walker.view.summary.get("runtime", {}).get("bird"):
        return []
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
