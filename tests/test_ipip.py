"""IPIP on each implementation this kernel offers: the ipip module, the lab's eBPF programs on tc, the
userspace TUN tunnel (options.ipipImplementation), for Calico's tunl0 and flannel's flannel.ipip.

What a user looks at must not depend on the implementation: real IP-protocol-4 packets on eth0 with
the nodes' addresses, `ttl inherit` and DF copied from the inner header (reference §0.2/§5.1, the
module's `ttl inherit nopmtudisc`), the inner packet on `tcpdump -i tunl0`, ICMP "fragmentation needed"
with MTU 1480 for a 1481-byte DF packet, ICMP/TCP/UDP across nodes. Expected values come from the
topologies and the reference; tc and bpftool read the kernel back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import expect
import expect_calico
import pytest
from calico_kernel import assert_routes, netns_exec
from capture import tcpdump
from conftest import TOPOLOGIES, run_lab
from kernel import kernel_has_ipip, kernel_runs_ebpf_ipip, tc_filters
from traffic import ping, tcp, udp

pytestmark = pytest.mark.needs_root

PREFIX = os.environ.get("LAB_TEST_PREFIX", "ti")
IMMEDIATE = ("--immediate-mode",)
OUTER = re.compile(r"\(tos (\S+), ttl (\d+), id \d+, offset 0, flags \[([^\]]*)\], proto IPIP \(4\), length (\d+)\)\n"
                   r"\s+(\S+) > (\S+): IP \(tos \S+, ttl (\d+), id \d+, offset 0, flags \[([^\]]*)\], "
                   r"proto (\w+) \(\d+\), length (\d+)\)\n\s+(\S+) > (\S+): (.*)")
NEEDS_EBPF = pytest.mark.skipif(not kernel_runs_ebpf_ipip(), reason="the eBPF IPIP programs do not attach here "
                                "(clang/libbpf-dev missing, or no clsact/cls_bpf): run scripts/install-deps.sh")


def with_option(topology: str, name: str, implementation: str | None, directory: Path, edit=None) -> Path:
    """A copy of topologies/<topology>.yaml named `name`, with options.ipipImplementation set."""
    text = re.sub(r"(?m)^name:.*$", f"name: {name}", (TOPOLOGIES / f"{topology}.yaml").read_text(), count=1)
    if implementation:
        text = re.sub(r"(?m)^(name:.*)$", rf"\1\noptions:\n  ipipImplementation: {implementation}", text, count=1)
    if edit:
        text = edit(text)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def packets(lines: list[str]) -> list[str]:
    """tcpdump -v output regrouped: one string per packet (header line plus its continuation lines)."""
    grouped: list[str] = []
    for line in lines:
        if line[:1].isdigit():
            grouped.append(line)
        elif grouped:
            grouped[-1] += "\n" + line
    return grouped


def outer_headers(lines: list[str]) -> list[tuple[str, ...]]:
    """(outer tos, outer ttl, outer flags, outer src, outer dst, inner ttl, inner flags, inner src, inner dst, what)"""
    found = []
    for packet in packets(lines):
        m = OUTER.search(packet)
        if m:
            tos, ttl, flags, _len, osrc, odst, ittl, iflags, _proto, _ilen, isrc, idst, what = m.groups()
            found.append((tos, ttl, flags, osrc, odst, ittl, iflags, isrc, idst, what))
    return found


def program_ids(netns: str, devices: list[tuple[str, str]]) -> set[int]:
    ids = set()
    for dev, direction in devices:
        for line in tc_filters(netns, dev, direction):
            ids.add(int(re.search(r" id (\d+) ", line).group(1)))
    return ids


def bpftool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bpftool", *args], capture_output=True, text=True)


# -- Calico, eBPF --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calico_ebpf(tmp_path_factory):
    if not kernel_runs_ebpf_ipip():
        pytest.skip("the eBPF IPIP programs do not attach on this machine")
    name = f"{PREFIX}-cipip-ebpf"
    path = with_option("calico-ipip", name, "ebpf", tmp_path_factory.mktemp("cipip"))
    try:
        run_lab("up", str(path))
        spec = expect_calico.load(path)
        assert_routes(spec)
        yield spec
    finally:
        run_lab("down", name, check=False)


def test_ebpf_status_and_programs(calico_ebpf):
    spec = calico_ebpf
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    assert status["ipip_implementation"] == "ebpf"
    stats = json.loads(Path(status["runtime"]["route_agent"]["stats"]).read_text())
    for node in spec.nodes:
        netns = spec.node_netns(node)
        assert [line.split(" name ")[1].split()[0] for line in tc_filters(netns, "tunl0", "egress")] == ["ipip_encap"]
        assert [line.split(" name ")[1].split()[0] for line in tc_filters(netns, "eth0", "ingress")] == ["ipip_decap"]
        assert not tc_filters(netns, "tunl0", "ingress") and not tc_filters(netns, "eth0", "egress")
        assert stats["nodes"][node.name]["implementation"] == "ebpf"
        assert stats["nodes"][node.name]["attached"] is True, "the agent holds tunl0 open: it has carrier"
        link = json.loads(netns_exec(netns, "ip", "-j", "link", "show", "tunl0").stdout)[0]
        assert "LOWER_UP" in link["flags"] and "NOARP" in link["flags"] and link["mtu"] == 1480


def test_wire_is_ip_protocol_4_with_inherited_ttl_and_copied_df(calico_ebpf):
    spec = calico_ebpf
    src, dst = spec.pod("bs1"), spec.pod("bs8")            # k8s-node03 -> k8s-node01
    src_node, dst_node = spec.node(src.node), spec.node(dst.node)
    with tcpdump(spec.node_netns(src_node), "eth0", "ip proto 4", IMMEDIATE + ("-v",)) as cap:
        for df in ("do", "dont"):
            result = netns_exec(spec.pod_netns(src), "ping", "-c", "1", "-W", "2", "-M", df, "-s", "1000", str(dst.ip),
                                check=False)
            assert result.returncode == 0, result.stdout + result.stderr
    seen = outer_headers(cap.lines)
    requests = [h for h in seen if h[7] == str(src.ip) and "echo request" in h[9]]
    replies = [h for h in seen if h[7] == str(dst.ip) and "echo reply" in h[9]]
    assert len(requests) == 2 and len(replies) == 2, "\n".join(cap.lines)
    for tos, ttl, flags, _osrc, _odst, ittl, iflags, _, _, _ in requests + replies:
        assert ttl == ittl, "ttl inherit: the outer TTL is the inner one"
        assert ("DF" in flags) == ("DF" in iflags), "nopmtudisc: DF is copied from the inner header"
        assert tos == "0x0"
    assert {(h[3], h[4]) for h in requests} == {(str(src_node.ip), str(dst_node.ip))}
    assert {(h[3], h[4]) for h in replies} == {(str(dst_node.ip), str(src_node.ip))}
    assert {"DF" in h[6] for h in requests} == {True, False}, "one ping with DF, one without"
    assert int(requests[0][5]) == 63, "a pod's TTL 64, less the sending node's forwarding hop"


def test_tcpdump_on_tunl0_shows_the_inner_packet(calico_ebpf):
    spec = calico_ebpf
    src, dst = spec.pod("bs1"), spec.pod("bs8")
    with tcpdump(spec.node_netns(dst.node), "tunl0", "icmp", IMMEDIATE) as cap:
        assert ping(spec.pod_netns(src), str(dst.ip), count=2)
    assert any(f"IP {src.ip} > {dst.ip}: ICMP echo request" in line for line in cap.lines), cap.lines


def test_icmp_tcp_udp_across_nodes(calico_ebpf):
    spec = calico_ebpf
    pods = spec.pods
    pairs = [(a, b) for a in pods for b in pods if a.node != b.node]
    assert pairs
    for a, b in pairs:
        assert ping(spec.pod_netns(a), str(b.ip)), f"ICMP {a.name} -> {b.name}"
    a, b = pairs[0]
    assert tcp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"TCP {a.name} -> {b.name}"
    assert udp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"UDP {a.name} -> {b.name}"
    node = spec.node(a.node)
    assert ping(spec.node_netns(node), str(b.ip)), "node to remote pod (source: tunl0's address)"


def test_1481_byte_df_packet_gets_frag_needed_mtu_1480(calico_ebpf):
    """A packet forwarded into tunl0: the underlay router sends it to k8s-node03 for a pod of k8s-node01."""
    spec = calico_ebpf
    dst = spec.pod("bs8")
    via = spec.node("k8s-node03")
    block = next(str(b) for b in spec.node(dst.node).blocks if dst.ip in b)
    underlay = f"{spec.lab}._underlay"
    subprocess.run(["ip", "-n", underlay, "route", "add", block, "via", str(via.ip)], check=True)
    try:
        big = netns_exec(underlay, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(1481 - 28), str(dst.ip),
                         check=False)
        assert "Frag needed and DF set (mtu = 1480)" in big.stdout, big.stdout + big.stderr
        fits = netns_exec(underlay, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(1480 - 28), str(dst.ip),
                          check=False)
        assert fits.returncode == 0, fits.stdout + fits.stderr
    finally:
        subprocess.run(["ip", "-n", underlay, "route", "del", block], check=False)


FRAGMENTS = """
import socket, struct, sys
def csum(data):
    data += b"\\0" * (len(data) % 2)
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total & 0xffff) + (total >> 16)
    return ~((total & 0xffff) + (total >> 16)) & 0xffff
