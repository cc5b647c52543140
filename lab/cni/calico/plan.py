"""Calico's data planes: BGP (no encapsulation), IPIP and VXLAN, as calico/node, Felix and BIRD program them.

The plan holds what Felix and the CNI plugin write (reference §4.9, §5.1, §6): the cali workload
interfaces, tunl0 or vxlan.calico with the node's tunnel address, and in VXLAN mode the VTEP
neighbours, fdb entries, routes and blackholes. In BGP modes the block routes are not in the plan:
they come from BIRD at run time (lab/bgp), which `lab up` starts on every node after applying it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import lab.cni.calico.birdcfg as birdcfg
import lab.cni.calico.config as calico_config
import lab.cni.calico.ipam as calico_ipam
import lab.cni.calico.workload as calico_workload
from lab.cni import ipip, underlay
from lab.cni.calico import layout
from lab.cni.calico.devices import IPIP_DEVICE, VXLAN_DEVICE
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.netns.plan import LabPlan, Vxlan
from lab.topology.model import CalicoConfig, IPPool, Node, Topology

IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = 50
VXLAN_VNI = 4096
VXLAN_PORT = 4789
FELIX_PROTO = 80          # Felix's route protocol for blackholes and no-encap routes it owns
PARENT_IFACE = "eth0"
BIRD_TABLE = 201          # the kernel table stock BIRD programs; the route agent mirrors it into main


def pool_of(topology: Topology, node: Node) -> IPPool | None:
    return calico_ipam.pool_for(node, calico_config.of(topology).pools)


def ipip_enabled(config: CalicoConfig) -> bool:
    return any(p.ipip_mode != "Never" and not p.disabled for p in config.pools)


def vxlan_enabled(config: CalicoConfig) -> bool:
    return any(p.vxlan_mode != "Never" and not p.disabled for p in config.pools)


def pod_mtu(config: CalicoConfig, host_mtu: int) -> int:
    """Felix's determinePodMTU: the smallest MTU of the enabled encapsulations."""
    mtus = [host_mtu]
    if ipip_enabled(config):
        mtus.append(host_mtu - IPIP_OVERHEAD)
    if vxlan_enabled(config):
        mtus.append(host_mtu - VXLAN_OVERHEAD)
    return min(mtus)


def vtep_mac(node: str) -> str:
    """Felix's vtepMACForHost: 0x66 ('f') followed by the first five bytes of sha1(node name)."""
    raw = b"f" + hashlib.sha1(node.encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in raw)


def ipip_implementation(topology: Topology, caps: Capabilities) -> str:
    """How tunl0 is made here (lab/cni/ipip.py): kernel, ebpf or userspace."""
    return ipip.choose(topology, caps)


def plan(topology: Topology, caps: Capabilities | None = None) -> LabPlan:
    """The whole lab: underlay, then every node with its tunnel device and pods, then the pods."""
    caps = caps or Capabilities.assumed()
    config = calico_config.of(topology)
    implementation = ipip_implementation(topology, caps) if ipip_enabled(config) else None
    under = underlay.underlay_builder(topology)
    nodes: list[NamespaceBuilder] = []
    pods: list[NamespaceBuilder] = []
    for node in topology.nodes:
        builder = underlay.node_builder(topology, under, node.name)
        host_mtu = topology.network(node.network).mtu
        pool = pool_of(topology, node)
        pods += calico_workload.wire_pods(topology, builder, node.name, pod_mtu(config, host_mtu))
        if pool is not None and pool.vxlan_mode != "Never":
            _vxlan(builder, topology, node, host_mtu)
        if config.backend == "bird" and implementation:
            tunl0(builder, topology, node, host_mtu, caps.fresh_links.get(IPIP_DEVICE), implementation)
        nodes.append(builder)
    hosts = underlay.external_builders(topology, under, {n: list(b) for n, b in config.ipam.blocks.items()})
    hosts += underlay.router_builders(topology, under)
    namespaces = [under.freeze()] + [b.freeze() for b in nodes + pods + hosts]
    return LabPlan(lab=topology.name, namespaces=tuple(namespaces), files=bird_files(topology),
                   notes=_notes(topology, implementation))


