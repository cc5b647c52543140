"""Calico's BGP control plane and data plane on live labs: sessions, sockets, traffic, the wire, recovery.

Sessions are read with `lab calicoctl node status` / `lab birdc`, sockets with `ss` and
/proc/net/tcp inside the node, traffic with ping and a TCP echo, the wire with tcpdump on the
sending node's eth0. Expected peers, routes and addresses come from tests/expect_calico.py.
"""

from __future__ import annotations

import itertools
import re
import time

import pytest
from calico_kernel import (
    assert_routes,
    bird_pid,
    established,
    main_routes,
    netns_exec,
    node_status,
    route_diff,
    start_bird,
    status_rows,
    stop_bird,
    wait_for,
    wait_sessions,
)
from calico_labs import CALICO_TOPOLOGIES
from capture import tcpdump
from conftest import run_lab
from expect_calico import peer_protocol
from kernel import Snapshot
from traffic import ping, tcp

pytestmark = pytest.mark.needs_root

BGP_TOPOLOGIES = ["calico-bgp-mesh", "calico-rr", "calico-ipip", "calico-ipip-crosssubnet"]
MESH_TOPOLOGIES = ["calico-bgp-mesh", "calico-ipip", "calico-ipip-crosssubnet"]
IMMEDIATE = ("--immediate-mode",)   # without it, packets still in libpcap's ring block are lost at SIGTERM
BGP_PORT = 179


pytest_plugins = ("calico_labs",)   # the session-wide `calico_lab` fixture


@pytest.fixture(scope="module")
def up(calico_lab):
    return calico_lab


def converged(up, topology):
    """The lab, with every expected session Established and every main table as expected."""
    spec = up(topology)
    started = time.monotonic()
    if spec.bgp:
        got = wait_sessions(spec)
        if time.monotonic() - started > 5:
            print(f"\n{spec.lab}: sessions took {time.monotonic() - started:.1f} s to converge")
        for node in spec.nodes:
            assert got[node.name] == spec.sessions(node), f"{node.name}: {got[node.name]}"
    started = time.monotonic()
    assert_routes(spec)
    if time.monotonic() - started > 5:
        print(f"\n{spec.lab}: routes took {time.monotonic() - started:.1f} s to converge")
    return spec


# -- sessions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology", MESH_TOPOLOGIES)
def test_full_mesh_sessions(up, topology):
    spec = converged(up, topology)
    n = len(spec.nodes)
    pairs = set()
    for node in spec.nodes:
        text = node_status(spec.lab, node.name)
        assert text.startswith("Calico process is running.\n\nIPv4 BGP status\n+"), text
        assert text.endswith("\nIPv6 BGP status\nNo IPv6 peers found.\n\n"), text
        rows = status_rows(text)
        assert len(rows) == n - 1, text
        assert {(ip, kind) for ip, kind, *_ in rows} == {(str(o.ip), "node-to-node mesh")
                                                        for o in spec.nodes if o is not node}
        assert all(state == "up" and info == "Established" for _, _, state, _, info in rows), text
        pairs |= {frozenset((str(node.ip), ip)) for ip, *_ in rows}
    assert len(pairs) == n * (n - 1) // 2 == len(spec.session_pairs())


def test_route_reflector_sessions(up):
    spec = converged(up, "calico-rr")
    reflector = spec.node("k8s-node01")
    assert str(reflector.ip) == "192.168.10.72" and reflector.rr_cluster_id == "244.0.0.1"
    for node in spec.nodes:
        rows = status_rows(node_status(spec.lab, node.name))
        assert all(state == "up" and info == "Established" for _, _, state, _, info in rows), rows
        peers = {(ip, kind) for ip, kind, *_ in rows}
        if node is reflector:
            assert peers == {(str(o.ip), "node specific") for o in spec.nodes if o is not reflector}
        else:
            assert peers == {("192.168.10.72", "node specific")}, node.name
    assert len(spec.session_pairs()) == len(spec.nodes) - 1


def test_birdc_show_protocols_names_calico_s_peers(up):
    spec = converged(up, "calico-bgp-mesh")
    for node in spec.nodes:
        out = run_lab("birdc", node.name, "show", "protocols", "--lab", spec.lab).stdout
        assert out.startswith("BIRD 1.6"), out
        bgp_rows = {line.split()[0]: line.split() for line in out.splitlines() if " BGP " in line}
        assert set(bgp_rows) == {peer_protocol("Mesh", o.ip) for o in spec.nodes if o is not node}, out
        assert all(row[3] == "up" and row[-1] == "Established" for row in bgp_rows.values()), out
        assert {line.split()[0] for line in out.splitlines()[2:] if " BGP " not in line} == \
            {"static1", "kernel1", "device1", "direct1"} | ({"calico_tunnel_next_hops"} if spec.ipip_enabled()
                                                          else set()), out


