"""A plan: plain data describing the kernel objects each namespace must hold.

Dataplane modules produce plans; the substrate applies them (netlink.py), prints them (render.py)
or replays them with `ip -batch` (the benchmark floor). Objects in a namespace are applied in the
order: links, sysctls, addresses, neighbours, fdb entries, routes (flanneld's order: ARP, FDB,
then the route, so the kernel never has to ARP for a VTEP), policy-routing rules, then tc qdiscs
and BPF filters, and last iptables rules.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Literal

NamespaceRole = Literal["underlay", "node", "pod", "external", "router"]
LinkKind = Literal["veth", "bridge", "vxlan", "ipip", "tun", "existing"]


@dataclass(frozen=True)
class VethPeer:
    """The far end of a veth pair, created in another namespace."""

    name: str
    netns: str
    index: int
    mtu: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class Vxlan:
    """VXLAN device attributes, as flannel and felix send them."""

    vni: int
    local: str
    dev: str
    port: int = 0            # 0: not sent, the kernel default 8472 applies
    learning: bool = False


@dataclass(frozen=True)
class Link:
    """A network device to create (or, for kind 'existing', to configure)."""

    name: str
    kind: LinkKind   # tun: a persistent TUN device (ioctl)
    index: int
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None
    up: bool = True
    hairpin: bool = False
    neigh_suppress: bool = False    # a bridge port whose known neighbours the bridge answers ARP for itself
    quiet: bool = False             # a switch port that floods no multicast until the lab is built (apply.py)
    peer: VethPeer | None = None
    vxlan: Vxlan | None = None
    ipip_local: str | None = None   # ipip: IFLA_IPTUN_LOCAL (flannel.ipip); None: `local any`
    txqueuelen: int | None = None   # None: the kind's default
    multicast: bool | None = None   # None: the kind's default (a TUN device is born MULTICAST)


@dataclass(frozen=True)
class Address:
    """An IPv4 address on a device; `broadcast` asks for the computed broadcast (brd +)."""

    dev: str
    cidr: str
    broadcast: bool = True


@dataclass(frozen=True)
class Route:
    """A route (in the main table unless `table` says otherwise). `dev=None` lets the kernel choose the
    device from the gateway."""

    dst: str
    gateway: str | None = None
    dev: str | None = None
    onlink: bool = False
    type: Literal["unicast", "blackhole"] = "unicast"
    protocol: int = 3  # RTPROT_BOOT, what `ip route add` and Go netlink clients use
    table: int = 254   # RT_TABLE_MAIN


@dataclass(frozen=True)
class Rule:
    """A policy-routing rule (`ip rule`): traffic matching `src`/`dst` (CIDRs; None = all) looks up `table`."""

    priority: int
    table: int
    src: str | None = None
    dst: str | None = None


@dataclass(frozen=True)
class Neighbour:
    """A permanent ARP entry."""

    dev: str
    ip: str
    mac: str


@dataclass(frozen=True)
class FdbEntry:
    """A forwarding-database entry: on a VXLAN device `<mac> dst <ip> self permanent`; with `master`, a
    static entry of the bridge that `dev` is a port of (`<mac> dev <port> master static`)."""

    dev: str
    mac: str
    dst: str | None = None
    master: bool = False


@dataclass(frozen=True)
class Sysctl:
    """A per-namespace sysctl, by its dotted key."""

    key: str
    value: str


@dataclass(frozen=True)
class IptablesRules:
    """Rules for one iptables table, loaded with `iptables-restore --noflush` (chains are created first)."""

    table: str
    chains: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class RootQdisc:
    """A root qdisc on a device (link impairments): `tc qdisc replace dev <dev> root <kind> <args...>`."""

    dev: str
    kind: Literal["tbf", "netem"]
    args: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class Qdisc:
    """A qdisc on a device; `clsact` is the hook of tc's ingress and egress filters."""

    dev: str
    kind: Literal["clsact", "noqueue"] = "clsact"   # noqueue replaces the root qdisc


