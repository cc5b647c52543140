"""Calico's CNI plugin and Felix's endpoint manager: how a pod is wired to its node (reference §4.9).

The host end is `cali` + 11 hex of sha1("<namespace>.<pod>") with MAC ee:ee:ee:ee:ee:ee and no
address; the pod end is eth0 with the pod's /32, a link route to the dummy gateway 169.254.1.1 and
the default route through it. The node answers the pod's ARP for 169.254.1.1 by proxy ARP, routes
the pod's /32 to the cali device and holds a PERMANENT ARP entry for the pod (Felix's static ARP).
"""

from __future__ import annotations

import hashlib

from lab.cni import identity
from lab.netns import names
from lab.netns.builder import NamespaceBuilder
from lab.topology.model import Pod, Topology

DUMMY_GATEWAY = "169.254.1.1"
HOST_MAC = "ee:ee:ee:ee:ee:ee"
PREFIX = "cali"


def host_veth_name(pod: Pod) -> str:
    """libcalico-go's VethNameForWorkload: the interface prefix plus 11 hex of sha1("<ns>.<pod>")."""
    return PREFIX + hashlib.sha1(f"{pod.namespace}.{pod.name}".encode()).hexdigest()[:11]


def wire_pods(topology: Topology, node: NamespaceBuilder, node_name: str, mtu: int) -> list[NamespaceBuilder]:
    """Add one cali veth per pod of `node_name` to `node`; return the pods' namespace builders."""
    return [_pod(topology, node, pod, mtu) for pod in topology.pods_on(node_name)]


def _pod(topology: Topology, node: NamespaceBuilder, pod: Pod, mtu: int) -> NamespaceBuilder:
    builder = NamespaceBuilder(names.pod_netns(topology.name, pod.namespace, pod.name), "pod", pod.key)
    host_end = host_veth_name(pod)
    pod_mac = identity.local_mac(topology.name, pod.namespace, pod.name, "eth0")
    node.veth(host_end, builder, "eth0", mtu=mtu, mac=HOST_MAC, peer_mac=pod_mac)
    for key, value in (("ipv4/conf/{}/route_localnet", 1), ("ipv4/neigh/{}/proxy_delay", 0),
                       ("ipv4/conf/{}/proxy_arp", 1), ("ipv4/conf/{}/forwarding", 1),
                       ("ipv6/conf/{}/accept_ra", 0)):
        node.sysctl("net/" + key.format(host_end), value)
    node.neighbour(host_end, str(pod.ip), pod_mac)
    node.route(f"{pod.ip}/32", dev=host_end)
    builder.address("eth0", f"{pod.ip}/32", broadcast=False)
    builder.route(f"{DUMMY_GATEWAY}/32", dev="eth0")
    builder.route("0.0.0.0/0", gateway=DUMMY_GATEWAY, dev="eth0")
    return builder
