"""IPIP implementation choice and its plan data, without root: which implementation a kernel gets, the
tc attachments the eBPF one plans, and the .rodata constants written into the object's copy."""

from __future__ import annotations

import re
import socket
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import TOPOLOGIES
from kernel import IPIP_OBJECT

from lab.cni import ipip
from lab.cni import plan as cni_plan
from lab.errors import TopologyError
from lab.netns import bpfobj, render
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.topology import loader

NODE_IPS = {"k8s-master01": "192.168.10.71", "k8s-node01": "192.168.10.72", "k8s-node02": "192.168.10.73",
            "k8s-node03": "192.168.10.74"}      # topologies/calico-ipip.yaml


def native(address: str) -> int:
    """An address as bpf/ipip.c reads it from a packet: a u32 in network order, read natively (the peers are
    sorted by this for its binary search)."""
    return int.from_bytes(socket.inet_aton(address), sys.byteorder)


def caps(ipip: bool, ebpf: bool) -> Capabilities:
    return Capabilities(kinds={"veth": True, "bridge": True, "vxlan": True, "ipip": ipip}, br_netfilter=False,
                        tools={}, ebpf_ipip=ebpf, ebpf_reason="test: no eBPF" if not ebpf else "test")


def topology(tmp_path: Path, implementation: str | None, source: str = "calico-ipip"):
    text = (TOPOLOGIES / f"{source}.yaml").read_text()
    if implementation:
        text = re.sub(r"(?m)^(name:.*)$", rf"\1\noptions:\n  ipipImplementation: {implementation}", text, count=1)
    path = tmp_path / f"{source}.yaml"
    path.write_text(text)
    return loader.load(str(path)), path


@pytest.mark.parametrize("ipip, ebpf, expected", [(True, True, "kernel-ipip"), (False, True, "ebpf"),
                                                  (False, False, "userspace-tun")])
def test_auto_prefers_the_module_then_ebpf_then_userspace(tmp_path, ipip, ebpf, expected):
    model, _ = topology(tmp_path, None)
    plan = cni_plan(model, caps(ipip, ebpf))
    assert f"IPIP: {expected}" in plan.notes
    tun = [n for n in plan.notes if n.startswith("tunl0 is a TUN device") and "POINTOPOINT" in n]
    capture = [n for n in plan.notes if n.startswith("tcpdump -i tunl0 shows only the packets received")]
    assert (len(tun), len(capture)) == {"kernel-ipip": (0, 0), "ebpf": (1, 1), "userspace-tun": (1, 0)}[expected]
    filters = [f for ns in plan.namespaces for f in ns.bpf_filters]
    assert bool(filters) == (expected == "ebpf")


def test_ebpf_plans_encap_on_tunl0_and_decap_on_eth0_with_the_other_nodes_as_peers(tmp_path):
    model, _ = topology(tmp_path, "ebpf")
    plan = cni_plan(model, caps(True, True))          # forced: even where the module exists
    for node, _ip in NODE_IPS.items():
        ns = plan.namespace(f"calico-ipip.{node}")
        assert [(q.dev, q.kind) for q in ns.qdiscs] == [("tunl0", "noqueue"), ("tunl0", "clsact"), ("eth0", "clsact")]
        encap, decap = ns.bpf_filters
        assert (encap.dev, encap.direction, encap.section, encap.constants) == ("tunl0", "egress", "tc/encap", ())
        assert (decap.dev, decap.direction, decap.section) == ("eth0", "ingress", "tc/decap")
        constants = {c.name: c.value for c in decap.constants}
        peers = tuple(sorted((v for n, v in NODE_IPS.items() if n != node), key=native))
        assert constants == {"lab_tunnel_ifindex": "tunl0", "lab_peer_count": 3, "lab_peers": peers}
        tunl0 = ns.link("tunl0")
        assert (tunl0.kind, tunl0.mtu, tunl0.txqueuelen, tunl0.multicast) == ("tun", 1480, 1000, False)


def test_flannel_ipip_plans_flannel_ipip_and_onlink_routes(tmp_path):
    model, _ = topology(tmp_path, "userspace", "flannel-ipip")
    plan = cni_plan(model, caps(False, True))
    ns = plan.namespace("flannel-ipip.k8s-node1")
    assert ns.link("flannel.ipip").kind == "tun" and ns.link("flannel.ipip").mtu == 1480
    assert not ns.bpf_filters, "userspace: no tc programs"
    routes = {(r.dst, r.gateway, r.dev, r.onlink) for r in ns.routes if r.dev == "flannel.ipip"}
    assert routes == {("10.244.1.0/24", "192.168.10.72", "flannel.ipip", True),
                      ("10.244.2.0/24", "192.168.10.73", "flannel.ipip", True)}
    kernel = cni_plan(topology(tmp_path, "kernel", "flannel-ipip")[0], caps(True, True))
    link = kernel.namespace("flannel-ipip.k8s-node1").link("flannel.ipip")
    assert (link.kind, link.ipip_local, link.mtu) == ("ipip", "192.168.10.71", 1480)


