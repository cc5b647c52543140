"""Live kernel state of a lab's namespaces, read over netlink (pyroute2) and iptables-save, cached per trace.

One `Netns` per namespace holds one NETLINK_ROUTE socket opened inside it; everything a trace needs
is asked of the kernel there: `ip route get` (RTM_GETROUTE, with RTM_F_FIB_MATCH for the matching
entry), links and their veth peers, addresses, neighbours, bridge and VXLAN FDB entries.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab.netns import namespace

AF_BRIDGE = 7
RTM_F_FIB_MATCH = 0x2000
RTNH_F_ONLINK = 4
IFF_UP = 1
IFF_LOWER_UP = 0x10000
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
PROTOCOLS = {2: "kernel", 3: "boot", 4: "static", 12: "bird", 186: "bgp"}
SCOPES = {0: "", 200: "site", 253: "link", 254: "host"}
NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE", 0x20: "FAILED",
       0x40: "NOARP", 0x80: "PERMANENT"}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mtu: int
    mac: str
    up: bool
    carrier: bool
    master: int | None
    peer_index: int | None
    peer_nsid: int | None
    vxlan: dict[str, Any] | None = None


@dataclass(frozen=True)
class RouteAnswer:
    """`ip route get`: the resolved output, and the matching FIB entry (`fibmatch`) as `ip route` prints it."""

    type: str
    oif: int | None
    gateway: str | None
    prefsrc: str | None
    table: int
    entry: str
    error: str | None = None


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str | None
    state: str


@dataclass
class Netns:
    """The kernel view of one namespace."""

    name: str
    ipr: IPRoute
    _links: dict[int, Link] | None = None
    _addresses: list[tuple[str, int, int]] | None = None
    _iptables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, name: str) -> Netns:
        return cls(name, IPRoute(netns=name))

    def close(self) -> None:
        self.ipr.close()

    # -- links and addresses -------------------------------------------------------------------
    def links(self) -> dict[int, Link]:
        if self._links is None:
            self._links = {}
            for msg in self.ipr.get_links():
                info = msg.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info else ""
                vx = None
                if kind == "vxlan":
                    data = info.get_attr("IFLA_INFO_DATA")
                    vx = {"vni": data.get_attr("IFLA_VXLAN_ID"), "port": data.get_attr("IFLA_VXLAN_PORT"),
                          "local": data.get_attr("IFLA_VXLAN_LOCAL"), "link": data.get_attr("IFLA_VXLAN_LINK")}
                flags = msg["flags"]
                self._links[msg["index"]] = Link(
                    msg["index"], msg.get_attr("IFLA_IFNAME"), kind or "", msg.get_attr("IFLA_MTU") or 0,
                    msg.get_attr("IFLA_ADDRESS") or "", bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP),
                    msg.get_attr("IFLA_MASTER"), msg.get_attr("IFLA_LINK") if kind == "veth" else None,
                    msg.get_attr("IFLA_LINK_NETNSID"), vx)
        return self._links

    def link(self, index: int | None) -> Link | None:
        return self.links().get(index) if index is not None else None

    def link_named(self, name: str) -> Link | None:
        return next((link for link in self.links().values() if link.name == name), None)

    def bpf_programs(self, index: int, hook: str) -> list[str]:
        """Names of the BPF filters on a device's tc ingress or egress hook (the clsact qdisc's), e.g.
        `ipip.o:[tc/encap]`; empty without any."""
        parent = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}[hook]
        try:
            filters = self.ipr.get_filters(index=index, parent=parent)
        except NetlinkError:
            return []
        names = []
        for message in filters:
            options = message.get_attr("TCA_OPTIONS") if message.get_attr("TCA_KIND") == "bpf" else None
            name = options.get_attr("TCA_BPF_NAME") if options else None
            if name:
                names.append(name)
        return names

    def addresses(self) -> list[tuple[str, int, int]]:
        """(address, prefix length, ifindex) of every IPv4 address."""
        if self._addresses is None:
            self._addresses = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"], a["index"])
                               for a in self.ipr.get_addr(family=socket.AF_INET)]
        return self._addresses

    def owns(self, ip: str) -> bool:
        return any(address == ip for address, _, _ in self.addresses())

    # -- routes -------------------------------------------------------------------------------
    def route_get(self, dst: str, src: str | None = None, iif: int | None = None) -> RouteAnswer:
        kwargs: dict[str, Any] = {"dst": dst}
        if src and (iif is not None or self.owns(src)):
            kwargs["src"] = src
        if iif is not None:
            kwargs["iif"] = iif
        try:
            answer = self.ipr.route("get", **kwargs)[0]
        except NetlinkError as exc:
            return RouteAnswer("error", None, None, None, 0, "", os.strerror(exc.code))
        try:
            match = self.ipr.route("get", flags=RTM_F_FIB_MATCH | 1, **kwargs)[0]
            entry = self.render_route(match)
        except NetlinkError:
            entry = ""
        return RouteAnswer(ROUTE_TYPES.get(answer["type"], str(answer["type"])), answer.get_attr("RTA_OIF"),
                           answer.get_attr("RTA_GATEWAY"), answer.get_attr("RTA_PREFSRC"),
                           answer.get_attr("RTA_TABLE") or answer["table"], entry)

    def routes(self) -> list[tuple[str, str | None, int | None, str]]:
        """(destination, gateway, output ifindex, protocol) of every IPv4 route of the main table."""
        rows = []
        for msg in self.ipr.get_routes(family=socket.AF_INET, table=254):
            dst = msg.get_attr("RTA_DST")
            rows.append((f"{dst}/{msg['dst_len']}" if dst else "default", msg.get_attr("RTA_GATEWAY"),
                         msg.get_attr("RTA_OIF"), PROTOCOLS.get(msg["proto"], str(msg["proto"]))))
        return rows

    def render_route(self, msg: Any) -> str:
        """A route message the way `ip route show` prints it."""
        rtype = ROUTE_TYPES.get(msg["type"], str(msg["type"]))
        dst = msg.get_attr("RTA_DST")
        words = [] if rtype == "unicast" else [rtype]
        words.append("default" if dst is None else f"{dst}" + ("" if msg["dst_len"] == 32 else f"/{msg['dst_len']}"))
        if msg.get_attr("RTA_GATEWAY"):
            words += ["via", msg.get_attr("RTA_GATEWAY")]
        oif = self.link(msg.get_attr("RTA_OIF"))
        if oif:
            words += ["dev", oif.name]
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        if table not in (254, 255):
            words += ["table", str(table)]
        if msg["proto"] != 3:
            words += ["proto", PROTOCOLS.get(msg["proto"], str(msg["proto"]))]
        if SCOPES.get(msg["scope"]):
            words += ["scope", SCOPES[msg["scope"]]]
        if msg.get_attr("RTA_PREFSRC"):
            words += ["src", msg.get_attr("RTA_PREFSRC")]
        if msg.get_attr("RTA_PRIORITY"):
            words += ["metric", str(msg.get_attr("RTA_PRIORITY"))]
        if msg["flags"] & RTNH_F_ONLINK:
            words.append("onlink")
        return " ".join(words)

    # -- neighbours and FDB ---------------------------------------------------------------------
    def neighbour(self, ifindex: int, ip: str) -> Neighbour | None:
        for msg in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=ifindex):
            if msg.get_attr("NDA_DST") == ip:
                return Neighbour(ip, msg.get_attr("NDA_LLADDR"), _nud(msg["state"]))
        return None

    def fdb(self, ifindex: int | None = None, master: int | None = None) -> list[tuple[str, str | None, int]]:
        """(MAC, VXLAN dst or None, port ifindex) of bridge FDB entries on `ifindex` or of bridge `master`."""
        rows = []
        for msg in self.ipr.get_neighbours(family=AF_BRIDGE):
            if ifindex is not None and msg["ifindex"] != ifindex:
                continue
            if master is not None and msg.get_attr("NDA_MASTER") != master:
                continue
            rows.append((msg.get_attr("NDA_LLADDR"), msg.get_attr("NDA_DST"), msg["ifindex"]))
        return rows

    # -- sockets and what the kernel would do ----------------------------------------------------
    def listening(self, protocol: str, ip: str, port: int) -> bool:
        """Whether a TCP socket listens (or a UDP socket is bound) on ip:port here, as /proc/net/{tcp,udp}[6]
        of this namespace list them (`ss -ltn` / `ss -lun` show the same)."""
        kind = protocol.lower()
        want_state = "0A" if kind == "tcp" else "07"          # TCP_LISTEN; a bound UDP socket is TCP_CLOSE
        v4 = f"{struct.unpack('=I', socket.inet_aton(ip))[0]:08X}"      # /proc prints it in host byte order
        accepted = {"00000000", v4, "0" * 32, "0" * 16 + "FFFF0000" + v4}   # any, ip, ::, ::ffff:ip

        def read() -> bool:
            for suffix in ("", "6"):
                try:
                    with open(f"/proc/thread-self/net/{kind}{suffix}") as handle:
                        rows = handle.read().splitlines()[1:]
                except OSError:
                    continue
                for row in rows:
                    fields = row.split()
                    address, _, hexport = fields[1].partition(":")
                    if fields[3] == want_state and int(hexport, 16) == port and address in accepted:
                        return True
            return False
        return namespace.run_in(self.name, read)

    def sysctl(self, key: str) -> str | None:
        """A sysctl of this namespace (net.* keys are per namespace)."""
        def read() -> str | None:
            try:
                with open("/proc/sys/" + key.replace(".", "/")) as handle:
                    return handle.read().strip()
            except OSError:
                return None
        return namespace.run_in(self.name, read)

    def try_route(self, dst: str, gateway: str, oif: int) -> str | None:
        """Ask the kernel to add `dst via gateway dev oif` (NLM_F_EXCL) and return its refusal (errno name and
        text), or None when it accepts; an accepted route is deleted at once, so nothing changes."""
        try:
            self.ipr.route("add", dst=dst, gateway=gateway, oif=oif)
        except NetlinkError as exc:
            return f"{errno.errorcode.get(exc.code, str(exc.code))} ({os.strerror(exc.code)})"
        self.ipr.route("del", dst=dst, gateway=gateway, oif=oif)
        return None

    # -- netns ids ------------------------------------------------------------------------------
    def nsid_of(self, other: str) -> int | None:
        fd = os.open(namespace.path(other), os.O_RDONLY)
        try:
            found = self.ipr.get_netnsid(fd=fd)
        except NetlinkError:
            return None
        finally:
            os.close(fd)
        if isinstance(found, dict):
            return found.get("nsid")
        return None

    # -- iptables / ipset -------------------------------------------------------------------------
    def iptables(self, table: str) -> str:
        if table not in self._iptables:
            result = subprocess.run(["ip", "netns", "exec", self.name, "iptables-save", "-t", table],
                                    capture_output=True, text=True, check=False)
            self._iptables[table] = result.stdout if result.returncode == 0 else ""
        return self._iptables[table]


def _nud(state: int) -> str:
    return " ".join(name for bit, name in NUD.items() if state & bit) or "NONE"


def in_network(ip: str, cidr: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr, strict=False)


class Kernel:
    """The lab's namespaces, opened on first use and closed together."""

    def __init__(self) -> None:
        self.open: dict[str, Netns] = {}

    def ns(self, name: str) -> Netns:
        if name not in self.open:
            self.open[name] = Netns.open(name)
        return self.open[name]

    def peer(self, here: Netns, link: Link, candidates: list[str]) -> tuple[Netns, Link] | None:
        """The far end of a veth: the namespace among `candidates` whose netns id `link` names."""
        if link.peer_index is None:
            return None
        if link.peer_nsid is None:                     # both ends in this namespace
            far = here.link(link.peer_index)
            return (here, far) if far else None
        for name in candidates:
            if name != here.name and namespace.exists(name) and here.nsid_of(name) == link.peer_nsid:
                far_ns = self.ns(name)
                far = far_ns.link(link.peer_index)
                if far is not None:
                    return far_ns, far
        return None

    def close(self) -> None:
        for ns in self.open.values():
            ns.close()
        self.open.clear()
