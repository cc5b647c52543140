"""Flannel's data planes: vxlan (with DirectRouting), host-gw and ipip, as flanneld programs them.

Per node: a subnet lease (the node's podCIDR), /run/flannel/subnet.env, cni0 and the pods
(through the CNI bridge plugin), and for every remote lease:
  vxlan:          neighbour <subnet>.0 -> VTEP MAC, fdb <mac> dst <ip> self permanent,
                  route <subnet> via <subnet>.0 dev flannel.<VNI> onlink
  vxlan+DirectRouting, peer on a connected subnet:  route <subnet> via <peer ip>   (no ARP/FDB)
  host-gw:        route <subnet> via <peer ip> dev eth0  (not installed off-link: ENETUNREACH)
  ipip:           route <subnet> via <peer ip> dev flannel.ipip onlink  (reference §3.2)
  ipip+DirectRouting, peer on a connected subnet:   route <subnet> via <peer ip> dev eth0 onlink
flannel.ipip is the kernel's ipip device where the module exists, else a TUN device carried by
the lab's eBPF programs or its userspace tunnel (lab/cni/ipip.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import lab.cni.flannel.config as flannel_config
from lab.cni import bridge_plugin, identity, ipip, underlay
from lab.cni.flannel.devices import IPIP_DEVICE, vxlan_device
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.netns.plan import FdbEntry, LabPlan, Neighbour, Route, Vxlan
from lab.topology.model import FlannelConfig, Node, Topology

VXLAN_OVERHEAD = 50
EXTERNAL_IFACE = "eth0"


@dataclass(frozen=True)
class RemoteObjects:
    """What every other node installs for one lease; the same objects for all of them (plan objects are
    immutable), so a 1000-node plan holds 1,000 of each, not a million."""

    neighbour: Neighbour        # vxlan: <subnet>.0 -> VTEP MAC on flannel.<VNI>
    fdb: FdbEntry               # vxlan: <VTEP MAC> dst <public ip>
    tunnel_route: Route         # vxlan: <subnet> via <subnet>.0 dev flannel.<VNI> onlink
    direct_route: Route         # vxlan+DirectRouting: <subnet> via <public ip>


@dataclass(frozen=True)
class Lease:
    """What flanneld publishes for a node (subnet, public-ip, backend-data VtepMAC)."""

    node: str
    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    vtep_mac: str | None


def device_name(config: FlannelConfig) -> str:
    return vxlan_device(config.backend.vni)


def mtu(config: FlannelConfig, external_mtu: int) -> int:
    """FLANNEL_MTU: the external MTU (or the vxlan backend's MTU) less the encapsulation overhead."""
    if config.backend.type == "ipip":
        return external_mtu - ipip.OVERHEAD
    if config.backend.type != "vxlan":
        return external_mtu
    return (config.backend.mtu or external_mtu) - VXLAN_OVERHEAD


def leases(topology: Topology) -> list[Lease]:
    config = flannel_config.of(topology)
    vxlan = config.backend.type == "vxlan"
    return [Lease(node=n.name, subnet=_pod_cidr(n), public_ip=n.ip,
                  vtep_mac=identity.local_mac(topology.name, n.name, "vtep") if vxlan else None)
            for n in topology.nodes]


def _pod_cidr(node: Node) -> ipaddress.IPv4Network:
    assert node.pod_cidr is not None, "the loader gives every flannel node a podCIDR (flannel/loader.py)"
    return node.pod_cidr


def _vtep_mac(lease: Lease) -> str:
    assert lease.vtep_mac is not None, "vxlan leases carry a VTEP MAC (leases())"
    return lease.vtep_mac


def subnet_env(config: FlannelConfig, lease: Lease, external_mtu: int) -> str:
    """/run/flannel/subnet.env as flanneld's WriteSubnetFile writes it."""
    return (f"FLANNEL_NETWORK={config.network}\n"
            f"FLANNEL_SUBNET={lease.subnet.network_address + 1}/{lease.subnet.prefixlen}\n"
            f"FLANNEL_MTU={mtu(config, external_mtu)}\n"
            f"FLANNEL_IPMASQ={'true' if config.ip_masq else 'false'}\n")


def plan(topology: Topology, caps: Capabilities | None = None) -> LabPlan:
    """The whole lab: underlay, then every node, then every pod."""
    config = flannel_config.of(topology)
    caps = caps or Capabilities.assumed()
    implementation = ipip.choose(topology, caps) if config.backend.type == "ipip" else None
    all_leases = leases(topology)
    under = underlay.underlay_builder(topology)
    nodes: list[NamespaceBuilder] = []
    pods: list[NamespaceBuilder] = []
    files: dict[str, str] = {}
    shared = _remote_objects(config, all_leases) if config.backend.type == "vxlan" else {}
    for node, lease in zip(topology.nodes, all_leases, strict=False):
        builder = underlay.node_builder(topology, under, node.name)
        external_mtu = topology.network(node.network).mtu
        remotes = [other for other in all_leases if other.node != node.name]
        if config.backend.type == "vxlan":
            _vxlan(builder, config, node, lease, remotes, topology, external_mtu, shared)
        elif implementation:
            _ipip(builder, config, node, lease, remotes, topology, external_mtu, implementation)
        else:
            _host_gw(builder, node, remotes, topology)
        _iptables(builder, config, lease)
        pods += bridge_plugin.wire_pods(topology, builder, node.name, lease.subnet, config.network,
                                        mtu(config, external_mtu))
        files[f"{node.name}/run/flannel/subnet.env"] = subnet_env(config, lease, external_mtu)
        nodes.append(builder)
    hosts = underlay.external_builders(topology, under, {lease.node: [lease.subnet] for lease in all_leases})
    namespaces = [under.freeze()] + [b.freeze() for b in nodes + pods + hosts]
    return LabPlan(lab=topology.name, namespaces=tuple(namespaces), files=files, notes=_notes(config, implementation))


def mode(config: FlannelConfig) -> str:
    return config.backend.type + ("+DirectRouting" if config.backend.direct_routing else "")


def describe(topology: Topology, caps: Capabilities | None = None) -> dict[str, Any]:
    """Mode and settings for `lab status`, each node's FLANNEL_MTU and its subnet.env values."""
    config = flannel_config.of(topology)
    vxlan = config.backend.type == "vxlan"
    env = {lease.node: subnet_env(config, lease, topology.network(topology.node(lease.node).network).mtu)
           for lease in leases(topology)}
    implementation = (ipip.label(ipip.choose(topology, caps or Capabilities.assumed()))
                      if config.backend.type == "ipip" else None)
    return {"mode": mode(config), "network": str(config.network), "subnet_len": config.subnet_len,
            "ipip_implementation": implementation,
            "vni": config.backend.vni if vxlan else None, "port": (config.backend.port or 8472) if vxlan else None,
            "node_mtu": {n.name: mtu(config, topology.network(n.network).mtu) for n in topology.nodes},
            "node_env_key": "subnet_env",
            "node_env": {node: dict(line.split("=", 1) for line in text.splitlines()) for node, text in env.items()}}


def _notes(config: FlannelConfig, implementation: str | None) -> tuple[str, ...]:
    backend = config.backend
    return (f"flannel {mode(config)}: Network {config.network}, SubnetLen {config.subnet_len}"
            + (f", VNI {backend.vni}, port {backend.port or '8472 (kernel default)'}" if backend.type == "vxlan"
               else "")
            + (f", IPIP: {ipip.label(implementation)}" if implementation else ""),
            *ipip.device_notes(IPIP_DEVICE, implementation))


def _on_link(topology: Topology, node: Node, peer_ip: ipaddress.IPv4Address) -> bool:
    """flannel's ip.DirectRouting: the kernel's route to the peer has no gateway."""
    return peer_ip in topology.network(node.network).cidr


def _remote_objects(config: FlannelConfig, all_leases: list[Lease]) -> dict[str, RemoteObjects]:
    """Each vxlan lease's neighbour, fdb entry and routes, made once (by node name)."""
    dev = device_name(config)
    found = {}
    for lease in all_leases:
        subnet, vtep_ip, public_ip = str(lease.subnet), str(lease.subnet.network_address), str(lease.public_ip)
        found[lease.node] = RemoteObjects(
            neighbour=Neighbour(dev=dev, ip=vtep_ip, mac=_vtep_mac(lease)),
            fdb=FdbEntry(dev=dev, mac=_vtep_mac(lease), dst=public_ip),
            tunnel_route=Route(dst=subnet, gateway=vtep_ip, dev=dev, onlink=True),
            direct_route=Route(dst=subnet, gateway=public_ip))
    return found


def _vxlan(builder: NamespaceBuilder, config: FlannelConfig, node: Node, lease: Lease, remotes: list[Lease],
           topology: Topology, external_mtu: int, shared: dict[str, RemoteObjects]) -> None:
    dev = device_name(config)
    backend = config.backend
    builder.vxlan(dev, Vxlan(vni=backend.vni, local=str(node.ip), dev=EXTERNAL_IFACE, port=backend.port),
                  mtu=mtu(config, external_mtu), mac=_vtep_mac(lease))
    builder.sysctl(f"net/ipv6/conf/{dev}/accept_ra", 0)
    # A /32 so that no connected route appears; it is the source for host-to-pod traffic.
    builder.address(dev, f"{lease.subnet.network_address}/32", broadcast=False)
    local = topology.network(node.network).cidr if backend.direct_routing else None
    for remote in remotes:
        objects = shared[remote.node]
        if local is not None and remote.public_ip in local:   # _on_link
            builder.routes.append(objects.direct_route)
            continue
        builder.neighbours.append(objects.neighbour)
        builder.fdb.append(objects.fdb)
        builder.routes.append(objects.tunnel_route)


def _ipip(builder: NamespaceBuilder, config: FlannelConfig, node: Node, lease: Lease, remotes: list[Lease],
          topology: Topology, external_mtu: int, implementation: str) -> None:
    """configureIPIPDevice (flannel.ipip, local = the node's IP, MTU eth0 - 20, <subnet>.0/32, up), then a
    route per remote lease (RouteNetwork: onlink via the peer's public IP)."""
    if implementation == ipip.KERNEL:
        builder.ipip(IPIP_DEVICE, mtu(config, external_mtu), local=str(node.ip))
    else:
        ipip.tun_device(builder, IPIP_DEVICE, mtu(config, external_mtu), implementation,
                        [str(remote.public_ip) for remote in remotes])
    builder.address(IPIP_DEVICE, f"{lease.subnet.network_address}/32", broadcast=False)
    for remote in remotes:
        direct = config.backend.direct_routing and _on_link(topology, node, remote.public_ip)
        builder.route(str(remote.subnet), gateway=str(remote.public_ip), dev=EXTERNAL_IFACE if direct else IPIP_DEVICE,
                      onlink=True)


def _iptables(builder: NamespaceBuilder, config: FlannelConfig, lease: Lease) -> None:
    """flanneld's masquerade (--ip-masq) and forward (--iptables-forward-rules) rules, in its order."""
    cluster, pod = str(config.network), str(lease.subnet)
    if config.ip_masq:
        masq = '-m comment --comment "flanneld masq"'
        builder.iptables_rules("nat", ["FLANNEL-POSTRTG"], [
            f"-A POSTROUTING {masq} -j FLANNEL-POSTRTG",
            f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {pod} -d {cluster} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} -d {pod} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {pod} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {cluster} {masq} -j MASQUERADE --random-fully",
        ])
    forward = '-m comment --comment "flanneld forward"'
    builder.iptables_rules("filter", ["FLANNEL-FWD"], [
        f"-A FORWARD {forward} -j FLANNEL-FWD",
        f"-A FLANNEL-FWD -s {cluster} {forward} -j ACCEPT",
        f"-A FLANNEL-FWD -d {cluster} {forward} -j ACCEPT",
    ])


def _host_gw(builder: NamespaceBuilder, node: Node, remotes: list[Lease], topology: Topology) -> None:
    for remote in remotes:
        if _on_link(topology, node, remote.public_ip):
            builder.route(str(remote.subnet), gateway=str(remote.public_ip), dev=EXTERNAL_IFACE)
        else:
            builder.note(f"host-gw: route {remote.subnet} via {remote.public_ip} (node {remote.node}) is NOT "
                         f"installed: {remote.public_ip} is not on a subnet local to {node.name} "
                         f"({topology.network(node.network).cidr}), so the kernel refuses the gateway "
                         f"(ENETUNREACH, as flanneld logs it); host-gw needs every node on one L2 segment")
