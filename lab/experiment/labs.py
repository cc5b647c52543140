"""The runner's own copy of each mode's topology: its own lab name, plus the experiment's pods.

The runner never touches a lab it did not start: it brings up a copy of the topology named
`x<run id>-<mode>` (so the shipped names stay free, and two runs never collide) and adds four pods
in namespace default with the labels `lab-experiment: "true"` and `xp: a|b|c|d`, placed so that every placement
exists with the same pods in every mode:

  xp-a   on node A (the first node that shares its network with another node)
  xp-b   on node A                       same-node:    default/xp-a -> default/xp-b
  xp-c   on node B, A's network          cross-node:   default/xp-a -> default/xp-c
  xp-d   on a node of another network    cross-subnet: default/xp-a -> default/xp-d
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError
from lab.experiment.kinds import Endpoint
from lab.netns import names
from lab.topology import loader
from lab.topology.model import Node, Topology

NAMESPACE = "default"
PODS = {"same-node": ("xp-a", "xp-b"), "cross-node": ("xp-a", "xp-c"), "cross-subnet": ("xp-a", "xp-d")}
LABEL = {"lab-experiment": "true"}


@dataclass(frozen=True)
class LabCopy:
    """A mode's lab as the runner brings it up."""

    mode: str
    lab: str
    path: Path
    topology: Topology
    placements: tuple[str, ...]

    def endpoint(self, pod_name: str) -> Endpoint:
        pod = next(p for p in self.topology.pods if p.namespace == NAMESPACE and p.name == pod_name)
        node = self.topology.node(pod.node)
        return Endpoint(pod=pod, netns=names.pod_netns(self.lab, pod.namespace, pod.name), node=node.name,
                        node_netns=names.node_netns(self.lab, node.name), node_ip=str(node.ip))

    def pair(self, placement: str) -> tuple[Endpoint, Endpoint]:
        src, dst = PODS[placement]
        return self.endpoint(src), self.endpoint(dst)

    def pair_text(self, placement: str) -> str:
        src, dst = PODS[placement]
        return f"{NAMESPACE}/{src}->{NAMESPACE}/{dst}"


def lab_name(run_id: str, mode: str) -> str:
    """x<run id>-<mode>, cut to a valid lab name."""
    return f"x{run_id}-{mode}"[:names.LAB_NAME_MAX].rstrip("-")


def choose_nodes(topology: Topology, placements: tuple[str, ...], chosen: dict[str, str] | None = None
                 ) -> dict[str, Node]:
    """Node a (xp-a, xp-b), c (a's network: cross-node) and d (another network: cross-subnet) for the
    placements asked for; `chosen` names some of them (a ValueError when they do not fit)."""
    nodes = {n.name: n for n in topology.nodes}
    by_network: dict[str, list[Node]] = {}
    for node in topology.nodes:
        by_network.setdefault(node.network, []).append(node)
    chosen = chosen or {}
    first = nodes[chosen["a"]] if "a" in chosen else next(
        (n for n in topology.nodes if len(by_network[n.network]) >= 2), topology.nodes[0])
    result = {"a": first}
    if "cross-node" in placements or "c" in chosen:
        if "c" in chosen:
            result["c"] = nodes[chosen["c"]]
            if result["c"].network != first.network or result["c"].name == first.name:
                raise ValueError(f"node c ({chosen['c']}) must be another node on node a's network ({first.network})")
        else:
            result["c"] = next((n for n in by_network[first.network] if n.name != first.name), None)  # type: ignore[assignment]
            if result["c"] is None:
                raise ValueError(f"cross-node needs a second node on {first.network}")
    if "cross-subnet" in placements or "d" in chosen:
        if "d" in chosen:
            result["d"] = nodes[chosen["d"]]
            if result["d"].network == first.network:
                raise ValueError(f"node d ({chosen['d']}) must be on another network than node a's ({first.network})")
        else:
            result["d"] = next((n for n in topology.nodes if n.network != first.network), None)  # type: ignore[assignment]
            if result["d"] is None:
                raise ValueError("cross-subnet needs a node on a second network")
    return result


def _pod(name: str, node: Node, serve_http: bool) -> dict[str, Any]:
    """An experiment pod: labels lab-experiment=true and xp=<a|b|c|d>; with `serve_http`, the lab's probe
    server answers on TCP 80 in it (policy measurements probe it)."""
    pod: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "node": node.name,
                           "labels": {**LABEL, "xp": name.split("-", 1)[1]}}
    if serve_http:
        pod["containerPorts"] = [{"name": "http", "containerPort": 80, "protocol": "TCP"}]
    return pod


def make_copy(topology: Topology, source: str, text: str, mode: str, lab: str, placements: tuple[str, ...],
              directory: Path, serve_http: bool = False, pod_nodes: dict[str, str] | None = None) -> LabCopy:
    """Write the renamed topology (`text`, from `source`) with the experiment's pods under `directory`; load it."""
    data: dict[str, Any] = yaml.safe_load(text)
    data["name"] = lab
    base = os.path.dirname(os.path.abspath(source))
    for entry in data.get("resources", []) or []:
        if isinstance(entry, dict) and set(entry) == {"file"}:
            entry["file"] = os.path.join(base, entry["file"])
    taken = {(p.namespace, p.name) for p in topology.pods}
    nodes = choose_nodes(topology, placements, pod_nodes)
    wanted = [("xp-a", nodes["a"]), ("xp-b", nodes["a"])]
    if "c" in nodes:
        wanted.append(("xp-c", nodes["c"]))
    if "d" in nodes:
        wanted.append(("xp-d", nodes["d"]))
    for name, _node in wanted:
        if (NAMESPACE, name) in taken:
            raise LabError(f"topology {topology.name} already has a pod {NAMESPACE}/{name}",
                           "the runner adds pods xp-a..xp-d; rename that pod")
    data.setdefault("pods", [])
    data["pods"] = (data["pods"] or []) + [_pod(name, node, serve_http) for name, node in wanted]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{lab}.yaml"
    path.write_text(f"# {mode}: a copy of {source} made by `lab experiment run`\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return LabCopy(mode=mode, lab=lab, path=path, topology=loader.load(str(path)), placements=placements)
