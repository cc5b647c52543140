"""Static neighbour entries for big labs: the host's ARP table is shared by every namespace.

The kernel keeps one IPv4 neighbour table for all network namespaces, and refuses new dynamic
entries once it holds `net.ipv4.neigh.default.gc_thresh3` of them (1024 by default; only the
host can change it, and the lab never changes the host). Permanent entries do not count. A lab
whose L2 segments could need more dynamic entries than fit gets permanent ones instead, for
every pair of addresses on each segment (underlay switches and cni0 bridges); a lab that fits
keeps the dynamic ARP a real cluster has. The choice is recorded and shown by `lab status`.

Static entries grow with the square of a segment's size. Before planning them, the lab estimates
the memory they need, KERNEL_BYTES_PER_ENTRY in the kernel (a permanent IPv4 neighbour: its slab
object and hash slot) plus PLAN_BYTES_PER_ENTRY in the lab's plan, both measured by
scripts/bench_neighbours.py, and refuses a lab whose estimate exceeds the machine's available
memory (MemAvailable in /proc/meminfo), saying which segment is biggest and what to change. The
loader keeps pod segments bounded (kubelet's maxPods, 110 by default, caps a cni0 bridge); an
underlay segment of n nodes needs about n^2 entries, which a real `lab up` programs (issue 17's
1000 nodes: about 1.1M entries, 0.7 GB).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from lab.errors import TopologyError
from lab.netns import names
from lab.netns.plan import LabPlan, NamespacePlan, Neighbour

GC_THRESH3 = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"
DEFAULT_GC_THRESH3 = 1024
MEMINFO = "/proc/meminfo"
KERNEL_BYTES_PER_ENTRY = 512    # slab growth per permanent entry, kernel 6.18 (scripts/bench_neighbours.py)
PLAN_BYTES_PER_ENTRY = 110      # the plan's Neighbour object per entry (tracemalloc, same script)
BYTES_PER_ENTRY = KERNEL_BYTES_PER_ENTRY + PLAN_BYTES_PER_ENTRY


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

    def as_dict(self) -> dict[str, Any]:
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
            found = [Endpoint(netns, dev, ipaddress.IPv4Interface(cidr), mac)
                     for netns, dev, mac in members if mac for cidr in addresses.get((netns, dev), [])]
            result.append(_first_holders(found))
    return result


def _first_holders(endpoints: list[Endpoint]) -> list[Endpoint]:
    """One endpoint per address: the first port that holds it answers for it (a Terway node carries its IP
    on eth0 and, as a /32, on its ENI too; the segment knows the node by eth0)."""
    seen: set[ipaddress.IPv4Address] = set()
    kept = []
    for endpoint in endpoints:
        if endpoint.ip.ip not in seen:
            seen.add(endpoint.ip.ip)
            kept.append(endpoint)
    return kept


def demand(plan: LabPlan) -> int:
    return sum(len(segment) * (len(segment) - 1) for segment in segments(plan))


def available_memory(path: str = MEMINFO) -> int | None:
    """MemAvailable in bytes (the kernel's estimate of memory usable without swapping), or None."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class Where:
    """Where the topology sets what a refusal is about: its file, and `file:line` of the option and of
    each network and node entry (from the loader), so that errors name the topology, not a namespace."""

    file: str = ""
    option: str = ""                                   # options.staticNeighbours, when written
    networks: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)


def decide(plan: LabPlan, setting: str, limit: int, available: int | None = None,
           where: Where | None = None) -> Decision:
    """`setting` is auto, static or dynamic; auto goes static when demand exceeds half the host's limit.
    Static entries are refused when their estimated memory exceeds `available` bytes."""
    needed = demand(plan)
    if setting == "static" or (setting != "dynamic" and needed > limit // 2):
        _check_static_size(plan, needed, available, where or Where(), setting)
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


def estimate(entries: int) -> int:
    """The bytes `entries` static neighbour entries need: the kernel's and the plan's."""
    return entries * BYTES_PER_ENTRY


def _check_static_size(plan: LabPlan, needed: int, available: int | None, where: Where, setting: str) -> None:
    """Refuse, before planning them, static entries whose estimated memory exceeds `available`."""
    if available is None or estimate(needed) <= available:
        return
    biggest = max(segments(plan), key=len)
    segment, at = _segment(plan.lab, biggest[0], where) if biggest else ("?", "")
    file, line = _split(where.option if setting == "static" and where.option else at, where.file or plan.lab)
    field_ = "options.staticNeighbours" if setting == "static" and where.option else segment
    raise TopologyError(file, field_, f"static neighbour entries: this lab needs {needed:,} (one per pair of "
                        f"addresses on each L2 segment; the biggest, {segment}, has {len(biggest):,} addresses), "
                        f"about {estimate(needed) / 2**20:,.0f} MiB ({BYTES_PER_ENTRY} bytes each in the kernel and "
                        f"the plan), but this machine has {available / 2**20:,.0f} MiB available (MemAvailable)",
                        line, "set options.staticNeighbours: false (dynamic ARP, as in a real cluster; raise "
                        "net.ipv4.neigh.default.gc_thresh3 on the host for big labs), or put fewer pods on each "
                        "node (cluster.maxPods) or fewer nodes on each network")


def _segment(lab: str, endpoint: Endpoint, where: Where) -> tuple[str, str]:
    """How the topology names a segment (`network lan`, `node n1's cni0`), and `file:line` of its entry."""
    if endpoint.netns == names.underlay_netns(lab):
        return f"network {endpoint.dev}", where.networks.get(endpoint.dev, "")
    node = endpoint.netns[len(lab) + 1:] if endpoint.netns.startswith(f"{lab}.") else endpoint.netns
    return f"node {node}'s {endpoint.dev}", where.nodes.get(node, "")


def _split(source: str, default: str) -> tuple[str, int | None]:
    """`file:line` -> (file, line); an empty source -> (default, None)."""
    file, _, line = source.rpartition(":")
    return (file, int(line)) if file and line.isdigit() else (default, None)


def with_static_neighbours(plan: LabPlan) -> LabPlan:
    """`plan` plus a permanent entry, in each endpoint's namespace, for every other endpoint of its segment."""
    extra: dict[str, list[Neighbour]] = {}
    for segment in segments(plan):
        texts = [str(endpoint.ip.ip) for endpoint in segment]
        ints = [int(endpoint.ip.ip) for endpoint in segment]
        # The entries every endpoint on one device name and subnet installs are the same immutable objects,
        # made once per (device, subnet), not once per endpoint: N, not N², objects for a segment of N.
        shared: dict[tuple[str, int, int], list[tuple[int, Neighbour]]] = {}
        for mine in segment:
            own, mask = int(mine.ip.ip), int(mine.ip.network.netmask)
            net = own & mask
            key = (mine.dev, mask, net)
            if key not in shared:
                shared[key] = [(address, Neighbour(mine.dev, text, other.mac))
                               for other, text, address in zip(segment, texts, ints, strict=True)
                               if address & mask == net]
            found = extra.setdefault(mine.netns, [])
            found += [entry for address, entry in shared[key] if address != own]
    namespaces = tuple(_add(ns, extra.get(ns.name, [])) for ns in plan.namespaces)
    return replace(plan, namespaces=namespaces)


def _add(ns: NamespacePlan, neighbours: list[Neighbour]) -> NamespacePlan:
    if not neighbours:
        return ns
    return replace(ns, neighbours=ns.neighbours + tuple(neighbours))
