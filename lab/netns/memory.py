"""How much memory a lab will take, estimated from its plan before anything is created.

A network namespace costs the kernel about 200 KiB before it holds anything (its per-namespace
tables, sysctl trees, loopback; Slab + Percpu of /proc/meminfo, measured by creating 1,000 empty
namespaces on kernel 6.18), each network device some 60 KiB more (netdev, queues, the IPv4 and IPv6
per-device sysctl tables, sysfs), and each neighbour, fdb entry, route or address a few hundred
bytes (scripts/bench_neighbours.py measured a permanent neighbour at 512). The lab process holds
the plan (a few hundred bytes per distinct object, a reference per use of a shared one) and forks a
worker per CPU while applying it. BIRD, where a data plane runs it, is one process per node; an
external router (`routers:`) is an ExaBGP process and the lab's API helper beside it; the lab's
supervisor (lab/netns/supervisor.py) is one more Python process once any daemon runs. Each BGP
session holds a TCP socket at both ends, in the kernel (about 6.6 KiB each).

`check` refuses a lab whose estimate exceeds what the machine has available (MemAvailable), before
the kernel is touched, instead of letting `lab up` drive the machine into swap or the OOM killer.
The figures are per kernel and per machine: scripts/bench_up.py prints the measured kernel memory
and peak RSS next to this estimate, so they can be checked and recalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import TopologyError
from lab.netns.plan import LabPlan

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
NAMESPACE_BYTES = 200 * KIB      # an empty network namespace (Slab + Percpu)
DEVICE_BYTES = 62 * KIB          # a network device (each end of a veth pair is one)
NEIGHBOUR_BYTES = 512            # a permanent neighbour or fdb entry (scripts/bench_neighbours.py)
ROUTE_BYTES = 256                # a route or an address (fib alias, fib_info share, nexthop)
# one end of an established BGP session: the TCP socket, its inode and file, buffers. Fitted to one
# calico-bgp-mesh of 300 nodes (89,700 sockets), whose Slab + Percpu grew 580 MiB more than the rest of
# the estimate: the TCP slab 203 MiB and sock_inode_cache 107 MiB of it plainly sockets, the rest in the
# kmalloc-cg classes (buffers, by inference)
BGP_SOCKET_BYTES = 6600
PLAN_BYTES_PER_OBJECT = 400      # a distinct plan object in the lab process (and what a worker copies on write)
PLAN_BYTES_PER_REFERENCE = 8     # a namespace's reference to an object it shares with others (a tuple slot)
PROCESS_BYTES = 100 * MIB        # the lab process before its plan (Python, pyroute2, the model)
BIRD_BYTES = 6 * MIB             # one BIRD with a full-mesh table of a few hundred routes
# one external router: ExaBGP (29.7 MiB RSS) + the lab's API helper, lab.bgp.exabgp_api (32.9 MiB), measured
# on calico-tor (ps RSS; scripts/bench_bgp_tor.py prints ExaBGP's RSS per router)
ROUTER_BYTES = 63 * MIB
SUPERVISOR_BYTES = 15 * MIB      # the lab's supervisor, lab.netns.supervisor (14.8 MiB RSS measured)
HEADROOM = 0.9                   # use at most this share of MemAvailable


@dataclass(frozen=True)
class Estimate:
    """A lab's expected memory, by where it goes (bytes)."""

    namespaces: int
    devices: int
    entries: int            # neighbours + fdb entries
    routes: int             # routes + addresses + policy-routing rules
    sockets: int            # ends of BGP sessions in the lab (at most a full mesh: each node to every other)
    objects: int
    daemons: int            # processes the data plane runs (BIRD)
    routers: int            # external routers (ExaBGP + its API helper each)
    kernel: int
    process: int
    daemon_bytes: int       # BIRDs, routers and the supervisor

    @property
    def total(self) -> int:
        return self.kernel + self.process + self.daemon_bytes

    def describe(self) -> str:
        return (f"about {_size(self.total)}: kernel {_size(self.kernel)} ({self.namespaces:,} namespaces, "
                f"{self.devices:,} devices, {self.entries:,} neighbour/fdb entries, {self.routes:,} routes and "
                f"addresses" + (f", {self.sockets:,} BGP sockets" if self.sockets else "")
                + f"), the lab process {_size(self.process)}"
                + (f", daemons {_size(self.daemon_bytes)} ({self.daemons:,} BIRD, {self.routers:,} ExaBGP "
                   "routers, the supervisor)" if self.daemon_bytes else ""))


def estimate(plan: LabPlan, daemons: int = 0, workers: int = 1, learned_routes: int = 0, routers: int = 0,
             bgp_sockets: int = 0) -> Estimate:
    """The memory `plan` needs once applied, with `daemons` BIRD processes, `routers` ExaBGP routers (and the
    supervisor, when either runs), `workers` apply workers, `learned_routes` routes that daemons will
    install (BGP), beyond the plan's, and `bgp_sockets` ends of BGP sessions."""
    namespaces = len(plan.namespaces)
    devices = entries = routes = objects = 0
    distinct: set[int] = set()   # plans share immutable objects between namespaces (a remote node's route)
    for ns in plan.namespaces:
        for link in ns.links:
            if link.kind != "existing":
                devices += 2 if link.kind == "veth" else 1
        entries += len(ns.neighbours) + len(ns.fdb)
        routes += len(ns.routes) + len(ns.addresses) + len(ns.rules)    # a policy-routing rule costs about a route
        objects += len(ns.links) + len(ns.sysctls) + len(ns.neighbours) + len(ns.fdb) + len(ns.routes) \
            + len(ns.addresses) + len(ns.rules)
        for group in (ns.links, ns.sysctls, ns.neighbours, ns.fdb, ns.routes, ns.addresses, ns.rules):
            distinct.update(map(id, group))
    routes += learned_routes
    kernel = (namespaces * NAMESPACE_BYTES + devices * DEVICE_BYTES + entries * NEIGHBOUR_BYTES
              + routes * ROUTE_BYTES + bgp_sockets * BGP_SOCKET_BYTES)
    plan_bytes = len(distinct) * PLAN_BYTES_PER_OBJECT + objects * PLAN_BYTES_PER_REFERENCE
    process = PROCESS_BYTES + plan_bytes * max(1, workers)
    daemon_bytes = daemons * BIRD_BYTES + routers * ROUTER_BYTES + (SUPERVISOR_BYTES if daemons or routers else 0)
    return Estimate(namespaces, devices, entries, routes, bgp_sockets, objects, daemons, routers, kernel, process,
                    daemon_bytes)


def check(found: Estimate, available: int | None, file: str, what: str, line: int | None = None) -> None:
    """Refuse (TopologyError naming `file` and `what`, the topology's nodes or pods) a lab whose estimate
    exceeds HEADROOM of `available` bytes; None (MemAvailable unknown) lets it through."""
    if available is None or found.total <= available * HEADROOM:
        return
    raise TopologyError(file, what, f"this lab would need {found.describe()}, but this machine has "
                        f"{_size(available)} available (MemAvailable; the lab uses at most "
                        f"{HEADROOM:.0%} of it): it would drive the machine into swap or the OOM killer",
                        line, "bring up fewer nodes or pods (routes and neighbours grow with the square of the "
                        "nodes), take other labs down to free memory, or spread the lab over several hosts "
                        "(docs/design.md, \"Beyond one machine\")")


def _size(count: int) -> str:
    return f"{count / GIB:,.1f} GiB" if count >= GIB else f"{count / MIB:,.0f} MiB"
