"""Every node's kernel state matches the flannel reference exactly, for every shipped flannel topology."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import expect
import pytest
from conftest import TOPOLOGIES, run_lab
from kernel import IFF_NOARP_FLAG, RouteRow, Snapshot, expected_ipip_implementation, sysctl, tc_filters

pytestmark = pytest.mark.needs_root

FLANNEL_TOPOLOGIES = ["flannel-vxlan", "flannel-hostgw", "flannel-directrouting", "flannel-hostgw-crosssubnet",
                      "flannel-ipip"]
IPIP_DEVICE = "flannel.ipip"
VETH = re.compile(r"^veth[0-9a-f]{8}$")


@pytest.fixture(scope="module", params=FLANNEL_TOPOLOGIES)
def lab(request, labs):
    spec = expect.load(TOPOLOGIES / f"{request.param}.yaml")
    labs(request.param)
    snapshots = {n.name: Snapshot(spec.node_netns(n)) for n in spec.nodes}
    return spec, snapshots


def expected_routes(spec: expect.Expected, node: expect.NodeSpec) -> set[RouteRow]:
    """Reference §1.9 / §2: default, connected, cni0 (with pods), one route per reachable remote lease."""
    routes = {
        RouteRow("default", str(node.gateway), "eth0", "boot", "global", False),
        RouteRow(str(node.cidr), None, "eth0", "kernel", "link", False, str(node.ip)),
    }
    if node.pods:
        routes.add(RouteRow(str(node.subnet), None, "cni0", "kernel", "link", False,
                            str(node.subnet.network_address + 1)))
    for peer in spec.nodes:
        if peer is node:
            continue
        direct = spec.same_segment(node, peer)
        if spec.ipip:   # §3.2: onlink via the peer, through flannel.ipip (eth0 with DirectRouting on one segment)
            dev = "eth0" if spec.direct_routing and direct else IPIP_DEVICE
            routes.add(RouteRow(str(peer.subnet), str(peer.ip), dev, "boot", "global", True))
        elif spec.vxlan and not (spec.direct_routing and direct):
            vtep = str(peer.subnet.network_address)
            routes.add(RouteRow(str(peer.subnet), vtep, f"flannel.{spec.vni}", "boot", "global", True))
        elif direct:
            routes.add(RouteRow(str(peer.subnet), str(peer.ip), "eth0", "boot", "global", False))
        # host-gw to a peer on another segment: the kernel refuses it, no route
    return routes


def test_links_are_exactly_the_flannel_devices(lab):
    spec, snaps = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        expected = ({"lo", "eth0"} | ({f"flannel.{spec.vni}"} if spec.vxlan else set())
                    | ({IPIP_DEVICE} if spec.ipip else set()) | ({"cni0"} if node.pods else set()))
        veths = {name for name in snap.links if VETH.match(name)}
        assert set(snap.links) - veths == expected, node.name
        assert len(veths) == len(node.pods), node.name
        assert snap.kind("eth0") == "veth" and snap.mtu("eth0") == node.mtu and snap.is_up("eth0")
        assert snap.addresses_of("eth0") == {f"{node.ip}/{node.cidr.prefixlen}"}


def test_vxlan_device_matches_flanneld(lab):
    spec, snaps = lab
    if not spec.vxlan:  # host-gw creates no flannel device (reference §2); ipip makes flannel.ipip (§3.2)
        allowed = {IPIP_DEVICE} if spec.ipip else set()
        assert not any(name.startswith("flannel.") and name not in allowed
                       for snap in snaps.values() for name in snap.links)
        return
    assert spec.mtu(spec.nodes[0]) == 1450, "the shipped vxlan labs sit on a 1500-byte underlay"
    for node in spec.nodes:
        snap = snaps[node.name]
        dev = f"flannel.{spec.vni}"
        data = snap.info_data(dev)
        assert snap.kind(dev) == "vxlan"
        assert data["IFLA_VXLAN_ID"] == spec.vni
        assert data["IFLA_VXLAN_PORT"] == spec.port
        assert data["IFLA_VXLAN_LEARNING"] == 0                       # nolearning
        assert data["IFLA_VXLAN_LOCAL"] == str(node.ip)
        assert data["IFLA_VXLAN_LINK"] == snap.link("eth0")["index"]  # dev eth0
        assert data["IFLA_VXLAN_TTL"] == 0 and data["IFLA_VXLAN_AGEING"] == 300
        assert snap.mtu(dev) == node.mtu - 50
        assert snap.is_up(dev)
        first = int(snap.mac(dev).split(":")[0], 16)
        assert first & 0x02 and not first & 0x01, "VTEP MAC must be locally administered unicast"
        assert snap.addresses_of(dev) == {f"{node.subnet.network_address}/32"}


def test_ipip_device_matches_flanneld(lab):
    """§3.2: flannel.ipip (kind ipip, local = the node's IP; a TUN device without the ipip module), MTU eth0 - 20,
    NOARP, up, <subnet>.0/32; BPF programs on it and on eth0 exactly when the eBPF implementation runs."""
    spec, snaps = lab
    if not spec.ipip:
        pytest.skip(f"{spec.backend}: no flannel.ipip")
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    implementation = expected_ipip_implementation()
    assert status["ipip_implementation"] == implementation
    for node in spec.nodes:
        snap = snaps[node.name]
        assert snap.mtu(IPIP_DEVICE) == node.mtu - 20 == 1480
        assert snap.is_up(IPIP_DEVICE)
        assert snap.link(IPIP_DEVICE)["flags"] & IFF_NOARP_FLAG
        assert snap.addresses_of(IPIP_DEVICE) == {f"{node.subnet.network_address}/32"}
        if implementation == "kernel-ipip":
            assert snap.kind(IPIP_DEVICE) == "ipip"
            assert snap.info_data(IPIP_DEVICE)["IFLA_IPTUN_LOCAL"] == str(node.ip)
        else:
            assert snap.kind(IPIP_DEVICE) == "tun"
        ebpf = implementation == "ebpf"
        assert bool(tc_filters(spec.node_netns(node), IPIP_DEVICE, "egress")) == ebpf, node.name
        assert bool(tc_filters(spec.node_netns(node), "eth0", "ingress")) == ebpf, node.name


def test_cni0_and_pod_ports(lab):
    spec, snaps = lab
    for node in spec.nodes:
        if not node.pods:
            continue
        snap = snaps[node.name]
        gateway = node.subnet.network_address + 1
        assert snap.kind("cni0") == "bridge" and snap.mtu("cni0") == spec.mtu(node) and snap.is_up("cni0")
        assert (("cni0", f"{gateway}/{node.subnet.prefixlen}", str(node.subnet.broadcast_address))
                in snap.addresses)
        for name in [n for n in snap.links if VETH.match(n)]:
            assert snap.master(name) == "cni0"
            assert snap.mtu(name) == spec.mtu(node)
            assert snap.slave_data(name)["IFLA_BRPORT_MODE"] == 1, "hairpin on"


def test_routes_are_exact(lab):
    spec, snaps = lab
    for node in spec.nodes:
        assert set(snaps[node.name].routes) == expected_routes(spec, node), node.name


def test_neighbours_and_fdb_point_at_each_remote_vtep(lab):
    spec, snaps = lab
    if not spec.vxlan:  # host-gw: no static ARP or FDB entries anywhere (reference §2)
        for snap in snaps.values():
            assert all(snap.permanent_neighbours(dev) == set() for dev in snap.links if dev != "lo")
            assert all(snap.fdb_entries(dev) == set() for dev in snap.links if dev != "lo")
        return
    dev = f"flannel.{spec.vni}"
    for node in spec.nodes:
        snap = snaps[node.name]
        tunnelled = [p for p in spec.nodes
                     if p is not node and not (spec.direct_routing and spec.same_segment(node, p))]
        remote_mac = {p.name: snaps[p.name].mac(dev) for p in tunnelled}
        assert snap.permanent_neighbours(dev) == {(str(p.subnet.network_address), remote_mac[p.name])
                                                  for p in tunnelled}
        assert snap.fdb_entries(dev) == {(remote_mac[p.name], str(p.ip), True, True) for p in tunnelled}


def test_pods_are_wired_like_the_bridge_plugin(lab):
    spec, _ = lab
    for node in spec.nodes:
        gateway = str(node.subnet.network_address + 1)
        for pod in node.pods:
            snap = Snapshot(spec.pod_netns(pod))
            assert set(snap.links) == {"lo", "eth0"}
            assert snap.mtu("eth0") == spec.mtu(node) and snap.is_up("eth0")
            assert snap.addresses_of("eth0") == {f"{pod.ip}/{node.subnet.prefixlen}"}
            assert set(snap.routes) == {
                RouteRow("default", gateway, "eth0", "boot", "global", False),
                RouteRow(str(spec.network), gateway, "eth0", "boot", "global", False),
                RouteRow(str(node.subnet), None, "eth0", "kernel", "link", False, str(pod.ip)),
            }
            assert sysctl(spec.pod_netns(pod), "net.ipv4.conf.eth0.arp_notify") == "1"
            assert sysctl(spec.pod_netns(pod), "net.ipv6.conf.eth0.accept_dad") == "0"


def test_node_sysctls(lab):
    spec, _ = lab
    for node in spec.nodes:
        netns = spec.node_netns(node)
        assert sysctl(netns, "net.ipv4.ip_forward") == "1"
        if spec.vxlan:
            assert sysctl(netns, f"net.ipv6.conf.flannel/{spec.vni}.accept_ra") == "0"
        if node.pods:
            assert sysctl(netns, "net.ipv6.conf.cni0.accept_ra") == "0"
    segments = {str(n.cidr) for n in spec.nodes}
    router = sysctl(f"{spec.lab}._underlay", "net.ipv4.ip_forward")
    assert router == ("1" if len(segments) > 1 else "0"), "the underlay routes only between several segments"


def test_status_reports_subnet_env(lab):
    spec, _ = lab
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    assert status["mode"].startswith(spec.backend)
    for node in spec.nodes:
        row = next(n for n in status["nodes"] if n["name"] == node.name)
        assert row["subnet_env"] == {
            "FLANNEL_NETWORK": str(spec.network),
            "FLANNEL_SUBNET": f"{node.subnet.network_address + 1}/{node.subnet.prefixlen}",
            "FLANNEL_MTU": str(spec.mtu(node)),
            "FLANNEL_IPMASQ": "true",
        }
    for pod in spec.pods:
        row = next(p for p in status["pods"] if p["key"] == f"{pod.namespace}/{pod.name}")
        assert ipaddress.IPv4Address(row["ip"]) == pod.ip


def test_iptables_rules_are_flanneld_s(lab):
    """Reference §1.7: FLANNEL-POSTRTG (--ip-masq) and FLANNEL-FWD, per node lease."""
    spec, _ = lab
    net = str(spec.network)
    masq, fwd = '-m comment --comment "flanneld masq"', '-m comment --comment "flanneld forward"'
    for node in spec.nodes:
        saved = subprocess.run(["ip", "netns", "exec", spec.node_netns(node), "iptables-save"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        rules = [line for line in saved if line.startswith("-A ")]
        pod = str(node.subnet)
        assert rules == [
            f"-A FORWARD {fwd} -j FLANNEL-FWD",
            f"-A FLANNEL-FWD -s {net} {fwd} -j ACCEPT",
            f"-A FLANNEL-FWD -d {net} {fwd} -j ACCEPT",
            f"-A POSTROUTING {masq} -j FLANNEL-POSTRTG",
            f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {pod} -d {net} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {net} -d {pod} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG ! -s {net} -d {pod} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {net} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
            f"-A FLANNEL-POSTRTG ! -s {net} -d {net} {masq} -j MASQUERADE --random-fully",
        ], node.name


def test_underlay_switch_floods_multicast_once_built(lab):
    """The segment switches hold multicast back only while the lab is built (lab/netns/apply.py): once it is
    up, every node's switch port floods multicast again, so IPv6 neighbour discovery between nodes (a
    solicitation to the target's solicited-node multicast group) works, as on a switch's default."""
    spec, _ = lab
    underlay = f"{spec.lab}._underlay"
    ports = json.loads(subprocess.run(["bridge", "-n", underlay, "-d", "-j", "link", "show"], check=True,
                                      capture_output=True, text=True).stdout)
    flooding = {port["ifname"]: port.get("mcast_flood") for port in ports}
    assert flooding == {node.name: True for node in spec.nodes}
    first, second = next((a, b) for a in spec.nodes for b in spec.nodes if a is not b and spec.same_segment(a, b))
    address = json.loads(subprocess.run(["ip", "-n", spec.node_netns(second), "-j", "-6", "addr", "show", "dev",
                                         "eth0", "scope", "link"], check=True, capture_output=True, text=True).stdout)
    link_local = address[0]["addr_info"][0]["local"]
    # -w: until answered, for up to 5 s (a node's link-local address is tentative for its first second or two)
    ping = subprocess.run(["ip", "netns", "exec", spec.node_netns(first), "ping", "-6", "-c", "1", "-w", "5",
                           f"{link_local}%eth0"], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