@pytest.mark.parametrize("topology", BGP_TOPOLOGIES)
def test_bird_listens_on_179_and_holds_one_socket_per_session(up, topology):
    spec = converged(up, topology)
    for node in spec.nodes:
        netns = spec.node_netns(node)
        listening = netns_exec(netns, "ss", "-Htlnp", "sport", "=", f":{BGP_PORT}").stdout.splitlines()
        assert len(listening) == 1 and "0.0.0.0:179" in listening[0] and '(("bird"' in listening[0], listening
        sessions = netns_exec(netns, "ss", "-Htnp", "state", "established", "(", "sport", "=", f":{BGP_PORT}",
                              "or", "dport", "=", f":{BGP_PORT}", ")").stdout.splitlines()
        assert all('(("bird"' in line for line in sessions), sessions
        # /proc/net/tcp of the node's namespace agrees: one LISTEN on :179 (0x00B3), one ESTABLISHED per session
        tcp_rows = [line.split() for line in netns_exec(netns, "cat", "/proc/net/tcp").stdout.splitlines()[1:]]
        listen = [r for r in tcp_rows if r[3] == "0A" and r[1].endswith(":00B3")]
        est = [r for r in tcp_rows if r[3] == "01" and (r[1].endswith(":00B3") or r[2].endswith(":00B3"))]
        assert len(listen) == 1 and listen[0][1] == "00000000:00B3", tcp_rows
        assert len(est) == len(sessions) == len(spec.sessions(node)), (node.name, sessions)
        remote_ips = {_proc_ip(r[2]) for r in est}
        assert remote_ips == {ip for ip, _ in spec.sessions(node)}, node.name


def _proc_ip(field: str) -> str:
    raw = bytes.fromhex(field.split(":")[0])
    return ".".join(str(b) for b in reversed(raw))


@pytest.mark.parametrize("topology", MESH_TOPOLOGIES)
def test_mesh_is_unidirectional(up, topology):
    """§4.3: a mesh peer with the greater address (as a string) is passive; the other side connects to it."""
    spec = converged(up, topology)
    for node in spec.nodes:
        for line in netns_exec(spec.node_netns(node), "ss", "-Htn", "state", "established", "(", "sport", "=",
                               ":179", "or", "dport", "=", ":179", ")").stdout.splitlines():
            local, remote = line.split()[2:4]
            (local_ip, local_port), (remote_ip, _) = local.rsplit(":", 1), remote.rsplit(":", 1)
            accepted = local_port == "179"
            # we accepted the connection exactly when we are passive towards that peer, i.e. its IP is greater
            assert accepted == (remote_ip > local_ip), f"{node.name}: {line}"


