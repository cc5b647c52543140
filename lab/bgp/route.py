"""A kernel IPv4 route as rtnetlink carries it, and the requests the route agent sends about routes."""

from __future__ import annotations

import socket
from collections.abc import Callable

from lab.netns.rtnl import (
    IFF_UP,
    IFINFOMSG,
    IFLA_IFNAME,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    REPLACE,
    RT_SCOPE_NOWHERE,
    RT_TABLE_COMPAT,
    RTA_CACHEINFO,
    RTA_DST,
    RTA_EXPIRES,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTA_UID,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTMSG,
    RTN_UNICAST,
    RTNEXTHOP,
    RTNH_F_ONLINK,
    RTNH_F_PERVASIVE,
    U32,
    WRITE,
    attributes,
    netlink_message,
    nla,
)

KEEP_NH_FLAGS = RTNH_F_PERVASIVE | RTNH_F_ONLINK  # the kernel refuses DEAD/LINKDOWN in requests
VOLATILE_ATTRS = frozenset({RTA_TABLE, RTA_CACHEINFO, RTA_EXPIRES, RTA_UID})

Key = tuple[bytes, int, int, int]  # dst, dst_len, tos, priority: one IPv4 route per table


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

    def content(self) -> tuple[object, ...]:
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
