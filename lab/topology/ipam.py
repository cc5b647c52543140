"""Address allocation done outside the CNI: node podCIDRs and host-local pod addresses.

kube-controller-manager (--allocate-node-cidrs) gives each node the lowest free /SubnetLen of the
cluster CIDR, in registration order; the CNI's host-local IPAM then gives each pod the lowest free
address of its node's range after the gateway (.1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from lab.topology.model import Node

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


class PoolExhausted(ValueError):
    """More nodes than subnets in the cluster CIDR."""


class AddressConflict(ValueError):
    """A pod address that cannot be had."""

    def __init__(self, message: str, request: PodRequest) -> None:
        super().__init__(message)
        self.request = request


@dataclass(frozen=True)
class PodRequest:
    """A pod asking host-local for an address, optionally a fixed one."""

    key: str
    node: str
    ip: IPv4Address | None
    where: Any = None


def assign_pod_cidrs(nodes: Iterable[Node], network: IPv4Network, subnet_len: int) -> tuple[Node, ...]:
    """Give every node without a podCIDR the lowest free subnet of `network`."""
    nodes = tuple(nodes)
    capacity = 2 ** (subnet_len - network.prefixlen)
    if capacity < len(nodes):
        raise PoolExhausted(f"the pod network {network} holds only {capacity} subnet(s) of /{subnet_len}, "
                            f"but the topology has {len(nodes)} nodes")
    taken = {n.pod_cidr for n in nodes if n.pod_cidr is not None}
    free = (s for s in network.subnets(new_prefix=subnet_len) if s not in taken)
    return tuple(n if n.pod_cidr is not None else replace(n, pod_cidr=next(free)) for n in nodes)


def gateway(subnet: IPv4Network) -> IPv4Address:
    """The bridge's gateway address: the first host of the range."""
    return subnet.network_address + 1


def check_pod_ip(ip: IPv4Address, subnet: IPv4Network, fail: Callable[[str], Exception]) -> None:
    """Raise `fail(message)` unless host-local could hand out `ip` from `subnet`."""
    if ip not in subnet:
        raise fail(f"{ip} is outside its node's pod subnet {subnet}")
    if ip in (subnet.network_address, subnet.broadcast_address, gateway(subnet)):
        raise fail(f"{ip} is the network, broadcast or gateway address of {subnet}")


def host_local(requests: list[PodRequest], nodes: dict[str, Node]) -> dict[str, IPv4Address]:
    """Addresses for every request: fixed ones first, then the lowest free, per node."""
    used: dict[str, set[IPv4Address]] = {name: set() for name in nodes}
    result: dict[str, IPv4Address] = {}
    for request in requests:
        if request.ip is None:
            continue
        if request.ip in used[request.node]:
            raise AddressConflict(f"duplicate pod IP {request.ip}", request)
        used[request.node].add(request.ip)
        result[request.key] = request.ip
    cursors: dict[str, Any] = {}
    for request in requests:
        if request.ip is not None:
            continue
        subnet = nodes[request.node].pod_cidr
        assert subnet is not None, "assign_pod_cidrs gave every node a podCIDR"
        cursor = cursors.setdefault(request.node, _free_hosts(subnet))
        for candidate in cursor:
            if candidate not in used[request.node]:
                used[request.node].add(candidate)
                result[request.key] = candidate
                break
        else:
            raise AddressConflict(f"node {request.node}'s pod subnet {subnet} has no free address left "
                                  f"for {request.key}", request)
    return result


def _free_hosts(subnet: IPv4Network) -> Iterator[IPv4Address]:
    first = gateway(subnet)
    return (ip for ip in subnet.hosts() if ip != first)