@dataclass(frozen=True)
class BpfConstant:
    """A `volatile const` global of a BPF object, set in the copy tc loads: a number (`u32`), the
    index of a device of the namespace (`ifindex`, known once it exists), or IPv4 addresses in
    network order (`ipv4`)."""

    name: str
    kind: Literal["u32", "ifindex", "ipv4"]
    value: int | str | tuple[str, ...]

    def describe(self) -> str:
        if self.kind == "ifindex":
            return f"{self.name}=ifindex({self.value})"
        if self.kind == "ipv4":
            return f"{self.name}={','.join(self.value) or '-'}"  # type: ignore[arg-type]
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class BpfFilter:
    """A direct-action cls_bpf filter: `program` is bpf/<program>.c, built into build/bpf/<program>.o;
    `section` names the program in the object."""

    dev: str
    direction: Literal["ingress", "egress"]
    program: str
    section: str
    constants: tuple[BpfConstant, ...] = ()
    pref: int = 1


@dataclass(frozen=True)
class NamespacePlan:
    """Everything one network namespace holds."""

    name: str
    role: NamespaceRole
    owner: str
    links: tuple[Link, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    qdiscs: tuple[Qdisc, ...] = ()
    bpf_filters: tuple[BpfFilter, ...] = ()
    iptables: tuple[IptablesRules, ...] = ()
    notes: tuple[str, ...] = ()
    root_qdiscs: tuple[RootQdisc, ...] = ()   # link impairments (lab/cni/impairment_plan.py)

    def link(self, name: str) -> Link:
        return next(link for link in self.links if link.name == name)


@dataclass(frozen=True)
class LabPlan:
    """The plan of a whole lab, namespaces in the order they are configured."""

    lab: str
    namespaces: tuple[NamespacePlan, ...]
    files: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    notes: tuple[str, ...] = ()

    def namespace(self, name: str) -> NamespacePlan:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, NamespacePlan]:
        """Namespaces by name (built once: a lookup per namespace stays linear in a big lab)."""
        return {ns.name: ns for ns in self.namespaces}

    @property
    def object_count(self) -> int:
        return sum(len(ns.links) + len(ns.sysctls) + len(ns.addresses) + len(ns.routes) + len(ns.rules)
                   + len(ns.neighbours) + len(ns.fdb) + len(ns.qdiscs) + len(ns.bpf_filters)
                   + sum(len(t.rules) for t in ns.iptables)
                   for ns in self.namespaces)


def with_fresh_links(plan: LabPlan, fresh: dict[str, int]) -> LabPlan:
    """Move the plan's interface indexes past the devices a new namespace is born with (tunl0, gre0, ...).

    Where the ipip, gre or sit modules are loaded, every new namespace starts with their fallback
    devices at indexes 2, 3, ...; the plan's fixed indexes must not collide with them. Links the plan
    declares as `existing` under one of those names (Calico's tunl0) take the device's own index.
    """
    if not fresh:
        return plan

    def move(link: Link) -> Link:
        if link.kind == "existing" and link.name in fresh:
            return replace(link, index=fresh[link.name])
        if link.index <= 1:
            return link
        peer = replace(link.peer, index=fresh_index(link.peer.index, fresh)) if link.peer else None
        return replace(link, index=fresh_index(link.index, fresh), peer=peer)

    return replace(plan, namespaces=tuple(replace(ns, links=tuple(move(link) for link in ns.links))
                                          for ns in plan.namespaces))


def fresh_index(index: int, fresh: dict[str, int]) -> int:
    """The index a planned device gets once `with_fresh_links` moved it past the devices a new namespace is
    born with (what a plan needs when a value depends on an ifindex, e.g. Terway's table 1000 + ifindex)."""
    if not fresh or index <= 1:
        return index
    return index + max(fresh.values()) - 1
