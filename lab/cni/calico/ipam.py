"""Calico IPAM: affine blocks per node, the tunnel address, then pod addresses in ordinal order.

As libcalico-go's ipam does it: a node claims a block of `blockSize` from the first pool whose
nodeSelector matches it; addresses inside a block are handed out from ordinal 0 upwards; calico/node
takes the first address for the tunnel (tunl0 / vxlan.calico) before any pod when an IPIP or VXLAN
pool applies to the node; a full block makes the node claim another. One deliberate difference:
Calico picks a node's block pseudo-randomly (seeded by the host name); the lab takes the lowest free
block, or the block a node names with `podCIDR`, so that labs are reproducible.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lab.model import calico_selector
from lab.topology.model import IPPool, Node

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


class IpamError(ValueError):
    """An allocation that cannot be made; `where` says which entry asked for it."""

    def __init__(self, message: str, where: Any = None, field: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.field = field


@dataclass(frozen=True)
class PodRequest:
    """A pod asking Calico IPAM for an address, optionally a fixed one."""

    key: str
    node: str
    ip: IPv4Address | None = None
    where: Any = None


@dataclass(frozen=True)
class Allocation:
    blocks: dict[str, tuple[IPv4Network, ...]]
    tunnel_ips: dict[str, IPv4Address]
    pod_ips: dict[str, IPv4Address]


def pool_for(node: Node, pools: Sequence[IPPool]) -> IPPool | None:
    """The first enabled pool whose nodeSelector selects the node."""
    for pool in pools:
        if not pool.disabled and calico_selector.parse(pool.node_selector).matches(node.labels):
            return pool
    return None


def needs_tunnel(pool: IPPool | None) -> bool:
    return pool is not None and (pool.ipip_mode != "Never" or pool.vxlan_mode != "Never")


class _Blocks:
    """The blocks of every pool and who holds them."""

    def __init__(self, pools: Sequence[IPPool]) -> None:
        self.pools = pools
        self.owner: dict[IPv4Network, str] = {}
        self.cursors: dict[str, Iterator[IPv4Network]] = {}   # blocks are never freed: the lowest free only rises

    def claim(self, node: str, block: IPv4Network) -> None:
        holder = self.owner.get(block)
        if holder is not None and holder != node:
            raise IpamError(f"block {block} is already affine to node {holder!r}", field="podCIDR")
        self.owner[block] = node

    def next_free(self, pool: IPPool) -> IPv4Network:
        cursor = self.cursors.setdefault(pool.name, pool.cidr.subnets(new_prefix=pool.block_size))
        for block in cursor:
            if block not in self.owner:
                return block
        raise IpamError(f"IP pool {pool.name} ({pool.cidr}) has no free /{pool.block_size} block left",
                        field="nodes")


class _NodeAddresses:
    """One node's blocks and the addresses taken in them, handed out in ordinal order."""

    def __init__(self, node: Node, pool: IPPool, blocks: _Blocks) -> None:
        self.node = node
        self.pool = pool
        self.blocks = blocks
        self.mine: list[IPv4Network] = []
        self.taken: set[IPv4Address] = set()
        self.cursor = (0, 0)   # (block index, ordinal): addresses are never freed, so the lowest free only rises

    def add_block(self, block: IPv4Network) -> None:
        self.blocks.claim(self.node.name, block)
        self.mine.append(block)

    def reserve(self, ip: IPv4Address) -> None:
        if not any(ip in block for block in self.mine):
            raise IpamError(f"{ip} is not in a block of node {self.node.name} "
                            f"({', '.join(map(str, self.mine))})", field="ip")
        if ip in self.taken:
            raise IpamError(f"{ip} is already in use", field="ip")
        self.taken.add(ip)

    def next(self) -> IPv4Address:
        """The lowest free ordinal of the node's blocks, claiming another block when they are full."""
        index, ordinal = self.cursor
        while True:
            while index < len(self.mine):
                block = self.mine[index]
                while ordinal < block.num_addresses:
                    ip = block.network_address + ordinal
                    ordinal += 1
                    if ip not in self.taken:
                        self.taken.add(ip)
                        self.cursor = (index, ordinal)
                        return ip
                index, ordinal = index + 1, 0
            self.add_block(self.blocks.next_free(self.pool))


def allocate(nodes: Sequence[Node], pools: Sequence[IPPool], requests: Sequence[PodRequest],
             first_blocks: dict[str, IPv4Network],
             tunnels_held: dict[str, IPv4Address] | None = None) -> Allocation:
    """Blocks, tunnel addresses and pod addresses for the whole cluster."""
    blocks = _Blocks(pools)
    per_node: dict[str, _NodeAddresses] = {}
    for node in nodes:  # named blocks first, so that lowest-free never takes one a later node names
        if node.name in first_blocks:
            pool = pool_for(node, pools)
            if pool is None:
                raise IpamError(f"no enabled IP pool selects node {node.name!r}", field="labels")
            per_node[node.name] = _NodeAddresses(node, pool, blocks)
            per_node[node.name].add_block(first_blocks[node.name])
    for node in nodes:
        if node.name in per_node:
            continue
        pool = pool_for(node, pools)
        if pool is None:
            continue  # a node no pool selects gets no block (and may have no pods)
        per_node[node.name] = _NodeAddresses(node, pool, blocks)
        per_node[node.name].add_block(blocks.next_free(pool))
    pod_ips: dict[str, IPv4Address] = {}
    for request in requests:
        addresses = per_node.get(request.node)
        if addresses is None:
            raise IpamError(f"no enabled IP pool selects node {request.node!r}, so pod {request.key} gets no "
                            "address", request.where, "node")
        if request.ip is not None:
            try:
                addresses.reserve(request.ip)
            except IpamError as exc:
                raise IpamError(str(exc), request.where, "ip") from None
            pod_ips[request.key] = request.ip
    # Fixed addresses are held first: on a live lab they are the pods that already exist.
    held = tunnels_held or {}
    tunnel_ips: dict[str, IPv4Address] = {}
    for name, addresses in per_node.items():
        if not needs_tunnel(addresses.pool):
            continue
        if name in held and any(held[name] in block for block in addresses.mine):
            addresses.reserve(held[name])
            tunnel_ips[name] = held[name]
        else:
            tunnel_ips[name] = addresses.next()
    for request in requests:
        if request.ip is None:
            pod_ips[request.key] = per_node[request.node].next()
    return Allocation(blocks={n.name: tuple(per_node[n.name].mine) for n in nodes if n.name in per_node},
                      tunnel_ips=tunnel_ips,
                      pod_ips=pod_ips)
