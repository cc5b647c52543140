"""What a running lab offers Mininet: its members (pods, nodes, externals, underlay) and their ports.

Members come from the lab's recorded status; ports and veth pairs are read from the kernel (`ip -j`),
so `net`, `dump` and `links` show the lab as it is, not as it was planned.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

ROLES = ("pod", "node", "external", "underlay")
UNDERLAY = "underlay"


@dataclass(frozen=True)
class Member:
    """One namespace of the lab as a Mininet node: `name` as `lab status` shows it."""
    name: str
    netns: str
    role: str
    ip: str | None = None


@dataclass(frozen=True)
class Port:
    """An interface in a member's namespace (loopback excluded)."""
    netns: str
    name: str
    ifindex: int
    mac: str | None
    ip: str | None
    prefixlen: int | None
    peer_netns: str | None      # the namespace of a veth's other end, when it is a named namespace
    peer_ifindex: int | None


def members(summary: dict[str, Any]) -> list[Member]:
    """Pods (as namespace/pod), nodes, externals and the underlay of a `lab status` summary."""
    found = [Member(p["key"], p["netns"], "pod", p.get("ip")) for p in summary.get("pods", [])]
    found += [Member(n["name"], n["netns"], "node", n.get("ip")) for n in summary.get("nodes", [])]
    found += [Member(e["name"], e["netns"], "external", e.get("ip")) for e in summary.get("externals", [])]
    underlay = summary.get("underlay") or {}
    if underlay.get("netns"):
        gateways = [n.get("gateway") for n in underlay.get("networks", [])]
        found.append(Member(UNDERLAY, underlay["netns"], "underlay", gateways[0] if gateways else None))
    return found


def _ip_json(netns: str, *words: str) -> Any:
    done = subprocess.run(["ip", "-n", netns, "-j", *words], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"ip -n {netns} {' '.join(words)}: {done.stderr.strip()}")
    return json.loads(done.stdout or "[]")


def ports(member: Member) -> list[Port]:
    """The member's interfaces, the one carrying its lab address first (Mininet's default interface)."""
    nsids = {entry["nsid"]: entry.get("name") for entry in _ip_json(member.netns, "netns", "list-id")}
    found = []
    for link in _ip_json(member.netns, "addr", "show"):
        if link.get("ifname") == "lo":
            continue
        inet = [a for a in link.get("addr_info", []) if a.get("family") == "inet"]
        nsid = link.get("link_netnsid")
        found.append(Port(member.netns, link["ifname"], link["ifindex"], link.get("address"),
                          inet[0]["local"] if inet else None, inet[0]["prefixlen"] if inet else None,
                          nsids.get(nsid) if nsid is not None else None, link.get("link_index")))
    return sorted(found, key=lambda p: (p.ip is None or p.ip != member.ip, p.ifindex))


def veth_pairs(all_ports: list[Port]) -> list[tuple[Port, Port]]:
    """Pairs of ports that are the two ends of one veth, both in the lab's namespaces, each pair once."""
    by_key = {(p.netns, p.ifindex): p for p in all_ports}
    pairs = []
    for port in all_ports:
        if port.peer_netns is None or port.peer_ifindex is None:
            continue
        peer = by_key.get((port.peer_netns, port.peer_ifindex))
        if peer is None or (peer.peer_netns, peer.peer_ifindex) != (port.netns, port.ifindex):
            continue
        if (port.netns, port.ifindex) < (peer.netns, peer.ifindex):
            pairs.append((port, peer))
    return pairs
