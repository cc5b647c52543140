"""`lab trace --capture`: one real packet seen on every predicted interface, with the right encapsulation,
a merged pcap that tcpdump reads, the packet last seen where a policy drops it, and no tcpdump left."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import run_lab
from trace_labs import lab_tcpdumps, start

pytestmark = pytest.mark.needs_root


@pytest.fixture(scope="module")
def lab(labs, tmp_path_factory):
    started: dict[str, str] = {}

    def get(topology: str, policies: tuple[str, ...] = ()) -> str:
        if topology not in started:
            started[topology] = start(labs, tmp_path_factory, topology, policies)[0]
        return started[topology]
    return get


def _capture(name: str, tmp_path, *args: str) -> tuple[int, dict, str]:
    pcap = tmp_path / "trace.pcap"
    result = run_lab("trace", *args, "--capture", "-w", str(pcap), "--json", "--lab", name, check=False)
    assert result.returncode in (0, 1), result.stderr
    assert lab_tcpdumps(name) == [], "tcpdump left running"
    return result.returncode, json.loads(result.stdout), str(pcap)


def _read(pcap: str) -> list[str]:
    result = subprocess.run(["tcpdump", "-r", pcap, "-nn"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("topology,src,dst,outer", [
    ("flannel-vxlan", "default/bs1", "default/bs8", "UDP 8472 VXLAN VNI 1"),
    ("calico-ipip", "default/bs1", "default/bs8", "IPIP"),
])
def test_every_interface_sees_the_packet(lab, tmp_path, topology, src, dst, outer):
    name = lab(topology)
    code, result, pcap = _capture(name, tmp_path, src, dst)
    assert code == 0
    rows = result["observed"]["interfaces"]
    assert result["observed"]["differences"] == []
    assert all(row["seen"] for row in rows), rows
    underlay = [r for r in rows if r["netns"].endswith("._underlay")]
    assert underlay and all(r["encapsulation"] == outer for r in underlay)        # between nodes: encapsulated
    pods = [r for r in rows if r["netns"].startswith(f"{name}.default.")]
    assert len(pods) == 2 and all(r["encapsulation"] == "plain" for r in pods)     # in the pods: the bare packet
    assert pods[0]["ttl"] == 64 and pods[1]["ttl"] == 62                           # two routers: the two nodes
    packets = [line for line in _read(pcap) if line[:2].isdigit()]    # VXLAN prints its inner frame on a 2nd line
    assert len(packets) == len(rows) == result["observed"]["pcap_packets"]
    assert all("ICMP echo request" in line or "VXLAN" in line or "8472" in line or "IP 10.244" in line
               for line in packets)


def test_denied_packet_is_last_seen_at_the_deciding_node(lab, tmp_path):
    name = lab("netpol-xyz-kuberouter", ("xyz-deny-ingress-x.yaml", "xyz-allow-y-to-xa-80.yaml"))
    code, result, pcap = _capture(name, tmp_path, "y/b", "x/a", "--port", "81", "--protocol", "UDP")
    assert code == 1 and result["outcome"] == "dropped"
    observed = result["observed"]
    assert observed["differences"] == []
    beyond = [r for r in observed["interfaces"] if r.get("beyond_drop")]
    assert beyond and all(r["seen"] is None for r in beyond)                         # never reaches x/a's side
    assert observed["last_seen"].startswith(f"{name}.node1 ")                        # x/a lives on node1
    lines = _read(pcap)
    assert lines and all("> 10.244.1.2.81: UDP" in line or "8472" in line for line in lines)
