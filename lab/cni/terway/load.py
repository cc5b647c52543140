"""The topology loader's Terway part: settings, nodes, pods and their addresses (pure: no runtime imports).

Called by lab/topology/loader.py for `cni: terway` with its builder, whose generic steps (nodes,
namespaces, pods and their checks) it reuses; what is Terway's own is here: ENIIP pods take secondary IPs
of their node's vSwitch (a node's `podCIDR` makes no sense there), VPC-mode nodes get a podCIDR of the
cluster's pod CIDR and pods take host-local addresses from it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lab.cni.terway.ipam as eni_ipam
from lab.cni.terway.config import TerwayConfig, parse
from lab.topology import ipam
from lab.topology.entries import Fail, Item, Overlay, labels_of
from lab.topology.model import Network, Node, Pod


class TerwayBuilder:
    """Reads `cluster.terway`; checks nodes' podCIDRs; `build` then hands out the pods' addresses (and, in
    ENIIP mode, the nodes' ENIs). The loader (`builder`) supplies the generic steps and the errors."""

    node_labels = None      # Terway adds no node labels

    def __init__(self, data: dict[str, Any], overlay: Overlay, fail: Fail, items: list[Item],
                 networks: tuple[Network, ...]) -> None:
        self.data = data            # the topology document
        self.fail = fail
        self.notes: list[str] = []
        self.networks = networks
        self.config = parse(data["cluster"], fail, lambda path: _where(fail, path))
        if self.config.mode == "vpc":
            _check_pod_cidr_clear(self, self.config, networks)

    def check_pod_cidr(self, cidr: ipaddress.IPv4Network, path: tuple[Any, ...], labels: Any = None) -> None:
        if self.config.mode == "vpc":
            _check_node_cidr(self, self.config, cidr, path)
        else:
            _no_node_cidr(self, path)

    def build(self, nodes: tuple[Node, ...], requests: list[Any]) -> tuple[tuple[Node, ...], tuple[Pod, ...],
                                                                       TerwayConfig]:
        config = self.config
        if config.mode == "vpc":
            nodes, addresses = _vpc_addresses(self, config, nodes, requests)
        else:
            addresses, enis = _eniip_addresses(self, config, self.networks, nodes, requests)
            config = replace(config, enis=enis)
        pods = tuple(Pod(name=entry["name"], namespace=namespace, node=entry["node"],
                         labels=labels_of(entry, source), container_ports=ports,
                         ip=addresses[f"{namespace}/{entry['name']}"])
                     for entry, source, namespace, ports in requests)
        return nodes, pods, config


def _where(fail: Fail, path: tuple[Any, ...]) -> str:
    """`file:line` of a topology path (what `fail` would name)."""
    error = fail(path, "")
    return f"{error.file}:{error.line or 1}"


def _no_node_cidr(builder: Any, path: tuple[Any, ...]) -> None:
    raise builder.fail(path, "a node has no podCIDR in Terway's ENIIP mode: its pods take secondary IPs of an ENI "
                       "in the node's vSwitch", "remove podCIDR, or set cluster.terway.mode: vpc")


def _check_node_cidr(builder: Any, config: TerwayConfig, cidr: ipaddress.IPv4Network, path: tuple[Any, ...]) -> None:
    assert config.pod_cidr is not None
    if not cidr.subnet_of(config.pod_cidr) or cidr.prefixlen != config.node_cidr_mask:
        raise builder.fail(path, f"{cidr} must be a /{config.node_cidr_mask} inside the pod CIDR {config.pod_cidr}",
                           "match cluster.terway.podCIDR and nodeCIDRMask")


def _check_pod_cidr_clear(builder: Any, config: TerwayConfig, networks: tuple[Network, ...]) -> None:
    assert config.pod_cidr is not None
    given = builder.data["cluster"].get("terway") or {}
    path = ("cluster", "terway", "podCIDR") if "podCIDR" in given else ("cluster", "terway") if given else ("cluster",)
    for network in networks:
        if config.pod_cidr.overlaps(network.cidr):
            raise builder.fail(path, f"the pod CIDR {config.pod_cidr} overlaps the vSwitch {network.name!r} "
                               f"({network.cidr})", "in VPC mode pods live outside the vSwitches: pick another "
                               "cluster.terway.podCIDR")


def _vpc_addresses(builder: Any, config: TerwayConfig, nodes: tuple[Node, ...],
                   requests: list[Any]) -> tuple[tuple[Node, ...], dict[str, ipaddress.IPv4Address]]:
    """kube-controller-manager's podCIDRs, then host-local (Terway's delegate IPAM in VPC mode)."""
    assert config.pod_cidr is not None
    try:
        nodes = ipam.assign_pod_cidrs(nodes, config.pod_cidr, config.node_cidr_mask)
    except ipam.PoolExhausted as exc:
        raise builder.fail(("nodes",), str(exc), "use a larger cluster.terway.podCIDR or a longer nodeCIDRMask") \
            from None
    by_node = {n.name: n for n in nodes}
    asks = []
    for entry, source, namespace, _ports in requests:
        ip = _fixed_ip(entry, source)
        if ip is not None:
            pod_cidr = by_node[entry["node"]].pod_cidr
            assert pod_cidr is not None
            ipam.check_pod_ip(ip, pod_cidr, _ip_error(source))
        asks.append(ipam.PodRequest(key=f"{namespace}/{entry['name']}", node=entry["node"], ip=ip, where=source))
    try:
        return nodes, ipam.host_local(asks, by_node)
    except ipam.AddressConflict as exc:
        raise exc.request.where.error(("ip",), str(exc)) from None


def _eniip_addresses(builder: Any, config: TerwayConfig, networks: tuple[Network, ...], nodes: tuple[Node, ...],
                     requests: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    vswitches = {n.name: eni_ipam.VSwitch(n.name, n.cidr, n.gateway) for n in networks}
    hosts = [n.ip for n in nodes] + _external_ips(builder)
    asks = [eni_ipam.PodAsk(key=f"{namespace}/{entry['name']}", node=entry["node"], ip=_fixed_ip(entry, source),
                            fail=_pod_error(source))
            for entry, source, namespace, _ports in requests]
    index = {entry["name"]: i for i, entry in enumerate(builder.data["nodes"])}
    return eni_ipam.allocate(config, vswitches, {n.name: n.network for n in nodes}, hosts, asks,
                             lambda node, message, hint: builder.fail(("nodes", index[node]), message, hint))


def _ip_error(source: Any) -> Callable[[str], Exception]:
    """An error naming the `ip` field of the pod's entry."""
    def error(message: str) -> Exception:
        made: Exception = source.error(("ip",), message)
        return made
    return error


def _pod_error(source: Any) -> Callable[[str, str, str | None], Exception]:
    """An error naming a field of the pod's entry (topology or Pod manifest)."""
    def error(field: str, message: str, hint: str | None) -> Exception:
        made: Exception = source.error((field,), message, hint)
        return made
    return error


def _fixed_ip(entry: dict[str, Any], source: Any) -> ipaddress.IPv4Address | None:
    if "ip" not in entry:
        return None
    try:
        return ipaddress.IPv4Address(str(entry["ip"]))
    except ValueError:
        raise source.error(("ip",), f"{entry['ip']!r} is not an IPv4 address") from None


def _external_ips(builder: Any) -> list[ipaddress.IPv4Address]:
    """The addresses external hosts declare (checked later by the loader; unparsable ones are its to refuse)."""
    found = []
    for entry in builder.data.get("externals") or []:
        try:
            found.append(ipaddress.IPv4Address(str(entry.get("ip"))))
        except ValueError:
            continue
    return found
