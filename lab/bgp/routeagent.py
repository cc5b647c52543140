"""The route agent: plays the part of Calico's BIRD fork for stock BIRD 1.6, once per lab.

Each node's BIRD exports its routes into kernel table `table` (protocol bird). The agent mirrors
them into the node's main table as Calico's fork would program them (`via <node> dev tunl0
onlink` for IPIP), copies the main table's alien routes into `table` for BIRD's `learn`, and,
for nodes whose tunl0 is a TUN device, carries IPIP in userspace.

    python -m lab.bgp.routeagent <spec.json>

Spec: {"lab": "x", "table": 201, "log": "agent.log", "stats": "agent-stats.json",
       "ready": "agent.ready", "nodes": [{"name": "n1", "netns": "x.n1",
       "tunnel": "userspace" | "kernel" | null}]}

SIGHUP re-reads the spec and reconciles again; SIGTERM/SIGINT exit and leave the kernel as is.
"""

from __future__ import annotations

import errno
import json
import os
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from lab.netns import namespace, tun

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
SO_RCVBUFFORCE = 33
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 18, 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_REPLACE, NLM_F_ACK_TLVS, NLM_F_DUMP, NLM_F_CREATE = 0x100, 0x200, 0x300, 0x400
NLMSGERR_ATTR_MSG = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH = 1, 4, 5, 6, 9
RTA_CACHEINFO, RTA_TABLE, RTA_EXPIRES, RTA_UID = 12, 15, 23, 25
IFLA_IFNAME = 3
RT_TABLE_MAIN, RT_TABLE_COMPAT = 254, 252
RTPROT_KERNEL, RTPROT_BIRD = 2, 12
RT_SCOPE_NOWHERE = 255
RTN_UNICAST = 1
RTNH_F_PERVASIVE, RTNH_F_ONLINK = 0x2, 0x4
KEEP_NH_FLAGS = RTNH_F_PERVASIVE | RTNH_F_ONLINK  # the kernel refuses DEAD/LINKDOWN in requests
VOLATILE_ATTRS = frozenset({RTA_TABLE, RTA_CACHEINFO, RTA_EXPIRES, RTA_UID})
IFF_UP = 0x1
IPPROTO_IPIP = 4
TUNNEL_DEVICE = "tunl0"

HEADER = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
IFINFOMSG = struct.Struct("=BxHiII")
NLA = struct.Struct("=HH")
RTNEXTHOP = struct.Struct("=HBBi")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
OUTER_IP = struct.Struct("!BBHHHBBH4s4s")

RECV_SIZE = 1 << 16
RCVBUF = 8 << 20
CHUNK_MESSAGES = 256
REPLY_TIMEOUT = 5.0
EVENT_READS = 64
PACKET_BURST = 64
VERDICT_CACHE = 4096
TICK = 1.0
WRITE = NLM_F_REQUEST | NLM_F_ACK
REPLACE = WRITE | NLM_F_REPLACE | NLM_F_CREATE
IMPLEMENTATIONS = {"userspace": "userspace-tun", "kernel": "kernel-ipip", None: "none"}

Key = tuple[bytes, int, int, int]  # dst, dst_len, tos, priority: one IPv4 route per table
Message = tuple[int, int, int, int, bytes]  # type, flags, seq, portid, body


class Overrun(Exception):
    """The kernel dropped netlink messages (ENOBUFS): state must be dumped again."""


# ---------------------------------------------------------------------------------------------
# Netlink encoding and decoding


def nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = NLA.size + len(payload)
    return NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def netlink_message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def split(data: bytes) -> Iterator[Message]:
    """The netlink messages in one datagram."""
    offset, end = 0, len(data)
    while offset + HEADER.size <= end:
        length, msg_type, flags, seq, portid = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        yield msg_type, flags, seq, portid, data[offset + HEADER.size:offset + length]
        offset += (length + 3) & ~3


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """Attribute type -> payload, from `offset` to the end of `data`."""
    found: dict[int, bytes] = {}
    end = len(data)
    while offset + 4 <= end:
        length, kind = NLA.unpack_from(data, offset)
        if length < 4:
            break
        found[kind] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def _normal(kind: int, payload: bytes) -> bytes:
    """An attribute as it may be sent back: nexthop flags only the kernel may set are cleared."""
    if kind != RTA_MULTIPATH:
        return payload
    out = bytearray(payload)
    offset = 0
    while offset + RTNEXTHOP.size <= len(out):
        length, flags, hops, ifindex = RTNEXTHOP.unpack_from(out, offset)
        if length < RTNEXTHOP.size:
            break
        RTNEXTHOP.pack_into(out, offset, length, flags & KEEP_NH_FLAGS, hops, ifindex)
        offset += (length + 3) & ~3
    return bytes(out)


