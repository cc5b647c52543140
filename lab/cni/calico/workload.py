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


def felix_interface_sysctls(node: NamespaceBuilder, iface: str, rp_filter: int | None = None,
                            ipv6: bool = False) -> None:
    """What Felix's endpoint manager writes on a workload interface once it is up (endpoint_mgr.go
    configureInterface; Calico's CNI writes the same IPv4 set first): route_localnet 1, neigh proxy_delay 0,
    proxy_arp 1, forwarding 1, rp_filter, and accept_ra 0 (written even without IPv6 support).

    `rp_filter` is the value Felix read from net.ipv4.conf.default.rp_filter at start; None leaves the
    interface with the value it was created with, which is that same default. `ipv6` is FELIX_IPV6SUPPORT:
    Felix's IPv6 endpoint manager then adds proxy_ndp 1 and IPv6 forwarding 1.
    """
    settings: list[tuple[str, int]] = [("ipv4/conf/{}/route_localnet", 1), ("ipv4/neigh/{}/proxy_delay", 0),
                                       ("ipv4/conf/{}/proxy_arp", 1), ("ipv4/conf/{}/forwarding", 1)]
    if rp_filter is not None:
        settings.append(("ipv4/conf/{}/rp_filter", rp_filter))
    settings.append(("ipv6/conf/{}/accept_ra", 0))
    if ipv6:
        settings += [("ipv6/conf/{}/proxy_ndp", 1), ("ipv6/conf/{}/forwarding", 1)]
    for key, value in settings:
        node.sysctl("net/" + key.format(iface), value)


def wire_pods(topology: Topology, node: NamespaceBuilder, node_name: str, mtu: int) -> list[NamespaceBuilder]:
    """Add one cali veth per pod of `node_name` to `node`; return the pods' namespace builders."""
    return [_pod(topology, node, pod, mtu) for pod in topology.pods_on(node_name)]


def _pod(topology: Topology, node: NamespaceBuilder, pod: Pod, mtu: int) -> NamespaceBuilder:
    builder = NamespaceBuilder(names.pod_netns(topology.name, pod.namespace, pod.name), "pod", pod.key)
    host_end = host_veth_name(pod)
    pod_mac = identity.local_mac(topology.name, pod.namespace, pod.name, "eth0")
    node.veth(host_end, builder, "eth0", mtu=mtu, mac=HOST_MAC, peer_mac=pod_mac)
    felix_interface_sysctls(node, host_end)
    node.neighbour(host_end, str(pod.ip), pod_mac)
    node.route(f"{pod.ip}/32", dev=host_end)
    builder.address("eth0", f"{pod.ip}/32", broadcast=False)
    builder.route(f"{DUMMY_GATEWAY}/32", dev="eth0")
    builder.route("0.0.0.0/0", gateway=DUMMY_GATEWAY, dev="eth0")
    return builder