def bird_files(topology: Topology) -> dict[str, str]:
    """Every node's bird.cfg, bird_aggr.cfg and bird_ipam.cfg, keyed by path under the lab's files."""
    if calico_config.of(topology).backend != "bird":
        return {}
    files: dict[str, str] = {}
    for node in topology.nodes:
        files.update(layout.config_files(node.name, birdcfg.render(topology, node.name, layout.RUN_DIR)))
    return files


def needs_ipip(topology: Topology, node: Node) -> bool:
    """Whether an IPIP pool applies to the node (Felix then brings tunl0 up with the tunnel address)."""
    pool = pool_of(topology, node)
    return pool is not None and pool.ipip_mode != "Never"


def tunl0(builder: NamespaceBuilder, topology: Topology, node: Node, host_mtu: int, fallback: int | None,
          implementation: str) -> None:
    """tunl0 with the node's IPIP tunnel address, where an IPIP pool applies (Felix's ipip manager). The one
    place that says what tunl0 is: `lab up` plans it, and a live change (runtime.py) applies the same.
    `fallback` is the index of the ipip module's fallback tunl0 in the node's namespace (None: none)."""
    if not needs_ipip(topology, node):
        return
    mtu = host_mtu - IPIP_OVERHEAD
    if implementation == ipip.KERNEL:
        if fallback is not None:                  # the module's fallback device, in every namespace
            builder.existing(IPIP_DEVICE, fallback, mtu=mtu)
        else:                                     # fb_tunnels_only_for_init_net: Felix adds it
            builder.ipip(IPIP_DEVICE, mtu)
    else:
        # Felix's "Allow IPIP packets from Calico hosts": every node of the cluster may send it IPIP
        peers = [str(other.ip) for other in topology.nodes if other.name != node.name]
        ipip.tun_device(builder, IPIP_DEVICE, mtu, implementation, peers)
    tunnel_ip = calico_config.of(topology).ipam.tunnel_ips[node.name]
    builder.address(IPIP_DEVICE, f"{tunnel_ip}/32", broadcast=False)


def _vxlan(builder: NamespaceBuilder, topology: Topology, node: Node, host_mtu: int) -> None:
    """vxlan.calico and what Felix's vxlan manager writes for every remote VTEP (reference §6)."""
    config = calico_config.of(topology)
    ipam = config.ipam
    builder.vxlan(VXLAN_DEVICE, Vxlan(vni=VXLAN_VNI, local=str(node.ip), dev=PARENT_IFACE, port=VXLAN_PORT),
                  mtu=host_mtu - VXLAN_OVERHEAD, mac=vtep_mac(node.name))
    builder.address(VXLAN_DEVICE, f"{ipam.tunnel_ips[node.name]}/32", broadcast=False)
    own_subnet = config.node(node.name).ipv4_address.network
    for block in ipam.blocks.get(node.name, ()):
        builder.route(str(block), type="blackhole", protocol=FELIX_PROTO)
    for other in topology.nodes:
        pool = pool_of(topology, other)
        if other.name == node.name or pool is None or pool.vxlan_mode == "Never":
            continue
        remote_tunnel = str(ipam.tunnel_ips[other.name])
        builder.neighbour(VXLAN_DEVICE, remote_tunnel, vtep_mac(other.name))
        builder.fdb_entry(VXLAN_DEVICE, vtep_mac(other.name), str(other.ip))
        same_subnet = other.ip in own_subnet
        for block in ipam.blocks.get(other.name, ()):
            if pool.vxlan_mode == "CrossSubnet" and same_subnet:
                builder.route(str(block), gateway=str(other.ip), dev=PARENT_IFACE, onlink=True, protocol=FELIX_PROTO)
            else:
                builder.route(str(block), gateway=remote_tunnel, dev=VXLAN_DEVICE, onlink=True)


