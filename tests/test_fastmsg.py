"""The fast neighbour/fdb/route encoder packs exactly the bytes pyroute2 packs."""

from __future__ import annotations

import socket

import pytest
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from lab.netns import fastmsg

RTM_NEWNEIGH, RTM_NEWROUTE = 28, 24
FLAGS = 0x1 | 0x4 | 0x400 | 0x100  # REQUEST | ACK | CREATE | REPLACE


def pyroute2_bytes(msg, msg_type: int, seq: int, flags: int = FLAGS) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def test_arp_entry_matches_pyroute2():
    msg = ndmsg()
    msg["family"], msg["ifindex"], msg["state"], msg["ndm_type"] = socket.AF_INET, 3, 0x80, 1
    msg["attrs"] = [("NDA_DST", "10.244.1.0"), ("NDA_LLADDR", "de:4a:b1:09:77:e3")]
    fast = fastmsg.neighbour(RTM_NEWNEIGH, FLAGS, 7, family=socket.AF_INET, ifindex=3, state=0x80, ndm_flags=0,
                             ndm_type=1, dst="10.244.1.0", lladdr="de:4a:b1:09:77:e3")
    assert fast == pyroute2_bytes(msg, RTM_NEWNEIGH, 7)


def test_fdb_entry_matches_pyroute2():
    msg = ndmsg()
    msg["family"], msg["ifindex"], msg["state"], msg["flags"] = socket.AF_BRIDGE, 3, 0x80, 0x02
    msg["attrs"] = [("NDA_LLADDR", "de:4a:b1:09:77:e3"), ("NDA_DST", "192.168.10.72")]
    fast = fastmsg.neighbour(RTM_NEWNEIGH, FLAGS, 9, family=socket.AF_BRIDGE, ifindex=3, state=0x80, ndm_flags=0x02,
                             ndm_type=0, dst="192.168.10.72", lladdr="de:4a:b1:09:77:e3", lladdr_first=True)
    assert fast == pyroute2_bytes(msg, RTM_NEWNEIGH, 9)


@pytest.mark.parametrize("dst,dst_len,gateway,oif,flags,scope", [
    ("10.244.1.0", 24, "10.244.1.0", 3, 0x4, 0),     # flannel vxlan: via <subnet>.0 dev flannel.1 onlink
    ("10.244.1.0", 24, "192.168.10.72", None, 0, 0),  # DirectRouting: via <node ip>, kernel picks the device
    ("0.0.0.0", 0, "192.168.10.1", 2, 0, 0),          # default route
    ("10.244.0.5", 32, None, 7, 0, 253),             # a device route
])
def test_route_matches_pyroute2(dst, dst_len, gateway, oif, flags, scope):
    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["table"], msg["proto"] = socket.AF_INET, dst_len, 254, 3
    msg["type"], msg["scope"], msg["flags"] = 1, scope, flags
    attrs = [("RTA_TABLE", 254)]
    if dst_len:
        attrs.append(("RTA_DST", dst))
    if gateway:
        attrs.append(("RTA_GATEWAY", gateway))
    if oif:
        attrs.append(("RTA_OIF", oif))
    msg["attrs"] = attrs
    fast = fastmsg.route(RTM_NEWROUTE, FLAGS, 11, dst=dst, dst_len=dst_len, table=254, protocol=3, scope=scope,
                         route_type=1, rtm_flags=flags, gateway=gateway, oif=oif)
    assert fast == pyroute2_bytes(msg, RTM_NEWROUTE, 11)


def test_cached_messages_are_the_messages_encoded_one_by_one():
    """Objects shared between namespaces are encoded once; each copy carries its own sequence number, and an
    object on a device with another index is encoded again. Expected bytes: pyroute2's encoding."""
    from lab.netns import netlink
    from lab.netns.plan import FdbEntry, Link, NamespacePlan, Neighbour, Route

    neighbour = Neighbour("flannel.1", "10.244.1.0", "de:4a:b1:09:77:e3")
    fdb = FdbEntry("flannel.1", "de:4a:b1:09:77:e3", "192.168.10.72")
    route = Route("10.244.1.0/24", gateway="10.244.1.0", dev="flannel.1", onlink=True)
    direct = Route("10.244.2.0/24", gateway="192.168.10.73")
    links = (Link("lo", "existing", 1), Link("eth0", "existing", 2), Link("flannel.1", "vxlan", 3))
    first = NamespacePlan("a", "node", "a", links=links, neighbours=(neighbour,), fdb=(fdb,), routes=(route, direct))
    second = NamespacePlan("b", "node", "b", links=links[:1] + (Link("flannel.1", "vxlan", 5),),
                           neighbours=(neighbour,), fdb=(fdb,), routes=(direct, route))
    cache = netlink.MessageCache()
    for ns in (first, second):
        indexes = {link.name: link.index for link in ns.links}
        batch = netlink._object_batch(ns, indexes, cache)
        expected = []
        for seq, item in enumerate(ns.neighbours + ns.fdb + ns.routes, 1):
            if isinstance(item, Neighbour):
                msg = ndmsg()
                msg["family"], msg["ifindex"] = socket.AF_INET, indexes[item.dev]
                msg["state"], msg["ndm_type"] = 0x80, 1
                msg["attrs"] = [("NDA_DST", item.ip), ("NDA_LLADDR", item.mac)]
                expected.append(pyroute2_bytes(msg, RTM_NEWNEIGH, seq, 0x1 | 0x400 | 0x100))
            elif isinstance(item, FdbEntry):
                msg = ndmsg()
                msg["family"], msg["ifindex"] = socket.AF_BRIDGE, indexes[item.dev]
                msg["state"], msg["flags"] = 0x80, 2
                msg["attrs"] = [("NDA_LLADDR", item.mac), ("NDA_DST", item.dst)]
                expected.append(pyroute2_bytes(msg, RTM_NEWNEIGH, seq, 0x1 | 0x400 | 0x100))
            else:
                msg = rtmsg()
                msg["family"], msg["dst_len"], msg["table"], msg["proto"] = socket.AF_INET, 24, 254, 3
                msg["type"], msg["scope"], msg["flags"] = 1, 0, 0x4 if item.onlink else 0
                dst = item.dst.split("/")[0]
                msg["attrs"] = [("RTA_TABLE", 254), ("RTA_DST", dst), ("RTA_GATEWAY", item.gateway)]
                if item.dev:
                    msg["attrs"].append(("RTA_OIF", indexes[item.dev]))
                expected.append(pyroute2_bytes(msg, RTM_NEWROUTE, seq, 0x1 | 0x400 | 0x100))
        assert batch.messages == expected
        assert batch.sources == list(ns.neighbours + ns.fdb + ns.routes)