class Route:
    """One IPv4 route as the kernel reports it: the rtmsg fields and the raw attributes."""

    __slots__ = ("dst_len", "tos", "table", "protocol", "scope", "type", "flags", "attrs", "key")

    def __init__(self, dst_len: int, tos: int, table: int, protocol: int, scope: int, route_type: int, flags: int,
                 attrs: dict[int, bytes]) -> None:
        self.dst_len, self.tos, self.table, self.protocol = dst_len, tos, table, protocol
        self.scope, self.type, self.flags, self.attrs = scope, route_type, flags, attrs
        priority = attrs.get(RTA_PRIORITY)
        self.key: Key = (attrs.get(RTA_DST, b""), dst_len, tos, U32.unpack(priority)[0] if priority else 0)

    @classmethod
    def parse(cls, body: bytes, tables: tuple[int, ...]) -> Route | None:
        """The route in an RTM_NEWROUTE/DELROUTE body, or None if it is not IPv4 or not in `tables`."""
        if len(body) < RTMSG.size:
            return None
        family, dst_len, _src_len, tos, table, protocol, scope, route_type, flags = RTMSG.unpack_from(body)
        if family != socket.AF_INET or (table != RT_TABLE_COMPAT and table not in tables):
            return None
        attrs = attributes(body, RTMSG.size)
        if RTA_TABLE in attrs:
            table = U32.unpack(attrs[RTA_TABLE])[0]
        if table not in tables:
            return None
        return cls(dst_len, tos, table, protocol, scope, route_type, flags, attrs)

    @property
    def gateway(self) -> bytes | None:
        return self.attrs.get(RTA_GATEWAY)

    @property
    def oif(self) -> int | None:
        oif = self.attrs.get(RTA_OIF)
        return U32.unpack(oif)[0] if oif else None

    def content(self) -> tuple:
        """What makes two routes with the same key the same route."""
        return (self.type, self.scope, self.protocol, self.flags & KEEP_NH_FLAGS,
                tuple(sorted((kind, _normal(kind, value)) for kind, value in self.attrs.items()
                             if kind not in VOLATILE_ATTRS)))

    def copy(self, table: int, add_flags: int = 0) -> Route:
        return Route(self.dst_len, self.tos, table, self.protocol, self.scope, self.type,
                     (self.flags & KEEP_NH_FLAGS) | add_flags, self.attrs)

    def encode(self, msg_type: int, seq: int) -> bytes:
        """RTM_NEWROUTE (create or replace) or RTM_DELROUTE (by key and protocol) for this route."""
        table_field = self.table if self.table < 256 else 0
        attrs = [nla(RTA_TABLE, U32.pack(self.table))]
        if msg_type == RTM_DELROUTE:
            header = RTMSG.pack(socket.AF_INET, self.dst_len, 0, self.tos, table_field, self.protocol,
                                RT_SCOPE_NOWHERE, 0, 0)
            attrs += [nla(kind, self.attrs[kind]) for kind in (RTA_DST, RTA_PRIORITY) if kind in self.attrs]
            return netlink_message(RTM_DELROUTE, WRITE, seq, header + b"".join(attrs))
        header = RTMSG.pack(socket.AF_INET, self.dst_len, 0, self.tos, table_field, self.protocol, self.scope,
                            self.type, self.flags & KEEP_NH_FLAGS)
        attrs += [nla(kind, _normal(kind, value)) for kind, value in self.attrs.items() if kind not in VOLATILE_ATTRS]
        return netlink_message(RTM_NEWROUTE, REPLACE, seq, header + b"".join(attrs))

    def describe(self, device: Callable[[int], str]) -> str:
        """Roughly what `ip route` prints."""
        words = [] if self.type == RTN_UNICAST else [{6: "blackhole", 7: "unreachable", 8: "prohibit"}.get(
            self.type, f"type {self.type}")]
        words.append(f"{socket.inet_ntoa(self.key[0]) if self.dst_len else '0.0.0.0'}/{self.dst_len}")
        if self.gateway:
            words.append(f"via {socket.inet_ntoa(self.gateway)}")
        if self.oif:
            words.append(f"dev {device(self.oif)}")
        if RTA_MULTIPATH in self.attrs:
            words.append("multipath")
        words.append(f"proto {self.protocol} table {self.table}")
        if self.flags & RTNH_F_ONLINK:
            words.append("onlink")
        if self.key[3]:
            words.append(f"metric {self.key[3]}")
        return " ".join(words)


def route_dump_request(seq: int) -> bytes:
    return netlink_message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0,
                                                                                     0, 0, 0))


def link_dump_request(seq: int) -> bytes:
    return netlink_message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, IFINFOMSG.pack(0, 0, 0, 0, 0))


def route_query(seq: int, dst: bytes) -> bytes:
    """RTM_GETROUTE for one destination: the kernel's own output route lookup."""
    return netlink_message(RTM_GETROUTE, NLM_F_REQUEST, seq, RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, 0)
                           + nla(RTA_DST, dst))


