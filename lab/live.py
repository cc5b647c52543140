"""Changes to a running lab: `lab apply -f`, `lab delete -f` and `lab label`, as calicoctl and kubectl make them.

A lab keeps its changes as an overlay on its topology (state.live): the applied manifests' texts,
the deleted resources and the label edits. Each change reloads the topology with the new overlay,
so every check the loader makes applies to it, and nothing is touched unless the whole result is
valid. The CNI's `reconfigure` then brings the running lab to the new model (for Calico: re-render
BIRD's configuration and `birdc configure` the nodes whose configuration changed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from lab import cni
from lab.errors import LabError, TopologyError
from lab.topology import calico_conf, loader
from lab.topology.model import Topology
from lab.topology.yamlsource import Document, parse

LIVE_KINDS = set(calico_conf.KINDS)


@dataclass(frozen=True)
class Change:
    """What a live change did."""

    lab: str
    summary: list[str]


def read_manifests(path: str) -> list[Document]:
    """The YAML documents of a file (`-` reads standard input), each a manifest the lab can change live."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}", "give a manifest file, or - for standard input") from None
    documents = [d for d in parse(text, "<stdin>" if path == "-" else path) if d.data is not None]
    if not documents:
        raise TopologyError(path, "", "holds no manifest")
    for document in documents:
        check_live_kind(document)
    return documents


def check_live_kind(document: Document) -> None:
    data = document.data
    if not isinstance(data, dict) or "kind" not in data:
        raise document.error((), "not a Kubernetes or Calico manifest (no `kind`)")
    if data.get("kind") in ("Pod", "Namespace"):
        raise document.error(("kind",), f"a {data['kind']} cannot be added to a running lab",
                             "pods and namespaces are part of the topology: change it and run `lab down` / `lab up`")
    if not calico_conf.is_calico(data):
        raise document.error(("kind",), f"{data.get('apiVersion')}/{data.get('kind')} cannot be applied live",
                             "lab apply takes projectcalico.org/v3 IPPool, BGPConfiguration, BGPPeer and Node")


def overlay_of(live: dict[str, Any], topology: Topology | None = None) -> loader.Overlay:
    """The overlay a lab's recorded changes make (documents re-parsed from their saved texts)."""
    documents = tuple(d for entry in live.get("files", []) for d in parse(entry["text"], entry["path"])
                      if d.data is not None)
    held_pods = {p.key: p.ip for p in topology.pods} if topology else {}
    held_tunnels = dict(topology.cluster.calico.ipam.tunnel_ips) if topology and topology.cluster.calico else {}
    return loader.Overlay(documents=documents, deleted=frozenset(tuple(k) for k in live.get("deleted", [])),
                          node_labels=live.get("node_labels", {}), held_pods=held_pods, held_tunnels=held_tunnels)


def with_file(live: dict[str, Any], path: str, documents: list[Document]) -> dict[str, Any]:
    """`live` after applying `documents`: appended, and no longer deleted."""
    keys = {loader.resource_key(d.data) for d in documents}
    text = "\n---\n".join(_dump(d.data) for d in documents)
    return {**live, "files": live.get("files", []) + [{"path": path, "text": text}],
            "deleted": [k for k in live.get("deleted", []) if tuple(k) not in keys]}


def without(live: dict[str, Any], documents: list[Document]) -> dict[str, Any]:
    keys = [list(k) for d in documents if (k := loader.resource_key(d.data)) is not None]
    return {**live, "deleted": live.get("deleted", []) + keys}


def with_labels(live: dict[str, Any], node: str, pairs: list[str]) -> dict[str, Any]:
    """`live` after `kubectl label node <node> k=v k2-`."""
    edits = dict(live.get("node_labels", {}).get(node, {}))
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            edits[pair[:-1]] = None
        elif "=" in pair:
            key, value = pair.split("=", 1)
            edits[key] = value
        else:
            raise LabError(f"{pair!r} is not a label change", "write key=value to set a label, key- to remove it")
    return {**live, "node_labels": {**live.get("node_labels", {}), node: edits}}


def _dump(data: Any) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False)


def check_same_cluster(old: Topology, new: Topology) -> None:
    """Live changes may not move nodes or pods: those need `lab down` / `lab up`."""
    before = [(n.name, n.ip) for n in old.nodes], [(p.key, p.node, p.ip) for p in old.pods]
    after = [(n.name, n.ip) for n in new.nodes], [(p.key, p.node, p.ip) for p in new.pods]
    if before != after:
        raise LabError("this change would move nodes or pod addresses, which a running lab cannot do",
                       "change the topology file, then `lab down` and `lab up`")


def reconfigure(old: Topology, new: Topology, store, runtime: dict[str, Any]) -> list[str]:
    """Bring the running lab from `old` to `new` through the CNI; returns what changed."""
    check_same_cluster(old, new)
    hook = cni.dataplane(new).reconfigure
    if hook is None:
        return ["no running daemon to reconfigure"]
    return hook(old, new, store, runtime)