def test_node_status_without_bird(up):
    """§4.8: with calico_backend vxlan calicoctl says the BGP backend is not running."""
    spec = up("calico-vxlan")
    result = run_lab("calicoctl", "node", "status", spec.nodes[0].name, "--lab", spec.lab, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n"


# -- connectivity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology", CALICO_TOPOLOGIES)
def test_every_pod_reaches_every_pod(up, topology):
    spec = converged(up, topology)
    failed = [(a.key, b.key) for a, b in itertools.permutations(spec.pods, 2)
              if not ping(spec.pod_netns(a), str(b.ip), count=1, wait=2)]
    assert failed == [], f"{spec.lab}: no ping reply for {failed}"


@pytest.mark.parametrize("topology", CALICO_TOPOLOGIES)
def test_tcp_across_nodes_on_one_node_and_across_subnets(up, topology):
    spec = converged(up, topology)
    pods = spec.pods
    cross = next(((a, b) for a, b in itertools.permutations(pods, 2) if a.node != b.node), None)
    same = next(((a, b) for a, b in itertools.permutations(pods, 2) if a.node == b.node), None)
    subnet = next(((a, b) for a, b in itertools.permutations(pods, 2)
                   if spec.node(a.node).cidr != spec.node(b.node).cidr), None)
    pairs = [p for p in (cross, same, subnet) if p is not None]
    assert cross is not None
    if "crosssubnet" in topology:
        assert subnet is not None
    for a, b in pairs:
        assert tcp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"{spec.lab}: TCP {a.key} -> {b.key}"


# -- the wire ---------------------------------------------------------------------------------------------
def _packets(lines: list[str]) -> list[str]:
    """tcpdump -v output grouped per packet (continuation lines start with whitespace)."""
    packets: list[str] = []
    for line in filter(None, lines):
        if line[:1].isspace() and packets:
            packets[-1] += "\n" + line
        else:
            packets.append(line)
    return packets


def test_ipip_carries_the_pod_packet_in_ip_protocol_4(up):
    spec = converged(up, "calico-ipip")
    src, dst = spec.pod("bs1"), spec.pod("bs8")                 # k8s-node03 -> k8s-node01
    src_node, dst_node = spec.node(src.node), spec.node(dst.node)
    with tcpdump(spec.node_netns(src_node), "eth0", "ip proto 4 or icmp or udp port 4789",
                 IMMEDIATE + ("-v",)) as cap:
        assert ping(spec.pod_netns(src), str(dst.ip), count=2)
    packets = _packets(cap.lines)
    outer = re.compile(r"ttl (\d+),[^\n]*proto IPIP \(4\)[^\n]*\n\s+(\S+) > (\S+): IP \(tos \S+ ttl (\d+),[^\n]*"
                       r"proto ICMP \(1\)[^\n]*\n\s+(\S+) > (\S+): ICMP echo (request|reply)")
    seen = []
    for packet in packets:
        m = outer.search(packet)
        assert m, f"a packet on eth0 that is not IPIP-encapsulated ICMP:\n{packet}"
        outer_ttl, o_src, o_dst, inner_ttl, i_src, i_dst, kind = m.groups()
        assert outer_ttl == inner_ttl, f"tunl0 is `ttl inherit`:\n{packet}"
        seen.append((o_src, o_dst, i_src, i_dst, kind))
    assert (str(src_node.ip), str(dst_node.ip), str(src.ip), str(dst.ip), "request") in seen, "\n".join(cap.lines)
    assert (str(dst_node.ip), str(src_node.ip), str(dst.ip), str(src.ip), "reply") in seen, "\n".join(cap.lines)


def test_vxlan_carries_the_pod_frame_on_udp_4789_vni_4096(up):
    spec = converged(up, "calico-vxlan")
    src, dst = spec.pod("web-0"), spec.pod("web-1")             # k8s-node1 -> k8s-node2
    a, b = spec.node(src.node), spec.node(dst.node)
    with tcpdump(spec.node_netns(a), "eth0", "udp port 4789 or icmp or ip proto 4", IMMEDIATE) as cap:
        assert ping(spec.pod_netns(src), str(dst.ip), count=2)
    text = "\n".join(cap.lines)
    assert re.search(rf"{re.escape(str(a.ip))}\.\d+ > {re.escape(str(b.ip))}\.4789: VXLAN, flags \[I\] \(0x08\), "
                     rf"vni 4096\nIP {re.escape(str(src.ip))} > {re.escape(str(dst.ip))}: ICMP echo request",
                     text), text
    assert re.search(rf"{re.escape(str(b.ip))}\.\d+ > {re.escape(str(a.ip))}\.4789: VXLAN, flags \[I\] \(0x08\), "
                     rf"vni 4096\nIP {re.escape(str(dst.ip))} > {re.escape(str(src.ip))}: ICMP echo reply", text), text
    assert not re.search(r"^\S+ IP 10\.244\.", text, re.M), f"a pod packet on eth0 outside VXLAN:\n{text}"


def _plain(src_ip: str, dst_ip: str, text: str, kind: str = "request") -> bool:
    """A bare (unencapsulated) ICMP echo between two pod addresses in tcpdump's one-line output."""
    return bool(re.search(rf"^\S+ IP {re.escape(src_ip)} > {re.escape(dst_ip)}: ICMP echo {kind}", text, re.M))


@pytest.mark.parametrize("topology", ["calico-bgp-mesh", "calico-rr"])
def test_pure_bgp_puts_pod_addresses_on_the_wire_towards_the_owning_node(up, topology):
    spec = converged(up, topology)
    src, dst = spec.pod("bs1"), spec.pod("bs8")
    src_node, dst_node = spec.node(src.node), spec.node(dst.node)
    dst_mac = Snapshot(spec.node_netns(dst_node)).mac("eth0")
    with tcpdump(spec.node_netns(src_node), "eth0", "icmp or ip proto 4 or udp port 4789", IMMEDIATE + ("-e",)) as cap:
        assert ping(spec.pod_netns(src), str(dst.ip), count=2)
    text = "\n".join(cap.lines)
    request = [row for row in cap.lines if f"{src.ip} > {dst.ip}: ICMP echo request" in row]
    assert request, text
    # next hop is the owning node itself (`via 192.168.10.72 dev eth0`), not the underlay gateway
    assert all(f"> {dst_mac}, ethertype IPv4" in row for row in request), text
    assert "proto 4" not in text and "IPIP" not in text and "VXLAN" not in text and ".4789" not in text, text


@pytest.mark.parametrize("topology, src, same, other", [
    ("calico-ipip-crosssubnet", "web-0", "web-1", "web-2"),
    ("calico-vxlan-crosssubnet", "web-0", "web-1", "web-2"),
])
def test_crosssubnet_encapsulates_only_across_subnets(up, topology, src, same, other):
    spec = converged(up, topology)
    src, same, other = spec.pod(src), spec.pod(same), spec.pod(other)
    a, b, c = spec.node(src.node), spec.node(same.node), spec.node(other.node)
    assert b.ip in a.bgp_network and c.ip not in a.bgp_network
    bpf = "icmp or ip proto 4 or udp port 4789"
    with tcpdump(spec.node_netns(a), "eth0", bpf, IMMEDIATE) as direct:
        assert ping(spec.pod_netns(src), str(same.ip), count=2)
    text = "\n".join(direct.lines)
    assert _plain(str(src.ip), str(same.ip), text), text
    assert _plain(str(same.ip), str(src.ip), text, "reply"), text
    assert "VXLAN" not in text and ": IP " not in text, f"same-subnet traffic was encapsulated:\n{text}"

    with tcpdump(spec.node_netns(a), "eth0", bpf, IMMEDIATE) as across:
        assert ping(spec.pod_netns(src), str(other.ip), count=2)
    text = "\n".join(across.lines)
    if spec.vxlan_enabled():
        assert re.search(rf"{re.escape(str(a.ip))}\.\d+ > {re.escape(str(c.ip))}\.4789: VXLAN, flags \[I\] \(0x08\), "
                         rf"vni 4096\nIP {re.escape(str(src.ip))} > {re.escape(str(other.ip))}: ICMP echo request",
                         text), text
    else:
        assert re.search(rf"^\S+ IP {re.escape(str(a.ip))} > {re.escape(str(c.ip))}: IP {re.escape(str(src.ip))} > "
                         rf"{re.escape(str(other.ip))}: ICMP echo request", text, re.M), text
        assert re.search(rf"^\S+ IP {re.escape(str(c.ip))} > {re.escape(str(a.ip))}: IP {re.escape(str(other.ip))} > "
                         rf"{re.escape(str(src.ip))}: ICMP echo reply", text, re.M), text
    assert not _plain(str(src.ip), str(other.ip), text), f"cross-subnet pod traffic left unencapsulated:\n{text}"


# -- recovery ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology", ["calico-bgp-mesh", "calico-ipip"])
def test_stopped_bird_withdraws_its_block_and_a_restart_restores_it(up, topology):
    spec = converged(up, topology)
    victim = spec.node("k8s-node01")
    others = [n for n in spec.nodes if n is not victim]
    bs1, bs8 = spec.pod("bs1"), spec.pod("bs8")               # bs8 lives on the victim
    assert bs8.node == victim.name and bs1.node != victim.name
    old_pid = stop_bird(spec.lab, victim.name)
    try:
        want = {n.name: spec.routes(n) - spec.remote_block_routes(n, victim) for n in others}
        got = wait_for(lambda: {n.name: main_routes(spec.node_netns(n)) for n in others}, lambda g: g == want)
        for n in others:
            assert got[n.name] == want[n.name], f"{n.name} after BIRD stopped on {victim.name}:\n" \
                                                f"{route_diff(got[n.name], want[n.name])}"
        # `persist`: the stopped node's kernel keeps what BIRD programmed
        assert main_routes(spec.node_netns(victim)) == spec.routes(victim)
        assert node_status(spec.lab, victim.name) == ("Calico process is running.\n\n"
                                                      "The BGP backend process (BIRD) is not running.\n\n")
        for n in others:
            assert (str(victim.ip), "node-to-node mesh") not in established(spec.lab, n.name), n.name
        assert not ping(spec.pod_netns(bs1), str(bs8.ip), count=1, wait=1), "bs8 reachable without a route"
    finally:
        if bird_pid(spec.lab, victim.name) is None:
            start_bird(spec.lab, victim.name)
    assert bird_pid(spec.lab, victim.name) not in (None, old_pid)
    got = wait_sessions(spec)
    for node in spec.nodes:
        assert got[node.name] == spec.sessions(node), node.name
    assert_routes(spec)
    assert ping(spec.pod_netns(bs1), str(bs8.ip), count=2)
