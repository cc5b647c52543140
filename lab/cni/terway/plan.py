"""Terway's data planes as plan data: ENI multi-IP with veth + policy routing, and VPC-route mode (§8).

Per pod (plugin/datapath/policy_router_linux.go @89aadf8b; vpc_router_linux.go before its removal):
  host   `cali` + sha1("<ns>.<pod>")[:11] veth, `<pod ip> dev caliX scope link`;
         ENIIP only: `ip rule` 512 `from all to <pod ip> lookup main` and 2048 `from <pod ip> lookup
         <1000 + ENI ifindex>` (GetRouteTableID), and in that table `default via <vSwitch gateway> dev
         <ENI> onlink`; the ENI carries the node's IP as a /32 (GenerateENICfgForPolicy: HostIPSet);
  pod    eth0 `<pod ip>/32`, `default via 169.254.1.1 dev eth0 onlink` and a PERMANENT neighbour
         169.254.1.1 with the host veth's MAC (so the pod never needs the host's proxy ARP).
Host sysctls (EnsureHostNsConfig): forwarding 1 and rp_filter 0 for all, default and every link. Then
Felix (cmd/terway-cli/policy.go runCalico: InterfacePrefix left at its default `cali`, FELIX_IPV6SUPPORT
true) configures each `cali` interface as it does Calico's (endpoint_mgr.go configureInterface):
route_localnet 1, proxy_delay 0, proxy_arp 1, forwarding 1, rp_filter = default.rp_filter as Felix read
it (0, set by the CNI), accept_ra 0, and from its IPv6 manager proxy_ndp 1 and IPv6 forwarding 1.

The VPC is emulated in the underlay namespace, which is the VPC router: each network is a vSwitch (its
bridge, gateway address on it); an ENI is a veth whose far end is a port of the vSwitch. The VPC knows
which ENI owns each secondary IP; the lab writes that map as PERMANENT neighbours on the vSwitch's bridge
(pod IP -> ENI MAC; node IP -> eth0 MAC, so that an ARP request a node's ENI sends from the node's IP
never repoints it) with static fdb entries for the ENI MACs, and sets neigh_suppress on the ENI ports so
the vSwitch answers ARP for a secondary IP itself, as a cloud vSwitch does (a node reaching a pod of
another node over eth0's connected subnet). VPC mode: the router's table holds `<podCIDR> via <node>`,
the route entries cloud-controller-manager writes into the VPC route table.
"""

from __future__ import annotations

from typing import Any

from lab.cni import identity, underlay
from lab.cni.calico import workload as calico_workload
from lab.cni.terway import config as terway_conf
from lab.cni.terway.config import ENI, TerwayConfig
from lab.errors import TopologyError
from lab.netns import names
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.netns.plan import LabPlan, fresh_index
from lab.topology.model import Node, Pod, Topology

LINK_IP = "169.254.1.1"            # datapath.LinkIP
TO_CONTAINER_PRIORITY = 512        # consts_linux.go toContainerPriority
FROM_CONTAINER_PRIORITY = 2048     # consts_linux.go fromContainerPriority
TABLE_BASE = 1000                  # utils.GetRouteTableID: 1000 + ENI ifindex
MAIN_TABLE = 254
ALIBABA_OUI = "00:16:3e"           # the MAC prefix of Alibaba Cloud's ENIs
HOST_SYSCTLS = (("forwarding", 1), ("rp_filter", 0))
FELIX_IPV6_SUPPORT = True          # policy.go runCalico: FELIX_IPV6SUPPORT=true


def host_veth_name(pod: Pod) -> str:
    """pkg/link/veth.go VethNameForPod with prefix "cali": Calico's algorithm, hence Felix's interface names."""
    return calico_workload.host_veth_name(pod)


def eni_mac(lab: str, node: str, device: str) -> str:
    """A MAC in Alibaba Cloud's range, derived from the lab, node and device (the cloud assigns it)."""
    return ALIBABA_OUI + ":" + identity.nic_mac(lab, node, "eni", device)[9:]


def eni_port(lab: str, node: str, device: str) -> str:
    """The ENI's port on the vSwitch (in the underlay namespace): `eni` + 8 hex, like an ENI id `eni-...`."""
    return "eni" + identity.veth_name(lab, node, device)[4:]


def route_table(eni_index: int) -> int:
    """GetRouteTableID."""
    return TABLE_BASE + eni_index


