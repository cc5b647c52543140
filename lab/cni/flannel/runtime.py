"""What runs in a flannel lab once its plan is applied: nothing, except for the ipip backend without the
kernel's ipip module, where the lab's route agent serves flannel.ipip (tunnel only, no BIRD table):
it holds the TUN device open for the eBPF programs, or carries IPIP in userspace."""

from __future__ import annotations

import os
from typing import Any

import lab.cni.flannel.config as flannel_config
from lab.bgp import daemons
from lab.cni import ipip
from lab.cni.flannel.devices import IPIP_DEVICE
from lab.netns import names
from lab.netns.capabilities import Capabilities
from lab.netns.state import StateStore
from lab.topology.model import Topology


def tools(topology: Topology) -> list[str]:
    return ["nsenter"] if flannel_config.of(topology).backend.type == "ipip" else []


def start(topology: Topology, caps: Capabilities, store: StateStore) -> dict[str, Any]:
    if flannel_config.of(topology).backend.type != "ipip":
        return {}
    implementation = ipip.choose(topology, caps)
    runtime: dict[str, Any] = {"ipip": implementation, "ipip_implementation": ipip.label(implementation)}
    if implementation == ipip.KERNEL:
        return runtime
    lab = topology.name
    nodes = [{"name": n.name, "netns": names.node_netns(lab, n.name), "device": IPIP_DEVICE,
              "tunnel": implementation} for n in topology.nodes]
    spec = daemons.agent_spec(lab, None, store.lab_dir(lab), nodes)
    spec_path = os.path.join(store.lab_dir(lab), "routeagent.json")
    pid = daemons.start_agent(names.underlay_netns(lab), spec, spec_path)
    runtime["route_agent"] = {"pid": pid, "spec": spec_path, "stats": spec["stats"]}
    return runtime
