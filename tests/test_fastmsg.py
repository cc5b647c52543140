"""The fast neighbour/fdb/route encoder packs exactly the bytes pyroute2 packs."""

from __future__ import annotations

import socket
from dataclasses import replace

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


# Links and addresses: pyroute2's message classes, filled as lab/netns/netlink.py filled them before the fast
# path (and as vishvananda/netlink fills flannel's devices), are the reference.
def pyroute2_link(link, indexes: dict, fds: dict, create: bool):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    msg = ifinfmsg()
    msg["index"] = link.index
    attrs: list = []
    if not create:
        if link.mtu:
            attrs.append(("IFLA_MTU", link.mtu))
        if link.txqueuelen is not None:
            attrs.append(("IFLA_TXQLEN", link.txqueuelen))
        flags = change = 0
        if link.up:
            flags, change = flags | 1, change | 1
        if link.multicast is not None:
            flags, change = flags | (0x1000 if link.multicast else 0), change | 0x1000
        if change:
            msg["flags"], msg["change"] = flags, change
        msg["attrs"] = attrs
        return msg
    if link.up:
        msg["flags"], msg["change"] = 1, 1

    def common(name, mtu, mac):
        found = [("IFLA_IFNAME", name)]
        if mtu:
            found.append(("IFLA_MTU", mtu))
        if mac:
            found.append(("IFLA_ADDRESS", mac))
        return found
    attrs = common(link.name, link.mtu, link.mac)
    if link.master:
        attrs.append(("IFLA_MASTER", indexes[link.master]))
    info: list = [("IFLA_INFO_KIND", link.kind)]
    if link.kind == "veth":
        peer = link.peer
        peer_attrs = common(peer.name, peer.mtu, peer.mac) + [("IFLA_NET_NS_FD", fds[peer.netns])]
        info.append(("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"index": peer.index, "attrs": peer_attrs})]}))
    elif link.kind == "vxlan":
        vx = link.vxlan
        data = [("IFLA_VXLAN_ID", vx.vni), ("IFLA_VXLAN_LINK", indexes[vx.dev]), ("IFLA_VXLAN_LOCAL", vx.local),
                ("IFLA_VXLAN_TTL", 0), ("IFLA_VXLAN_TOS", 0), ("IFLA_VXLAN_LEARNING", int(vx.learning)),
                ("IFLA_VXLAN_PROXY", 0), ("IFLA_VXLAN_RSC", 0), ("IFLA_VXLAN_L2MISS", 0), ("IFLA_VXLAN_L3MISS", 0),
                ("IFLA_VXLAN_UDP_ZERO_CSUM6_TX", 0), ("IFLA_VXLAN_UDP_ZERO_CSUM6_RX", 0)]
        if vx.port:
            data.append(("IFLA_VXLAN_PORT", vx.port))
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    elif link.kind == "ipip" and link.ipip_local:
        # pyroute2 names these IFLA_IPIP_* (IFLA_IPTUN_* in linux/if_tunnel.h); unknown names it drops silently
        info.append(("IFLA_INFO_DATA", {"attrs": [("IFLA_IPIP_LOCAL", link.ipip_local), ("IFLA_IPIP_TTL", 0),
                                                  ("IFLA_IPIP_TOS", 0), ("IFLA_IPIP_PMTUDISC", 0)]}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    msg["attrs"] = attrs
    return msg


def pyroute2_bridge_port(link, mcast_flood=None):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    port: list = []
    if link.hairpin:
        port.append(("IFLA_BRPORT_MODE", 1))
    if mcast_flood is not None:
        port.append(("IFLA_BRPORT_MCAST_FLOOD", int(mcast_flood)))
    if link.neigh_suppress:
        port.append(("IFLA_BRPORT_NEIGH_SUPPRESS", 1))
    msg = ifinfmsg()
    msg["index"] = link.index
    msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", {"attrs": port})]})]
    return msg


def links_of_every_kind():
    from lab.netns.plan import Link, VethPeer, Vxlan
    return [
        Link("lo", "existing", 1),
        Link("eth0", "existing", 2, mtu=1450),
        Link("tunl0", "existing", 3, mtu=1480, up=False),
        Link("flannel.ipip", "existing", 9, mtu=1480, txqueuelen=500, multicast=False),
        Link("tun9", "existing", 9, multicast=True, up=False),
        Link("veth1a2b3c4d", "veth", 5, mtu=1450, master="cni0", hairpin=True,
             peer=VethPeer("eth0", "lab.default.web", 2, mtu=1450, mac="0a:58:0a:f4:01:05")),
        Link("node1", "veth", 6, mtu=1500, mac="02:42:c0:a8:0a:0b", master="lan",
             peer=VethPeer("eth0", "lab.node1", 2, mtu=1500, mac="02:42:c0:a8:0a:0c")),
        Link("node2", "veth", 6, mtu=1500, master="lan", quiet=True, peer=VethPeer("eth0", "lab.node2", 2)),
        Link("veth5", "veth", 6, master="cni0", neigh_suppress=True, peer=VethPeer("eth0", "lab.node1", 2)),
        Link("veth6", "veth", 7, master="cni0", hairpin=True, neigh_suppress=True,
             peer=VethPeer("eth0", "lab.node1", 2)),
        Link("cali12345678901", "veth", 7, peer=VethPeer("eth0", "lab.default.web", 2), up=False),
        Link("cni0", "bridge", 4, mtu=1450, mac="ce:11:22:33:44:55"),
        Link("lan", "bridge", 2),
        Link("flannel.1", "vxlan", 3, mtu=1450, mac="de:4a:b1:09:77:e3", vxlan=Vxlan(1, "192.168.10.71", "eth0")),
        Link("vxlan.calico", "vxlan", 8, mtu=1450, mac="66:aa:bb:cc:dd:ee",
             vxlan=Vxlan(4096, "192.168.10.72", "eth0", port=4789, learning=True)),
        Link("flannel.ipip", "ipip", 4, mtu=1480, ipip_local="192.168.10.71"),
        Link("tunl9", "ipip", 4, mtu=1480),
    ]


@pytest.mark.parametrize("link", links_of_every_kind(), ids=lambda link: f"{link.kind}-{link.name}")
def test_link_messages_match_pyroute2(link):
    from lab.netns import netlink
    indexes = {"cni0": 4, "lan": 2, "eth0": 2}
    fds = {"lab.default.web": 17, "lab.node1": 18, "lab.node2": 19}
    create = link.kind != "existing"
    fast = (netlink._new_link(link, indexes, fds, 12) if create else netlink._existing_link(link, 12))
    assert fast == pyroute2_bytes(pyroute2_link(link, indexes, fds, create), 16, 12,
                                  netlink.CREATE if create else netlink.MODIFY)
    if link.hairpin or link.neigh_suppress:
        assert netlink._bridge_port(link, 13) == pyroute2_bytes(pyroute2_bridge_port(link), 16, 13, netlink.MODIFY)
    for flood in (False, True):   # a quiet switch port: made without multicast flooding, opened once the lab is built
        assert (netlink._bridge_port(link, 14, mcast_flood=flood)
                == pyroute2_bytes(pyroute2_bridge_port(link, flood), 16, 14, netlink.MODIFY))
    flooding = pyroute2_bridge_port(replace(link, hairpin=False, neigh_suppress=False), True)   # that flag alone
    assert netlink._port_flooding(link, 15, True) == pyroute2_bytes(flooding, 16, 15, netlink.MODIFY)


@pytest.mark.parametrize("cidr,broadcast", [("10.244.1.1/24", True), ("10.244.1.0/32", False),
                                            ("192.168.10.71/16", True), ("10.0.0.2/31", True),
                                            ("10.244.1.5/24", False)])
def test_address_messages_match_pyroute2(cidr, broadcast):
    import ipaddress

    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    from lab.netns import netlink
    from lab.netns.plan import Address
    network = ipaddress.IPv4Interface(cidr)
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, network.network.prefixlen, 5
    msg["attrs"] = [("IFA_LOCAL", str(network.ip)), ("IFA_ADDRESS", str(network.ip))]
    if broadcast and network.network.prefixlen < 31:
        msg["attrs"].append(("IFA_BROADCAST", str(network.network.broadcast_address)))
    fast = netlink._address(Address("cni0", cidr, broadcast=broadcast), {"cni0": 5}, 21)
    assert fast == pyroute2_bytes(msg, 20, 21, netlink.CREATE)
