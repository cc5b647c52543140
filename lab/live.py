"""Changes to a running lab: `lab apply -f`, `lab delete -f` and `lab label`, as calicoctl and kubectl make them.

A lab keeps its changes as an overlay on its topology (state.live): the applied manifests' texts,
the deleted resources and the label edits. Each change reloads the topology with the new overlay,
so every check the loader makes applies to it, and nothing is touched unless the whole result is
valid. The CNI's `reconfigure` then brings the running lab to the new model (for Calico: re-render
BIRD's configuration and `birdc configure` the nodes whose configuration changed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from lab.errors import LabError, TopologyError
from lab.model import labels
from lab.netns.state import StateStore
from lab.policy import enforce
from lab.topology import dataplanes, entries, loader, policy_manifest
from lab.topology.model import Topology
from lab.topology.yamlsource import Document, parse, read_file, read_stream

LIVE_KINDS = dataplanes.live_kinds()   # the kinds data planes take live, besides NetworkPolicy


@dataclass(frozen=True)
class Change:
    """What a live change did: the lab's model before and after, and what was reconfigured."""

    lab: str
    summary: list[str]
    old: Topology | None = None
    new: Topology | None = None


@dataclass(frozen=True)
class ManifestFile:
    """A manifest file as given to `lab apply -f`: its text (kept, so errors cite its lines) and manifests."""

    path: str
    text: str
    documents: list[Document]


def expand(documents: list[Document]) -> list[Document]:
    """Documents with every `<Kind>List` (as `calicoctl get -o yaml` prints) replaced by its items."""
    result: list[Document] = []
    for document in documents:
        data = document.data
        if (isinstance(data, dict) and str(data.get("kind", "")).endswith("List")
                and isinstance(data.get("items"), list)):
            for index, item in enumerate(data["items"]):
                prefix = ("items", index)
                lines = {path[2:]: line for path, line in document.lines.items() if path[:2] == prefix}
                result.append(Document(document.file, item, lines))
        else:
            result.append(document)
    return result


def parse_manifests(text: str, path: str) -> list[Document]:
    return expand([d for d in parse(text, path) if d.data is not None])


def read_manifests(path: str) -> ManifestFile:
    """The manifests of a file (`-` reads standard input), each one the lab can change live."""
    name = "<stdin>" if path == "-" else path
    text = read_stream(sys.stdin.buffer, name) if path == "-" else read_file(path, "the manifest file")
    documents = parse_manifests(text, name)
    if not documents:
        raise TopologyError(path, "", "holds no manifest")
    for document in documents:
        check_live_kind(document)
    return ManifestFile(name, text, documents)


def check_live_kind(document: Document) -> None:
    data = document.data
    if not isinstance(data, dict) or "kind" not in data:
        raise document.error((), "not a Kubernetes or Calico manifest (no `kind`)")
    if data.get("kind") in ("Pod", "Namespace"):
        raise document.error(("kind",), f"a {data['kind']} cannot be added to a running lab",
                             "pods and namespaces are part of the topology: change it and run `lab down` / `lab up`")
    planes = dataplanes.registry().values()
    if not policy_manifest.is_network_policy(data) and not any(plane.live(data) for plane in planes):
        raise document.error(("kind",), f"{data.get('apiVersion')}/{data.get('kind')} cannot be applied live",
                             "lab apply takes NetworkPolicy (networking.k8s.io/v1, extensions/v1beta1) and "
                             + " and ".join(plane.live_help for plane in planes if plane.live_help))


def overlay_of(live: dict[str, Any], topology: Topology | None = None) -> entries.Overlay:
    """The overlay a lab's recorded changes make (documents re-parsed from their saved texts)."""
    documents = tuple(d for entry in live.get("files", []) for d in parse_manifests(entry["text"], entry["path"]))
    held_pods = {p.key: p.ip for p in topology.pods} if topology else {}
    held = dataplanes.get(topology.cluster.cni).live_held(topology.cluster.config) if topology else {}
    return entries.Overlay(documents=documents, deleted=frozenset(tuple(k) for k in live.get("deleted", [])),
                          node_labels=live.get("node_labels", {}), held_pods=held_pods, **held,
                          pod_labels=live.get("pod_labels", {}), namespace_labels=live.get("namespace_labels", {}))


# -- what kubectl says about each object ---------------------------------------------------------------
def kubectl_name(data: dict[str, Any]) -> str:
    """kubectl's `<kind>.<group>/<name>`: networkpolicy.networking.k8s.io/x, ippool.projectcalico.org/y."""
    group = "networking.k8s.io" if data["kind"] == "NetworkPolicy" else next(
        (r.api_group for r in dataplanes.registry().values() if data["kind"] in r.live_kinds), "")
    return f"{str(data['kind']).lower()}.{group}/{data['metadata']['name']}"


def _view(topology: Topology, key: tuple[str, str]) -> Any:
    """The model object a (kind, name) manifest became in `topology`, without where it came from; or None."""
    kind, name = key
    if kind == "NetworkPolicy":
        return next((replace(p, source="") for p in topology.policies if p.key == name), None)
    record = dataplanes.get(topology.cluster.cni)
    return record.live_view(topology.cluster.config, kind, name) if kind in record.live_kinds else None


def exists(topology: Topology, key: tuple[str, str]) -> bool:
    implicit = dataplanes.get(topology.cluster.cni).implicit_kinds
    return key in topology.resources or (key[0] in implicit and _view(topology, key) is not None)


