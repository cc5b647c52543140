"""What runs in a Calico lab once its plan is applied: the route agent, then BIRD on every node."""

from __future__ import annotations

import os
import socket
from typing import Any

import lab.cni.calico.config as calico_config
import lab.cni.calico.plan as calico
from lab.bgp import birdc, daemons
from lab.cni import ipip
from lab.cni.calico import layout
from lab.cni.calico.devices import IPIP_DEVICE
from lab.errors import ApplyError, LabError
from lab.netns import names, namespace, netlink, tc
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.netns.plan import NamespacePlan
from lab.netns.state import StateStore
from lab.topology.model import Topology


def tools(topology: Topology) -> list[str]:
    return ["bird", "birdc", "nsenter"] if calico_config.of(topology).backend == "bird" else []


def node_paths(store: StateStore, lab: str, node: str) -> daemons.BirdPaths:
    return layout.node_paths(os.path.join(store.files_dir(lab), node))


def needs_ipip(topology: Topology, node_name: str) -> bool:
    return calico.needs_ipip(topology, topology.node(node_name))


def agent_nodes(topology: Topology, implementation: str) -> list[dict[str, Any]]:
    """The route agent's view of the nodes: namespace and how tunl0 is implemented (None: no IPIP)."""
    return [{"name": n.name, "netns": names.node_netns(topology.name, n.name), "device": IPIP_DEVICE,
             "tunnel": implementation if needs_ipip(topology, n.name) else None} for n in topology.nodes]


def agent_spec(topology: Topology, store: StateStore, implementation: str) -> dict[str, Any]:
    return daemons.agent_spec(topology.name, calico.BIRD_TABLE, store.lab_dir(topology.name),
                              agent_nodes(topology, implementation))


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    """Start the route agent and every node's BIRD (nothing for the Felix-only vxlan backend)."""
    if calico_config.of(topology).backend != "bird":
        return {"bird": False}
    lab = topology.name
    spec_path = os.path.join(store.lab_dir(lab), "routeagent.json")
    implementation = calico.ipip_implementation(topology, caps)   # also for a pool that turns IPIP on later
    spec = agent_spec(topology, store, implementation)
    pid = daemons.start_agent(names.underlay_netns(lab), spec, spec_path)
    daemons.start_birds({n.name: (names.node_netns(lab, n.name), node_paths(store, lab, n.name))
                         for n in topology.nodes})
    return {"bird": True, "ipip": implementation,
            "route_agent": {"pid": pid, "spec": spec_path, "stats": spec["stats"]},
            "ipip_implementation": ipip.label(implementation) if calico.ipip_enabled(calico_config.of(topology))
            else None}


def reconfigure(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any]) -> list[str]:
    """Bring a running Calico lab from `old` to `new`, as calico/node and Felix react to datastore changes."""
    _check_reconfigurable(old, new)
    if calico_config.of(new).backend != "bird":
        return ["nothing runs to reconfigure (calico_backend vxlan)"]
    implementation = runtime.get("ipip") or (ipip.KERNEL if runtime.get("kernel_ipip") else ipip.USERSPACE)
    changes = _bring_up_tunnels(old, new, store, runtime, implementation)
    changes += _reload_bird(new, store)
    return changes or ["no node's BIRD configuration changed"]


def _check_reconfigurable(old: Topology, new: Topology) -> None:
    if calico_config.of(old).backend != calico_config.of(new).backend:
        raise LabError("calico_backend cannot change on a running lab", "`lab down`, edit, `lab up`")

    def vxlan_modes(topology: Topology) -> list[str | None]:
        return [pool.vxlan_mode if (pool := calico.pool_of(topology, n)) else None for n in topology.nodes]

    if vxlan_modes(old) != vxlan_modes(new):
        raise LabError("vxlanMode cannot change on a running lab (Felix would rebuild vxlan.calico)",
                       "change the topology, then `lab down` and `lab up`")


def _bring_up_tunnels(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any],
                      implementation: str) -> list[str]:
    """tunl0 for nodes an IPIP pool now applies to, and the route agent told about them."""
    added = [n.name for n in new.nodes if needs_ipip(new, n.name) and not needs_ipip(old, n.name)]
    for node in added:
        _add_tunl0(new, node, implementation)
    if added and runtime.get("route_agent"):
        agent = runtime["route_agent"]
        daemons.reload_agent(agent["pid"], agent_spec(new, store, implementation), agent["spec"])
    return [f"{node}: tunl0 up with {calico_config.of(new).ipam.tunnel_ips[node]}/32" for node in added]


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


def _add_tunl0(topology: Topology, node: str, implementation: str) -> None:
    """What Felix does when IPIP becomes enabled for a node: the plan's tunl0 (plan.tunl0: device, MTU, the
    tunnel address and, for eBPF IPIP, the tc programs), added to the running node."""
    netns = names.node_netns(topology.name, node)
    host_mtu = topology.network(topology.node(node).network).mtu

    def configure() -> NamespacePlan:
        try:                                      # the ipip module's fallback tunl0, if this namespace has it
            fallback: int | None = socket.if_nametoindex(IPIP_DEVICE)
        except OSError:
            fallback = None
        builder = NamespaceBuilder(netns, "node", node)
        calico.tunl0(builder, topology, topology.node(node), host_mtu, fallback, implementation)
        fragment = builder.freeze()
        failures = netlink.apply_to_running(fragment)
        if failures:
            raise ApplyError(f"the kernel refused {failures[0]} on {node}", "`lab status` shows the lab's state")
        return fragment

    fragment = namespace.run_in(netns, configure)
    if fragment.qdiscs or fragment.bpf_filters:
        tc.apply_namespaces([fragment])
