"""`lab fault`: reversible failures injected into a running lab, recorded in its state.

  bird-stop <node>   / bird-start <node>   the node's BIRD stopped (SIGTERM: BIRD closes its sessions with a
                                            Cease, so peers withdraw at once) and not restarted by the supervisor
  link-down <node>   / link-up <node>      the node's underlay link cut: its switch port (the far end of its
                                            eth0, in the underlay namespace) goes down, as a pulled cable or a
                                            shut ToR port. The node keeps its own configuration; eth0 shows
                                            NO-CARRIER and its routes `linkdown`; BGP peers notice at hold time
  node-down <node>   / node-up <node>      every interface of the node (but lo) down, then every daemon of
                                            the node stopped: a node losing power. Its peers notice at hold time.
                                            node-up raises the interfaces, sends the node's planned neighbours,
                                            fdb entries and routes again (the kernel flushed them with the
                                            interfaces) and starts its daemons
  partition <network> / heal <network>     the underlay router stops forwarding between that segment and every
                                            other (iptables DROP in FORWARD of the underlay namespace, commented
                                            `lab fault partition <network>`); hosts inside the segment still
                                            reach each other

Everything happens in the lab's own namespaces, never in the host's. Every check runs before anything
changes. Applying a fault that is in force, or undoing one that is not, changes nothing and says so.
`lab down` removes the namespaces, and with them every fault.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.netns import names, namespace
from lab.netns.state import LabState, StateStore
from lab.topology.model import Topology

UNDO = {"bird-stop": "bird-start", "link-down": "link-up", "node-down": "node-up", "partition": "heal"}
ACTIONS = {**UNDO, **{undo: fault for fault, undo in UNDO.items()}}
NETWORK_FAULTS = ("partition", "heal")


@dataclass(frozen=True)
class Outcome:
    """What one `lab fault` did, in words, and the faults in force afterwards."""

    lab: str
    action: str
    target: str
    changed: bool
    message: str
    faults: list[dict[str, Any]]


def is_undo(action: str) -> bool:
    return action not in UNDO


def run(store: StateStore, state: LabState, topology: Topology, action: str, target: str) -> Outcome:
    """Apply or undo a fault on a lab that is up (call under the lab's lock; the caller saves the state)."""
    if action not in ACTIONS:
        raise LabError(f"unknown fault {action!r}", f"faults are: {', '.join(sorted(ACTIONS))}")
    fault = action if not is_undo(action) else ACTIONS[action]
    _check_target(state, topology, fault, target)
    active = next((f for f in state.faults if f["fault"] == fault and f["target"] == target), None)
    if not is_undo(action) and active is not None:
        return Outcome(state.lab, action, target, False, f"{fault} {target} is already in force; nothing changed",
                       state.faults)
    if is_undo(action) and active is None:
        return Outcome(state.lab, action, target, False, f"no {fault} on {target} is in force; nothing changed",
                       state.faults)
    handler = HANDLERS[fault]
    if not is_undo(action):
        record = handler.apply(store, state, topology, target)
        state.faults.append({"fault": fault, "target": target, "since": time.time(), "undo": UNDO[fault]} | record)
        message = f"{fault} {target}: {record['did']}"
    else:
        assert active is not None
        did = handler.undo(store, state, topology, target, active)
        state.faults.remove(active)
        message = f"{action} {target}: {did}"
    return Outcome(state.lab, action, target, True, message, state.faults)


# -- checks -----------------------------------------------------------------------------------------------
def _check_target(state: LabState, topology: Topology, fault: str, target: str) -> None:
    if fault in NETWORK_FAULTS:
        known = [n.name for n in topology.networks]
        if target not in known:
            raise LabError(f"no network {target!r} in lab {state.lab}", f"its networks are: {', '.join(known)}")
        if len(known) < 2:
            raise LabError(f"lab {state.lab} has one network ({target}): there is nothing to partition it from",
                           "partition a network of a lab with several (e.g. calico-ipip-crosssubnet); "
                           "`lab fault link-down <node>` cuts one node off")
        return
    nodes = [n.name for n in topology.nodes]
    if target not in nodes:
        raise LabError(f"no node {target!r} in lab {state.lab}", f"its nodes are: {', '.join(nodes)}")
    if fault == "bird-stop" and not state.summary.get("runtime", {}).get("bird"):
        raise LabError(f"lab {state.lab} runs no BIRD (cni {state.summary.get('cni')}, "
                       f"mode {state.summary.get('mode')}): there is no BIRD to stop on {target}",
                       "bird-stop works on Calico labs with calico_backend bird; link-down or node-down fail "
                       "any node")
    if fault == "bird-stop" and any(f["fault"] == "node-down" and f["target"] == target for f in state.faults):
        raise LabError(f"{target} is down (node-down): its BIRD is already stopped",
                       f"`lab fault node-up {target}` first")
    if fault == "node-down" and any(f["fault"] == "bird-stop" and f["target"] == target for f in state.faults):
        raise LabError(f"{target}'s BIRD is stopped by bird-stop", f"`lab fault bird-start {target}` first")


# -- the faults -------------------------------------------------------------------------------------------
class BirdStop:
    @staticmethod
    def apply(store: StateStore, state: LabState, topology: Topology, node: str) -> dict[str, Any]:
        from lab import supervision
        supervision.request(store, state.lab, "stop", [supervision.bird_name(node)])
        return {"did": "BIRD stopped (SIGTERM: its sessions close with a Cease); the supervisor leaves it stopped"}

    @staticmethod
    def undo(store: StateStore, state: LabState, topology: Topology, node: str, record: dict[str, Any]) -> str:
        from lab import supervision
        supervision.request(store, state.lab, "start", [supervision.bird_name(node)])
        return "BIRD started again (its control socket answers)"


def _set_link(netns: str, device: str, up: bool) -> None:
    from pyroute2 import IPRoute

    def act() -> None:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=device)
            if not index:
                raise LabError(f"{netns} has no interface {device}", "`lab status` shows whether the lab is intact")
            ipr.link("set", index=index[0], state="up" if up else "down")
    namespace.run_in(netns, act)