outer_src, outer_dst, inner_src, inner_dst = (socket.inet_aton(a) for a in sys.argv[1:5])
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x7e2, 1) + b"f" * 1172
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
outer_tos, inner_tos = (int(v) for v in (sys.argv[6:8] or ["0", "0"]))
inner = struct.pack("!BBHHHBBH4s4s", 0x45, inner_tos, 20 + len(icmp), 7, 0, 64, 1, 0, inner_src, inner_dst)
inner = inner[:10] + struct.pack("!H", csum(inner)) + inner[12:] + icmp
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
half = len(inner) // 2 // 8 * 8
pieces = ((0, inner[:half], 0x2000), (half, inner[half:], 0)) if sys.argv[5] == "fragments" else ((0, inner, 0),)
for offset, chunk, more in pieces:
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, outer_tos, 20 + len(chunk), 4242, more | offset // 8, 64, 4, 0,
                        outer_src, outer_dst)
    raw.sendto(outer + chunk, (sys.argv[2], 0))
"""


def test_outer_packet_fragmented_in_transit_is_decapsulated(calico_ebpf):
    """An IPIP packet whose outer header was fragmented on the way (two fragments, as a router with a
    smaller MTU makes them) reaches the pod: the stack reassembles it and the slow path decapsulates it,
    as the ipip module does after ip_defrag."""
    spec = calico_ebpf
    src, dst = spec.pod("bs8"), spec.pod("bs1")                  # k8s-node01 -> k8s-node03
    first, last = spec.node(src.node), spec.node(dst.node)
    with tcpdump(spec.pod_netns(dst), "eth0", "icmp", IMMEDIATE) as cap:
        netns_exec(spec.node_netns(first), sys.executable, "-c", FRAGMENTS, str(first.ip), str(last.ip),
                   str(src.ip), str(dst.ip), "fragments")
        time.sleep(1)
    assert any(f"IP {src.ip} > {dst.ip}: ICMP echo request, id 2018" in line for line in cap.lines), cap.lines
    assert any(f"IP {dst.ip} > {src.ip}: ICMP echo reply, id 2018" in line for line in cap.lines), cap.lines


def test_ipip_from_a_host_that_is_not_a_node_is_not_decapsulated(calico_ebpf):
    """Felix's INPUT rule accepts IPIP only from Calico hosts: the same packet reaches the pod from a node
    and does not from the underlay router, which is no node."""
    spec = calico_ebpf
    src, dst = spec.pod("bs8"), spec.pod("bs1")
    first, last = spec.node(src.node), spec.node(dst.node)
    underlay = spec.underlay_netns
    stranger = json.loads(netns_exec(underlay, "ip", "-4", "-j", "addr", "show").stdout)
    stranger_ip = next(a["local"] for link in stranger for a in link.get("addr_info", [])
                       if not a["local"].startswith("127.") and a["local"] != str(first.ip))
    for sender, outer_src, expected in ((underlay, stranger_ip, False), (spec.node_netns(first), str(first.ip), True)):
        with tcpdump(spec.pod_netns(dst), "eth0", "icmp", IMMEDIATE) as cap:
            netns_exec(sender, sys.executable, "-c", FRAGMENTS, outer_src, str(last.ip), str(src.ip), str(dst.ip),
                       "whole")
            time.sleep(1)
        seen = any(f"IP {src.ip} > {dst.ip}: ICMP echo request, id 2018" in line for line in cap.lines)
        assert seen == expected, (outer_src, cap.lines)


@pytest.mark.parametrize("inner_tos, arrives, inner_after", [(0, False, None), (2, True, "0x3,CE"),
                                                               (1, True, "0x3,CE")])
def test_outer_ce_is_decapsulated_as_the_module_does(calico_ebpf, inner_tos, arrives, inner_after):
    """ipip_ecn_decapsulate(): outer CE over an inner Not-ECT packet is dropped (it cannot carry the mark);
    over ECT(0) or ECT(1) it marks the inner packet CE (RFC 6040)."""
    spec = calico_ebpf
    src, dst = spec.pod("bs8"), spec.pod("bs1")
    first, last = spec.node(src.node), spec.node(dst.node)
    with tcpdump(spec.pod_netns(dst), "eth0", "icmp[icmptype] == icmp-echo", IMMEDIATE + ("-v",)) as cap:
        netns_exec(spec.node_netns(first), sys.executable, "-c", FRAGMENTS, str(first.ip), str(last.ip), str(src.ip),
                   str(dst.ip), "whole", "3", str(inner_tos))
        time.sleep(1)
    requests = [p for p in packets(cap.lines) if f"{src.ip} > {dst.ip}: ICMP echo request, id 2018" in p]
    assert len(requests) == (1 if arrives else 0), cap.lines
    if arrives:
        assert f"(tos {inner_after}," in requests[0], requests[0]


def test_transit_through_a_node_is_tunnelled_on(calico_ebpf):
    """A route on k8s-node01 sends bs1 (a pod of k8s-node03) via k8s-node02 through tunl0: k8s-node02
    decapsulates the packet and, by its own block route, tunnels it on to k8s-node03 (the module's
    behaviour: a decapsulated packet forwarded back into tunl0 is encapsulated again)."""
    spec = calico_ebpf
    src, dst = spec.pod("bs8"), spec.pod("bs1")                  # k8s-node01 -> k8s-node03
    first, transit, last = spec.node(src.node), spec.node("k8s-node02"), spec.node(dst.node)
    route = [f"{dst.ip}/32", "via", str(transit.ip), "dev", "tunl0", "onlink"]
    netns_exec(spec.node_netns(first), "ip", "route", "add", *route)
    try:
        with tcpdump(spec.node_netns(transit), "eth0", "ip proto 4", IMMEDIATE + ("-v",)) as cap:
            assert ping(spec.pod_netns(src), str(dst.ip), count=3), "ICMP through a transit node"
            assert tcp(spec.pod_netns(src), spec.pod_netns(dst), str(dst.ip)), "TCP through a transit node"
        # a bulk stream: TCP super-packets (GSO) re-encapsulated with their tunnel marks must still flow
        server = subprocess.Popen(["ip", "netns", "exec", spec.pod_netns(dst), "iperf3", "-s", "-1", "-p", "5299"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            bulk = netns_exec(spec.pod_netns(src), "iperf3", "-c", str(dst.ip), "-p", "5299", "-t", "1", "-J",
                              check=False, timeout=30)
        finally:
            server.kill()
            server.wait()
        assert bulk.returncode == 0, bulk.stdout[-2000:] + bulk.stderr
        received = json.loads(bulk.stdout)["end"]["sum_received"]["bytes"]
        assert received > 10 * 1024 * 1024, f"only {received} bytes in 1 s through the transit node"
        seen = outer_headers(cap.lines)
        arriving = {(h[3], h[4]) for h in seen if h[7] == str(src.ip) and "echo request" in h[9]}
        assert arriving == {(str(first.ip), str(transit.ip)), (str(transit.ip), str(last.ip))}, "\n".join(cap.lines)
    finally:
        netns_exec(spec.node_netns(first), "ip", "route", "del", *route, check=False)


def test_status_shows_a_dead_route_agent(calico_ebpf):
    """The eBPF path needs the route agent (it holds tunl0 open: carrier). Killed, and with the lab's supervisor
    killed first (else it starts the agent again: tests/test_faults.py), `lab status` says so, marks the lab
    degraded and exits non-zero. (Runs last but one: the lab has no agent afterwards.)"""
    spec = calico_ebpf
    before = run_lab("status", spec.lab)
    assert "route agent: pid" in before.stdout and "running" in before.stdout, before.stdout
    status = json.loads(run_lab("status", spec.lab, "--json").stdout)
    pid, supervisor = status["route_agent"]["pid"], status["supervisor"]["pid"]
    for victim in (supervisor, pid):
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{victim}").exists():
            time.sleep(0.1)
    result = run_lab("status", spec.lab, check=False)
    assert result.returncode != 0, result.stdout
    assert f"WARNING: the route agent (pid {pid}) is not running" in result.stdout, result.stdout
    assert f"lab {spec.lab} (degraded)" in result.stdout, result.stdout
    assert f"DEGRADED: the lab's supervisor (pid {supervisor}) is not running" in result.stdout, result.stdout
    raw = run_lab("status", spec.lab, "--json", check=False)
    status = json.loads(raw.stdout)
    assert raw.returncode != 0 and status["status"] == "degraded" and status["route_agent"]["alive"] is False


@pytest.mark.skipif(subprocess.run(["which", "bpftool"], capture_output=True).returncode != 0,
                    reason="bpftool is not installed (scripts/install-deps.sh --test installs it)")
def test_down_leaves_no_program_map_or_file(calico_ebpf):
    spec = calico_ebpf
    hooks = [("tunl0", "egress"), ("eth0", "ingress")]
    programs = set().union(*(program_ids(spec.node_netns(n), hooks) for n in spec.nodes))
    assert len(programs) == 2 * len(spec.nodes)
    maps = set()
    for prog in programs:
        maps |= set(json.loads(bpftool("prog", "show", "id", str(prog), "-j").stdout).get("map_ids", []))
    assert maps, "the decap program's constants live in a .rodata map"
    run_lab("down", spec.lab)
    deadline = time.monotonic() + 20        # the kernel frees a namespace's devices asynchronously
    while time.monotonic() < deadline:
        left = [p for p in programs if bpftool("prog", "show", "id", str(p)).returncode == 0]
        left += [m for m in maps if bpftool("map", "show", "id", str(m)).returncode == 0]
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"programs or maps still loaded after lab down: {left}"
    assert not os.path.exists(f"/run/lab/{spec.lab}")
    assert not list(Path(tempfile.gettempdir()).glob("lab-bpf-*")), "the object copies tc loaded are removed"
    assert not list(Path("/sys/fs/bpf").glob("**/ipip*")), "nothing is pinned"


# -- forcing an implementation -----------------------------------------------------------------------------------
def test_forced_userspace_carries_ipip_without_tc_programs(tmp_path):
    name = f"{PREFIX}-cipip-user"
    path = with_option("calico-ipip", name, "userspace", tmp_path)
    try:
        run_lab("up", str(path))
        spec = expect_calico.load(path)
        assert_routes(spec)
        status = json.loads(run_lab("status", name, "--json").stdout)
        assert status["ipip_implementation"] == "userspace-tun"
        for node in spec.nodes:
            assert not tc_filters(spec.node_netns(node), "eth0", "ingress")
            assert not tc_filters(spec.node_netns(node), "tunl0", "egress")
            link = json.loads(netns_exec(spec.node_netns(node), "ip", "-j", "link", "show", "tunl0").stdout)[0]
            assert "LOWER_UP" in link["flags"] and "NOARP" in link["flags"] and link["mtu"] == 1480
            addresses = json.loads(netns_exec(spec.node_netns(node), "ip", "-j", "-4", "addr", "show", "tunl0").stdout)
            assert [a["prefixlen"] for a in addresses[0]["addr_info"]] == [32], "the tunnel address is a /32"
        src, dst = spec.pod("bs1"), spec.pod("bs8")
        with tcpdump(spec.node_netns(src.node), "eth0", "ip proto 4", IMMEDIATE) as cap:
            assert ping(spec.pod_netns(src), str(dst.ip), count=2)
        assert any(f"IP {src.ip} > {dst.ip}: ICMP echo request" in line for line in cap.lines), cap.lines
    finally:
        run_lab("down", name, check=False)


@NEEDS_EBPF
@pytest.mark.skipif(kernel_has_ipip(), reason="this kernel has the ipip module: auto picks it before eBPF")
def test_programs_that_load_but_drop_make_auto_fall_back_to_userspace(tmp_path):
    """The capability probe sends a packet through the programs, not only loads them: an object whose
    encapsulation drops everything (as on a kernel whose helpers refuse a flag at run time) must not be
    picked by `auto`, and forcing it is refused with the probe's reason."""
    broken = tmp_path / "bpf"
    broken.mkdir()
    source = (Path(__file__).resolve().parents[1] / "bpf" / "ipip.c").read_text()
    drop = "return bpf_redirect_neigh(underlay.ifindex, NULL, 0, 0);"
    assert drop in source
    (broken / "ipip.c").write_text(source.replace(drop, "return TC_ACT_SHOT;"))
    machine = os.uname().machine
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{machine}-linux-gnu", "-c",
                    str(broken / "ipip.c"), "-o", str(broken / "ipip.o")], check=True)
    env = dict(os.environ, LAB_BPF_DIR=str(broken))
    name = f"{PREFIX}-cipip-drop"
    path = with_option("calico-ipip", name, None, tmp_path)
    try:
        run_lab("up", str(path), env=env)
        status = json.loads(run_lab("status", name, "--json", env=env).stdout)
        assert status["ipip_implementation"] == "userspace-tun"
        assert any("eBPF IPIP (tc): unavailable" in note and "never arrived" in note
                   for note in status["capabilities"]), status["capabilities"]
        spec = expect_calico.load(path)
        assert ping(spec.pod_netns(spec.pod("bs1")), str(spec.pod("bs8").ip), count=2)
    finally:
        run_lab("down", name, check=False, env=env)
    forced = with_option("calico-ipip", f"{PREFIX}-cipip-drop2", "ebpf", tmp_path)
    result = run_lab("up", str(forced), check=False, env=env)
    assert result.returncode == 2 and "never arrived" in result.stderr, result.stdout + result.stderr
    assert not [n for n in os.listdir("/run/netns") if n.startswith((f"{name}.", f"{PREFIX}-cipip-drop2."))]


