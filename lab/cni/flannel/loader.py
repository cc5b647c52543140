"""The flannel part of loading a topology: net-conf.json, the nodes' leases and host-local IPAM (pure)."""

from __future__ import annotations

import ipaddress
from typing import Any

import lab.cni.flannel.config as flannel_conf
from lab.topology import cidr as cidrs
from lab.topology import ipam
from lab.topology.entries import Fail, Item, Overlay, PodEntry, Source, labels_of
from lab.topology.model import FlannelConfig, Network, Node, Pod
from lab.topology.yamlsource import Path


class FlannelBuilder:
    """Reads flannel's net-conf.json from a topology; `build` then assigns leases and pod addresses."""

    node_labels = None      # flannel adds no node labels

    def __init__(self, data: dict[str, Any], overlay: Overlay, fail: Fail, items: list[Item],
                 networks: tuple[Network, ...]) -> None:
        self.data = data            # the topology document
        self.fail = fail
        self.notes: list[str] = []
        self.config = self._flannel(items, networks)

    def _flannel(self, items: list[Item], networks: tuple[Network, ...]) -> FlannelConfig:
        ip_masq = self.data["cluster"].get("ipMasq", True)
        configs: list[tuple[FlannelConfig, Item]] = []
        for item in items:
            error = item.document.error
            source = f"{item.document.file}:{item.document.line(item.path) or 1}"
            if flannel_conf.is_net_conf(item.data):
                configs.append((flannel_conf.from_map(item.data, item.path, error, ip_masq, source), item))
            elif flannel_conf.is_flannel_config_map(item.data):
                configs.append((flannel_conf.from_config_map(item.data, item.path, error, ip_masq, source), item))
        if len(configs) > 1:
            second = configs[1][1]
            raise second.document.error(second.path, "a second flannel net-conf.json; give exactly one")
        if configs:
            config, item = configs[0]
            fail: Fail = item.document.error
            where = (item.path + ("Network",) if flannel_conf.is_net_conf(item.data)
                     else item.path + ("data", "net-conf.json"))
        else:
            config = flannel_conf.from_map(flannel_conf.DEFAULT_NET_CONF, ("cluster",), self.fail,
                                           ip_masq, "default (kube-flannel.yml)")
            fail, where = self.fail, ("cluster",)
            self.notes.append(f"no net-conf.json given: using flannel's manifest default "
                                     f"Network {config.network}, Backend vxlan")
        for network in networks:
            if config.network.overlaps(network.cidr):
                free = cidrs.example(config.network.prefixlen, [n.cidr for n in networks])
                raise fail(where, f"the pod network {config.network} overlaps the underlay "
                           f"network {network.name!r} ({network.cidr})",
                           f"pick a pod Network that no node segment uses{free}")
        return config

    def check_pod_cidr(self, cidr: ipaddress.IPv4Network, path: Path, labels: Any = None) -> None:
        """A node's podCIDR must be one of flanneld's leases: a /SubnetLen inside Network."""
        flannel = self.config
        if not cidr.subnet_of(flannel.network) or cidr.prefixlen != flannel.subnet_len:
            raise self.fail(path, f"{cidr} must be a /{flannel.subnet_len} inside the pod "
                                   f"network {flannel.network}", "match net-conf.json Network and SubnetLen")

    def build(self, nodes: tuple[Node, ...], pods: list[PodEntry]) -> tuple[tuple[Node, ...], tuple[Pod, ...],
                                                                         FlannelConfig]:
        """kube-controller-manager's podCIDRs, then host-local addresses for the pods."""
        flannel = self.config
        try:
            nodes = ipam.assign_pod_cidrs(nodes, flannel.network, flannel.subnet_len)
        except ipam.PoolExhausted as exc:
            raise self.fail(("nodes",), str(exc), "use a larger Network or a longer SubnetLen in "
                                   "net-conf.json, or fewer nodes") from None
        by_node = {n.name: n for n in nodes}
        requests = []
        for entry, source, namespace, _ports in pods:
            ip = None
            if "ip" in entry:
                ip = self._pod_ip(entry, by_node[entry["node"]], source)
            requests.append(ipam.PodRequest(key=f"{namespace}/{entry['name']}", node=entry["node"], ip=ip,
                                            where=source))
        try:
            addresses = ipam.host_local(requests, by_node)
        except ipam.AddressConflict as exc:
            raise exc.request.where.error(("ip",), str(exc)) from None
        result = []
        for (entry, source, namespace, ports), request in zip(pods, requests, strict=False):
            result.append(Pod(name=entry["name"], namespace=namespace, node=entry["node"],
                              labels=labels_of(entry, source), container_ports=ports,
                              ip=addresses[request.key]))
        return nodes, tuple(result), flannel

    def _pod_ip(self, entry: dict[str, Any], node: Node, source: Source) -> ipaddress.IPv4Address:
        try:
            ip = ipaddress.IPv4Address(str(entry["ip"]))
        except ValueError:
            raise source.error(("ip",), f"{entry['ip']!r} is not an IPv4 address") from None
        assert node.pod_cidr is not None, "assign_pod_cidrs gave every node a podCIDR"
        ipam.check_pod_ip(ip, node.pod_cidr, lambda m: source.error(("ip",), m))
        return ip