def check_datapath(topology: Topology, caps: Capabilities) -> None:
    """Refuse the ipvlan datapath before anything is built: this kernel's ipvlan support is probed."""
    config = terway_config(topology)
    if config.mode != "eniip" or config.datapath != "ipvlan":
        return
    file, _, line = config.sources.get("datapath", topology.source).rpartition(":")
    at = (file, int(line)) if file and line.isdigit() else (topology.source, None)

    def refuse(message: str, hint: str) -> TopologyError:
        return TopologyError(at[0], "cluster.terway.datapath", message, at[1], hint)
    if not caps.has("ipvlan"):
        raise refuse("ipvlan needs the kernel's ipvlan module, which this kernel lacks (an ipvlan link cannot be "
                     "created" + ("" if caps.probed else ": /sys/module/ipvlan is absent") + ")",
                     "load it (modprobe ipvlan) or run the lab in the Vagrant VM; or use datapath: veth (veth + "
                     "policy routing; real Terway also falls back to it, with a VirtualModeChanged event)")
    raise refuse("ipvlan is not built by the lab yet (ipvlan L2 slaves of the ENI, with Cilium for policy); this "
                 "kernel has the module", "use datapath: veth")


def terway_config(topology: Topology) -> TerwayConfig:
    return terway_conf.of(topology)


def plan(topology: Topology, caps: Capabilities | None = None) -> LabPlan:
    """Underlay (the VPC), nodes with ENIs and veths, pods."""
    caps = caps or Capabilities.assumed()
    check_datapath(topology, caps)
    config = terway_config(topology)
    under = underlay.underlay_builder(topology)
    _vpc_router(under, topology)
    nodes: list[NamespaceBuilder] = []
    pods: list[NamespaceBuilder] = []
    for node in topology.nodes:
        builder = underlay.node_builder(topology, under, node.name)
        tables = _enis(builder, under, topology, node, caps) if config.mode == "eniip" else {}
        for pod in topology.pods_on(node.name):
            pods.append(_pod(builder, topology, pod, tables.get(pod.key)))
        _host_sysctls(builder)
        _felix_interfaces(builder, topology, node)
        if config.mode == "vpc":
            under.route(str(node.pod_cidr), gateway=str(node.ip))
        nodes.append(builder)
    hosts = underlay.external_builders(topology, under, {})
    namespaces = [under.freeze()] + [b.freeze() for b in nodes + pods + hosts]
    return LabPlan(lab=topology.name, namespaces=tuple(namespaces), notes=_notes(topology))


def _vpc_router(under: NamespaceBuilder, topology: Topology) -> None:
    """The VPC router forwards (pods' traffic comes back out of the vSwitch it arrived on, so never a redirect)."""
    if len(topology.networks) == 1 and not topology.externals:   # else underlay.py turns it on
        under.sysctl("net/ipv4/ip_forward", 1)
    for scope in ("all", "default", *(n.name for n in topology.networks)):
        under.sysctl(f"net/ipv4/conf/{scope}/send_redirects", 0)
    under.note("VPC router: each network is a vSwitch (an L2 segment), its gateway on the router"
               + ("; route table: each node's podCIDR via the node" if terway_config(topology).mode == "vpc" else
                  "; secondary IPs delivered to their ENI by static neighbour entries (the VPC's IP-to-ENI map)"))


def _enis(builder: NamespaceBuilder, under: NamespaceBuilder, topology: Topology, node: Node,
          caps: Capabilities) -> dict[str, int]:
    """The node's ENIs (eth1, ...) on its vSwitch, each with its policy-routing table; the table of each pod."""
    network = topology.network(node.network)
    tables: dict[str, int] = {}
    under.neighbour(network.name, str(node.ip), identity.nic_mac(topology.name, node.name))
    for eni in terway_config(topology).enis_of(node.name):
        mac = eni_mac(topology.name, node.name, eni.device)
        port = eni_port(topology.name, node.name, eni.device)
        link = under.veth(port, builder, eni.device, mtu=network.mtu, master=network.name, peer_mac=mac,
                          neigh_suppress=True)
        assert link.peer is not None
        table = route_table(fresh_index(link.peer.index, caps.fresh_links))
        builder.address(eni.device, f"{node.ip}/32", broadcast=False)
        builder.route("0.0.0.0/0", gateway=str(network.gateway), dev=eni.device, onlink=True, table=table)
        under.bridge_fdb_entry(port, mac)
        for key in eni.pods:
            under.neighbour(network.name, str(topology.pod(key).ip), mac)
            tables[key] = table
        builder.note(f"ENI {eni.device} ({mac}, port {port} on vSwitch {network.name}): primary IP "
                     f"{eni.primary_ip}, {len(eni.pods)} secondary IPs; policy routing table {table}")
    return tables


