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


def tunnel_kind(topology: Topology, node_name: str, caps: Capabilities) -> str | None:
    """How the node's tunl0 is implemented, or None when no IPIP pool applies to it."""
    pool = calico.pool_of(topology, topology.node(node_name))
    if pool is None or pool.ipip_mode == "Never":
        return None
    return "kernel" if caps.has("ipip") else "userspace"


def agent_nodes(topology: Topology, caps: Capabilities) -> list[dict[str, Any]]:
    return [{"name": n.name, "netns": names.node_netns(topology.name, n.name),
             "tunnel": tunnel_kind(topology, n.name, caps)} for n in topology.nodes]


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    """Start the route agent and every node's BIRD (nothing for the Felix-only vxlan backend)."""
    if topology.cluster.calico.backend != "bird":
        return {"bird": False}
    lab = topology.name
    state_dir = store.lab_dir(lab)
    spec = daemons.agent_spec(lab, calico.BIRD_TABLE, state_dir, agent_nodes(topology, caps))
    pid = daemons.start_agent(names.underlay_netns(lab), spec, os.path.join(state_dir, "routeagent.json"))
    daemons.start_birds({n.name: (names.node_netns(lab, n.name), node_paths(store, lab, n.name))
                         for n in topology.nodes})
    return {"bird": True, "route_agent": {"pid": pid, "spec": os.path.join(state_dir, "routeagent.json"),
                                          "stats": spec["stats"]},
            "ipip_implementation": calico.ipip_implementation(caps) if calico.ipip_enabled(topology.cluster.calico)
            else None}


def reconfigure(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any]) -> list[str]:
    """Bring a running Calico lab from `old` to `new`, as calico/node and Felix react to datastore changes."""
    if old.cluster.calico.backend != new.cluster.calico.backend:
        raise LabError("calico_backend cannot change on a running lab", "`lab down`, edit, `lab up`")
    if [calico.pool_of(old, n) and calico.pool_of(old, n).vxlan_mode for n in old.nodes] != \
            [calico.pool_of(new, n) and calico.pool_of(new, n).vxlan_mode for n in new.nodes]:
        raise LabError("vxlanMode cannot change on a running lab (Felix would rebuild vxlan.calico)",
                       "change the topology, then `lab down` and `lab up`")
    if new.cluster.calico.backend != "bird":
        return ["nothing runs to reconfigure (calico_backend vxlan)"]
    changes: list[str] = []
    userspace = runtime.get("ipip_implementation") != "kernel-ipip"
    caps_kind = "userspace" if userspace else "kernel"
    tunnels_changed = False
    for node in new.nodes:
        before = tunnel_kind(old, node.name, Capabilities.assumed())
        after = tunnel_kind(new, node.name, Capabilities.assumed())
        if after and not before:
            _add_tunl0(new, node.name, userspace)
            changes.append(f"{node.name}: tunl0 up with {new.cluster.calico.ipam.tunnel_ips[node.name]}/32")
            tunnels_changed = True
    if tunnels_changed and runtime.get("route_agent"):
        spec_path = runtime["route_agent"]["spec"]
        nodes = [{**entry, "tunnel": caps_kind if entry["tunnel"] else None}
                 for entry in agent_nodes(new, Capabilities.assumed())]
        spec = daemons.agent_spec(new.name, calico.BIRD_TABLE, store.lab_dir(new.name), nodes)
        daemons.reload_agent(runtime["route_agent"]["pid"], spec, spec_path)
    files = calico.bird_files(new)
    for node in new.nodes:
        paths = node_paths(store, new.name, node.name)
        changed = False
        for relative, text in files.items():
            if not relative.startswith(node.name + "/"):
                continue
            target = os.path.join(store.files_dir(new.name), relative)
            with open(target, encoding="utf-8") as handle:
                if handle.read() == text:
                    continue
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
            changed = True
        if changed:
            reply = birdc.command(paths.socket, "configure")
            changes.append(f"{node.name}: bird.cfg re-rendered; birdc configure: {reply.strip().splitlines()[-1]}")
    return changes or ["no node's BIRD configuration changed"]


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
