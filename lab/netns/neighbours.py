"""Static neighbour entries for big labs: the host's ARP table is shared by every namespace.

The kernel keeps one IPv4 neighbour table for all network namespaces, and refuses new dynamic
entries once it holds `net.ipv4.neigh.default.gc_thresh3` of them (1024 by default; only the
host can change it, and the lab never changes the host). Permanent entries do not count. A lab
whose L2 segments could need more dynamic entries than fit gets permanent ones instead, for
every pair of addresses on each segment (underlay switches and cni0 bridges); a lab that fits
keeps the dynamic ARP a real cluster has. The choice is recorded and shown by `lab status`.

Static entries grow with the square of a segment's size, so the lab plans at most
MAX_STATIC_NEIGHBOURS of them (each costs the kernel a few hundred bytes, and the plan a small
object) and refuses a bigger lab before building anything, saying which segment is too big. The
loader keeps segments bounded (kubelet's maxPods, 110 by default, caps a cni0 bridge), which makes
the static plan linear in pods: at most maxPods + 1 entries per pod.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from lab.errors import LabError
from lab.netns.plan import LabPlan, NamespacePlan, Neighbour

GC_THRESH3 = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"
DEFAULT_GC_THRESH3 = 1024
MAX_STATIC_NEIGHBOURS = 500_000


@dataclass(frozen=True)
class Endpoint:
    """An address on an L2 segment, with the MAC that answers for it."""

    netns: str
    dev: str
    ip: ipaddress.IPv4Interface
    mac: str


@dataclass(frozen=True)
class Decision:
    mode: str          # "dynamic" | "static"
    demand: int        # dynamic entries the lab could need if every neighbour talked
    limit: int         # the host's gc_thresh3
    reason: str

    def as_dict(self) -> dict:
        return {"mode": self.mode, "demand": self.demand, "host_gc_thresh3": self.limit, "reason": self.reason}


def host_limit(path: str = GC_THRESH3) -> int:
    """The host's gc_thresh3 (read only)."""
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return DEFAULT_GC_THRESH3


def segments(plan: LabPlan) -> list[list[Endpoint]]:
    """Every bridge's L2 segment: the bridge's own addresses and those of the far ends of its ports."""
    addresses: dict[tuple[str, str], list[str]] = {}
    for ns in plan.namespaces:
        for address in ns.addresses:
            addresses.setdefault((ns.name, address.dev), []).append(address.cidr)
    result = []
    for ns in plan.namespaces:
        for bridge in (link for link in ns.links if link.kind == "bridge"):
            members = [(ns.name, bridge.name, bridge.mac)]
            members += [(link.peer.netns, link.peer.name, link.peer.mac) for link in ns.links
                        if link.kind == "veth" and link.master == bridge.name and link.peer]
            result.append([Endpoint(netns, dev, ipaddress.IPv4Interface(cidr), mac)
                           for netns, dev, mac in members if mac
                           for cidr in addresses.get((netns, dev), [])])
    return result


def demand(plan: LabPlan) -> int:
    return sum(len(segment) * (len(segment) - 1) for segment in segments(plan))


def decide(plan: LabPlan, setting: str, limit: int) -> Decision:
    """`setting` is auto, static or dynamic; auto goes static when demand exceeds half the host's limit."""
    needed = demand(plan)
    if setting == "static" or (setting != "dynamic" and needed > limit // 2):
        _check_static_size(plan, needed)
    if setting == "static":
        return Decision("static", needed, limit, "static neighbours requested by the topology")
    if setting == "dynamic":
        return Decision("dynamic", needed, limit, "dynamic ARP requested by the topology")
    if needed > limit // 2:
        return Decision("static", needed, limit,
                        f"up to {needed} ARP entries could be needed, but the host's shared neighbour table takes "
                        f"only {limit} dynamic ones (net.ipv4.neigh.default.gc_thresh3), so they are permanent; "
                        f"raise gc_thresh3 on the host or set options.staticNeighbours: false to keep them dynamic")
    return Decision("dynamic", needed, limit, f"dynamic ARP, as in a real cluster ({needed} entries at most; "
                    f"this host's shared table takes {limit}, net.ipv4.neigh.default.gc_thresh3)")


def _check_static_size(plan: LabPlan, needed: int) -> None:
    """Refuse, before planning them, more static entries than MAX_STATIC_NEIGHBOURS."""
    if needed <= MAX_STATIC_NEIGHBOURS:
        return
    biggest = max(segments(plan), key=len)
    where = f"{biggest[0].dev} in {biggest[0].netns}" if biggest else "?"
    raise LabError(f"this lab needs {needed:,} static neighbour entries (one per pair of addresses on each L2 "
                   f"segment; the biggest, {where}, has {len(biggest):,} addresses), and the lab plans at most "
                   f"{MAX_STATIC_NEIGHBOURS:,}: the kernel would need hundreds of MB for them",
                   "put fewer pods on each node (cluster.maxPods) or fewer nodes on each network; or raise "
                   "net.ipv4.neigh.default.gc_thresh3 on the host and set options.staticNeighbours: false")


def with_static_neighbours(plan: LabPlan) -> LabPlan:
    """`plan` plus a permanent entry, in each endpoint's namespace, for every other endpoint of its segment."""
    extra: dict[str, list[Neighbour]] = {}
    for segment in segments(plan):
        texts = [str(endpoint.ip.ip) for endpoint in segment]   # one string per address, shared by its entries
        for mine in segment:
            for other, text in zip(segment, texts):
                if other is not mine and other.ip.ip in mine.ip.network and other.ip.ip != mine.ip.ip:
                    extra.setdefault(mine.netns, []).append(Neighbour(mine.dev, text, other.mac))
    namespaces = tuple(_add(ns, extra.get(ns.name, [])) for ns in plan.namespaces)
    return replace(plan, namespaces=namespaces)


def _add(ns: NamespacePlan, neighbours: list[Neighbour]) -> NamespacePlan:
    if not neighbours:
        return ns
    return replace(ns, neighbours=ns.neighbours + tuple(neighbours))