def _pod(node: NamespaceBuilder, topology: Topology, pod: Pod, table: int | None) -> NamespaceBuilder:
    """The pod's veth pair, its addresses, routes, neighbour and (ENIIP) the node's two rules for it."""
    builder = NamespaceBuilder(names.pod_netns(topology.name, pod.namespace, pod.name), "pod", pod.key)
    host_end = host_veth_name(pod)
    host_mac = identity.local_mac(topology.name, pod.namespace, pod.name, "host")
    pod_mac = identity.local_mac(topology.name, pod.namespace, pod.name, "eth0")
    mtu = topology.network(topology.node(pod.node).network).mtu
    node.veth(host_end, builder, "eth0", mtu=mtu, mac=host_mac, peer_mac=pod_mac)
    node.route(f"{pod.ip}/32", dev=host_end)
    if table is not None:
        node.rule(TO_CONTAINER_PRIORITY, MAIN_TABLE, dst=f"{pod.ip}/32")
        node.rule(FROM_CONTAINER_PRIORITY, table, src=f"{pod.ip}/32")
    builder.address("eth0", f"{pod.ip}/32", broadcast=False)
    builder.neighbour("eth0", LINK_IP, host_mac)
    builder.route("0.0.0.0/0", gateway=LINK_IP, dev="eth0", onlink=True)
    return builder


def _host_sysctls(builder: NamespaceBuilder) -> None:
    """EnsureHostNsConfig: forwarding 1, rp_filter 0 for all and default, then every link (EnsureNetConfSet)."""
    for scope in ("all", "default", *(link.name for link in builder.links)):
        for key, value in HOST_SYSCTLS:
            builder.sysctl(f"net/ipv4/conf/{scope}/{key}", value)


def _felix_interfaces(builder: NamespaceBuilder, topology: Topology, node: Node) -> None:
    """Felix's per-interface sysctls on each `cali` veth, written once it is up, after the CNI's: its
    rp_filter is default.rp_filter as Felix reads it, which EnsureHostNsConfig has set to 0."""
    default_rp_filter = dict(HOST_SYSCTLS)["rp_filter"]
    for pod in topology.pods_on(node.name):
        calico_workload.felix_interface_sysctls(builder, host_veth_name(pod), rp_filter=default_rp_filter,
                                                ipv6=FELIX_IPV6_SUPPORT)


def describe(topology: Topology, caps: Capabilities | None = None) -> dict[str, Any]:
    """The status summary's Terway part (`lab status --json`): each node's ENIs (ENIIP) or VPC route."""
    config = terway_config(topology)
    node_env: dict[str, Any] = {}
    for node in topology.nodes:
        if config.mode == "eniip":
            node_env[node.name] = {"enis": enis_summary(topology, node.name, caps)}
        else:
            node_env[node.name] = {"pod_cidr": str(node.pod_cidr), "vpc_route": f"{node.pod_cidr} via {node.ip}"}
    return {"mode": config.mode, "datapath": config.datapath if config.mode == "eniip" else None,
            "node_env_key": "terway", "node_env": node_env,
            "node_mtu": {n.name: topology.network(n.network).mtu for n in topology.nodes},
            "terway": {"maxENIs": config.max_enis, "ipsPerENI": config.ips_per_eni} if config.mode == "eniip"
            else {"podCIDR": str(config.pod_cidr), "nodeCIDRMask": config.node_cidr_mask}}


def enis_summary(topology: Topology, node: str, caps: Capabilities | None = None) -> list[dict[str, Any]]:
    """Each ENI of `node` as `lab status` shows it (device, MAC, port, primary IP, table, pods)."""
    fresh = (caps or Capabilities.assumed()).fresh_links
    rows = []
    for eni in terway_config(topology).enis_of(node):
        rows.append({"device": eni.device, "mac": eni_mac(topology.name, node, eni.device),
                     "port": eni_port(topology.name, node, eni.device), "primary_ip": str(eni.primary_ip),
                     "table": route_table(fresh_index(_eni_plan_index(eni), fresh)),
                     "secondary_ips": [str(topology.pod(key).ip) for key in eni.pods], "pods": list(eni.pods)})
    return rows


def _eni_plan_index(eni: ENI) -> int:
    """The ENI's plan index: lo 1, eth0 2, then the ENIs in order (as `_enis` creates them, before any pod)."""
    return 2 + eni.slot


def _notes(topology: Topology) -> tuple[str, ...]:
    config = terway_config(topology)
    if config.mode == "vpc":
        return (f"terway vpc: pod CIDR {config.pod_cidr}, a /{config.node_cidr_mask} per node (host-local), "
                "veth to a cali interface, pods' traffic leaves by eth0; the VPC route table (the underlay "
                "router) holds each podCIDR via its node",)
    return (f"terway eniip (datapath veth + policy routing): pod IPs are secondary IPs of ENIs in the node's "
            f"vSwitch (maxENIs {config.max_enis}, ipsPerENI {config.ips_per_eni}); rules {TO_CONTAINER_PRIORITY}/"
            f"{FROM_CONTAINER_PRIORITY}, table {TABLE_BASE} + ENI ifindex",)
