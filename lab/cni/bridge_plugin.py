"""The standard CNI `bridge` + `host-local` plugins, as flannel's CNI delegates to them.

cni0 holds the gateway (.1) of the node's range; each pod is a namespace whose eth0 is a veth
whose host end (`veth` + 8 hex, hairpin on) is a port of cni0. The pod gets the IPAM routes
(the cluster network via the gateway) and, with isDefaultGateway, the default route.
"""

from __future__ import annotations

import ipaddress

from lab.cni import identity
from lab.netns import names
from lab.netns.builder import NamespaceBuilder
from lab.topology.ipam import gateway
from lab.topology.model import Pod, Topology

BRIDGE = "cni0"


def wire_pods(topology: Topology, node: NamespaceBuilder, node_name: str, subnet: ipaddress.IPv4Network,
              cluster_network: ipaddress.IPv4Network, mtu: int) -> list[NamespaceBuilder]:
    """Add cni0 and one veth per pod to `node`; return the pods' namespace builders."""
    pods = topology.pods_on(node_name)
    if not pods:
        return []  # the bridge plugin creates cni0 on the first pod ADD
    gw = gateway(subnet)
    node.bridge(BRIDGE, mtu=mtu, mac=identity.local_mac(topology.name, node_name, BRIDGE))
    node.address(BRIDGE, f"{gw}/{subnet.prefixlen}")
    node.sysctl(f"net/ipv6/conf/{BRIDGE}/accept_ra", 0)
    taken: set[str] = set()
    return [_pod(topology, node, pod, subnet, cluster_network, mtu, taken) for pod in pods]


def _pod(topology: Topology, node: NamespaceBuilder, pod: Pod, subnet: ipaddress.IPv4Network,
         cluster_network: ipaddress.IPv4Network, mtu: int, taken: set[str]) -> NamespaceBuilder:
    builder = NamespaceBuilder(names.pod_netns(topology.name, pod.namespace, pod.name), "pod", pod.key)
    host_end = _unique_veth_name(topology.name, pod, taken)
    node.veth(host_end, builder, "eth0", mtu=mtu, master=BRIDGE, hairpin=True,
              peer_mac=identity.local_mac(topology.name, pod.namespace, pod.name, "eth0"))
    gw = str(gateway(subnet))
    builder.address("eth0", f"{pod.ip}/{subnet.prefixlen}")
    builder.route(str(cluster_network), gateway=gw, dev="eth0")
    builder.route("0.0.0.0/0", gateway=gw, dev="eth0")
    builder.sysctl("net/ipv4/conf/eth0/arp_notify", 1)
    builder.sysctl("net/ipv6/conf/eth0/accept_dad", 0)
    return builder


def _unique_veth_name(lab: str, pod: Pod, taken: set[str]) -> str:
    attempt = 0
    while (name := identity.veth_name(lab, pod.namespace, pod.name, attempt=attempt)) in taken:
        attempt += 1
    taken.add(name)
    return name
