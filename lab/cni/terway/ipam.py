"""Terway's ENIIP address management: ENIs and their secondary private IPs, taken from the node's vSwitch.

In a VPC a vSwitch is a subnet. The cloud reserves some of its addresses (the lab reserves the network
address and the last three, the gateway among them: Alibaba Cloud's documentation says each vSwitch
reserves its first and last three addresses and the gateway is the .253 of a /24); nodes and other hosts
hold theirs; every ENI has a primary private IP; pod IPs are the ENIs' secondary private IPs. Terway's
daemon asks the cloud API for ENIs and IPs; the cloud hands out free addresses. The lab hands out the
lowest free address instead (reproducible), node by node in topology order: the node's first ENI, then
its pods, attaching the next ENI (eth2, eth3, ...) when one holds `ipsPerENI - 1` pod IPs.

Pure: no runtime imports; errors come back through the callbacks each request carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from lab.cni.terway.config import ENI, TerwayConfig

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network
RESERVED_AT_END = 3


@dataclass(frozen=True)
class PodAsk:
    """A pod asking for an IP on its node's vSwitch (a fixed one, or None); `fail(field, message, hint)`
    builds the error naming the pod's entry (field "ip" or "node")."""

    key: str
    node: str
    ip: IPv4Address | None
    fail: Callable[[str, str, str | None], Exception]


@dataclass(frozen=True)
class VSwitch:
    """A vSwitch: the network's name and CIDR and its gateway."""

    name: str
    cidr: IPv4Network
    gateway: IPv4Address


def reserved(vswitch: VSwitch) -> set[IPv4Address]:
    """The addresses the VPC keeps: the network address, the last three (broadcast included), the gateway."""
    cidr = vswitch.cidr
    last = int(cidr.broadcast_address)
    return ({cidr.network_address, vswitch.gateway}
            | {IPv4Address(last - i) for i in range(RESERVED_AT_END) if last - i > int(cidr.network_address)})


def allocate(config: TerwayConfig, vswitches: dict[str, VSwitch], node_vswitch: dict[str, str],
             hosts: Iterable[IPv4Address], asks: list[PodAsk],
             node_fail: Callable[[str, str, str | None], Exception]) -> tuple[dict[str, IPv4Address],
                                                                              dict[str, tuple[ENI, ...]]]:
    """Pod IPs by pod key, and each node's ENIs. `hosts` are the addresses nodes and external hosts hold;
    `node_fail(node, message, hint)` builds an error naming a node's entry."""
    taken: set[IPv4Address] = set(hosts)
    for vswitch in vswitches.values():
        taken |= reserved(vswitch)
    fixed: dict[str, IPv4Address] = {}
    for ask in asks:
        if ask.ip is not None:
            _check_fixed(ask, vswitches[node_vswitch[ask.node]], taken, fixed)
            fixed[ask.key] = ask.ip
    taken |= set(fixed.values())
    cursors = {name: _hosts(vswitch) for name, vswitch in vswitches.items()}
    used = {name: _count_used(vswitch, taken) for name, vswitch in vswitches.items()}
    by_node: dict[str, list[PodAsk]] = {}
    for ask in asks:
        by_node.setdefault(ask.node, []).append(ask)
    addresses: dict[str, IPv4Address] = {}
    enis: dict[str, tuple[ENI, ...]] = {}
    per_eni = config.ips_per_eni - 1
    for node, vswitch_name in node_vswitch.items():
        vswitch = vswitches[vswitch_name]
        pods = by_node.get(node, [])
        if len(pods) > config.pods_per_node:
            ask = pods[config.pods_per_node]
            raise ask.fail("node", f"pod {ask.key} is pod {config.pods_per_node + 1} on node {node}, whose ENIs "
                           f"hold at most {config.pods_per_node} pod IPs (maxENIs {config.max_enis} x "
                           f"(ipsPerENI {config.ips_per_eni} - 1 primary IP))",
                           "raise cluster.terway.maxENIs or ipsPerENI to the instance type's quotas, or move the "
                           "pod to another node")
        groups = [pods[i:i + per_eni] for i in range(0, len(pods), per_eni)] or [[]]
        node_enis = []
        for slot, group in enumerate(groups, start=1):
            primary = _next_free(cursors[vswitch_name], taken)
            if primary is None:
                raise node_fail(node, _exhausted(vswitch, used[vswitch_name], f"ENI eth{slot}'s primary IP"),
                                _more_room(vswitch))
            for ask in group:
                if ask.ip is None:
                    found = _next_free(cursors[vswitch_name], taken)
                    if found is None:
                        raise ask.fail("node", _exhausted(vswitch, used[vswitch_name], f"pod {ask.key}"),
                                       _more_room(vswitch))
                    addresses[ask.key] = found
                else:
                    addresses[ask.key] = ask.ip
            node_enis.append(ENI(node=node, device=f"eth{slot}", primary_ip=primary,
                                 pods=tuple(ask.key for ask in group)))
        enis[node] = tuple(node_enis)
    return addresses, enis


def _check_fixed(ask: PodAsk, vswitch: VSwitch, taken: set[IPv4Address], fixed: dict[str, IPv4Address]) -> None:
    ip = ask.ip
    assert ip is not None
    if ip not in vswitch.cidr:
        raise ask.fail("ip", f"{ip} is outside the vSwitch of node {ask.node}: network {vswitch.name} "
                       f"({vswitch.cidr}); Terway's ENIIP pod IPs are secondary IPs of an ENI in that vSwitch",
                       f"give an address inside {vswitch.cidr}, or leave ip out")
    if ip in reserved(vswitch):
        raise ask.fail("ip", f"{ip} is reserved by the VPC in vSwitch {vswitch.name} ({vswitch.cidr}: the network "
                       "address, the gateway and the last three addresses)", "give another address")
    if ip in taken:
        raise ask.fail("ip", f"{ip} is taken by a node or an external host on vSwitch {vswitch.name}",
                       "give another address")
    if ip in fixed.values():
        other = next(key for key, value in fixed.items() if value == ip)
        raise ask.fail("ip", f"duplicate pod IP {ip}: pod {other} has it too", "give another address")


def _hosts(vswitch: VSwitch) -> Iterator[IPv4Address]:
    return iter(vswitch.cidr.hosts())


def _next_free(cursor: Iterator[IPv4Address], taken: set[IPv4Address]) -> IPv4Address | None:
    for candidate in cursor:
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    return None


def _count_used(vswitch: VSwitch, taken: set[IPv4Address]) -> int:
    return sum(1 for ip in taken if ip in vswitch.cidr)


def _exhausted(vswitch: VSwitch, held: int, what: str) -> str:
    return (f"vSwitch {vswitch.name} ({vswitch.cidr}) has no free address left for {what}: its "
            f"{vswitch.cidr.num_addresses} addresses are all reserved by the VPC, held by nodes and external hosts "
            f"({held} before Terway's IPAM), or given to ENIs and pods")


def _more_room(vswitch: VSwitch) -> str:
    return f"use a larger vSwitch CIDR for network {vswitch.name}, or fewer pods on its nodes"
