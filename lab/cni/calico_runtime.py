"""What runs in a Calico lab once its plan is applied: the route agent, then BIRD on every node."""

from __future__ import annotations

import os
from typing import Any

from lab.bgp import daemons
from lab.cni import calico
from lab.netns import names
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