class LinkDown:
    @staticmethod
    def apply(store: StateStore, state: LabState, topology: Topology, node: str) -> dict[str, Any]:
        underlay = names.underlay_netns(state.lab)
        _set_link(underlay, node, up=False)
        return {"did": f"switch port {node} down in {underlay}: {node}'s eth0 has no carrier",
                "netns": underlay, "interface": node}

    @staticmethod
    def undo(store: StateStore, state: LabState, topology: Topology, node: str, record: dict[str, Any]) -> str:
        _set_link(record["netns"], record["interface"], up=True)
        return f"switch port {record['interface']} up in {record['netns']}"


class NodeDown:
    @staticmethod
    def apply(store: StateStore, state: LabState, topology: Topology, node: str) -> dict[str, Any]:
        from pyroute2 import IPRoute

        from lab import supervision
        netns = names.node_netns(state.lab, node)
        supervised = supervision.health(store, state.lab, state.summary.get("runtime", {})) or {"daemons": []}
        daemons = [row["name"] for row in supervised["daemons"] if row.get("node") == node]
        if daemons and not supervised.get("alive"):
            raise LabError(f"the lab's supervisor is not running, so {', '.join(daemons)} cannot be stopped "
                           "and started on request", f"`lab down {state.lab}` and `lab up` again")

        def take_down() -> list[str]:
            with IPRoute() as ipr:
                were_up = [(link["index"], link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
                           if link.get_attr("IFLA_IFNAME") != "lo" and link["flags"] & 1]
                for index, _ in were_up:
                    ipr.link("set", index=index, state="down")
            return [name for _, name in were_up]
        interfaces = namespace.run_in(netns, take_down)
        if daemons:
            supervision.request(store, state.lab, "stop", daemons)
        return {"did": f"{len(interfaces)} interfaces down ({', '.join(interfaces)})"
                       + (f", {', '.join(daemons)} stopped" if daemons else ""),
                "netns": netns, "interfaces": interfaces, "daemons": daemons}

    @staticmethod
    def undo(store: StateStore, state: LabState, topology: Topology, node: str, record: dict[str, Any]) -> str:
        from pyroute2 import IPRoute

        from lab import supervision
        from lab.netns import netlink
        plan = _node_plan(state, topology, node)

        def bring_up() -> list[Any]:
            with IPRoute() as ipr:
                indexes = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
                for name in record["interfaces"]:
                    if name in indexes:
                        ipr.link("set", index=indexes[name], state="up")
            return netlink.restore_objects(plan, indexes) if plan is not None else []
        failures = namespace.run_in(record["netns"], bring_up)
        if record["daemons"]:
            supervision.request(store, state.lab, "start", record["daemons"])
        refused = f"; the kernel refused {len(failures)} (e.g. {failures[0]})" if failures else ""
        return (f"{len(record['interfaces'])} interfaces up, the node's planned neighbours, fdb entries and routes "
                f"sent again{refused}" + (f", {', '.join(record['daemons'])} started" if record["daemons"] else ""))


def _node_plan(state: LabState, topology: Topology, node: str) -> Any:
    """The node namespace's plan as `lab up` made it (static neighbours included when the lab has them)."""
    from lab import cni
    from lab.netns import capabilities, neighbours
    plan = cni.plan(topology, capabilities.Capabilities.assumed())
    if (state.summary.get("neighbours") or {}).get("mode") == "static":
        plan = neighbours.with_static_neighbours(plan)
    netns = names.node_netns(state.lab, node)
    return next((ns for ns in plan.namespaces if ns.name == netns), None)


def _partition_rules(network: str) -> list[list[str]]:
    comment = ["-m", "comment", "--comment", f"lab fault partition {network}"]
    return [["-i", network, "!", "-o", network, *comment, "-j", "DROP"],
            ["-o", network, "!", "-i", network, *comment, "-j", "DROP"]]


def _iptables(netns: str, *argv: str) -> None:
    result = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", *argv], capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        raise LabError(f"iptables {' '.join(argv)} in {netns} failed: {result.stderr.strip()}",
                       "`lab exec` cannot reach the underlay; see `ip netns exec " + netns + " iptables-save`")


class Partition:
    @staticmethod
    def apply(store: StateStore, state: LabState, topology: Topology, network: str) -> dict[str, Any]:
        underlay = names.underlay_netns(state.lab)
        for rule in _partition_rules(network):
            _iptables(underlay, "-I", "FORWARD", *rule)
        others = [n.name for n in topology.networks if n.name != network]
        return {"did": f"the router drops what it would forward between {network} and {', '.join(others)}",
                "netns": underlay}

    @staticmethod
    def undo(store: StateStore, state: LabState, topology: Topology, network: str, record: dict[str, Any]) -> str:
        for rule in _partition_rules(network):
            _iptables(record["netns"], "-D", "FORWARD", *rule)
        return f"the router forwards {network}'s traffic again"


HANDLERS: dict[str, Any] = {"bird-stop": BirdStop, "link-down": LinkDown, "node-down": NodeDown,
                            "partition": Partition}
