"""The underlay: one switch (bridge) per segment and a router between segments, in one namespace.

Each segment's bridge carries the segment's gateway address, so the underlay namespace is the
router that joins the segments (with forwarding on when there are several). Each node's eth0 is a
veth whose far end, named after the node, is a port of its segment's switch.
"""

from __future__ import annotations

import ipaddress

from lab.cni import identity
from lab.netns import names
from lab.netns.builder import NamespaceBuilder
from lab.topology.model import Topology


def underlay_builder(topology: Topology) -> NamespaceBuilder:
    """The underlay namespace with its switches and gateway addresses (node ports come later)."""
    underlay = NamespaceBuilder(names.underlay_netns(topology.name), "underlay", "underlay")
    for network in topology.networks:
        underlay.bridge(network.name, mtu=network.mtu, mac=identity.local_mac(topology.name, "switch", network.name))
        underlay.address(network.name, f"{network.gateway}/{network.cidr.prefixlen}")
    if len(topology.networks) > 1:
        underlay.sysctl("net/ipv4/ip_forward", 1)
        underlay.note("router: forwards between " + ", ".join(f"{n.name} ({n.cidr})" for n in topology.networks))
    return underlay


def node_builder(topology: Topology, underlay: NamespaceBuilder, node_name: str) -> NamespaceBuilder:
    """A node namespace with eth0 on its segment and a default route to the segment's gateway."""
    node = topology.node(node_name)
    builder = NamespaceBuilder(names.node_netns(topology.name, node.name), "node", node.name)
    _attach(topology, underlay, builder, node.network, str(node.ip))
    # kubeadm's preflight requires forwarding on every node; the CNI bridge plugin sets it too.
    builder.sysctl("net/ipv4/ip_forward", 1)
    return builder


def external_builders(topology: Topology, underlay: NamespaceBuilder,
                      pod_routes: dict[str, list[ipaddress.IPv4Network]]) -> list[NamespaceBuilder]:
    """Hosts outside the cluster, each a namespace on its segment; with any, the router also learns
    every node's pod CIDRs via the node (as a cloud VPC route table does, e.g. ACK's flannel), so an
    external host reaches pod IPs and pods reach it without NAT."""
    if not topology.externals:
        return []
    if len(topology.networks) == 1:
        underlay.sysctl("net/ipv4/ip_forward", 1)
    for node in topology.nodes:
        for cidr in pod_routes.get(node.name, []):
            underlay.route(str(cidr), gateway=str(node.ip))
    hosts = []
    for external in topology.externals:
        host = NamespaceBuilder(names.node_netns(topology.name, external.name), "external", external.name)
        _attach(topology, underlay, host, external.network, str(external.ip),
                str(external.gateway) if external.gateway else None)
        host.note("a host outside the cluster: no kubelet, no CNI"
                  + (f"; default route via {external.gateway}" if external.gateway else ""))
        hosts.append(host)
    return hosts


def router_builders(topology: Topology, underlay: NamespaceBuilder) -> list[NamespaceBuilder]:
    """External BGP routers: eth0 on the router's network (default route via its gateway), eth1.. on its
    links, forwarding on. Their routes come from BGP: the ExaBGP helper installs what they learn."""
    hosts = []
    for router in topology.routers:
        host = NamespaceBuilder(names.node_netns(topology.name, router.name), "router", router.name)
        _attach(topology, underlay, host, router.network, str(router.ip))
        for index, link in enumerate(router.links, start=1):
            network = topology.network(link.network)
            port = f"{router.name}.{index}"
            underlay.veth(port, host, f"eth{index}", mtu=network.mtu, master=network.name,
                          peer_mac=identity.nic_mac(topology.name, port), quiet=True)
            host.address(f"eth{index}", f"{link.ip}/{network.cidr.prefixlen}")
        host.sysctl("net/ipv4/ip_forward", 1)
        host.note(f"an external BGP router (ExaBGP, AS {router.as_number}): no kubelet, no CNI")
        hosts.append(host)
    return hosts


def _attach(topology: Topology, underlay: NamespaceBuilder, host: NamespaceBuilder, network_name: str,
            ip: str, gateway: str | None = None) -> None:
    """eth0 of `host` on its segment's switch (the switch port is named after the host), with its
    address and a default route via `gateway` (default: the segment's gateway)."""
    network = topology.network(network_name)
    underlay.veth(host.owner, host, "eth0", mtu=network.mtu, master=network.name,
                  peer_mac=identity.nic_mac(topology.name, host.owner), quiet=True)
    host.address("eth0", f"{ip}/{network.cidr.prefixlen}")
    host.route("0.0.0.0/0", gateway=gateway or str(network.gateway), dev="eth0")
