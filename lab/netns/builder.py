"""Incremental construction of a NamespacePlan, with interface indexes assigned as the kernel would see them."""

from __future__ import annotations

from typing import Any

from lab.netns.plan import (
    Address,
    BpfConstant,
    BpfFilter,
    FdbEntry,
    IptablesRules,
    Link,
    LinkKind,
    NamespacePlan,
    NamespaceRole,
    Neighbour,
    Qdisc,
    Route,
    Rule,
    Sysctl,
    VethPeer,
    Vxlan,
)

LOOPBACK_INDEX = 1


class NamespaceBuilder:
    """Collects one namespace's objects; `freeze()` returns the immutable plan."""

    def __init__(self, name: str, role: NamespaceRole, owner: str) -> None:
        self.name = name
        self.role = role
        self.owner = owner
        self._next_index = LOOPBACK_INDEX + 1
        self.links: list[Link] = [Link(name="lo", kind="existing", index=LOOPBACK_INDEX)]
        self.sysctls: list[Sysctl] = []
        self.addresses: list[Address] = []
        self.routes: list[Route] = []
        self.rules: list[Rule] = []
        self.neighbours: list[Neighbour] = []
        self.fdb: list[FdbEntry] = []
        self.qdiscs: list[Qdisc] = []
        self.bpf_filters: list[BpfFilter] = []
        self.iptables: list[IptablesRules] = []
        self.notes: list[str] = []

    def reserve_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def add_link(self, name: str, kind: LinkKind, **attrs: Any) -> Link:
        link = Link(name=name, kind=kind, index=self.reserve_index(), **attrs)
        self.links.append(link)
        return link

    def existing(self, name: str, index: int, mtu: int | None = None) -> Link:
        """A device the namespace is born with (e.g. the ipip module's tunl0), configured but not created."""
        link = Link(name=name, kind="existing", index=index, mtu=mtu)
        self.links.append(link)
        return link

    def ipip(self, name: str, mtu: int, local: str | None = None) -> Link:
        """An ipip tunnel device (`remote any`, `local` or any), made by the kernel's ipip module."""
        return self.add_link(name, "ipip", mtu=mtu, ipip_local=local)

    def tun(self, name: str, mtu: int, txqueuelen: int | None = None, multicast: bool | None = None) -> Link:
        """A persistent TUN device; created last, by ioctl, so the kernel picks its index."""
        return self.add_link(name, "tun", mtu=mtu, txqueuelen=txqueuelen, multicast=multicast)

    def qdisc(self, dev: str, kind: str) -> None:
        self.qdiscs.append(Qdisc(dev=dev, kind=kind))  # type: ignore[arg-type]

    def bridge(self, name: str, mtu: int | None = None, mac: str | None = None) -> Link:
        return self.add_link(name, "bridge", mtu=mtu, mac=mac)

    def vxlan(self, name: str, vxlan: Vxlan, mtu: int, mac: str) -> Link:
        return self.add_link(name, "vxlan", mtu=mtu, mac=mac, vxlan=vxlan)

    def veth(self, name: str, peer: NamespaceBuilder, peer_name: str, *, mtu: int | None = None,
             master: str | None = None, hairpin: bool = False, peer_mac: str | None = None,
             mac: str | None = None, neigh_suppress: bool = False, quiet: bool = False) -> Link:
        """A veth pair whose far end `peer_name` lands, up, in the namespace `peer`; `quiet`: a switch port
        that floods no multicast until the lab is built (see lab/netns/apply.py)."""
        peer_index = peer.reserve_index()
        link = self.add_link(name, "veth", mtu=mtu, mac=mac, master=master, hairpin=hairpin,
                             neigh_suppress=neigh_suppress, quiet=quiet,
                             peer=VethPeer(name=peer_name, netns=peer.name, index=peer_index, mtu=mtu, mac=peer_mac))
        peer.links.append(Link(name=peer_name, kind="existing", index=peer_index))
        return link

    def address(self, dev: str, cidr: str, broadcast: bool = True) -> None:
        self.addresses.append(Address(dev=dev, cidr=cidr, broadcast=broadcast))

    def route(self, dst: str, **attrs: Any) -> None:
        self.routes.append(Route(dst=dst, **attrs))

    def rule(self, priority: int, table: int, src: str | None = None, dst: str | None = None) -> None:
        """A policy-routing rule (`ip rule add priority P [from SRC] [to DST] lookup TABLE`)."""
        self.rules.append(Rule(priority=priority, table=table, src=src, dst=dst))

    def neighbour(self, dev: str, ip: str, mac: str) -> None:
        self.neighbours.append(Neighbour(dev=dev, ip=ip, mac=mac))

    def fdb_entry(self, dev: str, mac: str, dst: str) -> None:
        self.fdb.append(FdbEntry(dev=dev, mac=mac, dst=dst))

    def bridge_fdb_entry(self, port: str, mac: str) -> None:
        """A static entry in the fdb of the bridge `port` belongs to: frames for `mac` leave by `port`."""
        self.fdb.append(FdbEntry(dev=port, mac=mac, master=True))

    def sysctl(self, key: str, value: str | int) -> None:
        self.sysctls.append(Sysctl(key=key, value=str(value)))

    def iptables_rules(self, table: str, chains: list[str], rules: list[str]) -> None:
        self.iptables.append(IptablesRules(table=table, chains=tuple(chains), rules=tuple(rules)))

    def bpf_filter(self, dev: str, direction: str, program: str, section: str,
                   constants: tuple[BpfConstant, ...] = ()) -> None:
        """A direct-action BPF filter on `dev`'s clsact hook (the qdisc is added once per device)."""
        if not any(q.dev == dev and q.kind == "clsact" for q in self.qdiscs):
            self.qdiscs.append(Qdisc(dev=dev))
        self.bpf_filters.append(BpfFilter(dev=dev, direction=direction, program=program,  # type: ignore[arg-type]
                                          section=section, constants=constants))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def freeze(self) -> NamespacePlan:
        return NamespacePlan(name=self.name, role=self.role, owner=self.owner, links=tuple(self.links),
                             sysctls=tuple(self.sysctls), addresses=tuple(self.addresses),
                             routes=tuple(self.routes), rules=tuple(self.rules), neighbours=tuple(self.neighbours),
                             fdb=tuple(self.fdb),
                             qdiscs=tuple(self.qdiscs), bpf_filters=tuple(self.bpf_filters),
                             iptables=tuple(self.iptables), notes=tuple(self.notes))
