"""Apply a NamespacePlan through rtnetlink, pipelined: messages go out in ~60 KB sends, and each
send's ACKs are read before the next, so a namespace costs a few round trips, not one per object.

Messages are packed by lab.netns.fastmsg (byte-identical to pyroute2's rtnl message classes, which
tests/test_fastmsg.py checks, and 50-100 times faster). The transport is a plain NETLINK_ROUTE
socket opened inside the namespace.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE, RTM_NEWRULE
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from lab.netns import fastmsg, namespace, procfs, tun
from lab.netns.plan import Address, FdbEntry, Link, NamespacePlan, Neighbour, Route, Rule, Sysctl

NETLINK_ROUTE = 0
IFF_UP = 0x1
IFF_MULTICAST = 0x1000
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40           # a bridge fdb entry added `static`
NTF_SELF = 0x02
NTF_MASTER = 0x04
FR_ACT_TO_TBL = 1
RTNH_F_ONLINK = 0x4
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
BRIDGE_MODE_HAIRPIN = 1
CHUNK = 60_000
SO_RCVBUFFORCE = 33

# No NLM_F_ACK: the kernel answers every failed request anyway (netlink_rcv_skb), and handles a send's
# messages before the send returns; only the last message of each send asks for an ACK, which tells
# the reader it has seen every answer to that send. One ACK per send instead of one per message: at
# 1000 nodes that is 4 million fewer answers to queue, receive and parse.
CREATE = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
MODIFY = NLM_F_REQUEST
FLAGS_OFFSET = 6   # nlmsg_flags in struct nlmsghdr

Attr = tuple[str, Any]   # a netlink attribute as pyroute2 takes it: (NLA name, value)


@dataclass(frozen=True)
class Failure:
    """A plan object the kernel refused, with the errno it gave."""

    netns: str
    what: Any
    code: int
    detail: str | None = None   # what the refusal said, when it was not an errno (iptables-restore's message)

    def __str__(self) -> str:
        if self.detail is not None:
            return f"{self.netns}: {describe(self.what)}: {self.detail}"
        return f"{self.netns}: {describe(self.what)}: {os.strerror(self.code)} (errno {self.code})"


def describe(item: Any) -> str:
    """A short human description of a plan object."""
    if isinstance(item, Link):
        return f"link {item.name} ({item.kind})"
    if isinstance(item, Address):
        return f"address {item.cidr} on {item.dev}"
    if isinstance(item, Route):
        return f"route {item.dst}" + (f" via {item.gateway}" if item.gateway else "")
    if isinstance(item, Neighbour):
        return f"neighbour {item.ip} on {item.dev}"
    if isinstance(item, FdbEntry):
        return f"fdb {item.mac} " + ("master static" if item.master else f"dst {item.dst}") + f" on {item.dev}"
    if isinstance(item, Rule):
        return (f"rule {item.priority}: from {item.src or 'all'}" + (f" to {item.dst}" if item.dst else "")
                + f" lookup {item.table}")
    if isinstance(item, Sysctl):
        return f"sysctl {item.key}"
    return str(item)


class Batch:
    """Netlink messages for one namespace, each remembered with the plan object it came from."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.sources: list[Any] = []

    @property
    def next_seq(self) -> int:
        return len(self.messages) + 1

    def add(self, message: Any, msg_type: int, flags: int, source: Any) -> None:
        """Encode a pyroute2 message (rules, bridge fdb entries: the messages fastmsg does not pack)."""
        message["header"]["type"] = msg_type
        message["header"]["flags"] = flags
        message["header"]["sequence_number"] = self.next_seq
        message.encode()
        self.add_bytes(bytes(message.data), source)

    def add_bytes(self, data: bytes, source: Any) -> None:
        """Add a message already encoded with sequence number `next_seq`."""
        self.messages.append(data)
        self.sources.append(source)

    def add_cached(self, cache: MessageCache, source: Any, ifindex: int, encode: Encode) -> None:
        """Add the message for `source` on `ifindex`, encoded once per cache (see MessageCache)."""
        head, tail = cache.parts(source, ifindex, encode)
        self.messages.append(head + SEQ.pack(len(self.messages) + 1) + tail)
        self.sources.append(source)


# A neighbour, fdb or route message for (plan object, interface index), with sequence number 0.
Encode = Callable[[Any, int], bytes]
SEQ = struct.Struct("=I")
SEQ_OFFSET = 8   # nlmsg_seq in struct nlmsghdr