def applied(old: Topology, new: Topology, documents: list[Document]) -> list[str]:
    """kubectl apply's line per object: created (new), configured (changed) or unchanged."""
    lines = []
    for document in documents:
        key = loader.resource_key(document.data)
        if key is None or not exists(old, key):
            verb = "created"
        else:
            verb = "unchanged" if _view(old, key) == _view(new, key) else "configured"
        lines.append(f"{kubectl_name(document.data)} {verb}")
    return lines


def check_deletable(old: Topology, documents: list[Document]) -> None:
    """kubectl delete's NotFound, before anything changes."""
    for document in documents:
        key = loader.resource_key(document.data)
        if key is None or not exists(old, key):
            kind, group = kubectl_name(document.data).split("/", 1)[0].split(".", 1)
            plural = f"{kind[:-1]}ies.{group}" if kind.endswith("y") else f"{kind}s.{group}"
            raise document.error(("metadata", "name"), f'{plural} "{document.data["metadata"]["name"]}" not found',
                                 "`lab policy list` and `lab calicoctl get ippool|bgppeer|nodes` list what exists")


def with_file(live: dict[str, Any], manifests: ManifestFile) -> dict[str, Any]:
    """`live` after applying a file's manifests: appended (as the file's own text), and no longer deleted."""
    keys = {loader.resource_key(d.data) for d in manifests.documents}
    return {**live, "files": live.get("files", []) + [{"path": manifests.path, "text": manifests.text}],
            "deleted": [k for k in live.get("deleted", []) if tuple(k) not in keys]}


def without(live: dict[str, Any], documents: list[Document]) -> dict[str, Any]:
    keys = [list(k) for d in documents if (k := loader.resource_key(d.data)) is not None]
    return {**live, "deleted": live.get("deleted", []) + keys}


LABEL_KINDS = {"node": "node_labels", "pod": "pod_labels", "namespace": "namespace_labels"}


def with_labels(live: dict[str, Any], target: str, pairs: list[str], kind: str = "node") -> dict[str, Any]:
    """`live` after `kubectl label <kind> <target> k=v k2-` (target: a node, ns/pod, or namespace)."""
    field = LABEL_KINDS[kind]
    edits = dict(live.get(field, {}).get(target, {}))
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            key, value = pair[:-1], None
        elif "=" in pair:
            key, value = pair.split("=", 1)
        else:
            raise LabError(f"{pair!r} is not a label change", "write key=value to set a label, key- to remove it")
        problem = labels.key_problem(key) or (labels.value_problem(value) if value is not None else None)
        if problem:
            raise LabError(f"{pair!r}: {problem}", "write key=value to set a label, key- to remove it")
        if kind == "namespace" and key == "kubernetes.io/metadata.name":
            raise LabError("kubernetes.io/metadata.name is set by Kubernetes to the namespace's name",
                           "label the namespace with another key")
        edits[key] = value
    return {**live, field: {**live.get(field, {}), target: edits}}


def check_same_cluster(old: Topology, new: Topology) -> None:
    """Live changes may not move nodes or pods: those need `lab down` / `lab up`."""
    before = [(n.name, n.ip) for n in old.nodes], [(p.key, p.node, p.ip) for p in old.pods]
    after = [(n.name, n.ip) for n in new.nodes], [(p.key, p.node, p.ip) for p in new.pods]
    if before != after:
        raise LabError("this change would move nodes or pod addresses, which a running lab cannot do",
                       "change the topology file, then `lab down` and `lab up`")


def reconfigure(old: Topology, new: Topology, store: StateStore, runtime: dict[str, Any]) -> list[str]:
    """Bring the running lab from `old` to `new` (CNI daemons, then policy rules); returns what changed."""
    check_same_cluster(old, new)
    changes: list[str] = []
    from lab import cni  # the data planes load only when a change reaches them
    hook = cni.dataplane(new).reconfigure
    labels_changed = [n.labels for n in old.nodes] != [n.labels for n in new.nodes]
    if hook is not None and (old.cluster != new.cluster or labels_changed):
        changes += hook(old, new, store, runtime)
    changes += reconfigure_policy(old, new, runtime)
    return changes


def reconfigure_policy(old: Topology, new: Topology, runtime: dict[str, Any]) -> list[str]:
    """Re-sync the enforcer when policies or the labels they select on changed."""
    if _policy_inputs(old) == _policy_inputs(new):
        return []
    if enforce.enforcer(new) is None:
        return [f"NOT ENFORCED: cni {new.cluster.cni} with networkPolicy: none accepts NetworkPolicy objects but "
                "programs nothing for them, so all traffic still flows (the seed's point about Flannel); "
                "use networkPolicy: kube-router or cni: calico to enforce them"]
    try:
        counts = enforce.sync(new, enforce.compile_lab(new))
    except LabError:
        enforce.sync(old, enforce.compile_lab(old))   # the nodes that took the new rules go back
        raise
    runtime.setdefault("policy", {})["rules_per_node"] = counts
    return [f"{new.cluster.enforcer}: rules re-synced on {len(counts)} nodes "
            f"({min(counts.values(), default=0)}-{max(counts.values(), default=0)} iptables rules per node)"]


def _policy_inputs(topology: Topology) -> tuple[Any, ...]:
    return (topology.policies, [(p.key, p.labels) for p in topology.pods],
            [(n.name, n.labels) for n in topology.namespaces])
