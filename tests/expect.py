"""Expected kernel state, derived from a topology file and the data-plane reference only.

Nothing here imports the lab: the rules are those of ../shared/reference/dataplane-fidelity.md
(flannel §1-2, CNI bridge/host-local §0.3) applied to the YAML as written.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class PodSpec:
    namespace: str
    name: str
    node: str
    ip: ipaddress.IPv4Address = None


@dataclass
class NodeSpec:
    name: str
    ip: ipaddress.IPv4Address
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    mtu: int
    subnet: ipaddress.IPv4Network = None
    pods: list[PodSpec] = field(default_factory=list)


@dataclass
class Expected:
    lab: str
    network: ipaddress.IPv4Network
    backend: str
    direct_routing: bool
    vni: int
    port: int
    nodes: list[NodeSpec]

    @property
    def vxlan(self) -> bool:
        return self.backend == "vxlan"

    @property
    def ipip(self) -> bool:
        return self.backend == "ipip"

    def mtu(self, node: NodeSpec) -> int:
        """FLANNEL_MTU: eth0's less 50 for VXLAN, 20 for IPIP (reference §1.6, §3.2)."""
        return node.mtu - 50 if self.vxlan else node.mtu - 20 if self.ipip else node.mtu

    def node_netns(self, node: NodeSpec) -> str:
        return f"{self.lab}.{node.name}"

    def pod_netns(self, pod: PodSpec) -> str:
        return f"{self.lab}.{pod.namespace}.{pod.name}"

    def same_segment(self, a: NodeSpec, b: NodeSpec) -> bool:
        return b.ip in a.cidr

    @property
    def pods(self) -> list[PodSpec]:
        return [p for n in self.nodes for p in n.pods]


def _net_conf(data: dict) -> dict:
    for item in data.get("resources", []):
        if "Network" in item:
            return item
        if item.get("kind") == "ConfigMap" and "net-conf.json" in item.get("data", {}):
            return json.loads(item["data"]["net-conf.json"])
    return {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}


def load(path: Path) -> Expected:
    data = yaml.safe_load(path.read_text())
    conf = _net_conf(data)
    network = ipaddress.IPv4Network(conf["Network"])
    subnet_len = conf.get("SubnetLen", 24)
    backend = conf["Backend"]
    networks = {n["name"]: n for n in data["networks"]}
    nodes = []
    for entry in data["nodes"]:
        net = networks[entry.get("network", data["networks"][0]["name"])]
        cidr = ipaddress.IPv4Network(net["cidr"])
        gateway = ipaddress.IPv4Address(net.get("gateway", str(cidr.network_address + 1)))
        node = NodeSpec(entry["name"], ipaddress.IPv4Address(entry["ip"]), cidr, gateway, net.get("mtu", 1500))
        if "podCIDR" in entry:
            node.subnet = ipaddress.IPv4Network(entry["podCIDR"])
        nodes.append(node)
    # kube-controller-manager: the lowest free subnet, in node order
    taken = {n.subnet for n in nodes if n.subnet}
    free = (s for s in network.subnets(new_prefix=subnet_len) if s not in taken)
    for node in nodes:
        if node.subnet is None:
            node.subnet = next(free)
    by_name = {n.name: n for n in nodes}
    # host-local: fixed addresses first, then the lowest free after the gateway (.1)
    for entry in data.get("pods", []):
        pod = PodSpec(entry.get("namespace", "default"), entry["name"], entry["node"])
        if "ip" in entry:
            pod.ip = ipaddress.IPv4Address(entry["ip"])
        by_name[entry["node"]].pods.append(pod)
    for node in nodes:
        used = {p.ip for p in node.pods if p.ip}
        hosts = (ip for ip in node.subnet.hosts() if ip != node.subnet.network_address + 1 and ip not in used)
        for pod in node.pods:
            if pod.ip is None:
                pod.ip = next(hosts)
    return Expected(lab=data["name"], network=network, backend=backend["Type"],
                    direct_routing=backend.get("DirectRouting", False), vni=backend.get("VNI", 1),
                    port=backend.get("Port", 0) or 8472, nodes=nodes)