@pytest.mark.skipif(kernel_has_ipip(), reason="this kernel has the ipip module: forcing `kernel` is allowed here")
def test_forcing_kernel_without_the_module_is_refused_before_anything_is_made(tmp_path):
    name = f"{PREFIX}-cipip-kern"
    path = with_option("calico-ipip", name, "kernel", tmp_path)
    result = run_lab("up", str(path), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ipipImplementation" in text)
    assert f"{path}:{line}: options.ipipImplementation: kernel: this kernel cannot create ipip devices" \
        in result.stderr, result.stderr
    assert "hint:" in result.stderr
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{name}.")]
    assert not os.path.exists(f"/run/lab/{name}")


def test_an_unknown_implementation_names_file_line_and_field(tmp_path):
    path = with_option("calico-ipip", f"{PREFIX}-cipip-bad", "fast", tmp_path)
    result = run_lab("up", "--dry-run", str(path), check=False)
    assert result.returncode == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ipipImplementation" in text)
    assert re.search(rf"{re.escape(str(path))}:{line}: options\.ipipImplementation: .*fast", result.stderr), \
        result.stderr


@NEEDS_EBPF
def test_dry_run_prints_the_tc_attachments(tmp_path):
    path = with_option("calico-ipip", f"{PREFIX}-cipip-dry", "ebpf", tmp_path)
    out = run_lab("up", "--dry-run", str(path)).stdout
    ns = f"{PREFIX}-cipip-dry.k8s-node01"
    assert f"tc -n {ns} qdisc add dev tunl0 clsact" in out
    assert f"tc -n {ns} qdisc add dev eth0 clsact" in out
    assert re.search(rf"tc -n {re.escape(ns)} filter add dev tunl0 egress pref 1 bpf direct-action obj \S+/ipip\.o "
                     r"sec tc/encap", out), out
    assert re.search(rf"tc -n {re.escape(ns)} filter add dev eth0 ingress pref 1 bpf direct-action obj \S+/ipip\.o "
                     r"sec tc/decap", out), out
    assert "lab_peers=192.168.10.71,192.168.10.73,192.168.10.74" in out   # node01's peers: the other nodes
    assert "# NOT replayable as is" in out and "`lab up` patches the object's .rodata per node" in out


# -- flannel's ipip backend --------------------------------------------------------------------------------------
def two_racks(direct_routing: bool):
    def edit(text: str) -> str:
        text = re.sub(r"(?ms)^networks:.*?^nodes:.*?^pods:", (
            "networks:\n"
            "  - {name: rack1, cidr: 192.168.10.0/24, gateway: 192.168.10.1}\n"
            "  - {name: rack2, cidr: 192.168.20.0/24, gateway: 192.168.20.1}\n"
            "nodes:\n"
            "  - {name: k8s-node1, network: rack1, ip: 192.168.10.71, podCIDR: 10.244.0.0/24}\n"
            "  - {name: k8s-node2, network: rack1, ip: 192.168.10.72, podCIDR: 10.244.1.0/24}\n"
            "  - {name: k8s-node3, network: rack2, ip: 192.168.20.73, podCIDR: 10.244.2.0/24}\n"
            "pods:"), text)
        if direct_routing:
            text = text.replace('"Type": "ipip"', '"Type": "ipip", "DirectRouting": true')
        return text
    return edit


@pytest.fixture(scope="module")
def flannel_racks(tmp_path_factory):
    name = f"{PREFIX}-fipip-dr"
    path = with_option("flannel-ipip", name, None, tmp_path_factory.mktemp("fipip"), two_racks(True))
    try:
        run_lab("up", str(path))
        yield expect.load(path)
    finally:
        run_lab("down", name, check=False)


def test_flannel_ipip_routes_with_direct_routing(flannel_racks):
    """§3.2: `via <peer> dev flannel.ipip onlink`; DirectRouting and one segment: `via <peer> dev eth0 onlink`."""
    spec = flannel_racks
    for node in spec.nodes:
        routes = json.loads(netns_exec(spec.node_netns(node), "ip", "-j", "route", "show").stdout)
        for peer in spec.nodes:
            if peer is node:
                continue
            route = next(r for r in routes if r["dst"] == str(peer.subnet))
            dev = "eth0" if spec.same_segment(node, peer) else "flannel.ipip"
            assert (route["gateway"], route["dev"], "onlink" in route.get("flags", [])) == (str(peer.ip), dev, True), \
                f"{node.name}: {route}"


def test_flannel_ipip_traffic_and_wire(flannel_racks):
    spec = flannel_racks
    by_node = {n.name: n for n in spec.nodes}
    web0, web1, web2 = (next(p for p in spec.pods if p.name == f"web-{i}") for i in range(3))
    node1, node3 = by_node[web0.node], by_node[web2.node]
    # across racks: IPIP between the node addresses, through the underlay router
    with tcpdump(spec.node_netns(node1), "eth0", "ip proto 4 or icmp", IMMEDIATE + ("-v",)) as cap:
        assert ping(spec.pod_netns(web0), str(web2.ip), count=2)
    seen = outer_headers(cap.lines)
    assert (str(node1.ip), str(node3.ip), str(web0.ip), str(web2.ip)) in {(h[3], h[4], h[7], h[8]) for h in seen}, \
        "\n".join(cap.lines)
    # within a rack, DirectRouting: the pod packet itself, no encapsulation
    with tcpdump(spec.node_netns(node1), "eth0", "ip proto 4 or icmp", IMMEDIATE) as cap:
        assert ping(spec.pod_netns(web0), str(web1.ip), count=2)
    assert not [line for line in cap.lines if "IPIP" in line or "proto 4" in line], cap.lines
    assert any(f"IP {web0.ip} > {web1.ip}: ICMP echo request" in line for line in cap.lines), cap.lines
    for a, b in [(web0, web2), (web2, web1)]:
        assert tcp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"TCP {a.name} -> {b.name}"
        assert udp(spec.pod_netns(a), spec.pod_netns(b), str(b.ip)), f"UDP {a.name} -> {b.name}"


def test_flannel_ipip_forced_userspace(tmp_path):
    name = f"{PREFIX}-fipip-user"
    path = with_option("flannel-ipip", name, "userspace", tmp_path)
    try:
        run_lab("up", str(path))
        spec = expect.load(path)
        status = json.loads(run_lab("status", name, "--json").stdout)
        assert status["ipip_implementation"] == "userspace-tun"
        assert status["runtime"]["route_agent"]["pid"], "the route agent carries flannel.ipip"
        web0, web1 = (next(p for p in spec.pods if p.name == f"web-{i}") for i in range(2))
        node1, node2 = (next(n for n in spec.nodes if n.name == p.node) for p in (web0, web1))
        for node in spec.nodes:
            assert not tc_filters(spec.node_netns(node), "eth0", "ingress")
        with tcpdump(spec.node_netns(node1), "eth0", "ip proto 4", IMMEDIATE + ("-v",)) as cap:
            assert ping(spec.pod_netns(web0), str(web1.ip), count=2)
        assert (str(node1.ip), str(node2.ip), str(web0.ip), str(web1.ip)) in \
            {(h[3], h[4], h[7], h[8]) for h in outer_headers(cap.lines)}, "\n".join(cap.lines)
        assert tcp(spec.pod_netns(web0), spec.pod_netns(web1), str(web1.ip))
    finally:
        run_lab("down", name, check=False)
