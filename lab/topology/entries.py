"""What the topology builders read: resources with their documents, where an entry's fields live, the
changes a running lab overlays, and the labels of an entry. Shared by lab/topology/loader.py and the data
planes' loaders (lab/cni/calico/loader.py), so that neither imports the other's internals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from lab.errors import TopologyError
from lab.model import labels
from lab.topology.model import ContainerPort, IPPool, frozen_labels
from lab.topology.yamlsource import Document, Path, short


class Fail(Protocol):
    """The error to raise for a field of the topology file: `fail(path, message, hint)`."""

    def __call__(self, path: Path, message: str, hint: str | None = None) -> TopologyError: ...


@dataclass(frozen=True)
class Item:
    """One resource with the document it came from, so errors can point into that file."""

    data: Any
    document: Document
    path: Path


@dataclass(frozen=True)
class Source:
    """Where an entry's fields live: a topology path, or the fields of a real manifest.

    `renames` maps a topology key path (e.g. ("node",)) to the manifest path holding it
    (e.g. ("spec", "nodeName")), so errors about a Pod manifest name the manifest's own field.
    """

    document: Document
    base: Path
    renames: Mapping[Path, Path] | None = None

    def path(self, keys: Path) -> Path:
        renames = self.renames or {}
        for size in range(len(keys), 0, -1):
            if keys[:size] in renames:
                return self.base + renames[keys[:size]] + keys[size:]
        return self.base + keys

    def error(self, keys: Path, message: str, hint: str | None = None) -> TopologyError:
        return self.document.error(self.path(keys), message, hint)


# A pod the loader accepted, for a data plane's IPAM: (its entry, where it was written, namespace, ports)
PodEntry = tuple[dict[str, Any], Source, str, tuple[ContainerPort, ...]]
LabelEdits = dict[str, str | None]   # `kubectl label` edits: key -> value, None to remove the key

@dataclass(frozen=True)
class Overlay:
    """Changes made to a running lab: applied manifests (later ones replace earlier ones of the same kind
    and name), deleted resources, node label edits, and the addresses IPAM already handed out."""

    documents: tuple[Document, ...] = ()
    deleted: frozenset[tuple[str, str]] = frozenset()                          # {(kind, name)}
    node_labels: dict[str, LabelEdits] = field(default_factory=dict)          # node -> its label edits
    held_pods: dict[str, IPv4Address | None] = field(default_factory=dict)    # "ns/pod" -> its address
    held_tunnels: dict[str, IPv4Address] = field(default_factory=dict)        # node -> its tunnel address
    held_pools: dict[str, IPPool] = field(default_factory=dict)     # name -> running pool (cidr, blockSize fixed)
    pod_labels: dict[str, LabelEdits] = field(default_factory=dict)           # "ns/pod" -> its label edits
    namespace_labels: dict[str, LabelEdits] = field(default_factory=dict)     # namespace -> its label edits


def labels_of(entry: dict[str, Any], source: Source) -> Mapping[str, str]:
    """The entry's `labels`, checked as the API server checks them (errors name the field where `source` says)."""
    found = entry.get("labels") or {}
    if not isinstance(found, dict):
        raise source.error(("labels",), "labels must be a mapping of key: value",
                           "write them as `labels: {app: web}`")
    result = {}
    for key, value in found.items():
        if not isinstance(value, str):  # live label edits and Calico's own labels come as text too
            raise source.error(("labels", key), f"label value {short(value)} is not a string",
                               "quote it, as kubectl wants: key: \"value\"")
        problem = labels.key_problem(key) or labels.value_problem(value)
        if problem:
            raise source.error(("labels", key), problem)
        result[key] = value
    return frozen_labels(result)
