"""The captions of an experiment's figures for a Calico mode (lab/experiment/environment.py): who writes
the pod routes, and the kernel path pod-to-pod packets take."""

from __future__ import annotations

from lab.cni import ipip
from lab.cni.calico import config as calico_config
from lab.cni.calico import devices
from lab.topology.model import Topology

WITHIN_A_SUBNET = " across subnets, routing via eth0 (kernel) within a subnet"


def route_programming(topology: Topology) -> str:
    if calico_config.of(topology).backend == "bird":
        return "BIRD -> table 201 -> lab route agent -> main"
    return "static plan (Calico VXLAN backend: the routes, ARP and FDB entries Felix writes, applied by `lab up`)"


def datapath(topology: Topology, implementation: str | None) -> str:
    """`implementation`: the IPIP implementation that ran (kernel, ebpf, userspace), when a pool uses IPIP."""
    parts = []
    for pool in calico_config.of(topology).pools:
        if pool.disabled:
            continue
        if pool.ipip_mode != "Never":
            where = WITHIN_A_SUBNET if pool.ipip_mode == "CrossSubnet" else ""
            parts.append(ipip.path_caption(devices.IPIP_DEVICE, implementation) + where)
        elif pool.vxlan_mode != "Never":
            where = WITHIN_A_SUBNET if pool.vxlan_mode == "CrossSubnet" else ""
            parts.append(f"vxlan device {devices.VXLAN_DEVICE} (kernel){where}")
        else:
            parts.append("routing via eth0 (kernel)")
    cross = "; ".join(dict.fromkeys(parts)) or "routing via eth0 (kernel)"
    return f"cross node: {cross}; same node: cali veth routed by the node (kernel)"
