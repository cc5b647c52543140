"""Terway's settings as the lab holds them (pure: no runtime imports), and their parsing from the topology.

`cluster.terway` in a topology:

    mode: eniip | vpc        ENI multi-IP (default) or the deprecated VPC-route mode (reference §8)
    datapath: veth | ipvlan  how an ENIIP pod is wired: veth + policy routing (default) or ipvlan L2
    maxENIs: 3               secondary ENIs a node may attach (the instance type's ENI quota minus eth0)
    ipsPerENI: 10            private IPs per ENI (its primary IP plus secondary IPs: the type's quota)
    podCIDR: 172.20.0.0/16   VPC mode: the cluster's pod CIDR, cut into one podCIDR per node
    nodeCIDRMask: 24         VPC mode: the prefix length of each node's podCIDR

The result, after IPAM (lab/cni/terway/ipam.py), is a TerwayConfig (lab/topology/model.py, beside the other
data planes' configs): the settings plus each node's ENIs with the pods whose secondary IPs they hold.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from lab.topology.model import ENI, Cluster, TerwayConfig, Topology, config_of, find_config

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

NAME = "terway"
MODES = ("eniip", "vpc")
DATAPATHS = ("veth", "ipvlan")
ENFORCERS = ("calico",)            # Felix in the veth modes (Terway's design.md, "Network Policy")
DEFAULT_MAX_ENIS = 3
DEFAULT_IPS_PER_ENI = 10
DEFAULT_POD_CIDR = "172.20.0.0/16"
DEFAULT_NODE_CIDR_MASK = 24
ENIIP_ONLY = ("datapath", "maxENIs", "ipsPerENI")
VPC_ONLY = ("podCIDR", "nodeCIDRMask")

Fail = Callable[..., Exception]     # fail(path, message, hint=None) -> TopologyError
__all__ = ["ENI", "TerwayConfig", "parse"]   # the config types live in the model


# The topology's `cluster.terway` settings (JSON schema; lab/topology/schema.py adds it to the topology's).
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "Terway's settings (docs/topology.md): mode eniip (ENI multi-IP, the default) or vpc",
    "properties": {
        "mode": {"enum": list(MODES)},
        "datapath": {"enum": list(DATAPATHS), "description": "ENIIP pods wired by veth + policy routing (default) "
                     "or ipvlan L2 (needs the kernel's ipvlan module)"},
        "maxENIs": {"type": "integer", "minimum": 1, "maximum": 64,
                    "description": "ENIs a node may attach besides eth0 (the instance type's quota)"},
        "ipsPerENI": {"type": "integer", "minimum": 2, "maximum": 64,
                      "description": "private IPs per ENI: its primary IP and the secondary IPs pods get"},
        "podCIDR": {"type": "string", "description": "VPC mode: the cluster's pod CIDR"},
        "nodeCIDRMask": {"type": "integer", "minimum": 8, "maximum": 30,
                         "description": "VPC mode: the prefix length of each node's podCIDR"},
    },
}


def find(where: Topology | Cluster) -> TerwayConfig | None:
    """The terway config of a topology or cluster, or None when its CNI is another."""
    return find_config(where, TerwayConfig)


def of(where: Topology | Cluster) -> TerwayConfig:
    """The terway config of a topology or cluster whose CNI is terway (anything else is the caller's bug)."""
    return config_of(where, TerwayConfig, "terway")


def parse(cluster: Mapping[str, Any], fail: Fail, where: Callable[[tuple[Any, ...]], str]) -> TerwayConfig:
    """`cluster.terway` (schema-checked) into settings; `where(path)` is `file:line` of a path."""
    given = cluster.get("terway") or {}
    base = ("cluster", "terway")
    mode = given.get("mode", "eniip")
    misplaced = [key for key in (VPC_ONLY if mode == "eniip" else ENIIP_ONLY) if key in given]
    if misplaced:
        key = misplaced[0]
        other = "vpc" if mode == "eniip" else "eniip"
        raise fail(base + (key,), f"{key} applies to mode {other} only, and this cluster's mode is {mode}",
                   f"remove {key}, or set mode: {other}")
    pod_cidr = None
    if mode == "vpc":
        pod_cidr = _network(given.get("podCIDR", DEFAULT_POD_CIDR), base + ("podCIDR",), fail)
        mask = given.get("nodeCIDRMask", DEFAULT_NODE_CIDR_MASK)
        if mask < pod_cidr.prefixlen:
            raise fail(base + ("nodeCIDRMask",), f"/{mask} is shorter than the pod CIDR {pod_cidr}",
                       f"use a mask of at least {pod_cidr.prefixlen}")
    sources = {"datapath": where(base + ("datapath",)) if "datapath" in given else where(base if given else
                                                                                          ("cluster",))}
    return TerwayConfig(mode=mode, datapath=given.get("datapath", "veth"),
                        max_enis=given.get("maxENIs", DEFAULT_MAX_ENIS),
                        ips_per_eni=given.get("ipsPerENI", DEFAULT_IPS_PER_ENI), pod_cidr=pod_cidr,
                        node_cidr_mask=given.get("nodeCIDRMask", DEFAULT_NODE_CIDR_MASK),
                        sources=MappingProxyType(sources))


def _network(value: Any, path: tuple[Any, ...], fail: Fail) -> IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value))
    except ValueError as exc:
        raise fail(path, f"{value!r} is not an IPv4 network ({exc})", "write it as 172.20.0.0/16") from None
