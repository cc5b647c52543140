"""A trace as text that reads like the seed's walkthrough, each fact followed by the command that shows it."""

from __future__ import annotations

from lab.trace.model import Trace

LABELS = {"route": "route", "neighbour": "neighbour", "fdb": "fdb", "bridge": "bridge", "encap": "encap",
          "decap": "decap", "nat": "nat", "policy": "policy", "deliver": "delivered", "drop": "DROPPED",
          "link": "link"}


def text(trace: Trace, mode: str = "") -> str:
    out = [f"lab trace {trace.src.name} -> {trace.dst.name}: {trace.packet.text()}" + (f" ({mode})" if mode else "")]
    if trace.verdict:
        v = trace.verdict
        out.append(f"policy (reference evaluator): {'allowed' if v['allowed'] else 'DENIED'} - egress {v['egress']}, "
                   f"ingress {v['ingress']}")
    out.append("")
    for number, hop in enumerate(trace.hops, 1):
        ways = []
        if hop.iif:
            ways.append(f"in {hop.iif}")
        if hop.oif:
            ways.append(f"out {hop.oif}")
        out.append(f"{number}. {hop.where} [{hop.netns}]" + (f"  {', '.join(ways)}" if ways else ""))
        if hop.packet:
            out.append(f"   packet   {hop.packet}")
        for step in hop.steps:
            out.append(f"   {LABELS.get(step.kind, step.kind):<9} {step.text}")
            if step.command:
                out.append(f"   {'':<9} $ {step.command}")
        out.append("")
    if trace.outcome == "delivered":
        out.append(f"result: delivered to {trace.dst.name} ({trace.dst.ip}) after {len(trace.hops)} hops"
                   + (f"; {trace.reason}" if trace.reason else ""))
    else:
        out.append(f"result: DROPPED at hop {len(trace.hops)}: {trace.reason}")
        out += [f"  why: {line}" for line in trace.explanation]
    if trace.observed:
        out.append("")
        out += observed_text(trace)
    return "\n".join(out) + "\n"


def observed_text(trace: Trace) -> list[str]:
    observed = trace.observed
    out = [f"capture: one real {trace.packet.protocol} packet, tcpdump on {len(observed['interfaces'])} interfaces "
           f"({observed.get('implementation', 'tcpdump')})"]
    for row in observed["interfaces"]:
        seen = row["seen"]
        mark = "seen" if seen else "NOT seen"
        if row.get("beyond_drop"):
            mark = "SEEN past the drop" if seen else "not seen (past the drop, as predicted)"
        out.append(f"  {mark:<8} {row['netns']} {row['iface']}" + (f": {seen}" if seen else ""))
    if observed.get("last_seen"):
        out.append(f"  last seen: {observed['last_seen']}")
    if observed.get("differences"):
        out += [f"  difference: {d}" for d in observed["differences"]]
    else:
        out.append("  predicted and observed paths agree")
    if observed.get("pcap"):
        out.append(f"  merged pcap: {observed['pcap']}, {observed['pcap_packets']} packets, {observed['pcap_format']} "
                   f"(tcpdump -r {observed['pcap']} -nn -e; Wireshark shows each frame's interface)")
    return out
