"""The Calico part of loading a topology: resources, the default pool, and Calico IPAM."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import lab.cni.calico.config as calico_conf
import lab.cni.calico.ipam as calico_ipam
from lab.errors import TopologyError
from lab.model import calico_selector
from lab.topology import cidr as cidrs
from lab.topology.entries import Fail, Item, Overlay, PodEntry, Source, labels_of
from lab.topology.model import (
    BGPConfiguration,
    BGPPeer,
    CalicoConfig,
    CalicoIpam,
    CalicoNode,
    IPPool,
    Network,
    Node,
    Pod,
    frozen_labels,
)
from lab.topology.yamlsource import Path

BACKENDS = ("bird", "vxlan")
# calico/node's startup environment (manifests/calico.yaml defaults) for the pool it creates when none exists.
POOL_ENV_DEFAULTS = {"CALICO_IPV4POOL_CIDR": "192.168.0.0/16", "CALICO_IPV4POOL_IPIP": "Always",
                     "CALICO_IPV4POOL_VXLAN": "Never", "CALICO_IPV4POOL_BLOCK_SIZE": 26,
                     "CALICO_IPV4POOL_NAT_OUTGOING": True, "CALICO_IPV4POOL_NODE_SELECTOR": "all()"}
PARSE_BOOL = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),   # Go's strconv.ParseBool
              **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
POOL_SPEC_ENV = {"cidr": "CALICO_IPV4POOL_CIDR", "blockSize": "CALICO_IPV4POOL_BLOCK_SIZE",
                 "ipipMode": "CALICO_IPV4POOL_IPIP", "vxlanMode": "CALICO_IPV4POOL_VXLAN",
                 "natOutgoing": "CALICO_IPV4POOL_NAT_OUTGOING", "nodeSelector": "CALICO_IPV4POOL_NODE_SELECTOR"}


class CalicoBuilder:
    """Reads Calico's resources from a topology; `build` then runs IPAM over nodes and pods."""

    def __init__(self, data: dict[str, Any], overlay: Overlay, fail: Fail, items: list[Item],
                 networks: tuple[Network, ...]) -> None:
        self.data = data            # the topology document
        self.overlay = overlay
        self.fail = fail
        self.notes: list[str] = []  # what `lab up` prints about choices made for the topology
        self.items = [it for it in items if calico_conf.is_calico(it.data)]
        self.networks = networks
        settings = data["cluster"].get("calico") or {}
        self.backend = settings.get("backend", "bird")
        self.pools = self._pools(settings)
        self.bgp = self._bgp_configuration()
        self.peers = self._peers()
        self.node_items = self._node_items()
        self.node_labels = {name: dict(self._manifest_labels(item)) for name, item in self.node_items.items()
                            if (item.data.get("metadata") or {}).get("labels")}

    # -- resources -------------------------------------------------------------------------------
    def _of_kind(self, kind: str) -> list[Item]:
        return [it for it in self.items if it.data.get("kind") == kind]

    def _pools(self, settings: dict[str, Any]) -> tuple[IPPool, ...]:
        self._check_block_size_env(settings)
        pools: list[IPPool] = []
        for item in self._of_kind("IPPool"):
            pool = calico_conf.ip_pool(item.data, item.path, item.document.error)
            if any(p.name == pool.name for p in pools):
                raise item.document.error(item.path + ("metadata", "name"), f"duplicate IPPool {pool.name!r}")
            for other in pools:
                if pool.cidr.overlaps(other.cidr):
                    raise item.document.error(item.path + ("spec", "cidr"),
                                              f"{pool.cidr} overlaps IPPool {other.name!r} ({other.cidr})")
            self._check_against_underlay(pool, lambda m, h=None, it=item: it.document.error(
                it.path + ("spec", "cidr"), m, h), [p.cidr for p in pools])
            running = self.overlay.held_pools.get(pool.name)
            if running is not None:
                calico_conf.check_pool_unchanged(pool, running, item.path, item.document.error)
            pools.append(pool)
        if not pools:
            pools.append(self._default_pool(settings))
        self._check_backend(pools)
        return tuple(pools)

    def _check_block_size_env(self, settings: dict[str, Any]) -> None:
        """calico/node reads CALICO_IPV4POOL_BLOCK_SIZE at start-up, before it lists the pools, and exits on
        a bad value: so a bad value is an error even when the topology declares its pools."""
        given = settings.get("env") or {}
        if "CALICO_IPV4POOL_BLOCK_SIZE" not in given:
            return
        value = given["CALICO_IPV4POOL_BLOCK_SIZE"]
        number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
        if not isinstance(number, int) or isinstance(number, bool) or not 20 <= number <= 32:
            raise self.fail(("cluster", "calico", "env", "CALICO_IPV4POOL_BLOCK_SIZE"),
                                    f"{value!r} is not a block size from 20 to 32: calico/node checks this variable "
                                    "at start-up, before it looks at the IP pools, and exits",
                                    'write a number from 20 to 32 (calico.yaml writes "26"), or remove the variable')

    def _default_pool(self, settings: dict[str, Any]) -> IPPool:
        """The pool calico/node creates at start-up when none exists, from its CALICO_IPV4POOL_* env."""
        given = settings.get("env") or {}
        env = {**POOL_ENV_DEFAULTS, **given}
        path = ("cluster", "calico", "env")
        spec = {field: env[variable] for field, variable in POOL_SPEC_ENV.items()}
        # calico.yaml writes every env value as a string, as Kubernetes wants: "26", "true"
        if isinstance(spec["blockSize"], str) and spec["blockSize"].isascii() and spec["blockSize"].isdigit():
            spec["blockSize"] = int(spec["blockSize"])
        if isinstance(spec["natOutgoing"], str):
            spec["natOutgoing"] = PARSE_BOOL.get(spec["natOutgoing"], spec["natOutgoing"])

        def fail(where: Path, message: str, hint: str | None = None) -> TopologyError:
            last = where[-1] if where else None
            variable = POOL_SPEC_ENV.get(last) if isinstance(last, str) else None
            at: tuple[str, ...] = (variable,) if variable is not None and variable in given else ()
            return self.fail(path + at, message, hint)

        manifest = {"apiVersion": calico_conf.API_VERSION, "kind": "IPPool",
                    "metadata": {"name": "default-ipv4-ippool"}, "spec": spec}
        pool = calico_conf.ip_pool(manifest, (), fail)
        self._check_against_underlay(pool, lambda m, h=None: fail(("cidr",), m, h))
        return pool

    def _check_against_underlay(self, pool: IPPool, fail: Callable[..., TopologyError],
                                others: list[ipaddress.IPv4Network] | None = None) -> None:
        """A pool must not overlap an underlay segment; the hint gives a range free of segments and of
        the `others` pools, or none."""
        for network in self.networks:
            if pool.cidr.overlaps(network.cidr):
                free = cidrs.example(pool.cidr.prefixlen, [n.cidr for n in self.networks] + (others or []))
                raise fail(f"the IP pool {pool.cidr} overlaps the underlay network {network.name!r} "
                           f"({network.cidr})", f"pick a pool no node segment or other pool uses{free} "
                           "(Calico's default 192.168.0.0/16 often collides with node networks)")

    def _check_backend(self, pools: list[IPPool]) -> None:
        if self.backend not in BACKENDS:
            raise self.fail(("cluster", "calico", "backend"), f"backend {self.backend!r} is not one of "
                                    f"{', '.join(BACKENDS)}", "bird runs BGP (calico.yaml); vxlan is "
                                    "calico-vxlan.yaml's Felix-only mode")
        if self.backend == "vxlan":
            for pool in pools:
                if pool.ipip_mode != "Never":
                    raise self.fail(("cluster", "calico", "backend"), f"IP pool {pool.name} has ipipMode "
                                            f"{pool.ipip_mode}, which needs BIRD (calico_backend: bird)",
                                            "set backend: bird, or the pool's ipipMode to Never")

    def _bgp_configuration(self) -> BGPConfiguration:
        found = self._of_kind("BGPConfiguration")
        if len(found) > 1:
            raise found[1].document.error(found[1].path, "a second BGPConfiguration; give `default` once")
        if not found:
            return BGPConfiguration()
        return calico_conf.bgp_configuration(found[0].data, found[0].path, found[0].document.error)

    def _peers(self) -> tuple[BGPPeer, ...]:
        peers: list[BGPPeer] = []
        for item in self._of_kind("BGPPeer"):
            peer = calico_conf.bgp_peer(item.data, item.path, item.document.error)
            if any(p.name == peer.name for p in peers):
                raise item.document.error(item.path + ("metadata", "name"), f"duplicate BGPPeer {peer.name!r}")
            known = {n["name"] for n in self.data["nodes"]}
            if peer.node is not None and peer.node not in known:
                raise item.document.error(item.path + ("spec", "node"), f"no node named {peer.node!r}",
                                          f"nodes are: {', '.join(sorted(known))}")
            peers.append(peer)
        return tuple(peers)

    def _node_items(self) -> dict[str, Item]:
        known = {n["name"] for n in self.data["nodes"]}
        found: dict[str, Item] = {}
        for item in self._of_kind("Node"):
            name = calico_conf.name_of(item.data, item.path, item.document.error)
            if name not in known:
                raise item.document.error(item.path + ("metadata", "name"), f"Calico Node {name!r} is not a node "
                                          "of this topology", f"nodes are: {', '.join(sorted(known))}")
            if name in found:
                raise item.document.error(item.path + ("metadata", "name"), f"duplicate Calico Node {name!r}")
            found[name] = item
        return found

    def _manifest_labels(self, item: Item) -> dict[str, str]:
        renames: dict[Path, Path] = {("labels",): ("metadata", "labels")}
        return dict(labels_of({"labels": item.data["metadata"]["labels"]}, Source(item.document, item.path, renames)))

    def _calico_nodes(self, nodes: tuple[Node, ...]) -> tuple[CalicoNode, ...]:
        result = []
        for node in nodes:
            prefix = next(n.cidr.prefixlen for n in self.networks if n.name == node.network)
            item = self.node_items.get(node.name)
            if item is None:
                result.append(CalicoNode(name=node.name, ipv4_address=ipaddress.IPv4Interface(f"{node.ip}/{prefix}")))
            else:
                result.append(calico_conf.calico_node(item.data, item.path, item.document.error, node.ip, prefix))
        return tuple(result)

    # -- IPAM ------------------------------------------------------------------------------------
    def check_pod_cidr(self, cidr: ipaddress.IPv4Network, path: Path, labels: Any = None) -> None:
        """A node's `podCIDR` names its first affine block: a whole block of an enabled pool that
        selects the node (Calico IPAM never allocates from any other)."""
        for pool in self.pools:
            if cidr.subnet_of(pool.cidr):
                if cidr.prefixlen != pool.block_size:
                    raise self.fail(path, f"{cidr} is not a /{pool.block_size} block of IP pool "
                                            f"{pool.name} ({pool.cidr})", "with Calico, podCIDR names the "
                                            "node's first affine block")
                if pool.disabled:
                    raise self.fail(path, f"{cidr} is in IP pool {pool.name}, which is disabled: Calico "
                                            "IPAM never allocates from a disabled pool",
                                            "name a block of an enabled pool, or leave podCIDR out")
                if labels is not None and not calico_selector.parse(pool.node_selector).matches(labels):
                    raise self.fail(path, f"{cidr} is in IP pool {pool.name}, whose nodeSelector "
                                            f"{pool.node_selector!r} does not select this node, so Calico IPAM "
                                            "never gives it a block there",
                                            "label the node so that the selector matches, or name a block of a "
                                            "pool that selects it")
                return
        raise self.fail(path, f"{cidr} is in no IP pool ({', '.join(str(p.cidr) for p in self.pools)})")

    def build(self, nodes: tuple[Node, ...], pods: list[PodEntry]) -> tuple[tuple[Node, ...], tuple[Pod, ...],
                                                                         CalicoConfig]:
        held = self.overlay.held_pods
        requests = [calico_ipam.PodRequest(key=f"{namespace}/{entry['name']}", node=entry["node"],
                                           ip=self._fixed_ip(entry, source) if "ip" in entry
                                           else held.get(f"{namespace}/{entry['name']}"),
                                           where=source)
                    for entry, source, namespace, _ in pods]
        first = {n.name: n.pod_cidr for n in nodes if n.pod_cidr is not None}
        try:
            allocation = calico_ipam.allocate(nodes, self.pools, requests, first, self.overlay.held_tunnels)
        except calico_ipam.IpamError as exc:
            if exc.where is not None:
                raise exc.where.error((exc.field,), str(exc)) from None
            raise self.fail(("nodes",), str(exc), "use a larger pool or blockSize, or fewer nodes") from None
        nodes = tuple(_with_first_block(n, allocation.blocks.get(n.name, ())) for n in nodes)
        result = tuple(Pod(name=entry["name"], namespace=namespace, node=entry["node"],
                           labels=labels_of(entry, source), container_ports=ports,
                           ip=allocation.pod_ips[f"{namespace}/{entry['name']}"])
                       for entry, source, namespace, ports in pods)
        config = CalicoConfig(backend=self.backend, pools=self.pools, bgp=self.bgp, peers=self.peers,
                              nodes=self._calico_nodes(nodes),
                              ipam=CalicoIpam(blocks=frozen_labels(allocation.blocks),
                                              tunnel_ips=frozen_labels(allocation.tunnel_ips)))
        return nodes, result, config

    def _fixed_ip(self, entry: dict[str, Any], source: Any) -> ipaddress.IPv4Address:
        try:
            return ipaddress.IPv4Address(str(entry["ip"]))
        except ValueError:
            raise source.error(("ip",), f"{entry['ip']!r} is not an IPv4 address") from None


def _with_first_block(node: Node, blocks: tuple[ipaddress.IPv4Network, ...]) -> Node:
    from dataclasses import replace
    return replace(node, pod_cidr=blocks[0] if blocks else None)