class MessageCache:
    """Encoded neighbour, fdb and route messages by plan object, for one thread's namespaces.

    A plan shares these immutable objects between namespaces (every flannel node installs the same
    route, neighbour and fdb entry for a given remote node), and they land on devices with the same
    index, so each is encoded once and copied with the namespace's sequence number: at 1000 nodes,
    1,000 encodings instead of 3 million. Keyed by the object's identity (a plan object's hash costs
    more than the copy), holding the object so that its identity is not reused."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, int, bytes, bytes]] = {}

    def parts(self, source: Any, ifindex: int, encode: Encode) -> tuple[bytes, bytes]:
        """The message's bytes before and after its sequence number."""
        found = self._parts.get(id(source))
        if found is None or found[1] != ifindex:
            data = encode(source, ifindex)
            found = (source, ifindex, data[:SEQ_OFFSET], data[SEQ_OFFSET + SEQ.size:])
            self._parts[id(source)] = found
        return found[2], found[3]


def apply_namespace(plan: NamespacePlan, netns_fds: dict[str, int],
                    sysctls: procfs.SysctlWriter | None = None, cache: MessageCache | None = None) -> list[Failure]:
    """Apply `plan`; the calling thread must already be inside `plan.name`. `sysctls` is the thread's
    writer (lab/netns/procfs.py); without one, sysctls go through /proc. `cache` is the thread's
    MessageCache, kept from one namespace to the next. Quiet switch ports are left quiet: `flood_again`
    opens them once the whole lab is configured."""
    writer = sysctls or procfs.SysctlWriter(private=False)
    if plan.sysctls:
        writer.begin_namespace()
    indexes = {link.name: link.index for link in plan.links}
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        _grow_receive_buffer(sock)
        sock.bind((0, 0))
        failures = _exchange(sock, plan.name, _link_batch(plan, indexes, netns_fds, quiet=True))
        failures += _tun_devices(sock, plan, indexes)
        failures += [f for s in plan.sysctls if (f := _write_sysctl(writer, plan.name, s))]
        failures += _exchange(sock, plan.name, _object_batch(plan, indexes, cache or MessageCache()))
        return failures
    finally:
        sock.close()


def apply_to_running(plan: NamespacePlan) -> list[Failure]:
    """Add a plan fragment to a namespace that already runs (a live change), as `apply_namespace` applies a
    whole plan: links, TUN devices, sysctls, then addresses and routes. The fragment's link indexes were
    assigned for a fresh namespace and mean nothing here, so devices are found by name ('existing') or
    created with an index the kernel picks. The calling thread must already be inside `plan.name`."""
    links = tuple(replace(link, index=socket.if_nametoindex(link.name) if link.kind == "existing" else 0)
                  for link in plan.links)
    fragment = replace(plan, links=links)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        failures = _exchange(sock, plan.name, _link_batch(fragment, {}, {}, quiet=False))
        indexes = {link.name: socket.if_nametoindex(link.name) for link in links if link.kind != "tun"}
        failures += _tun_devices(sock, fragment, indexes)
        writer = procfs.SysctlWriter(private=False)   # a live change's few sysctls go through /proc
        failures += [f for s in plan.sysctls if (f := _write_sysctl(writer, plan.name, s))]
        failures += _exchange(sock, plan.name, _object_batch(fragment, indexes, MessageCache()))
        return failures
    finally:
        sock.close()


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Room for a chunk's ACKs (error ACKs echo the request); FORCE passes rmem_max as root."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)


