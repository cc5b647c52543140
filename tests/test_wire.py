"""What crosses the underlay: VXLAN on UDP 8472 for vxlan, bare pod packets for host-gw and DirectRouting."""

from __future__ import annotations

import re

import pytest
from capture import tcpdump
from traffic import ping

pytestmark = pytest.mark.needs_root


def test_vxlan_carries_the_inner_pod_packet_on_udp_8472(labs):
    labs("flannel-vxlan")
    # bs1 (10.244.3.123 on k8s-node03, 192.168.10.74) -> bs8 (10.244.5.124 on k8s-node01, 192.168.10.72)
    with tcpdump("flannel-vxlan.k8s-node03", "eth0", "udp port 8472", ("-T", "vxlan")) as cap:
        assert ping("flannel-vxlan.default.bs1", "10.244.5.124", count=2)
    outer = [row for row in cap.lines if "192.168.10.74" in row and "192.168.10.72.8472" in row]
    assert outer, cap.lines
    text = "\n".join(cap.lines)
    # tcpdump prints the outer UDP/VXLAN header, then the inner frame's packet on the next line
    assert re.search(r"192\.168\.10\.74\.\d+ > 192\.168\.10\.72\.8472: VXLAN, flags \[I\] \(0x08\), vni 1\n"
                     r"IP 10\.244\.3\.123 > 10\.244\.5\.124: ICMP echo request", text), text
    assert re.search(r"vni 1\nIP 10\.244\.5\.124 > 10\.244\.3\.123: ICMP echo reply", text), text


def test_hostgw_sends_pod_packets_unencapsulated(labs):
    labs("flannel-hostgw")
    with tcpdump("flannel-hostgw.k8s-node03", "eth0", "icmp or udp port 8472") as cap:
        assert ping("flannel-hostgw.default.bs1", "10.244.5.124", count=2)
    assert any("10.244.3.123 > 10.244.5.124: ICMP echo request" in row for row in cap.lines), cap.lines
    assert not any(".8472" in row for row in cap.lines), cap.lines


def test_directrouting_encapsulates_only_across_segments(labs):
    labs("flannel-directrouting")
    ns = "flannel-directrouting"
    # web-0 (k8s-master01, rack1) -> web-1 (k8s-node01, rack1): direct; -> web-2 (k8s-node02, rack2): vxlan
    with tcpdump(f"{ns}.k8s-master01", "eth0", "icmp or udp port 8472", ("-T", "vxlan")) as same:
        assert ping(f"{ns}.default.web-0", "10.244.1.2", count=2)
    assert any("10.244.0.2 > 10.244.1.2: ICMP echo request" in row and "VXLAN" not in row
               for row in same.lines), same.lines
    assert not any("VXLAN" in row for row in same.lines), same.lines
    with tcpdump(f"{ns}.k8s-master01", "eth0", "icmp or udp port 8472", ("-T", "vxlan")) as cross:
        assert ping(f"{ns}.default.web-0", "10.244.2.2", count=2)
    text = "\n".join(cross.lines)
    assert re.search(r"192\.168\.10\.71\.\d+ > 192\.168\.20\.73\.8472: VXLAN, flags \[I\] \(0x08\), vni 1\n"
                     r"IP 10\.244\.0\.2 > 10\.244\.2\.2: ICMP echo request", text), text


def test_pod_to_node_traffic_is_masqueraded(labs):
    """flanneld --ip-masq: a pod talking to another node's IP leaves with its own node's address."""
    labs("flannel-vxlan")
    with tcpdump("flannel-vxlan.k8s-node01", "eth0", "icmp") as cap:
        assert ping("flannel-vxlan.default.bs1", "192.168.10.72", count=2)   # bs1 on k8s-node03 -> k8s-node01
    text = "\n".join(cap.lines)
    assert "192.168.10.74 > 192.168.10.72: ICMP echo request" in text, text
    assert "10.244.3.123" not in text, text