def parse_link(body: bytes) -> tuple[int, str, bool]:
    """Index, name and administrative state from an RTM_NEWLINK/DELLINK body."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
    name = attributes(body, IFINFOMSG.size).get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    return index, name, bool(flags & IFF_UP)


# ---------------------------------------------------------------------------------------------
# One netlink socket per namespace


class Channel:
    """A NETLINK_ROUTE socket opened in one namespace: synchronous requests, queued events."""

    def __init__(self, sock: socket.socket, cap_ack: bool) -> None:
        self.sock = sock
        self.cap_ack = cap_ack
        self.portid: int = sock.getsockname()[0]
        self.seq = 0
        self.backlog: deque[Message] = deque()
        self.overrun = False

    @classmethod
    def open(cls) -> Channel:
        """Open and subscribe a socket in the calling thread's namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            cap_ack = True
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                cap_ack = False
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:
                pass
            sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
            return cls(sock, cap_ack)
        except BaseException:
            sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq = self.seq % 0xFFFFFFFF + 1
        return self.seq

    def _read(self, deadline: float) -> list[Message]:
        """The next datagram's messages, waiting until `deadline`; ENOBUFS raises Overrun."""
        while True:
            try:
                return list(split(self.sock.recv(RECV_SIZE)))
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no netlink reply within 5 s") from None
                select.select([self.sock], [], [], remaining)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overrun = True
                    raise Overrun() from None
                raise

    def _error(self, body: bytes, flags: int) -> tuple[int, str]:
        """The errno and extended-ack text of an NLMSG_ERROR body."""
        code = -I32.unpack_from(body)[0]
        text = ""
        if flags & NLM_F_ACK_TLVS:
            offset = 4 + (HEADER.size if self.cap_ack else (U32.unpack_from(body, 4)[0] + 3) & ~3)
            raw = attributes(body, offset).get(NLMSGERR_ATTR_MSG, b"")
            text = raw.split(b"\0", 1)[0].decode(errors="replace")
        return code, text

    def transact(self, requests: list[bytes]) -> dict[int, tuple[int, str]]:
        """Send acked requests in chunks, reading each chunk's acks; the failures by sequence number."""
        failures: dict[int, tuple[int, str]] = {}
        for start in range(0, len(requests), CHUNK_MESSAGES):
            chunk = requests[start:start + CHUNK_MESSAGES]
            pending = {HEADER.unpack_from(request)[3] for request in chunk}
            self.sock.send(b"".join(chunk))
            deadline = time.monotonic() + REPLY_TIMEOUT
            while pending:
                for message in self._read(deadline):
                    msg_type, flags, seq, portid, body = message
                    if msg_type == NLMSG_ERROR and portid == self.portid and seq in pending:
                        pending.discard(seq)
                        code, text = self._error(body, flags)
                        if code:
                            failures[seq] = (code, text)
                    else:
                        self.backlog.append(message)
        return failures

    def dump(self, make_request: Callable[[int], bytes]) -> tuple[list[Message], bool]:
        """Run a dump; its messages, and whether the kernel says it was interrupted by a change."""
        seq = self.next_seq()
        self.sock.send(make_request(seq))
        found: list[Message] = []
        interrupted = False
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            done = False
            for message in self._read(deadline):
                msg_type, flags, mseq, portid, body = message
                if done or portid != self.portid or mseq != seq or not (
                        flags & NLM_F_MULTI or msg_type in (NLMSG_DONE, NLMSG_ERROR)):
                    self.backlog.append(message)
                    continue
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if msg_type == NLMSG_ERROR:
                    code, text = self._error(body, flags)
                    raise OSError(code, f"dump refused: {os.strerror(code)} {text}".strip())
                if msg_type == NLMSG_DONE:
                    done = True
                else:
                    found.append(message)
            if done:
                return found, interrupted

    def query(self, dst: bytes) -> Route | None:
        """The kernel's route to `dst` (RTM_GETROUTE), or None when it has none."""
        seq = self.next_seq()
        self.sock.send(route_query(seq, dst))
        deadline = time.monotonic() + REPLY_TIMEOUT
        answer: Route | None = None
        answered = False
        while not answered:
            for message in self._read(deadline):
                msg_type, _flags, mseq, portid, body = message
                if answered or portid != self.portid or mseq != seq:
                    self.backlog.append(message)
                elif msg_type == NLMSG_ERROR:
                    answered = True
                elif msg_type == RTM_NEWROUTE:
                    answered = True
                    family, dst_len, _s, tos, table, protocol, scope, rtype, flags = RTMSG.unpack_from(body)
                    answer = Route(dst_len, tos, table, protocol, scope, rtype, flags, attributes(body, RTMSG.size))
                else:
                    self.backlog.append(message)
        return answer

    def events(self) -> list[Message]:
        """Queued events, then whatever the socket holds now (ENOBUFS sets `overrun`)."""
        found = list(self.backlog)
        self.backlog.clear()
        for _ in range(EVENT_READS):
            try:
                found.extend(split(self.sock.recv(RECV_SIZE)))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overrun = True
        return found


# ---------------------------------------------------------------------------------------------
# Mirroring


