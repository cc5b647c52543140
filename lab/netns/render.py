"""A plan as the equivalent `ip`, `bridge`, `sysctl` and `tc` commands (the dry run, and the benchmark floor)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lab.netns import bpfobj, impairments, iptables, tc
from lab.netns.plan import Address, FdbEntry, LabPlan, Link, NamespacePlan, Neighbour, Route, Rule, Sysctl

Tool = Literal["ip", "bridge", "sysctl", "tc"]
_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search     # what shlex.quote quotes


@dataclass(frozen=True)
class Command:
    """One command run inside one namespace; `args` exclude the tool and its namespace option."""

    tool: Tool
    netns: str
    args: tuple[str, ...]

    def argv(self) -> list[str]:
        if self.tool == "sysctl":
            return ["ip", "netns", "exec", self.netns, "sysctl", "-qw", *self.args]
        return [self.tool, "-n", self.netns, *self.args]

    def shell(self) -> str:
        argv = self.argv()
        if all(argv) and _UNSAFE("".join(argv)) is None:   # nothing to quote: shlex.join's text, faster
            return " ".join(argv)
        return shlex.join(argv)


def iptables_shell(ns: NamespacePlan) -> str:
    """The namespace's iptables rules as an `iptables-restore` here-document."""
    argv = ["ip", "netns", "exec", ns.name, "iptables-restore", "--noflush"]
    return f"{shlex.join(argv)} <<'EOF'\n{iptables.restore_text(ns.iptables)}EOF"


def namespace_commands(ns: NamespacePlan) -> list[Command]:
    """Commands configuring one namespace, in the order the lab applies them (`lines` adds, after every
    namespace, the quiet switch ports flooding again, which the lab does once all are configured)."""
    out: list[Command] = []

    def ip(*args: str) -> None:
        out.append(Command("ip", ns.name, tuple(args)))

    for link in ns.links:
        for args in _link_args(link):
            ip(*args)
    for sysctl in ns.sysctls:
        out.append(Command("sysctl", ns.name, (_sysctl_arg(sysctl),)))
    for address in ns.addresses:
        ip(*_address_args(address))
    for neighbour in ns.neighbours:
        ip(*_neighbour_args(neighbour))
    for entry in ns.fdb:
        out.append(Command("bridge", ns.name, _fdb_args(entry)))
    for route in ns.routes:
        ip(*_route_args(route))
    for rule in ns.rules:
        ip(*rule_args(rule))
    for qdisc in ns.qdiscs:
        out.append(Command("tc", ns.name, tc.qdisc_args(qdisc)))
    for bpf in ns.bpf_filters:
        out.append(Command("tc", ns.name, tc.filter_args(bpf, str(bpfobj.built(bpf.program)))))
    return out


def lines(plan: LabPlan) -> Iterator[str]:
    """The whole plan as shell lines, one comment header per namespace, produced one namespace at a time."""
    yield f"# lab {plan.lab}: {len(plan.namespaces)} network namespaces, {plan.object_count} kernel objects"
    yield from (f"# {note}" for note in plan.notes)
    configured = sorted({bpf.program for ns in plan.namespaces for bpf in ns.bpf_filters if bpf.constants})
    if configured:
        objects = ", ".join(str(bpfobj.built(program)) for program in configured)
        yield (f"# NOT replayable as is: the `tc filter add ... obj` lines name {objects} as built, whose .rodata "
               "constants are zero (ifindex 0, no peers); `lab up` patches the object's .rodata per node (the "
               "`# bpf` lines show the values) into a temporary copy before tc loads it")
    yield from (f"ip netns add {shlex.quote(ns.name)}" for ns in plan.namespaces)
    for ns in plan.namespaces:
        yield ""
        yield f"# {ns.role} {ns.owner}: namespace {ns.name}"
        yield from (f"# {note}" for note in ns.notes)
        yield from (f"# bpf {tc.describe(bpf)}" for bpf in ns.bpf_filters)
        yield from (command.shell() for command in namespace_commands(ns))
        if ns.iptables:
            yield iptables_shell(ns)
        yield from impairments.commands(ns)
    reopen = flood_again_commands(plan)
    if reopen:
        yield ""
        yield "# every namespace configured: the switch ports flood multicast again"
        yield from (command.shell() for command in reopen)
    for path, content in plan.files.items():
        yield ""
        yield f"# file {path}"
        yield from (f"#   {line}" for line in content.splitlines())


class TextSink(Protocol):
    """Where streamed text goes: a text file, standard output, or anything with write(str)."""

    def write(self, text: str, /) -> Any: ...


def write(plan: LabPlan, out: TextSink, chunk: int = 4096) -> None:
    """Write the plan's shell lines to `out` as they are made, `chunk` lines at a time (memory stays
    that of a chunk, however big the plan)."""
    batch: list[str] = []
    for line in lines(plan):
        batch.append(line)
        if len(batch) >= chunk:
            batch.append("")
            out.write("\n".join(batch))
            batch = []
    if batch:
        batch.append("")
        out.write("\n".join(batch))


def script(plan: LabPlan) -> str:
    """The whole plan as a shell script (write's text)."""
    return "\n".join(lines(plan)) + "\n"


