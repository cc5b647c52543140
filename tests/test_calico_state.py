"""Every node's and pod's kernel state matches the Calico reference exactly, for every shipped Calico topology.

Expected values come from tests/expect_calico.py (the YAML + reference §4-§6); the kernel is read
back with pyroute2. BGP labs get their block routes from BIRD after `lab up`, so route checks poll
until the tables converge (30 s deadline) before asserting.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from calico_kernel import (
    IFF_NOARP,
    IFF_UP,
    CalicoSnapshot,
    assert_routes,
    fresh_netns_links,
    main_routes,
    netns_exec,
    route_diff,
)
from calico_labs import CALICO_TOPOLOGIES
from conftest import run_lab
from expect_calico import HOST_MAC, IPIP_DEVICE, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI, vtep_mac
from kernel import expected_ipip_implementation, tc_filters

pytestmark = pytest.mark.needs_root

CALI_SYSCTLS = {"net.ipv4.conf.{}.proxy_arp": "1", "net.ipv4.conf.{}.route_localnet": "1",
                "net.ipv4.conf.{}.forwarding": "1", "net.ipv4.neigh.{}.proxy_delay": "0",
                "net.ipv6.conf.{}.accept_ra": "0"}


pytest_plugins = ("calico_labs",)   # the session-wide `calico_lab` fixture


@pytest.fixture(scope="module")
def up(calico_lab):
    return calico_lab


@pytest.fixture(scope="module", params=CALICO_TOPOLOGIES)
def lab(request, up):
    spec = up(request.param)
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    snapshots = {n.name: CalicoSnapshot(spec.node_netns(n)) for n in spec.nodes}
    return spec, snapshots, status


@pytest.fixture(scope="module")
def fresh_links():
    return fresh_netns_links() - {"lo"}


def sysctls(netns: str, keys: list[str]) -> dict[str, str]:
    values = netns_exec(netns, "sysctl", "-n", *keys).stdout.split("\n")
    return dict(zip(keys, values, strict=False))


# -- lab status -------------------------------------------------------------------------------------------
def test_status_reports_mode_ipam_and_mtu(lab):
    spec, _, status = lab
    assert status["cni"] == "calico"
    assert status["mode"] == spec.mode
    assert status["backend"] == spec.backend
    expected_impl = None
    if spec.ipip_enabled():
        expected_impl = expected_ipip_implementation()
    assert status["ipip_implementation"] == expected_impl
    for node in spec.nodes:
        row = next(n for n in status["nodes"] if n["name"] == node.name)
        assert row["calico"]["blocks"] == [str(b) for b in node.blocks], node.name
        assert row["calico"]["tunnel_ip"] == (str(node.tunnel_ip) if node.tunnel_ip else None), node.name
        assert row["calico"]["vtep_mac"] == (vtep_mac(node.name) if spec.vxlan_enabled() else None), node.name
        assert row["mtu"] == spec.pod_mtu(node), node.name
    assert {p["key"]: ipaddress.IPv4Address(p["ip"]) for p in status["pods"]} == {p.key: p.ip for p in spec.pods}


def test_pod_mtu_is_the_encapsulation_s(lab):
    """§4.9: IPIP 1480, VXLAN 1450, no encapsulation 1500 on the shipped 1500-byte underlays."""
    spec, _, _ = lab
    expected = {"bgp": 1500, "ipip": 1480, "ipip-crosssubnet": 1480, "vxlan": 1450, "vxlan-crosssubnet": 1450}
    assert {spec.pod_mtu(n) for n in spec.nodes} == {expected[spec.mode]}


# -- node devices -----------------------------------------------------------------------------------------
def test_node_links_are_exactly_calico_s(lab, fresh_links):
    spec, snaps, _ = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        expected = {"lo", "eth0"} | {p.cali for p in node.pods}
        expected |= {IPIP_DEVICE} if spec.has_tunl0(node) else set()
        expected |= {VXLAN_DEVICE} if spec.has_vxlan(node) else set()
        expected |= fresh_links            # fallback devices every namespace gets from loaded modules
        assert set(snap.links) == expected, node.name
        assert snap.kind("eth0") == "veth" and snap.mtu("eth0") == node.host_mtu and snap.is_up("eth0")
        assert snap.addresses_of("eth0") == {f"{node.ip}/{node.cidr.prefixlen}"}, node.name


def test_cali_interfaces_are_felix_s(lab):
    spec, snaps, _ = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        for pod in node.pods:
            cali = pod.cali
            assert snap.kind(cali) == "veth", cali
            assert snap.mac(cali) == HOST_MAC, cali
            assert snap.addresses_of(cali) == set(), f"{cali} must have no address"
            assert snap.mtu(cali) == spec.pod_mtu(node), cali
            assert snap.is_up(cali), cali
        if node.pods:
            keys = [k.format(p.cali) for p in node.pods for k in CALI_SYSCTLS]
            got = sysctls(spec.node_netns(node), keys)
            want = {k.format(p.cali): v for p in node.pods for k, v in CALI_SYSCTLS.items()}
            assert got == want, node.name


def test_static_arp_for_every_local_workload(lab):
    spec, snaps, _ = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        for pod in node.pods:
            pod_mac = CalicoSnapshot(spec.pod_netns(pod)).mac("eth0")
            assert snap.permanent_neighbours(pod.cali) == {(str(pod.ip), pod_mac)}, pod.key
        # no static entries on the underlay (a small lab keeps dynamic ARP) nor on tunl0 (NOARP)
        for dev in ("eth0", IPIP_DEVICE):
            if dev in snap.links:
                assert snap.permanent_neighbours(dev) == set(), f"{node.name} {dev}"


def test_tunl0_exists_only_with_an_ipip_pool(lab):
    spec, snaps, status = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        if spec.has_tunl0(node):
            assert snap.is_up(IPIP_DEVICE), node.name
            assert snap.flags(IPIP_DEVICE) & IFF_NOARP, "tunl0 is NOARP (§5.4)"
            assert snap.mtu(IPIP_DEVICE) == node.host_mtu - 20 == 1480, node.name
            assert snap.addresses_of(IPIP_DEVICE) == {f"{node.tunnel_ip}/32"}, node.name
            assert node.tunnel_ip == node.blocks[0].network_address, "the tunnel takes ordinal 0 of the block"
            kind = {"userspace-tun": "tun", "kernel-ipip": "ipip", "ebpf": "tun"}[status["ipip_implementation"]]
            assert snap.kind(IPIP_DEVICE) == kind, node.name
            assert snap.fdb_entries(IPIP_DEVICE) == set()
            ebpf = status["ipip_implementation"] == "ebpf"
            netns = spec.node_netns(node)
            # the tc programs exist exactly where the eBPF implementation runs
            assert bool(tc_filters(netns, IPIP_DEVICE, "egress")) == ebpf, f"{node.name}: tunl0 egress"
            assert bool(tc_filters(netns, "eth0", "ingress")) == ebpf, f"{node.name}: eth0 ingress"
        elif IPIP_DEVICE in snap.links:
            # only the ipip module's fallback device may exist: down, without an address
            assert IPIP_DEVICE in fresh_netns_links(), f"{node.name}: a tunl0 the kernel did not make"
            assert not snap.flags(IPIP_DEVICE) & IFF_UP, f"{node.name}: tunl0 up in a no-IPIP lab"
            assert snap.addresses_of(IPIP_DEVICE) == set(), node.name


def test_tc_programs_only_where_ebpf_ipip_runs(lab):
    """No lab touches a qdisc it does not need: BPF filters only on the nodes of an eBPF IPIP lab with tunl0."""
    spec, _, status = lab
    for node in spec.nodes:
        ebpf = status["ipip_implementation"] == "ebpf" and spec.has_tunl0(node)
        netns = spec.node_netns(node)
        assert bool(tc_filters(netns, "eth0", "ingress")) == ebpf, node.name
        assert not tc_filters(netns, "eth0", "egress"), node.name


def test_tunl0_kernel_ipip_attributes(lab):
    """§0.2/§5.1: `ipip any remote any local any ttl inherit nopmtudisc` - only a kernel ipip device has these."""
    spec, snaps, status = lab
    if not spec.ipip_enabled():
        pytest.skip(f"{spec.mode}: no IPIP pool, no tunl0 to inspect")
    if status["ipip_implementation"] != "kernel-ipip":
        pytest.skip(f"ipip_implementation is {status['ipip_implementation']}: this kernel has no ipip module, "
                    "tunl0 is a TUN device without IFLA_IPTUN_* attributes")
    for node in spec.nodes:
        data = snaps[node.name].info_data(IPIP_DEVICE)
        assert data.get("IFLA_IPTUN_REMOTE") in (None, "0.0.0.0"), node.name
        assert data.get("IFLA_IPTUN_LOCAL") in (None, "0.0.0.0"), node.name
        assert data.get("IFLA_IPTUN_TTL") == 0, "ttl inherit"
        assert data.get("IFLA_IPTUN_PMTUDISC") == 0, "nopmtudisc"
        assert data.get("IFLA_IPTUN_LINK") in (None, 0), "tunl0@NONE"


def test_vxlan_device_is_felix_s(lab):
    spec, snaps, _ = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        if not spec.has_vxlan(node):
            assert VXLAN_DEVICE not in snap.links, node.name
            continue
        data = snap.info_data(VXLAN_DEVICE)
        assert snap.kind(VXLAN_DEVICE) == "vxlan"
        assert data["IFLA_VXLAN_ID"] == VXLAN_VNI == 4096
        assert data["IFLA_VXLAN_PORT"] == VXLAN_PORT == 4789
        assert data["IFLA_VXLAN_LEARNING"] == 0, "nolearning"
        assert data["IFLA_VXLAN_LOCAL"] == str(node.ip)
        assert data["IFLA_VXLAN_LINK"] == snap.link("eth0")["index"], "dev eth0"
        assert data["IFLA_VXLAN_TTL"] == 0 and data["IFLA_VXLAN_AGEING"] == 300
        assert snap.mtu(VXLAN_DEVICE) == node.host_mtu - 50 == 1450
        assert snap.mac(VXLAN_DEVICE) == vtep_mac(node.name)
        assert snap.mac(VXLAN_DEVICE).startswith("66:")
        assert snap.is_up(VXLAN_DEVICE)
        assert snap.addresses_of(VXLAN_DEVICE) == {f"{node.tunnel_ip}/32"}
        assert node.tunnel_ip == node.blocks[0].network_address


def test_vxlan_neighbours_and_fdb_for_every_remote_vtep(lab):
    """§6.2: PERMANENT ARP tunnel IP -> VTEP MAC and FDB VTEP MAC -> node IP, for all remote VTEPs (CrossSubnet too)."""
    spec, snaps, _ = lab
    for node in spec.nodes:
        snap = snaps[node.name]
        if spec.has_vxlan(node):
            assert snap.permanent_neighbours(VXLAN_DEVICE) == spec.vxlan_neighbours(node), node.name
            assert snap.fdb_entries(VXLAN_DEVICE) == spec.vxlan_fdb(node), node.name
            assert len(spec.vxlan_neighbours(node)) == len(spec.nodes) - 1
        for dev in snap.links:  # no VXLAN-style fdb entries anywhere else
            if dev != VXLAN_DEVICE and dev != "lo":
                assert snap.fdb_entries(dev) == set(), f"{node.name} {dev}"


# -- routes -----------------------------------------------------------------------------------------------
def test_main_tables_are_exact(lab):
    """Blackhole for the own block, remote blocks per mode, pod /32s, default and connected - nothing else."""
    spec, _, _ = lab
    assert_routes(spec)


def test_bird_table_is_not_the_main_table(lab):
    """Stock BIRD exports into table 201; nothing BIRD-only (the tunnel next-hop /32s) leaks into main."""
    spec, _, _ = lab
    if not spec.bgp:
        for node in spec.nodes:
            assert main_routes(spec.node_netns(node), table=201) == set(), f"{node.name}: table 201 without BIRD"
        return
    assert_routes(spec)
    for node in spec.nodes:
        main = main_routes(spec.node_netns(node))
        assert not any(r.dst.endswith("/32") and r.dst[:-3] in {str(o.ip) for o in spec.nodes} for r in main), \
            f"{node.name}: a node-address /32 in main:\n" + "\n".join(map(str, main))
        table201 = main_routes(spec.node_netns(node), table=201)
        own = {r for r in table201 if r.type == "blackhole"}
        assert {r.dst for r in own} == {str(b) for b in node.blocks}, f"{node.name}: BIRD's blackholes in table 201"


# -- pods -------------------------------------------------------------------------------------------------
def test_pods_are_wired_like_calico_cni(lab):
    spec, _, _ = lab
    for node in spec.nodes:
        for pod in node.pods:
            netns = spec.pod_netns(pod)
            snap = CalicoSnapshot(netns)
            assert set(snap.links) == {"lo", "eth0"}, pod.key
            assert snap.mtu("eth0") == spec.pod_mtu(node) and snap.is_up("eth0"), pod.key
            assert snap.mac("eth0") != HOST_MAC
            assert snap.addresses_of("eth0") == {f"{pod.ip}/32"}, pod.key
            assert snap.route_set == spec.pod_routes(), f"{pod.key}:\n{route_diff(snap.route_set, spec.pod_routes())}"
            assert sysctls(netns, ["net.ipv4.ip_forward"]) == {"net.ipv4.ip_forward": "0"}


def test_node_sysctls(lab):
    spec, _, _ = lab
    for node in spec.nodes:
        assert sysctls(spec.node_netns(node), ["net.ipv4.ip_forward"]) == {"net.ipv4.ip_forward": "1"}, node.name


def test_bird_runs_only_in_bgp_labs(lab):
    spec, _, status = lab
    commands = [d["command"] for d in status["daemons"]]
    birds = [c for c in commands if c.split()[0].endswith("bird")]
    if spec.bgp:
        assert len(birds) == len(spec.nodes), commands
        netns = {d["netns"] for d in status["daemons"] if d["command"].split()[0].endswith("bird")}
        assert netns == {spec.node_netns(n) for n in spec.nodes}
    else:
        assert birds == [], commands