def mode(config: CalicoConfig) -> str:
    """A short name of the data plane: bgp, ipip, ipip-crosssubnet, vxlan, vxlan-crosssubnet."""
    pool = next((p for p in config.pools if not p.disabled), None)
    if pool is None:
        return "none"
    if pool.ipip_mode != "Never":
        return "ipip" + ("-crosssubnet" if pool.ipip_mode == "CrossSubnet" else "")
    if pool.vxlan_mode != "Never":
        return "vxlan" + ("-crosssubnet" if pool.vxlan_mode == "CrossSubnet" else "")
    return "bgp"


def describe(topology: Topology, caps: Capabilities | None = None) -> dict[str, Any]:
    """Mode, pools, BGP settings and per-node blocks for `lab status`."""
    config = calico_config.of(topology)
    caps = caps or Capabilities.assumed()
    host_mtu = {n.name: topology.network(n.network).mtu for n in topology.nodes}
    node_env = {}
    for node in topology.nodes:
        calico_node = config.node(node.name)
        node_env[node.name] = {
            "blocks": [str(b) for b in config.ipam.blocks.get(node.name, ())],
            "tunnel_ip": str(config.ipam.tunnel_ips[node.name]) if node.name in config.ipam.tunnel_ips else None,
            "bgp_address": str(calico_node.ipv4_address),
            "as_number": calico_node.as_number or config.bgp.as_number,
            "route_reflector_cluster_id": calico_node.rr_cluster_id,
            "vtep_mac": vtep_mac(node.name) if vxlan_enabled(config) else None,
        }
    return {"mode": mode(config), "backend": config.backend, "node_env_key": "calico",
            "ipip_implementation": ipip.label(ipip_implementation(topology, caps)) if ipip_enabled(config) else None,
            "pools": [{"name": p.name, "cidr": str(p.cidr), "blockSize": p.block_size, "ipipMode": p.ipip_mode,
                       "vxlanMode": p.vxlan_mode, "natOutgoing": p.nat_outgoing, "nodeSelector": p.node_selector,
                       "disabled": p.disabled} for p in config.pools],
            "bgp": {"nodeToNodeMeshEnabled": config.bgp.node_to_node_mesh, "asNumber": config.bgp.as_number,
                    "logSeverityScreen": config.bgp.log_severity} if config.backend == "bird" else None,
            "bgp_peers": [{"name": p.name, "peerIP": str(p.peer_ip) if p.peer_ip else None, "asNumber": p.as_number,
                           "node": p.node, "nodeSelector": p.node_selector, "peerSelector": p.peer_selector}
                          for p in config.peers],
            "node_mtu": {name: pod_mtu(config, mtu) for name, mtu in host_mtu.items()},
            "node_env": node_env}


def _notes(topology: Topology, implementation: str | None) -> tuple[str, ...]:
    config = calico_config.of(topology)
    notes = [f"calico {mode(config)}: pools " + ", ".join(
        f"{p.name} {p.cidr} /{p.block_size} ipip={p.ipip_mode} vxlan={p.vxlan_mode}" for p in config.pools)]
    if config.backend == "bird":
        notes.append(f"BGP: BIRD on every node (AS {config.bgp.as_number}, mesh "
                     f"{'on' if config.bgp.node_to_node_mesh else 'off'}); block routes arrive by BGP after "
                     f"`lab up` starts BIRD (kernel table {BIRD_TABLE}, mirrored into main by the route agent)")
    if implementation:
        notes.append(f"IPIP: {ipip.label(implementation)}")
        notes.extend(ipip.device_notes(IPIP_DEVICE, implementation))
    if any(p.nat_outgoing for p in config.pools):
        notes.append("natOutgoing: Felix's cali-nat-outgoing MASQUERADE (nat table) is programmed with the "
                     "policy chains")
    return tuple(notes)