@pytest.mark.parametrize("forced", ["kernel", "ebpf"])
def test_forcing_what_the_kernel_lacks_names_the_line(tmp_path, forced):
    model, path = topology(tmp_path, forced)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ipipImplementation" in text)
    with pytest.raises(TopologyError) as error:
        cni_plan(model, caps(False, False))
    assert str(error.value).startswith(f"{path}:{line}: options.ipipImplementation: {forced}: ")
    assert error.value.hint


@pytest.mark.skipif(not IPIP_OBJECT.exists(), reason="build/bpf/ipip.o is not built (scripts/install-deps.sh)")
def test_constants_land_in_the_objects_rodata():
    image = IPIP_OBJECT.read_bytes()
    symbols = bpfobj.rodata_symbols(image)
    assert symbols["lab_peers"][1] == 4 * 4096 and symbols["lab_peer_count"][1] == 4
    peers = socket.inet_aton("192.168.10.72") + socket.inet_aton("10.0.0.1")
    patched = bpfobj.with_constants(image, {"lab_peer_count": struct.pack("<I", 2), "lab_peers": peers})
    offset, size = symbols["lab_peers"]
    assert patched[offset:offset + size] == peers.ljust(size, b"\0")
    offset, _ = symbols["lab_peer_count"]
    assert patched[offset:offset + 4] == struct.pack("<I", 2)
    assert len(patched) == len(image)
    changed = [i for i, (a, b) in enumerate(zip(image, patched, strict=False)) if a != b]
    assert all(any(o <= i < o + s for o, s in symbols.values()) for i in changed), "only .rodata bytes change"
    with pytest.raises(ValueError):
        bpfobj.with_constants(image, {"no_such_variable": b"\0"})
    with pytest.raises(ValueError):
        bpfobj.with_constants(image, {"lab_peer_count": b"\0" * 8})


def test_peers_are_written_in_the_order_the_binary_search_needs():
    builder = NamespaceBuilder("lab.node", "node", "topology.yaml")
    peers = ["10.0.1.2", "10.0.2.1", "192.168.10.72", "10.0.1.1"]
    ipip.attach(builder, "tunl0", peers)
    written = {c.name: c.value for c in builder.bpf_filters[1].constants}["lab_peers"]
    assert sorted(written) == sorted(peers)
    values = [native(a) for a in written]
    assert values == sorted(values)
    if sys.byteorder == "little":
        assert list(written) != sorted(peers, key=socket.inet_aton), "native order, not network order"


def many_nodes(count: int, implementation: str):
    return SimpleNamespace(nodes=[None] * count, ipip_implementation=implementation, source="big.yaml",
                           sources={"options.ipipImplementation": "big.yaml:7"})


def test_more_peers_than_the_ebpf_tunnel_holds_fall_back_or_name_the_line():
    fits, over = ipip.MAX_PEERS + 1, ipip.MAX_PEERS + 2          # nodes: each node's peers are the others
    assert ipip.choose(many_nodes(fits, "auto"), caps(False, True)) == "ebpf"
    assert ipip.choose(many_nodes(over, "auto"), caps(False, True)) == "userspace"
    with pytest.raises(TopologyError) as error:
        ipip.choose(many_nodes(over, "ebpf"), caps(False, True))
    assert str(error.value).startswith("big.yaml:7: options.ipipImplementation: ebpf: ")
    assert f"exceed the eBPF tunnel's {ipip.MAX_PEERS}" in str(error.value) and "userspace" in error.value.hint


@pytest.mark.parametrize("implementation, warned", [("ebpf", True), ("userspace", False)])
def test_dry_run_says_its_tc_lines_load_the_unconfigured_object(tmp_path, implementation, warned):
    model, _ = topology(tmp_path, implementation)
    comments = [line for line in render.lines(cni_plan(model, caps(False, True))) if "NOT replayable" in line]
    assert len(comments) == (1 if warned else 0)
    if warned:
        assert comments[0].startswith("# ") and "patches the object's .rodata per node" in comments[0]
        assert str(bpfobj.built("ipip")) in comments[0]


@pytest.mark.parametrize("source, warned", [("flannel-vxlan", True), ("calico-vxlan", True), ("calico-bgp-mesh", True),
                                            ("calico-ipip", False), ("flannel-ipip", False)])
def test_an_implementation_for_a_topology_without_ipip_is_a_warning_naming_the_line(tmp_path, source, warned):
    model, path = topology(tmp_path, "ebpf", source)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ipipImplementation" in text)
    found = [w for w in model.warnings if "ipipImplementation" in w]
    if warned:
        assert len(found) == 1 and found[0].startswith(f"{path}:{line}: options.ipipImplementation: ebpf has no "
                                                       "effect: "), found
    else:
        assert not found, found