class Mirror:
    """One node's BIRD table and main table as last seen, and the writes that make them agree."""

    def __init__(self, table: int) -> None:
        self.table = table
        self.tables = (table, RT_TABLE_MAIN)
        self.tunl0: int | None = None
        self.source: dict[Key, Route] = {}   # table, proto bird: what BIRD exported
        self.copies: dict[Key, Route] = {}   # table, other protocols: copies of main's alien routes
        self.mirrors: dict[Key, Route] = {}  # main, proto bird: what the agent programmed
        self.main: dict[Key, Route] = {}     # main, every other protocol
        self.conflicts: set[tuple[int, Key]] = set()

    def load(self, routes: Iterable[Route]) -> None:
        """Forget everything and take a fresh dump."""
        for store in (self.source, self.copies, self.mirrors, self.main):
            store.clear()
        for route in routes:
            self.observe(route, False)

    def observe(self, route: Route, deleted: bool) -> None:
        """Record an added, replaced or deleted route of either table."""
        bird = route.protocol == RTPROT_BIRD
        if route.table == self.table:
            mine, other = (self.source, self.copies) if bird else (self.copies, self.source)
        else:
            mine, other = (self.mirrors, self.main) if bird else (self.main, self.mirrors)
        if deleted:
            mine.pop(route.key, None)
        else:
            mine[route.key] = route
            other.pop(route.key, None)  # a replace by another protocol leaves no delete event

    def keys(self) -> set[Key]:
        return set(self.source) | set(self.copies) | set(self.mirrors) | set(self.main)

    def wanted_in_main(self, key: Key) -> Route | None:
        """What Calico's BIRD would have programmed into main for this key."""
        route = self.source.get(key)
        if route is None:
            return None
        tunnelled = (self.tunl0 is not None and route.oif == self.tunl0 and RTA_MULTIPATH not in route.attrs)
        if tunnelled and route.gateway is None:
            return None  # a next-hop helper (`<node ip> dev tunl0`): BIRD's own business
        if tunnelled:
            return route.copy(RT_TABLE_MAIN, RTNH_F_ONLINK)
        return route.copy(RT_TABLE_MAIN)

    def wanted_in_table(self, key: Key) -> Route | None:
        """An alien main route, as BIRD's `learn` would see it on a real node."""
        route = self.main.get(key)
        if route is None or route.protocol == RTPROT_KERNEL:
            return None
        return route.copy(self.table)

    def plan(self, keys: Iterable[Key]) -> tuple[list[tuple[int, Route]], list[str]]:
        """(RTM_NEWROUTE or RTM_DELROUTE, route) writes for `keys`, and conflicts newly found."""
        writes: list[tuple[int, Route]] = []
        notes: list[str] = []
        for key in keys:
            self._plan_one(key, self.wanted_in_main(key), self.mirrors.get(key), self.main, RT_TABLE_MAIN,
                           writes, notes)
            self._plan_one(key, self.wanted_in_table(key), self.copies.get(key), self.source, self.table,
                           writes, notes)
        return writes, notes

    def _plan_one(self, key: Key, want: Route | None, have: Route | None, occupied: dict[Key, Route], table: int,
                  writes: list[tuple[int, Route]], notes: list[str]) -> None:
        if want is None:
            if have is not None:
                writes.append((RTM_DELROUTE, have))
            return
        if key in occupied:
            if (table, key) not in self.conflicts:
                self.conflicts.add((table, key))
                notes.append(f"not writing into table {table}: a protocol {occupied[key].protocol} route holds "
                             f"the same destination and metric")
            return
        self.conflicts.discard((table, key))
        if have is None or have.content() != want.content():
            writes.append((RTM_NEWROUTE, want))


# ---------------------------------------------------------------------------------------------
# Userspace IPIP


@dataclass
class Counters:
    """Per-node tunnel counters; bytes are inner-packet bytes, as tunl0's own counters count them."""

    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


Verdict = tuple[bytes, str] | str  # (outer destination, as text) or the reason to drop


