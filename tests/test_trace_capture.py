"""`lab trace --capture` and `lab capture`: one real packet seen on every interface the topology puts on
its path (worked out here from the topology and the kernel's veth peers, not from the trace's own
prediction), a pcapng with one named interface block per interface that tcpdump reads, the packet
last seen where a policy or a missing route drops it, nothing left behind by a signal, and tcpdump
in a lab's namespace with the lab's names."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_lab
from trace_labs import host_veth, lab, lab_tcpdumps, start  # noqa: F401 (pytest fixtures, used by name)

pytestmark = pytest.mark.needs_root


def _capture(name: str, tmp_path, *args: str) -> tuple[int, dict, str]:
    pcap = tmp_path / "trace.pcapng"
    result = run_lab("trace", *args, "--capture", "-w", str(pcap), "--json", "--lab", name, check=False)
    assert result.returncode in (0, 1), result.stderr
    assert lab_tcpdumps(name) == [], "tcpdump left running"
    return result.returncode, json.loads(result.stdout), str(pcap)


def _read(pcap: str) -> list[str]:
    result = subprocess.run(["tcpdump", "-r", pcap, "-nn"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _interface_names(pcap: str) -> list[str]:
    """The if_name option of every Interface Description Block of a pcapng file (read here, byte by byte)."""
    blob = open(pcap, "rb").read()
    assert struct.unpack_from("<I", blob, 0)[0] == 0x0A0D0D0A and struct.unpack_from("<I", blob, 8)[0] == 0x1A2B3C4D
    names, offset = [], 0
    while offset < len(blob):
        kind, length = struct.unpack_from("<II", blob, offset)
        if kind == 1:
            at = offset + 16
            while at < offset + length - 4:
                code, size = struct.unpack_from("<HH", blob, at)
                if code == 0:
                    break
                if code == 2:
                    names.append(blob[at + 4:at + 4 + size].decode())
                at += 4 + size + (-size % 4)
        offset += length
    return names


def _tc_egress_program(netns: str, dev: str) -> bool:
    """Whether the kernel has a BPF program on the device's tc egress hook."""
    shown = subprocess.run(["tc", "-n", netns, "filter", "show", "dev", dev, "egress"], capture_output=True, text=True)
    return " bpf " in f" {shown.stdout} "


def _pod_ip(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"], capture_output=True,
                          text=True).stdout.split()[3].split("/")[0]


def _node_ns(name: str, spec: dict, pod: str) -> tuple[str, str]:
    node = next(p["node"] for p in spec["pods"] if p["name"] == pod)
    return node, f"{name}.{node}"


def _expected_path(name: str, spec: dict, src: str, dst: str, tunnel: list[str]) -> list[tuple[str, str]]:
    """Every interface a packet from pod `src` to pod `dst` on another node crosses, from the topology:
    the pod's eth0, its veth on the node, the node's bridge and tunnel devices, eth0, the two switch ports
    (named after the nodes), and the same in reverse on the far side."""
    src_node, src_node_ns = _node_ns(name, spec, src)
    dst_node, dst_node_ns = _node_ns(name, spec, dst)
    src_pod, dst_pod = f"{name}.default.{src}", f"{name}.default.{dst}"
    underlay = f"{name}._underlay"
    return ([(src_pod, "eth0"), (src_node_ns, host_veth(src_pod, src_node_ns))]
            + [(src_node_ns, dev) for dev in tunnel] + [(src_node_ns, "eth0"), (underlay, src_node),
                                                         (underlay, dst_node), (dst_node_ns, "eth0")]
            + [(dst_node_ns, dev) for dev in reversed(tunnel)]
            + [(dst_node_ns, host_veth(dst_pod, dst_node_ns)), (dst_pod, "eth0")])


@pytest.mark.parametrize("topology,src,dst,devices,outer", [
    ("flannel-vxlan", "bs1", "bs8", ["cni0", "flannel.1"], "UDP 8472 VXLAN VNI 1"),   # seed §5.2 b-f
    ("calico-ipip", "bs1", "bs8", ["tunl0"], "IPIP"),                                # reference §5.5
])
def test_every_interface_of_the_path_sees_the_packet(lab, tmp_path, topology, src, dst, devices, outer):
    name, spec = lab(topology)
    expected = _expected_path(name, spec, src, dst, devices)
    src_node_ns = _node_ns(name, spec, src)[1]
    if "tunl0" in devices and _tc_egress_program(src_node_ns, "tunl0"):
        # the eBPF tunnel redirects on tc egress, before the point where tcpdump sees outgoing packets
        expected.remove((src_node_ns, "tunl0"))
    code, result, pcap = _capture(name, tmp_path, f"default/{src}", f"default/{dst}")
    assert code == 0
    rows = result["observed"]["interfaces"]
    assert [(r["netns"], r["iface"]) for r in rows] == expected
    assert result["observed"]["differences"] == []
    assert all(row["seen"] for row in rows), rows
    underlay = [r for r in rows if r["netns"] == f"{name}._underlay"]
    assert len(underlay) == 2 and all(r["encapsulation"] == outer for r in underlay)   # between nodes: encapsulated
    pods = [r for r in rows if r["netns"].startswith(f"{name}.default.")]
    assert len(pods) == 2 and all(r["encapsulation"] == "plain" for r in pods)        # in the pods: the bare packet
    assert pods[0]["ttl"] == 64 and pods[1]["ttl"] == 62                              # two routers: the two nodes
    # the pcapng: one interface block per netns:iface, in path order, and tcpdump reads every packet
    assert _interface_names(pcap) == [f"{n}:{i}" for n, i in expected]
    packets = [line for line in _read(pcap) if line[:2].isdigit()]   # VXLAN prints its inner frame on a 2nd line
    assert len(packets) == len(expected) == result["observed"]["pcap_packets"]


