"""What runs in a Calico lab once its plan is applied: the route agent, then BIRD on every node."""

from __future__ import annotations

import os
from typing import Any

from pyroute2 import IPRoute

from lab.bgp import birdc, daemons
from lab.cni import calico
from lab.errors import LabError
from lab.netns import namespace, names, tun
from lab.netns.capabilities import Capabilities
from lab.netns.state import StateStore
from lab.topology.model import Topology


def tools(topology: Topology) -> list[str]:
    return ["bird", "birdc", "nsenter"] if topology.cluster.calico.backend == "bird" else []


def node_paths(store: StateStore, lab: str, node: str) -> daemons.NodePaths:
    return daemons.NodePaths(os.path.join(store.files_dir(lab), node))


def needs_ipip(topology: Topology, node_name: str) -> bool:
    """Whether an IPIP pool applies to the node (Felix then brings tunl0 up with the tunnel address)."""
    pool = calico.pool_of(topology, topology.node(node_name))
    return pool is not None and pool.ipip_mode != "Never"


def agent_nodes(topology: Topology, kernel_ipip: bool) -> list[dict[str, Any]]:
    """The route agent's view of the nodes: namespace and how tunl0 is implemented (None: no IPIP)."""
    kind = "kernel" if kernel_ipip else "userspace"
    return [{"name": n.name, "netns": names.node_netns(topology.name, n.name),
             "tunnel": kind if needs_ipip(topology, n.name) else None} for n in topology.nodes]


def agent_spec(topology: Topology, store: StateStore, kernel_ipip: bool) -> dict[str, Any]:
    return daemons.agent_spec(topology.name, calico.BIRD_TABLE, store.lab_dir(topology.name),
                              agent_nodes(topology, kernel_ipip))


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    """Start the route agent and every node's BIRD (nothing for the Felix-only vxlan backend)."""
    if topology.cluster.calico.backend != "bird":
        return {"bird": False}
    lab = topology.name
    spec_path = os.path.join(store.lab_dir(lab), "routeagent.json")
    spec = agent_spec(topology, store, caps.has("ipip"))
    pid = daemons.start_agent(names.underlay_netns(lab), spec, spec_path)
    daemons.start_birds({n.name: (names.node_netns(lab, n.name), node_paths(store, lab, n.name))
                         for n in topology.nodes})
    return {"bird": True, "kernel_ipip": caps.has("ipip"),
            "route_agent": {"pid": pid, "spec": spec_path, "stats": spec["stats"]},
            "ipip_implementation": calico.ipip_implementation(caps) if calico.ipip_enabled(topology.cluster.calico)
            else None}


def reconfigure(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any]) -> list[str]:
    """Bring a running Calico lab from `old` to `new`, as calico/node and Felix react to datastore changes."""
    _check_reconfigurable(old, new)
    if new.cluster.calico.backend != "bird":
        return ["nothing runs to reconfigure (calico_backend vxlan)"]
    kernel_ipip = runtime.get("kernel_ipip", runtime.get("ipip_implementation") == "kernel-ipip")
    changes = _bring_up_tunnels(old, new, store, runtime, kernel_ipip)
    changes += _reload_bird(new, store)
    return changes or ["no node's BIRD configuration changed"]


def _check_reconfigurable(old: Topology, new: Topology) -> None:
    if old.cluster.calico.backend != new.cluster.calico.backend:
        raise LabError("calico_backend cannot change on a running lab", "`lab down`, edit, `lab up`")

    def vxlan_modes(topology: Topology) -> list[str | None]:
        return [pool.vxlan_mode if (pool := calico.pool_of(topology, n)) else None for n in topology.nodes]

    if vxlan_modes(old) != vxlan_modes(new):
        raise LabError("vxlanMode cannot change on a running lab (Felix would rebuild vxlan.calico)",
                       "change the topology, then `lab down` and `lab up`")


def _bring_up_tunnels(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any],
                      kernel_ipip: bool) -> list[str]:
    """tunl0 for nodes an IPIP pool now applies to, and the route agent told about them."""
    added = [n.name for n in new.nodes if needs_ipip(new, n.name) and not needs_ipip(old, n.name)]
    for node in added:
        _add_tunl0(new, node, userspace=not kernel_ipip)
    if added and runtime.get("route_agent"):
        agent = runtime["route_agent"]
        daemons.reload_agent(agent["pid"], agent_spec(new, store, kernel_ipip), agent["spec"])
    return [f"{node}: tunl0 up with {new.cluster.calico.ipam.tunnel_ips[node]}/32" for node in added]


def _reload_bird(topology: Topology, store: StateStore) -> list[str]:
    """Write the nodes' BIRD files that changed and `birdc configure` those nodes, as confd does."""
    changes = []
    by_node: dict[str, dict[str, str]] = {}
    for relative, text in calico.bird_files(topology).items():
        by_node.setdefault(relative.split("/", 1)[0], {})[relative] = text
    for node, files in by_node.items():
        written = [_write_if_changed(os.path.join(store.files_dir(topology.name), path), text)
                   for path, text in files.items()]  # every file, not just up to the first change
        if not any(written):
            continue
        reply = birdc.command(node_paths(store, topology.name, node).socket, "configure")
        changes.append(f"{node}: bird.cfg re-rendered; birdc configure: {reply.strip().splitlines()[-1]}")
    return changes


def _write_if_changed(path: str, text: str) -> bool:
    with open(path, encoding="utf-8") as handle:
        if handle.read() == text:
            return False
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def _add_tunl0(topology: Topology, node: str, userspace: bool) -> None:
    """What Felix does when IPIP becomes enabled for a node: tunl0 up, MTU, the tunnel address."""
    host_mtu = topology.network(topology.node(node).network).mtu
    address = str(topology.cluster.calico.ipam.tunnel_ips[node])

    def configure() -> None:
        if userspace:
            tun.create_persistent_tun(calico.IPIP_DEVICE)
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=calico.IPIP_DEVICE)[0]
            ipr.link("set", index=index, mtu=host_mtu - calico.IPIP_OVERHEAD, state="up")
            ipr.addr("replace", index=index, address=address, prefixlen=32)

    namespace.run_in(names.node_netns(topology.name, node), configure)