def _chunks(messages: list[bytes]) -> list[tuple[int, bytes]]:
    """Consecutive messages joined into sends of at most CHUNK bytes, the last of each asking for an
    ACK: (sequence number of that last message, payload)."""
    chunks: list[tuple[int, bytes]] = []
    current: list[bytes] = []
    size = 0
    for seq, data in enumerate(messages, 1):
        if current and size + len(data) > CHUNK:
            chunks.append(_acked(seq - 1, current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        chunks.append(_acked(len(messages), current))
    return chunks


def _acked(last_seq: int, messages: list[bytes]) -> tuple[int, bytes]:
    last = bytearray(messages[-1])
    (flags,) = struct.unpack_from("=H", last, FLAGS_OFFSET)
    struct.pack_into("=H", last, FLAGS_OFFSET, flags | NLM_F_ACK)
    return last_seq, b"".join(messages[:-1]) + bytes(last)


def _exchange(sock: socket.socket, netns: str, batch: Batch) -> list[Failure]:
    """Send the batch a chunk at a time; after each send, read the refusals up to the chunk's ACK."""
    failures: list[Failure] = []
    for last_seq, payload in _chunks(batch.messages):
        sock.send(payload)
        failures += _read_answers(sock, netns, batch, last_seq)
    return failures


def _read_answers(sock: socket.socket, netns: str, batch: Batch, last_seq: int) -> list[Failure]:
    """NLMSG_ERROR answers until the one to `last_seq` (an ACK, or its own refusal)."""
    failures: list[Failure] = []
    while True:
        data = sock.recv(1 << 16)   # below malloc's mmap threshold: no mmap/munmap per receive
        offset = 0
        while offset + 16 <= len(data):
            length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            if msg_type == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + 16)
                if code:
                    failures.append(Failure(netns, batch.sources[seq - 1], -code))
                if seq == last_seq:
                    return failures
            offset += (length + 3) & ~3
            if length == 0:
                break


def _write_sysctl(writer: procfs.SysctlWriter, netns: str, sysctl: Sysctl) -> Failure | None:
    try:
        writer.write(sysctl.key, sysctl.value)
    except OSError as exc:
        return Failure(netns, sysctl, exc.errno or 1)
    return None


def _tun_devices(sock: socket.socket, plan: NamespacePlan, indexes: dict[str, int]) -> list[Failure]:
    """Create the plan's TUN devices (ioctl, not netlink), record the index the kernel gave each, set them up."""
    failures: list[Failure] = []
    batch = Batch()
    for link in plan.links:
        if link.kind != "tun":
            continue
        try:
            tun.create_persistent_tun(link.name)
        except OSError as exc:
            failures.append(Failure(plan.name, f"TUN device {link.name}", exc.errno or 1))
            continue
        indexes[link.name] = socket.if_nametoindex(link.name)
        batch.add_bytes(_existing_link(replace(link, index=indexes[link.name]), batch.next_seq), link)
    return failures + (_exchange(sock, plan.name, batch) if batch.messages else [])


def _link_batch(plan: NamespacePlan, indexes: dict[str, int], netns_fds: dict[str, int], quiet: bool) -> Batch:
    """The devices' messages; `quiet`: the plan's quiet switch ports are made without multicast flooding."""
    batch = Batch()
    for link in plan.links:
        if link.kind == "tun":
            continue
        if link.kind == "existing":
            batch.add_bytes(_existing_link(link, batch.next_seq), link)
            continue
        batch.add_bytes(_new_link(link, indexes, netns_fds, batch.next_seq), link)
        silent = quiet and link.quiet
        if link.hairpin or link.neigh_suppress or silent:
            batch.add_bytes(_bridge_port(link, batch.next_seq, mcast_flood=False if silent else None), link)
    return batch


def flood_again(plan: NamespacePlan) -> list[Failure]:
    """Let the plan's quiet switch ports flood multicast again, the kernel's default (see lab/netns/apply.py).
    The calling thread must be inside `plan.name`."""
    batch = Batch()
    for link in plan.links:
        if link.quiet:
            batch.add_bytes(_port_flooding(link, batch.next_seq, True), f"multicast flooding on the port {link.name}")
    return _send(plan.name, batch)


def _send(netns: str, batch: Batch) -> list[Failure]:
    """Exchange `batch` over a socket of its own, in the namespace the calling thread is in."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        _grow_receive_buffer(sock)
        sock.bind((0, 0))
        return _exchange(sock, netns, batch)
    finally:
        sock.close()


def _object_batch(plan: NamespacePlan, indexes: dict[str, int], cache: MessageCache) -> Batch:
    batch = Batch()
    for address in plan.addresses:
        batch.add_bytes(_address(address, indexes, batch.next_seq), address)
    for neighbour in plan.neighbours:  # flanneld: ARP, then FDB, then the route
        batch.add_cached(cache, neighbour, indexes[neighbour.dev], _neighbour_on)
    for entry in plan.fdb:
        if entry.master:
            batch.add(_bridge_fdb(entry, indexes), RTM_NEWNEIGH, REPLACE, entry)
        else:
            batch.add_cached(cache, entry, indexes[entry.dev], _fdb_on)
    for route in plan.routes:
        batch.add_cached(cache, route, indexes[route.dev] if route.dev else 0, _route_on)
    for rule in plan.rules:
        batch.add(_rule(rule), RTM_NEWRULE, CREATE, rule)
    return batch


def restore_objects(plan: NamespacePlan, indexes: dict[str, int]) -> list[Failure]:
    """Send the plan's neighbours, fdb entries and routes again (they replace what exists) in a namespace
    whose links exist, e.g. after its interfaces were down and the kernel flushed what used them. `indexes`
    are the live interface indexes by name; objects on a device that is not there are left out. The
    calling thread must be inside `plan.name`."""
    batch = Batch()
    for neighbour in plan.neighbours:
        if neighbour.dev in indexes:
            batch.add_bytes(_neighbour(neighbour, indexes, batch.next_seq), neighbour)
    for entry in plan.fdb:
        if entry.dev in indexes:
            batch.add_bytes(_fdb(entry, indexes, batch.next_seq), entry)
    for route in plan.routes:
        if route.dev is None or route.dev in indexes:
            batch.add_bytes(_route(route, indexes, batch.next_seq), route)
    return _send(plan.name, batch)


def _existing_link(link: Link, seq: int) -> bytes:
    """Set an existing device's MTU, queue length, up and multicast flags."""
    attrs = fastmsg.u32(fastmsg.IFLA_MTU, link.mtu) if link.mtu else b""
    if link.txqueuelen is not None:
        attrs += fastmsg.u32(fastmsg.IFLA_TXQLEN, link.txqueuelen)
    flags = change = 0
    if link.up:
        flags, change = flags | IFF_UP, change | IFF_UP
    if link.multicast is not None:
        flags, change = flags | (IFF_MULTICAST if link.multicast else 0), change | IFF_MULTICAST
    return fastmsg.link(RTM_NEWLINK, MODIFY, seq, index=link.index, ifi_flags=flags, change=change, attrs=attrs)


def _new_link(link: Link, indexes: dict[str, int], netns_fds: dict[str, int], seq: int) -> bytes:
    attrs = fastmsg.link_attrs(link.name, link.mtu, link.mac)
    if link.master:
        attrs += fastmsg.u32(fastmsg.IFLA_MASTER, indexes[link.master])
    data: bytes | None = None
    if link.kind == "veth":
        peer = link.peer
        assert peer is not None, "a planned veth names its peer (NamespaceBuilder.veth)"
        data = fastmsg.veth_peer(peer.index, fastmsg.link_attrs(peer.name, peer.mtu, peer.mac)
                                 + fastmsg.u32(fastmsg.IFLA_NET_NS_FD, netns_fds[peer.netns]))
    elif link.kind == "vxlan":
        vx = link.vxlan
        assert vx is not None, "a planned vxlan device carries its attributes (NamespaceBuilder.vxlan)"
        data = fastmsg.vxlan_data(vni=vx.vni, link=indexes[vx.dev], local=vx.local, learning=vx.learning,
                                  port=vx.port)
    elif link.kind == "ipip" and link.ipip_local:
        data = fastmsg.ipip_data(link.ipip_local)   # vishvananda/netlink's Iptun as flannel fills it
    attrs += fastmsg.linkinfo(link.kind, data)
    flags = IFF_UP if link.up else 0
    return fastmsg.link(RTM_NEWLINK, CREATE, seq, index=link.index, ifi_flags=flags, change=flags, attrs=attrs)


def _bridge_port(link: Link, seq: int, mcast_flood: bool | None = None) -> bytes:
    """The bridge-port flags of a new `link`: hairpin mode, multicast flooding (None: the kernel's default),
    neighbour suppression."""
    return fastmsg.link(RTM_NEWLINK, MODIFY, seq, index=link.index,
                        attrs=fastmsg.bridge_port(BRIDGE_MODE_HAIRPIN if link.hairpin else None, link.neigh_suppress,
                                                  mcast_flood))


def _port_flooding(link: Link, seq: int, mcast_flood: bool) -> bytes:
    """Multicast flooding on the bridge port `link`, and nothing else of it."""
    return fastmsg.link(RTM_NEWLINK, MODIFY, seq, index=link.index,
                        attrs=fastmsg.bridge_port(None, False, mcast_flood))


def _address(address: Address, indexes: dict[str, int], seq: int) -> bytes:
    network = ipaddress.IPv4Interface(address.cidr)
    broadcast = (str(network.network.broadcast_address) if address.broadcast and network.network.prefixlen < 31
                 else None)
    return fastmsg.address(RTM_NEWADDR, CREATE, seq, index=indexes[address.dev], ip=str(network.ip),
                           prefixlen=network.network.prefixlen, broadcast=broadcast)


def _route(route: Route, indexes: dict[str, int], seq: int) -> bytes:
    return _route_on(route, indexes[route.dev] if route.dev else 0, seq)


def _route_on(route: Route, oif: int, seq: int = 0) -> bytes:
    """The route's message; `oif` 0: no RTA_OIF (the kernel picks the device)."""
    dst = ipaddress.IPv4Network(route.dst)
    return fastmsg.route(
        RTM_NEWROUTE, REPLACE, seq, dst=str(dst.network_address), dst_len=dst.prefixlen, table=route.table,
        protocol=route.protocol,
        scope=RT_SCOPE_LINK if (route.gateway is None and route.type == "unicast") else RT_SCOPE_UNIVERSE,
        route_type=RTN_BLACKHOLE if route.type == "blackhole" else RTN_UNICAST,
        rtm_flags=RTNH_F_ONLINK if route.onlink else 0, gateway=route.gateway, oif=oif or None)


def _neighbour(neighbour: Neighbour, indexes: dict[str, int], seq: int) -> bytes:
    return _neighbour_on(neighbour, indexes[neighbour.dev], seq)


def _neighbour_on(neighbour: Neighbour, ifindex: int, seq: int = 0) -> bytes:
    return fastmsg.neighbour(RTM_NEWNEIGH, REPLACE, seq, family=socket.AF_INET, ifindex=ifindex,
                             state=NUD_PERMANENT, ndm_flags=0, ndm_type=RTN_UNICAST, dst=neighbour.ip,
                             lladdr=neighbour.mac)


def _fdb(entry: FdbEntry, indexes: dict[str, int], seq: int) -> bytes:
    return _fdb_on(entry, indexes[entry.dev], seq)


def _fdb_on(entry: FdbEntry, ifindex: int, seq: int = 0) -> bytes:
    """A VXLAN fdb entry `<mac> dst <ip> self permanent`."""
    assert entry.dst is not None, "a VXLAN fdb entry has a destination"
    return fastmsg.neighbour(RTM_NEWNEIGH, REPLACE, seq, family=socket.AF_BRIDGE, ifindex=ifindex,
                             state=NUD_PERMANENT, ndm_flags=NTF_SELF, ndm_type=0, dst=entry.dst, lladdr=entry.mac,
                             lladdr_first=True)


def _rule(rule: Rule) -> fibmsg:
    """RTM_NEWRULE as vishvananda/netlink's RuleAdd sends it: FRA_TABLE always (the 8-bit header field only
    for tables below 256), FRA_PRIORITY, and FRA_SRC / FRA_DST with their prefix lengths."""
    msg = fibmsg()
    msg["family"] = socket.AF_INET
    msg["action"] = FR_ACT_TO_TBL
    msg["table"] = rule.table if rule.table < 256 else 0
    attrs: list[Attr] = [("FRA_TABLE", rule.table), ("FRA_PRIORITY", rule.priority)]
    for key, cidr, length in (("FRA_SRC", rule.src, "src_len"), ("FRA_DST", rule.dst, "dst_len")):
        if cidr:
            network = ipaddress.IPv4Network(cidr)
            msg[length] = network.prefixlen
            attrs.append((key, str(network.network_address)))
    msg["attrs"] = attrs
    return msg


def _bridge_fdb(entry: FdbEntry, indexes: dict[str, int]) -> ndmsg:
    """`bridge fdb replace <mac> dev <port> master static`."""
    msg = ndmsg()
    msg["family"] = socket.AF_BRIDGE
    msg["ifindex"] = indexes[entry.dev]
    msg["state"] = NUD_NOARP
    msg["flags"] = NTF_MASTER
    msg["attrs"] = [("NDA_LLADDR", entry.mac)]
    return msg


def open_netns_fds(names: list[str]) -> dict[str, int]:
    """Open every namespace file once, for IFLA_NET_NS_FD."""
    return {name: os.open(namespace.path(name), os.O_RDONLY) for name in names}


def close_fds(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)