def test_denied_packet_is_last_seen_at_the_deciding_node(lab, tmp_path):
    name, spec = lab("netpol-xyz-kuberouter", ("xyz-deny-ingress-x.yaml", "xyz-allow-y-to-xa-80.yaml"))
    node_ns = next(f"{name}.{p['node']}" for p in spec["pods"]
                         if p["namespace"] == "x" and p["name"] == "a")
    xa_veth = host_veth(f"{name}.x.a", node_ns)
    code, result, pcap = _capture(name, tmp_path, "y/b", "x/a", "--port", "81", "--protocol", "UDP")
    assert code == 1 and result["outcome"] == "dropped"
    observed = result["observed"]
    assert observed["differences"] == []
    beyond = [(r["netns"], r["iface"]) for r in observed["interfaces"] if r.get("beyond_drop")]
    assert beyond == [(node_ns, "cni0")] or beyond == [(node_ns, xa_veth)], beyond   # the way to x/a, watched
    assert all(r["seen"] is None for r in observed["interfaces"] if r.get("beyond_drop"))
    assert observed["last_seen"].startswith(f"{node_ns} ")                          # x/a's node, and no further
    xa_ip = _pod_ip(f"{name}.x.a")
    lines = _read(pcap)
    assert lines and all(f"> {xa_ip}.81: UDP" in line or "8472" in line for line in lines)


def test_packet_dropped_for_want_of_a_route_never_leaves_the_router(lab, tmp_path):
    name, spec = lab("flannel-hostgw-crosssubnet")
    code, result, _ = _capture(name, tmp_path, "web-0", "web-2")
    assert code == 1
    rack1, rack2 = (n["name"] for n in spec["networks"])
    observed = result["observed"]
    beyond = {(r["netns"], r["iface"]): r for r in observed["interfaces"] if r.get("beyond_drop")}
    assert (f"{name}._underlay", rack2) in beyond and beyond[(f"{name}._underlay", rack2)]["seen"] is None
    assert observed["last_seen"] == f"{name}._underlay {rack1}" and observed["differences"] == []


def test_sigterm_leaves_no_tcpdump_and_no_capture_directory(lab):
    name, _ = lab("flannel-vxlan")
    state_dir = f"/run/lab/{name}"
    for number in (signal.SIGTERM, signal.SIGHUP):
        child = subprocess.Popen([sys.executable, "-m", "lab.cli", "trace", "default/bs1", "default/bs8", "--capture",
                                  "--lab", name], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not lab_tcpdumps(name) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        child.send_signal(number)
        child.communicate(timeout=30)
        assert child.returncode == 128 + number, "the signal came after the capture: retry on a quieter machine"
        assert lab_tcpdumps(name) == []
        assert not [d for d in os.listdir(state_dir) if d.startswith("trace-")]


def test_lab_capture_writes_count_packets(lab, tmp_path):
    name, _ = lab("flannel-vxlan")
    out = tmp_path / "bs8.pcap"
    bs8_ip = _pod_ip(f"{name}.default.bs8")
    child = subprocess.Popen([sys.executable, "-m", "lab.cli", "capture", "default/bs8", "-w", str(out), "--count", "3",
                              "--filter", "icmp", "--lab", name], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not lab_tcpdumps(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    subprocess.run(["ip", "netns", "exec", f"{name}.default.bs1", "ping", "-c", "3", "-i", "0.2", bs8_ip],
                   capture_output=True)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"ip netns exec {name}.default.bs8 tcpdump" in err          # it says what it runs
    packets = _read(str(out))
    assert len(packets) == 3 and all("ICMP echo" in p and bs8_ip in p for p in packets)
    assert lab_tcpdumps(name) == []


def test_lab_capture_bad_input_starts_nothing(lab, tmp_path):
    name, _ = lab("flannel-vxlan")
    result = run_lab("capture", "default/bs8", "-w", "/nonexistent/x.pcap", "--count", "1", "--lab", name,
                     check=False)
    assert result.returncode == 2 and "/nonexistent" in result.stderr and "does not exist" in result.stderr
    result = run_lab("capture", "default/bs8:nope", "--count", "1", "--lab", name, check=False)
    assert result.returncode == 2 and "no interface 'nope'" in result.stderr and "eth0" in result.stderr
    assert lab_tcpdumps(name) == []