class Tunnel:
    """IPIP in userspace: tunl0 (a TUN device) on one side, a raw IPPROTO_IPIP socket on the other."""

    def __init__(self, tun_fd: int, raw: socket.socket, tun_index: int, resolve: Callable[[bytes], Verdict],
                 counters: Counters) -> None:
        self.tun_fd, self.raw, self.tun_index = tun_fd, raw, tun_index
        self.resolve, self.counters = resolve, counters
        self.buffer = bytearray(RECV_SIZE)
        self.view = memoryview(self.buffer)
        self.failure: str | None = None

    @staticmethod
    def open_here() -> tuple[int, socket.socket, int]:
        """Attach tunl0 and open the raw socket, in the calling thread's namespace."""
        tun_fd = tun.open_tun(TUNNEL_DEVICE)
        try:
            tun_index = socket.if_nametoindex(TUNNEL_DEVICE)
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, IPPROTO_IPIP)
        except BaseException:
            os.close(tun_fd)
            raise
        try:
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            try:
                raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
            except OSError:
                pass
        except BaseException:
            raw.close()
            os.close(tun_fd)
            raise
        return tun_fd, raw, tun_index

    def close(self) -> None:
        self.raw.close()
        os.close(self.tun_fd)

    def from_tun(self) -> None:
        """Encapsulate what the kernel routed into tunl0 and send it to the route's gateway."""
        counters = self.counters
        for _ in range(PACKET_BURST):
            try:
                packet = os.read(self.tun_fd, RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.failure = f"reading tunl0: {exc.strerror}"
                return
            size = len(packet)
            if size < 20 or packet[0] >> 4 != 4:
                counters.drop("not-ipv4")
                continue
            verdict = self.resolve(packet[16:20])
            if isinstance(verdict, str):
                counters.drop(verdict)
                continue
            gateway, gateway_text = verdict
            outer = OUTER_IP.pack(0x45, 0, 20 + size, 0, 0x4000 if packet[6] & 0x40 else 0, packet[8],
                                  IPPROTO_IPIP, 0, b"\0\0\0\0", gateway)
            try:
                self.raw.sendto(outer + packet, (gateway_text, 0))
            except BlockingIOError:
                counters.drop("send-busy")
                continue
            except OSError as exc:
                counters.drop("too-big" if exc.errno == errno.EMSGSIZE else "send-error")
                continue
            counters.tx_packets += 1
            counters.tx_bytes += size

    def from_network(self) -> None:
        """Strip the outer header of each IPIP packet received and hand the inner one to tunl0."""
        counters, buffer = self.counters, self.buffer
        for _ in range(PACKET_BURST):
            try:
                size = self.raw.recv_into(buffer)
            except BlockingIOError:
                return
            except OSError:
                counters.drop("receive-error")
                return
            header = (buffer[0] & 0x0F) * 4
            if size < header + 20 or buffer[header] >> 4 != 4:
                counters.drop("malformed")
                continue
            try:
                os.write(self.tun_fd, self.view[header:size])
            except OSError:
                counters.drop("tun-write-error")
                continue
            counters.rx_packets += 1
            counters.rx_bytes += size - header


# ---------------------------------------------------------------------------------------------
# Nodes


@dataclass(frozen=True)
class NodeSpec:
    name: str
    netns: str
    tunnel: str | None


@dataclass(frozen=True)
class Spec:
    """The agent's spec file."""

    lab: str
    table: int
    log: str
    stats: str
    ready: str
    nodes: tuple[NodeSpec, ...]

    @classmethod
    def load(cls, path: str) -> Spec:
        """Read and check the spec; ValueError says what is wrong."""
        with open(path) as handle:
            data = json.load(handle)
        try:
            table = int(data["table"])
            nodes = tuple(NodeSpec(str(n["name"]), str(n["netns"]), n.get("tunnel")) for n in data["nodes"])
            spec = cls(str(data["lab"]), table, str(data["log"]), str(data["stats"]), str(data["ready"]), nodes)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: bad spec ({type(exc).__name__}: {exc})") from None
        if not 0 < table < 2 ** 32 or table in (RT_TABLE_COMPAT, 253, RT_TABLE_MAIN, 255):
            raise ValueError(f"{path}: table {table} is reserved or out of range")
        for node in nodes:
            if node.tunnel not in IMPLEMENTATIONS:
                raise ValueError(f"{path}: node {node.name}: tunnel must be userspace, kernel or null")
        if len({node.name for node in nodes}) != len(nodes):
            raise ValueError(f"{path}: node names repeat")
        return spec


@dataclass
class Handles:
    """What a node's namespace gave: its inode, netlink socket and, for userspace IPIP, tunl0 and a raw socket."""

    inode: int
    channel: Channel
    tunnel: tuple[int, socket.socket, int] | None = None
    tunnel_error: str | None = None


def open_in_namespace(spec: NodeSpec) -> Handles:
    """Open a node's sockets; the calling thread must be inside `spec.netns`."""
    inode = os.stat(namespace.path(spec.netns)).st_ino
    handles = Handles(inode, Channel.open())
    if spec.tunnel == "userspace":
        try:
            handles.tunnel = Tunnel.open_here()
        except OSError as exc:
            handles.tunnel_error = str(exc)
    return handles


def open_all(specs: list[NodeSpec]) -> dict[str, Handles | BaseException]:
    """Open every node's handles on one helper thread that visits each namespace in turn."""
    results: dict[str, Handles | BaseException] = {}

    def worker() -> None:
        for spec in specs:
            try:
                with namespace.entered(spec.netns):
                    results[spec.name] = open_in_namespace(spec)
            except Exception as exc:  # reported per node
                results[spec.name] = exc

    thread = threading.Thread(target=worker, name="routeagent-open")
    thread.start()
    thread.join()
    return results


class Log:
    """Timestamped lines appended to the agent's log file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.handle = open(path, "a", buffering=1)

    def __call__(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        self.handle.write(f"{stamp} {text}\n")

    def reopen(self, path: str) -> None:
        self.handle.close()
        self.path = path
        self.handle = open(path, "a", buffering=1)

    def close(self) -> None:
        self.handle.close()


class Node:
    """One node: its netlink channel, its mirror state and, for userspace IPIP, its tunnel."""

    def __init__(self, spec: NodeSpec, table: int, handles: Handles, log: Log, counters: Counters) -> None:
        self.spec, self.log, self.counters = spec, log, counters
        self.inode = handles.inode
        self.channel = handles.channel
        self.mirror = Mirror(table)
        self.links: dict[int, tuple[str, bool]] = {}
        self.verdicts: dict[bytes, Verdict] = {}
        self.failed: set[Key] = set()
        self.errors = 0
        self.resync: str | None = None    # reconcile at the end of this loop turn, for this reason
        self.deferred: str | None = None  # reconcile at the next tick (a reconcile just failed)
        self.tunnel: Tunnel | None = None
        self.tunnel_error = handles.tunnel_error
        if handles.tunnel:
            self.tunnel = Tunnel(*handles.tunnel, self.resolve, counters)

    @property
    def name(self) -> str:
        return self.spec.name

    def device(self, index: int) -> str:
        return self.links.get(index, (f"if{index}", False))[0]

    def close(self) -> None:
        if self.tunnel:
            self.tunnel.close()
            self.tunnel = None
        self.channel.close()

    # -- reconcile --------------------------------------------------------------------------

    def reconcile(self, reason: str) -> None:
        """Dump links and routes, rebuild the state, and write whatever differs; one log line."""
        started = time.perf_counter()
        self.resync = None
        problem = "the tables kept changing during the dump"
        for _attempt in range(5):
            try:
                links, links_cut = self.channel.dump(link_dump_request)
                routes, routes_cut = self.channel.dump(route_dump_request)
            except (Overrun, TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
                continue
            if not (links_cut or routes_cut):
                break
        else:
            self.log(f"{self.name}: reconcile ({reason}) failed, retrying in a second: {problem}")
            self.deferred = reason
            return
        self.channel.overrun = False
        self.links = {}
        for _t, _f, _s, _p, body in links:
            index, name, up = parse_link(body)
            self.links[index] = (name, up)
        self.mirror.tunl0 = next((i for i, (name, _) in self.links.items() if name == TUNNEL_DEVICE), None)
        self.verdicts.clear()
        tables = self.mirror.tables
        self.mirror.load(r for _t, _f, _s, _p, body in routes if (r := Route.parse(body, tables)))
        found = (f"{len(self.mirror.source)} bird routes in table {self.mirror.table}, "
                 f"{len(self.mirror.mirrors)} in main")
        writes = self._write(self.mirror.keys())
        elapsed = (time.perf_counter() - started) * 1000
        summary = {}
        for op, route in writes:
            where = "main" if route.table == RT_TABLE_MAIN else "table"
            sign = "+" if op == RTM_NEWROUTE else "-"
            summary[f"{where}{sign}"] = summary.get(f"{where}{sign}", 0) + 1
        self.log(f"{self.name}: reconciled ({reason}): found {found}; wrote main +{summary.get('main+', 0)} "
                 f"-{summary.get('main-', 0)}, table +{summary.get('table+', 0)} -{summary.get('table-', 0)} "
                 f"in {elapsed:.1f} ms")

    def ensure_tunnel(self) -> None:
        """Re-attach tunl0 when it was recreated or could not be attached before."""
        if self.spec.tunnel != "userspace":
            return
        if self.tunnel and self.tunnel.failure is None and self.tunnel.tun_index == self.mirror.tunl0:
            return
        if self.tunnel:
            self.log(f"{self.name}: tunl0 changed ({self.tunnel.failure or 'new index'}), attaching again")
            self.tunnel.close()
            self.tunnel = None
        if self.mirror.tunl0 is None:
            self.tunnel_error = "no tunl0 in the namespace"
            return
        try:
            opened = namespace.run_in(self.spec.netns, Tunnel.open_here)
        except OSError as exc:
            if self.tunnel_error != str(exc):
                self.log(f"{self.name}: cannot attach tunl0: {exc}")
            self.tunnel_error = str(exc)
            return
        self.tunnel = Tunnel(*opened, self.resolve, self.counters)
        self.tunnel_error = None

    # -- events -----------------------------------------------------------------------------

    def pump(self) -> None:
        """Handle the queued netlink events and send the writes they call for, in one batch."""
        messages = self.channel.events()
        if self.channel.overrun:
            self.resync = self.resync or "netlink overrun"
        keys: dict[Key, None] = {}
        retry = False
        tables = self.mirror.tables
        for msg_type, _flags, _seq, portid, body in messages:
            if msg_type == RTM_NEWROUTE or msg_type == RTM_DELROUTE:
                self.verdicts.clear()
                route = Route.parse(body, tables)
                if route is None:
                    continue
                self.mirror.observe(route, msg_type == RTM_DELROUTE)
                if portid != self.channel.portid:  # our own writes' echoes call for nothing
                    keys[route.key] = None
            elif msg_type == RTM_NEWLINK or msg_type == RTM_DELLINK:
                retry |= self._link_event(msg_type, body)
            elif msg_type == RTM_DELADDR:
                self.verdicts.clear()
                self.resync = self.resync or "address removed"
            elif msg_type == RTM_NEWADDR:
                retry = True
        if retry:
            keys.update(dict.fromkeys(self.failed))
        if keys:
            self._write(keys)

    def _link_event(self, msg_type: int, body: bytes) -> bool:
        """Track links; the kernel drops routes silently when a link goes down or away, so resync then."""
        index, name, up = parse_link(body)
        self.verdicts.clear()
        before = self.links.get(index)
        if msg_type == RTM_DELLINK:
            self.links.pop(index, None)
            self.resync = self.resync or f"{name} removed"
            return False
        self.links[index] = (name, up)
        if name == TUNNEL_DEVICE and self.mirror.tunl0 != index:
            self.resync = self.resync or "tunl0 appeared"
        elif before and before[1] and not up:
            self.resync = self.resync or f"{name} down"
        return up and not (before and before[1])

    def _write(self, keys: Iterable[Key]) -> list[tuple[int, Route]]:
        """Plan and send the writes for `keys`; log refusals."""
        writes, notes = self.mirror.plan(keys)
        for note in notes:
            self.log(f"{self.name}: {note}")
        if not writes:
            return writes
        requests: list[bytes] = []
        sent: dict[int, tuple[int, Route]] = {}
        for op, route in writes:
            seq = self.channel.next_seq()
            requests.append(route.encode(op, seq))
            sent[seq] = (op, route)
        try:
            failures = self.channel.transact(requests)
        except (Overrun, TimeoutError) as exc:
            self.resync = self.resync or f"lost acks ({type(exc).__name__})"
            return writes
        for seq, (op, route) in sent.items():
            failure = failures.get(seq)
            if failure is None or (op == RTM_DELROUTE and failure[0] == errno.ESRCH):
                self.failed.discard(route.key)
                continue
            code, text = failure
            self.failed.add(route.key)
            self.errors += 1
            verb = "replace" if op == RTM_NEWROUTE else "delete"
            self.log(f"{self.name}: {verb} {route.describe(self.device)}: {os.strerror(code)}"
                     + (f": {text}" if text else ""))
        return writes

    # -- tunnel routing ---------------------------------------------------------------------

    def resolve(self, dst: bytes) -> Verdict:
        """Where an inner packet to `dst` goes: the gateway of the kernel's route, if via tunl0."""
        verdict = self.verdicts.get(dst)
        if verdict is None:
            verdict = self._decide(dst)
            if len(self.verdicts) >= VERDICT_CACHE:
                self.verdicts.clear()
            self.verdicts[dst] = verdict
        return verdict

    def _decide(self, dst: bytes) -> Verdict:
        tunnel_index = self.tunnel.tun_index if self.tunnel else None
        try:
            route = self.channel.query(dst)
        except (Overrun, TimeoutError):
            self.resync = self.resync or "netlink overrun"
            return "no-route"
        if route is None:
            return "no-route"
        if route.oif != tunnel_index:
            return "not-via-tunl0"
        if route.gateway is None:
            return "no-gateway"
        try:
            outer = self.channel.query(route.gateway)
        except (Overrun, TimeoutError):
            return "no-route"
        if outer is None:
            return "gateway-unreachable"
        if outer.oif == tunnel_index:
            return "loop"
        return route.gateway, socket.inet_ntoa(route.gateway)

    def stats(self) -> dict:
        c = self.counters
        return {"netns": self.spec.netns, "tunnel": self.spec.tunnel,
                "implementation": IMPLEMENTATIONS[self.spec.tunnel],
                "attached": self.tunnel is not None if self.spec.tunnel == "userspace" else None,
                "tunnel_error": self.tunnel_error,
                "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "rx_packets": c.rx_packets,
                "rx_bytes": c.rx_bytes, "drops": dict(sorted(c.drops.items())), "drops_total": sum(c.drops.values()),
                "routes": {"bird": len(self.mirror.source), "mirrored": len(self.mirror.mirrors),
                           "copied": len(self.mirror.copies)},
                "write_errors": self.errors}


# ---------------------------------------------------------------------------------------------
# The agent


def write_json(path: str, data: dict) -> None:
    """Replace `path` atomically."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


class Agent:
    """Every node of one lab, served by one event loop on the calling thread."""

    def __init__(self, spec_path: str, spec: Spec) -> None:
        self.spec_path, self.spec = spec_path, spec
        self.log = Log(spec.log)
        self.selector = selectors.DefaultSelector()
        self.nodes: dict[str, Node] = {}
        self.generation = 0
        self.stats_written: dict | None = None
        self.stats_time = 0.0
        self.stop: str | None = None
        self.wake_read, self.wake_write = socket.socketpair()

    # -- nodes ------------------------------------------------------------------------------

    def add_nodes(self, specs: list[NodeSpec], counters: dict[str, Counters]) -> None:
        """Open and register nodes; a namespace that cannot be entered is logged and skipped."""
        results = open_all(specs)
        for spec in specs:
            result = results[spec.name]
            if isinstance(result, BaseException):
                self.log(f"{spec.name}: cannot serve namespace {spec.netns}: {result}")
                continue
            node = Node(spec, self.spec.table, result, self.log, counters.get(spec.name, Counters()))
            if result.tunnel_error:
                self.log(f"{spec.name}: cannot attach tunl0: {result.tunnel_error}")
            self.nodes[spec.name] = node
            self.selector.register(node.channel.fileno(), selectors.EVENT_READ, node.pump)
            self._register_tunnel(node)

    def _register_tunnel(self, node: Node) -> None:
        if node.tunnel:
            self.selector.register(node.tunnel.tun_fd, selectors.EVENT_READ, node.tunnel.from_tun)
            self.selector.register(node.tunnel.raw.fileno(), selectors.EVENT_READ, node.tunnel.from_network)

    def _unregister_tunnel(self, node: Node) -> None:
        if node.tunnel:
            self.selector.unregister(node.tunnel.tun_fd)
            self.selector.unregister(node.tunnel.raw.fileno())

    def drop_node(self, name: str, reason: str | None) -> Counters:
        """Stop serving a node and close its sockets (log why, unless the agent is stopping)."""
        node = self.nodes.pop(name)
        self._unregister_tunnel(node)
        self.selector.unregister(node.channel.fileno())
        node.close()
        if reason:
            self.log(f"{name}: no longer served ({reason})")
        return node.counters

    def reconcile(self, node: Node, reason: str) -> None:
        """Reconcile a node, re-attaching its tunnel if tunl0 changed."""
        self._unregister_tunnel(node)
        node.reconcile(reason)
        node.ensure_tunnel()
        self._register_tunnel(node)

    # -- files ------------------------------------------------------------------------------

    def stats(self) -> dict:
        return {"lab": self.spec.lab, "pid": os.getpid(), "table": self.spec.table,
                "nodes": {name: node.stats() for name, node in sorted(self.nodes.items())}}

    def write_stats(self, force: bool = False) -> None:
        """Write the stats file when they changed, at most once a second unless forced."""
        now = time.monotonic()
        if not force and now - self.stats_time < TICK:
            return
        data = self.stats()
        if data == self.stats_written and not force:
            return
        self.stats_written, self.stats_time = data, now
        try:
            write_json(self.spec.stats, {**data, "updated": time.time()})
        except OSError as exc:
            self.log(f"cannot write stats {self.spec.stats}: {exc}")

    def write_ready(self) -> None:
        write_json(self.spec.ready, {"pid": os.getpid(), "lab": self.spec.lab, "generation": self.generation,
                                     "nodes": sorted(self.nodes), "time": time.time()})

    def remove_ready(self) -> None:
        try:
            with open(self.spec.ready) as handle:
                if json.load(handle).get("pid") != os.getpid():
                    return
            os.unlink(self.spec.ready)
        except (OSError, ValueError):
            pass

    # -- signals ----------------------------------------------------------------------------

    def _on_wake(self) -> None:
        try:
            data = self.wake_read.recv(64)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGHUP:
                self.reload()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.stop = signal.Signals(signum).name

    def reload(self) -> None:
        """Re-read the spec, open or drop nodes accordingly, and reconcile every node."""
        try:
            spec = Spec.load(self.spec_path)
        except (OSError, ValueError) as exc:
            self.log(f"reload refused, keeping the old spec: {exc}")
            return
        if spec.log != self.spec.log:
            self.log.reopen(spec.log)
        wanted = {node.name: node for node in spec.nodes}
        counters: dict[str, Counters] = {}
        for name, node in list(self.nodes.items()):
            if spec.table != self.spec.table or wanted.get(name) != node.spec:
                counters[name] = self.drop_node(name, "spec changed" if name in wanted else "removed from the spec")
        if spec.ready != self.spec.ready:
            self.remove_ready()
        self.spec = spec
        self.add_nodes([n for n in spec.nodes if n.name not in self.nodes], counters)
        for node in list(self.nodes.values()):
            self.reconcile(node, "SIGHUP")
        self.generation += 1
        self.write_ready()
        self.write_stats(force=True)

    # -- the loop ---------------------------------------------------------------------------

    def check_namespaces(self) -> None:
        """Drop nodes whose namespace was deleted (or replaced by another of the same name)."""
        for name, node in list(self.nodes.items()):
            if namespace.inode(node.spec.netns) != node.inode:
                self.drop_node(name, f"namespace {node.spec.netns} is gone")

    def run(self) -> int:
        """Start, reconcile, write the ready file and serve until a signal or no namespace is left."""
        started = time.perf_counter()
        cpu = time.process_time()
        self.remove_ready_stale()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        self.selector.register(self.wake_read.fileno(), selectors.EVENT_READ, self._on_wake)
        self.log(f"starting: lab {self.spec.lab}, table {self.spec.table}, {len(self.spec.nodes)} nodes, "
                 f"pid {os.getpid()}")
        self.add_nodes(list(self.spec.nodes), {})
        if not self.nodes:
            self.log("no node namespace could be served; exiting")
            return 1
        for node in list(self.nodes.values()):
            self.reconcile(node, "start")
        self.write_stats(force=True)
        self.write_ready()
        self.log(f"ready: {len(self.nodes)} nodes in {(time.perf_counter() - started) * 1000:.0f} ms "
                 f"({(time.process_time() - cpu) * 1000:.0f} ms CPU)")
        try:
            return self.loop()
        except Exception:
            self.log(f"fatal: {traceback.format_exc()}")
            raise
        finally:
            self.write_stats(force=True)
            self.remove_ready()
            for name in list(self.nodes):
                self.drop_node(name, None)
            self.log(f"stopped ({time.process_time() * 1000:.0f} ms CPU in all)")
            self.log.close()

    def remove_ready_stale(self) -> None:
        try:
            os.unlink(self.spec.ready)
        except FileNotFoundError:
            pass

    def loop(self) -> int:
        next_tick = time.monotonic() + TICK
        while self.stop is None:
            busy = any(node.channel.backlog or node.resync for node in self.nodes.values())
            timeout = 0 if busy else max(0.0, next_tick - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if self.selector.get_map().get(key.fd) is key:  # a callback may have closed it
                    key.data()
            for node in list(self.nodes.values()):
                if node.channel.backlog:
                    node.pump()
                if node.tunnel and node.tunnel.failure:
                    node.resync = node.resync or node.tunnel.failure
                if node.resync:
                    self.reconcile(node, node.resync)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self.check_namespaces()
                for node in self.nodes.values():
                    node.resync, node.deferred = node.resync or node.deferred, None
                if not self.nodes:
                    self.log("every namespace is gone; exiting")
                    return 0
                self.write_stats()
        self.log(f"stopping on {self.stop}")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.bgp.routeagent <spec.json>", file=sys.stderr)
        return 2
    try:
        spec = Spec.load(args[0])
    except (OSError, ValueError) as exc:
        print(f"routeagent: {exc}", file=sys.stderr)
        return 2
    try:
        agent = Agent(args[0], spec)
    except OSError as exc:
        print(f"routeagent: cannot open the log {spec.log}: {exc.strerror}", file=sys.stderr)
        return 2
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