def _link_args(link: Link) -> list[tuple[str, ...]]:
    if link.kind == "existing":
        args = ["link", "set", "dev", link.name]
        if link.mtu:
            args += ["mtu", str(link.mtu)]
        return [tuple(args + (["up"] if link.up else []))]
    if link.kind == "tun":  # TUN devices are made by ioctl, so the kernel picks the index
        setup = ["link", "set", "dev", link.name] + (["mtu", str(link.mtu)] if link.mtu else [])
        setup += ["txqueuelen", str(link.txqueuelen)] if link.txqueuelen is not None else []
        setup += ["multicast", "on" if link.multicast else "off"] if link.multicast is not None else []
        return [("tuntap", "add", "dev", link.name, "mode", "tun"), tuple(setup + (["up"] if link.up else []))]
    args = ["link", "add", link.name, "index", str(link.index)]
    if link.mtu:
        args += ["mtu", str(link.mtu)]
    if link.mac:
        args += ["address", link.mac]
    if link.master:
        args += ["master", link.master]
    if link.up:
        args.append("up")
    args += ["type", link.kind]
    if link.kind == "veth":
        peer = link.peer
        assert peer is not None, "a veth has a peer"
        args += ["peer", "name", peer.name, "index", str(peer.index)]
        if peer.mtu:
            args += ["mtu", str(peer.mtu)]
        if peer.mac:
            args += ["address", peer.mac]
        args += ["netns", peer.netns]
    elif link.kind == "ipip":
        args += ["remote", "any", "local", link.ipip_local or "any", "ttl", "inherit", "nopmtudisc"]
    elif link.kind == "vxlan":
        vx = link.vxlan
        assert vx is not None, "a vxlan link has its settings"
        args += ["id", str(vx.vni), "local", vx.local, "dev", vx.dev]
        if vx.port:
            args += ["dstport", str(vx.port)]
        args += ["learning" if vx.learning else "nolearning", "ttl", "0"]
    commands = [tuple(args)]
    if link.hairpin:
        commands.append(("link", "set", "dev", link.name, "type", "bridge_slave", "hairpin", "on"))
    if link.neigh_suppress:
        commands.append(("link", "set", "dev", link.name, "type", "bridge_slave", "neigh_suppress", "on"))
    if link.quiet:
        commands.append(_flood_args(link, "off"))
    return commands


def _flood_args(link: Link, state: str) -> tuple[str, ...]:
    return ("link", "set", "dev", link.name, "type", "bridge_slave", "mcast_flood", state)


def flood_again_commands(plan: LabPlan) -> list[Command]:
    """Once every namespace is configured, the quiet switch ports flood multicast again (lab/netns/apply.py)."""
    return [Command("ip", ns.name, _flood_args(link, "on")) for ns in plan.namespaces for link in ns.links
            if link.quiet]


def _sysctl_arg(sysctl: Sysctl) -> str:
    """`net/ipv6/conf/flannel.1/accept_ra` -> `net.ipv6.conf.flannel/1.accept_ra=0` (sysctl's notation)."""
    parts = [part.replace(".", "/") for part in sysctl.key.split("/")]
    return ".".join(parts) + "=" + sysctl.value


def _address_args(address: Address) -> tuple[str, ...]:
    args = ["addr", "add", address.cidr]
    if address.broadcast and not address.cidr.endswith(("/31", "/32")):
        args += ["brd", "+"]
    return tuple(args + ["dev", address.dev])


def _route_args(route: Route) -> tuple[str, ...]:
    dst = "default" if route.dst == "0.0.0.0/0" else route.dst
    args = ["route", "replace"]
    if route.type != "unicast":
        args.append(route.type)
    args.append(dst)
    if route.gateway:
        args += ["via", route.gateway]
    if route.dev:
        args += ["dev", route.dev]
    if route.onlink:
        args.append("onlink")
    if route.protocol != 3:
        args += ["proto", str(route.protocol)]
    if route.table != 254:
        args += ["table", str(route.table)]
    return tuple(args)


def rule_args(rule: Rule) -> tuple[str, ...]:
    """`rule add priority P [from SRC] [to DST] lookup T` (a /32 printed as the bare address, as `ip rule` does)."""
    args = ["rule", "add", "priority", str(rule.priority)]
    if rule.src:
        args += ["from", rule.src.removesuffix("/32")]
    if rule.dst:
        args += ["to", rule.dst.removesuffix("/32")]
    return tuple(args + ["lookup", {254: "main", 255: "local", 253: "default"}.get(rule.table, str(rule.table))])


def _neighbour_args(neighbour: Neighbour) -> tuple[str, ...]:
    return ("neigh", "replace", neighbour.ip, "lladdr", neighbour.mac, "dev", neighbour.dev, "nud", "permanent")


def _fdb_args(entry: FdbEntry) -> tuple[str, ...]:
    if entry.master:
        return ("fdb", "replace", entry.mac, "dev", entry.dev, "master", "static")
    assert entry.dst is not None, "a VXLAN fdb entry has a destination"
    return ("fdb", "replace", entry.mac, "dev", entry.dev, "dst", entry.dst, "self", "permanent")
