"""The captions of an experiment's figures for a flannel mode (lab/experiment/environment.py): who writes
the pod routes, and the kernel path pod-to-pod packets take."""

from __future__ import annotations

from lab.cni import ipip
from lab.cni.bridge_plugin import BRIDGE
from lab.cni.flannel import config as flannel_config
from lab.cni.flannel import devices
from lab.topology.model import Topology


def route_programming(topology: Topology) -> str:
    backend = flannel_config.of(topology).backend
    kind = backend.type + (" + DirectRouting" if backend.direct_routing else "")
    return f"static plan (flannel {kind}: the routes, ARP and FDB entries flanneld writes, applied by `lab up`)"


def datapath(topology: Topology, implementation: str | None) -> str:
    """`implementation`: the IPIP implementation that ran (kernel, ebpf, userspace), for the ipip backend."""
    backend = flannel_config.of(topology).backend
    if backend.type == "vxlan":
        device = f"vxlan device {devices.vxlan_device(backend.vni)} (kernel)"
    elif backend.type == "ipip":
        device = ipip.path_caption(devices.IPIP_DEVICE, implementation)
    else:
        device = ""
    if not device:
        cross = "routing via eth0 (kernel)"
    elif backend.direct_routing:
        cross = f"routing via eth0 (kernel) within a subnet, {device} across subnets"
    else:
        cross = device
    return f"cross node: {cross}; same node: {BRIDGE} bridge (kernel)"
