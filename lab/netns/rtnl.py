"""rtnetlink on the wire: message and attribute framing, and the numbers of linux/rtnetlink.h.

Shared by the route agent (lab/bgp), which speaks NETLINK_ROUTE directly for speed, and by the
substrate's fast path for bulk neighbour, fdb and route messages (lab/netns/fastmsg.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

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
IFF_UP = 0x1

HEADER = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
IFINFOMSG = struct.Struct("=BxHiII")
NLA = struct.Struct("=HH")
RTNEXTHOP = struct.Struct("=HBBi")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
WRITE = NLM_F_REQUEST | NLM_F_ACK
REPLACE = WRITE | NLM_F_REPLACE | NLM_F_CREATE

Message = tuple[int, int, int, int, bytes]  # type, flags, seq, portid, body


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
