"""Load a topology file (YAML plus real manifests) into the immutable model, or fail precisely."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from lab.errors import TopologyError
from lab.model.network_policy import NetworkPolicy
from lab.topology import cidr as cidrs
from lab.topology import dataplanes, impair, manifests, policy_manifest, routers, schema
from lab.topology.entries import Item, Overlay, PodEntry, Source, labels_of
from lab.topology.model import (
    CalicoConfig,
    Cluster,
    ContainerPort,
    External,
    Namespace,
    Network,
    Node,
    Router,
    Topology,
    frozen_labels,
)
from lab.topology.yamlsource import Budget, BudgetError, Document, Path, parse, parse_one, read_file, short

IFNAME_MAX = 15
NETNS_NAME_MAX = 255
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
POD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")
IGNORED_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "PodSecurityPolicy",
                 "Role", "RoleBinding"}
BUILTIN_NAMESPACES = ("default", "kube-system")
DEFAULT_MAX_PODS = 110   # kubelet --max-pods
# "resource kind X is not supported": the kinds every topology takes, and each data plane's (resource_help)
SUPPORTED_HELP = "{0}, Namespace, Pod, NetworkPolicy, and {1}"


# A data plane's check of a node's podCIDR: (cidr, path of the field, the node's labels)
CheckPodCidr = Callable[[ipaddress.IPv4Network, Path, Mapping[str, str]], None]


def _with_labels(check: CheckPodCidr, labels: Mapping[str, str]) -> Callable[[ipaddress.IPv4Network, Path], None]:
    """`check` for a node with `labels` (bound now, not when the loop has moved on)."""
    return lambda cidr, where: check(cidr, where, labels)


def resource_key(data: Any) -> tuple[str, str] | None:
    """(kind, name) of a manifest that a later one of the same key replaces."""
    if isinstance(data, dict) and "kind" in data and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        namespace = data["metadata"].get("namespace")
        if data["kind"] == "NetworkPolicy":
            namespace = namespace or "default"
        if isinstance(name, str):
            return (str(data["kind"]), f"{namespace}/{name}" if namespace else name)
    return None


def load(path: str, overlay: Overlay | None = None) -> Topology:
    """Read, schema-check and validate the topology at `path` (with a live lab's `overlay`).

    The contract: whatever the file holds, this returns a Topology or raises a LabError that names
    the file (and the line, when there is one), in bounded time and memory (lab/topology/yamlsource.py)."""
    budget = Budget()
    return load_text(read_file(path, "the topology", budget), path, overlay, budget)


def load_text(text: str, file: str, overlay: Overlay | None = None, budget: Budget | None = None) -> Topology:
    """Build the model from topology YAML text; `file` names it in errors and anchors relative paths.
    `budget` is what is left to read of the topology and its files together (yamlsource.Budget)."""
    if budget is None:
        budget = Budget()
        budget.bytes -= len(text.encode("utf-8", "surrogatepass"))
    document = parse_one(text, file, budget)
    if not isinstance(document.data, dict):
        raise document.error((), "a topology must be a YAML mapping with name, cluster, networks and nodes")
    schema.check(document)
    return _Builder(document, overlay or Overlay(), budget).build()


class _Builder:
    """Turns a schema-valid document into a Topology, checking everything the schema cannot."""

    def __init__(self, document: Document, overlay: Overlay, budget: Budget | None = None) -> None:
        self.overlay = overlay
        self.budget = budget if budget is not None else Budget()
        self.files: dict[str, Path] = {}      # real path of each file resource -> its `resources[i]` path
        self.doc = document
        self.data = document.data
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def warn(self, document: Document, path: Path, message: str) -> None:
        """A warning as the API server returns one: `file:line: field: text`."""
        self.warnings.append(str(document.error(path, message)))

    def fail(self, path: Path, message: str, hint: str | None = None) -> TopologyError:
        return self.doc.error(path, message, hint)

    def build(self) -> Topology:
        items = self._resource_items()
        networks = self._networks()
        cni = self.data["cluster"]["cni"]
        plane = dataplanes.get(cni)
        builder = plane.builder(self.data, self.overlay, self.fail, items, networks)
        self.notes += builder.notes
        nodes = self._nodes(networks, builder.check_pod_cidr, builder.node_labels)
        namespaces = self._namespaces(items)
        requests = self._pods(items, nodes, namespaces)
        nodes, pods, config = builder.build(nodes, requests)
        cluster = Cluster(cni=cni, config=config, enforcer=self._enforcer(plane))
        policies = self._policies(items, namespaces)
        if policies and cluster.enforcer == "none":
            self.notes.append(f"{len(policies)} NetworkPolicies are NOT enforced: cni {cni} with networkPolicy: none "
                              "accepts them and programs nothing (use networkPolicy: kube-router to enforce them)")
        externals = self._externals(networks, nodes)
        routers = self._routers(networks, nodes, externals, cluster)
        setting = self.data.get("options", {}).get("staticNeighbours", "auto")
        static = {True: "static", False: "dynamic"}.get(setting, "auto")
        ipip = self.data.get("options", {}).get("ipipImplementation", "auto")
        self._warn_unused_ipip(ipip, cluster)
        return Topology(name=self.data["name"], source=os.path.abspath(self.doc.file), cluster=cluster,
                        networks=networks, nodes=nodes, namespaces=namespaces, pods=pods, policies=policies,
                        externals=externals, routers=routers, notes=tuple(self.notes), static_neighbours=static,
                        resources=frozenset(k for item in items if (k := resource_key(item.data)) is not None),
                        impairments=impair.from_topology(
                            self.data, self.fail, lambda path: f"{self.doc.file}:{self.doc.line(path) or 1}: "
                            + ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")),
                        warnings=tuple(self.warnings), sources=frozen_labels(self._sources()),
                        ipip_implementation=ipip)

    def _warn_unused_ipip(self, ipip: str, cluster: Cluster) -> None:
        """options.ipipImplementation on a topology that makes no IPIP device is a warning, not an error: a
        Calico pool may turn IPIP on later (`lab apply`), and a shared options block may set it for all."""
        if "ipipImplementation" not in self.data.get("options", {}) or ipip == "auto":
            return
        why = dataplanes.get(cluster.cni).ipip_unused(cluster.config)
        if why is None:
            return
        self.warn(self.doc, ("options", "ipipImplementation"), f"{ipip} has no effect: {why}")

    def _sources(self) -> dict[str, str]:
        """`file:line` of the entries the runtime's refusals name (Topology.sources)."""
        def at(path: Path) -> str:
            return f"{self.doc.file}:{self.doc.line(path) or 1}"
        found = {f"networks.{entry['name']}": at(("networks", i)) for i, entry in enumerate(self.data["networks"])}
        found |= {f"nodes.{entry['name']}": at(("nodes", i)) for i, entry in enumerate(self.data["nodes"])}
        for option in ("staticNeighbours", "ipipImplementation"):
            if option in (self.data.get("options") or {}):
                found[f"options.{option}"] = at(("options", option))
        return found

    # -- hosts outside the cluster ---------------------------------------------------------------
    def _externals(self, networks: tuple[Network, ...], nodes: tuple[Node, ...]) -> tuple[External, ...]:
        externals: list[External] = []
        taken = {n.name: "node" for n in nodes} | {n.name: "network" for n in networks} | {"lo": "loopback"}
        used_ips = {n.ip: n.name for n in nodes}
        for index, entry in enumerate(self.data.get("externals", [])):
            path = ("externals", index)
            name = entry["name"]
            if not DNS_LABEL.match(name) or len(name) > IFNAME_MAX:
                raise self.fail(path + ("name",), f"external name {name!r} must be a DNS label of at most 15 "
                                "characters", "it names the host's port on its segment's switch")
            if name in taken:
                raise self.fail(path + ("name",), f"name {name!r} is taken by a {taken[name]}", "pick another name")
            taken[name] = "external"
            network = self._node_network(entry, networks, path)
            ip = self._host_in(entry["ip"], network.cidr, path + ("ip",))
            if ip == network.gateway or ip in used_ips:
                raise self.fail(path + ("ip",), f"{ip} is taken by {used_ips.get(ip, 'the gateway')}",
                                "give the external host another address")
            used_ips[ip] = name
            ports = self._ports(entry, Source(self.doc, path))
            gateway = None
            if "gateway" in entry:
                gateway = self._host_in(entry["gateway"], network.cidr, path + ("gateway",))
            externals.append(External(name=name, network=network.name, ip=ip, container_ports=ports,
                                      gateway=gateway))
        return tuple(externals)

    def _routers(self, networks: tuple[Network, ...], nodes: tuple[Node, ...], externals: tuple[External, ...],
                 cluster: Cluster) -> tuple[Router, ...]:
        """`routers:` (lab/topology/routers.py); a node's AS is its Calico Node's, else BGPConfiguration's."""
        calico = cluster.config if isinstance(cluster.config, CalicoConfig) else None
        node_as = None
        if calico is not None and calico.backend == "bird":
            def node_as(name: str) -> int:
                node = calico.node(name)
                return node.as_number if node.as_number is not None else calico.bgp.as_number
        return routers.parse(self.data.get("routers") or [], networks, nodes, externals, node_as, self.fail)

    # -- network policy --------------------------------------------------------------------------
    def _enforcer(self, plane: dataplanes.DataPlane) -> str:
        """cluster.networkPolicy: what enforces NetworkPolicy; the data plane says which may (the first is
        the default): Calico's Felix always does, flannel never (kube-router may)."""
        allowed = plane.enforcers
        given: str = self.data["cluster"].get("networkPolicy", allowed[0])
        if given not in allowed:
            raise self.fail(("cluster", "networkPolicy"), f"networkPolicy {given!r} cannot run with cni {plane.name}",
                            plane.enforcer_hint)
        return given

    def _policies(self, items: list[Item], namespaces: tuple[Namespace, ...]) -> tuple[NetworkPolicy, ...]:
        known = {n.name for n in namespaces}
        policies: dict[str, NetworkPolicy] = {}
        for item in items:
            if not policy_manifest.is_network_policy(item.data):
                continue
            where = f"{item.document.file}:{item.document.line(item.path) or 1}"
            policy = policy_manifest.network_policy(item.data, item.path, item.document.error, where,
                                                    functools.partial(self.warn, item.document))
            if policy.namespace not in known:
                named = "namespace" in item.data["metadata"]
                path = item.path + (("metadata", "namespace") if named else ("metadata",))
                raise item.document.error(path, f'namespace "{policy.namespace}" not found',
                                          f"namespaces are: {', '.join(sorted(known))}")
            if policy.key in policies:
                raise item.document.error(item.path + ("metadata", "name"), f"duplicate NetworkPolicy {policy.key}")
            policies[policy.key] = policy
        return tuple(policies.values())

    # -- resources -------------------------------------------------------------------------------
    def _resource_items(self) -> list[Item]:
        """The topology's resources (inline, from files, and the items of `kind: List`s), then a live
        lab's applied manifests, which replace resources of the same kind and name."""
        items: list[Item] = []
        for index, entry in enumerate(self.data.get("resources") or []):
            path = ("resources", index)
            if "file" in entry:
                items.extend(self._file_items(entry, path))
            else:
                items.extend(manifests.expand(Item(entry, self.doc, path)))
        own = len(items)
        items += [item for d in self.overlay.documents for item in manifests.expand(Item(d.data, d, ()))]
        for item in items:
            self._check_kind(item)
        latest: dict[tuple[str, str | int], Item] = {}
        for index, item in enumerate(items):
            key = resource_key(item.data)
            if index < own and key is not None and key in latest:
                first = latest[key]
                raise item.document.error(item.path + ("metadata", "name"), f"a second {key[0]} {key[1]} (the first "
                                          f"is at {first.document.file}:{first.document.line(first.path)})",
                                          "a topology declares each object once: remove or rename one")
            latest[key if key is not None else ("", index)] = item
        return [item for key, item in latest.items() if key not in self.overlay.deleted]

    def _file_items(self, entry: dict[str, Any], path: Path) -> list[Item]:
        """The items of a `file:` resource. Errors about the file itself (missing, not a regular file, named
        twice, past the topology's budget) name the topology's `resources[i].file` line; errors inside it
        name the file's own line."""
        if set(entry) != {"file"} or not isinstance(entry["file"], str):
            raise self.fail(path, "a file resource is `- file: <path>` and nothing else")
        where = path + ("file",)
        name = entry["file"] if len(entry["file"]) <= 100 else entry["file"][:97] + "..."
        if not name.strip():
            raise self.fail(where, "the file name is empty", "name a YAML file, relative to the topology file")
        base = os.path.dirname(os.path.abspath(self.doc.file))
        target = os.path.join(base, name)
        if not os.path.exists(target):
            raise self.fail(where, f"cannot read {short(target, 200)}: no such file",
                            "paths are relative to the topology file")
        real = os.path.realpath(target)
        if real in self.files:
            first = self.files[real]
            raise self.fail(where, f"{name} is the file resources[{first[1]}].file names already "
                            f"(line {self.doc.line(first + ('file',))})", "name each file once")
        self.files[real] = path
        try:
            documents = parse(read_file(target, "the manifest file", self.budget), target, self.budget)
        except BudgetError as exc:
            inside = f" (at line {exc.line} of it)" if exc.line else ""
            raise self.fail(where, f"{name}{inside}: {exc.reason}", exc.hint) from None
        except TopologyError as exc:
            if exc.line is not None:
                raise
            raise self.fail(where, f"{name}: {exc.reason}", exc.hint) from None
        if not documents:
            raise self.fail(where, f"{short(target, 200)} holds no manifest")
        return [item for d in documents for item in manifests.expand(Item(d.data, d, ()))]

    def _check_kind(self, item: Item) -> None:
        data = item.data
        planes = dataplanes.registry().values()
        if any(plane.kindless(data) for plane in planes):
            return
        if not isinstance(data, dict) or "kind" not in data:
            raise item.document.error(item.path, "a resource must be a Kubernetes manifest (with `kind`), "
                                      "flannel's net-conf.json map (with `Network`), or `file: <path>`")
        schema.check_manifest(item.document, item.path, data)
        kind = data["kind"]
        if kind in ("Namespace", "Pod", "NetworkPolicy") or kind in IGNORED_KINDS:
            return
        cni = self.data["cluster"]["cni"]
        if any(plane.resource(item, cni) for plane in planes):   # raises for its own kinds it cannot take
            return
        if kind == "ConfigMap":
            return  # other ConfigMaps do not configure the network
        raise item.document.error(item.path + ("kind",), f"resource kind {short(kind)} is not supported",
                                  "supported: " + SUPPORTED_HELP.format(*(p.resource_help for p in planes)))

    # -- networks --------------------------------------------------------------------------------
    def _networks(self) -> tuple[Network, ...]:
        networks: list[Network] = []
        for index, entry in enumerate(self.data["networks"]):
            path = ("networks", index)
            name = entry["name"]
            if name == "lo":
                raise self.fail(path + ("name",), "'lo' is the loopback's name", "give the network another name")
            if len(name) > IFNAME_MAX:
                raise self.fail(path + ("name",), f"network name {name!r} is {len(name)} characters; it names "
                                "the segment's switch interface, and Linux interface names hold at most 15",
                                "use a shorter name")
            self._unique(name, [n.name for n in networks], path + ("name",), "network")
            cidr = self._cidr(entry["cidr"], path + ("cidr",), "an underlay network")
            if cidr.num_addresses < 4:
                raise self.fail(path + ("cidr",), f"{cidr} is too small for a segment", "use /30 or larger")
            for other in networks:
                if cidr.overlaps(other.cidr):
                    raise self.fail(path + ("cidr",), f"{cidr} overlaps network {other.name!r} ({other.cidr})")
            gateway = self._host_in(entry.get("gateway", str(next(cidr.hosts()))), cidr, path + ("gateway",))
            networks.append(Network(name=name, cidr=cidr, gateway=gateway, mtu=entry.get("mtu", 1500)))
        return tuple(networks)

    # -- nodes -----------------------------------------------------------------------------------
    def _nodes(self, networks: tuple[Network, ...], check_pod_cidr: CheckPodCidr,
               extra_labels: Mapping[str, Mapping[str, str]] | None = None) -> tuple[Node, ...]:
        nodes: list[Node] = []
        for index, entry in enumerate(self.data["nodes"]):
            path = ("nodes", index)
            name = entry["name"]
            if len(name) > IFNAME_MAX:
                raise self.fail(path + ("name",), f"node name {name!r} is {len(name)} characters; it names the "
                                "node's port on its segment's switch, and Linux interface names hold at most 15",
                                "use a shorter node name")
            self._unique(name, [n.name for n in nodes], path + ("name",), "node")
            if name in {n.name for n in networks} | {"lo"}:
                raise self.fail(path + ("name",), f"node name {name!r} is taken: the underlay switch of network "
                                f"{name!r} (or the loopback) has that interface name already",
                                "give the node or the network another name")
            network = self._node_network(entry, networks, path)
            ip = self._host_in(entry["ip"], network.cidr, path + ("ip",))
            if ip == network.gateway:
                raise self.fail(path + ("ip",), f"{ip} is the gateway of network {network.name!r}",
                                "give the node another address")
            for other in nodes:
                if other.ip == ip:
                    raise self.fail(path + ("ip",), f"duplicate IP {ip}: node {other.name!r} has it too")
            own_labels = labels_of(entry, Source(self.doc, path))
            if extra_labels and name in extra_labels:
                own_labels = frozen_labels({**own_labels, **extra_labels[name]})
            if name in self.overlay.node_labels:
                own_labels = frozen_labels(_edited(dict(own_labels), self.overlay.node_labels[name]))
            pod_cidr = self._pod_cidr(entry, _with_labels(check_pod_cidr, own_labels), nodes, path)
            nodes.append(Node(name=name, network=network.name, ip=ip, pod_cidr=pod_cidr, labels=own_labels))
        return tuple(nodes)

    def _node_network(self, entry: dict[str, Any], networks: tuple[Network, ...], path: Path) -> Network:
        if "network" not in entry:
            if len(networks) > 1:
                raise self.fail(path, "missing key 'network'; the topology has several networks",
                                f"set network to one of: {', '.join(n.name for n in networks)}")
            return networks[0]
        for network in networks:
            if network.name == entry["network"]:
                return network
        raise self.fail(path + ("network",), f"no network named {entry['network']!r}",
                        f"networks are: {', '.join(n.name for n in networks)}")

    def _pod_cidr(self, entry: dict[str, Any], check: Callable[[ipaddress.IPv4Network, Path], None], nodes: list[Node],
                  path: Path) -> ipaddress.IPv4Network | None:
        if "podCIDR" not in entry:
            return None
        cidr = self._cidr(entry["podCIDR"], path + ("podCIDR",), "a pod CIDR")
        check(cidr, path + ("podCIDR",))
        for other in nodes:
            if other.pod_cidr == cidr:
                raise self.fail(path + ("podCIDR",), f"duplicate podCIDR {cidr}: node {other.name!r} has it too")
        return cidr

    # -- namespaces and pods ---------------------------------------------------------------------
    def _namespaces(self, items: list[Item]) -> tuple[Namespace, ...]:
        namespaces: dict[str, Namespace] = {}
        declared = [(entry, Source(self.doc, ("namespaces", i)))
                    for i, entry in enumerate(self.data.get("namespaces", []))]
        declared += [_namespace_manifest(it) for it in items
                     if isinstance(it.data, dict) and it.data.get("kind") == "Namespace"]
        for entry, source in declared:
            name = entry["name"]
            if not isinstance(name, str) or not DNS_LABEL.match(name):
                raise source.error(("name",), f"{name!r} is not a valid namespace name",
                                   "a namespace name is a DNS label: lower-case letters, digits and '-'")
            if name in namespaces:
                raise source.error(("name",), f"duplicate namespace {name!r}")
            own = _edited(dict(labels_of(entry, source)), self.overlay.namespace_labels.get(name))
            own["kubernetes.io/metadata.name"] = name
            namespaces[name] = Namespace(name=name, labels=frozen_labels(own))
        for name in BUILTIN_NAMESPACES:
            own = _edited({}, self.overlay.namespace_labels.get(name))
            namespaces.setdefault(name, Namespace(name, frozen_labels({**own, "kubernetes.io/metadata.name": name})))
        return tuple(namespaces.values())

    def _pods(self, items: list[Item], nodes: tuple[Node, ...], namespaces: tuple[Namespace, ...]) -> list[PodEntry]:
        entries = [(entry, Source(self.doc, ("pods", i))) for i, entry in enumerate(self.data.get("pods", []))]
        entries += [_pod_manifest(it) for it in items if isinstance(it.data, dict) and it.data.get("kind") == "Pod"]
        seen: set[tuple[str, str]] = set()
        per_node: dict[str, int] = {}
        max_pods = self.data["cluster"].get("maxPods", DEFAULT_MAX_PODS)
        known_ns = {n.name for n in namespaces}
        node_names = {n.name for n in nodes}
        pods = []
        for entry, source in entries:
            name = entry["name"]
            if not isinstance(name, str) or not POD_NAME.match(name):
                raise source.error(("name",), f"{name!r} is not a valid pod name",
                                   "a pod name is a DNS subdomain: lower-case letters, digits, '-' and '.'")
            namespace = entry.get("namespace", "default")
            if namespace not in known_ns:
                raise source.error(("namespace",), f"namespace {namespace!r} is not declared",
                                   "add it under `namespaces:` (only default and kube-system exist unasked)")
            if (namespace, name) in seen:
                raise source.error(("name",), f"duplicate pod {namespace}/{name}")
            netns = f"{self.data['name']}.{namespace}.{name}"
            if len(netns) > NETNS_NAME_MAX:
                raise source.error(("name",), f"the pod's network namespace name {netns[:40]}... would be "
                                   f"{len(netns)} characters; file names hold at most {NETNS_NAME_MAX}",
                                   "use a shorter pod or lab name")
            seen.add((namespace, name))
            edits = self.overlay.pod_labels.get(f"{namespace}/{name}")
            if edits:
                entry = {**entry, "labels": _edited(dict(entry.get("labels") or {}), edits)}
            if entry["node"] not in node_names:
                raise source.error(("node",), f"pod {namespace}/{name} is on node {short(entry['node'])}, which does "
                                   f"not exist", f"nodes are: {', '.join(sorted(node_names))}")
            per_node[entry["node"]] = per_node.get(entry["node"], 0) + 1
            if per_node[entry["node"]] > max_pods:
                raise source.error(("node",), f"pod {namespace}/{name} is pod {max_pods + 1} on node "
                                   f"{entry['node']}; kubelet admits at most {max_pods} (--max-pods)",
                                   "spread the pods over more nodes, or raise cluster.maxPods (at most 250); "
                                   "see docs/topology.md, 'Size'")
            pods.append((entry, source, namespace, self._ports(entry, source)))
        return pods

    def _ports(self, entry: dict[str, Any], source: Source) -> tuple[ContainerPort, ...]:
        ports: list[ContainerPort] = []
        for index, port in enumerate(entry.get("containerPorts", [])):
            where = ("containerPorts", index)
            number, protocol = port.get("containerPort"), port.get("protocol", "TCP")
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
                raise source.error(where + ("containerPort",), f"port {number!r} must be from 1 to 65535")
            if protocol not in ("TCP", "UDP", "SCTP"):
                raise source.error(where + ("protocol",), f"protocol {protocol!r} must be TCP, UDP or SCTP")
            cp = ContainerPort(port=number, protocol=protocol, name=port.get("name"))
            if cp.name and any(p.name == cp.name for p in ports):
                raise source.error(where + ("name",), f"duplicate port name {cp.name!r}")
            if any((p.port, p.protocol) == (cp.port, cp.protocol) for p in ports):
                raise source.error(where, f"duplicate port {cp.port}/{cp.protocol}")
            ports.append(cp)
        return tuple(ports)

    # -- small checks ----------------------------------------------------------------------------
    def _cidr(self, value: Any, path: Path, what: str) -> ipaddress.IPv4Network:
        """A network the lab builds (`what` names it); host bits and martian ranges are refused."""
        try:
            network = cidrs.network(value)
        except cidrs.CidrError as exc:
            raise self.fail(path, exc.message, exc.hint) from None
        special = cidrs.martian(network)
        if special:
            raise self.fail(path, f"{network} overlaps the {special} range, which the kernel does not route as "
                            f"unicast, so it cannot be {what}", "use private space: 10.0.0.0/8, 172.16.0.0/12 "
                            "or 192.168.0.0/16")
        return network

    def _host_in(self, value: Any, cidr: ipaddress.IPv4Network, path: Path) -> ipaddress.IPv4Address:
        try:
            ip = ipaddress.IPv4Address(str(value))
        except ValueError:
            raise self.fail(path, f"{value!r} is not an IPv4 address") from None
        if ip not in cidr:
            raise self.fail(path, f"{ip} is outside its network {cidr}",
                            "give an address inside the segment's CIDR, or attach it to another network")
        if ip in (cidr.network_address, cidr.broadcast_address):
            raise self.fail(path, f"{ip} is the {'network' if ip == cidr.network_address else 'broadcast'} "
                            f"address of {cidr}", "use a host address")
        return ip

    def _unique(self, name: str, existing: list[str], path: Path, what: str) -> None:
        if name in existing:
            raise self.fail(path, f"duplicate {what} name {name!r}", f"each {what} needs its own name")

def _edited(labels_: dict[str, Any], edits: Mapping[str, Any] | None) -> dict[str, Any]:
    """`labels_` after `kubectl label` edits (a None value removes the key)."""
    merged = {**labels_, **(edits or {})}
    return {k: v for k, v in merged.items() if v is not None}


def _namespace_manifest(item: Item) -> tuple[dict[str, Any], Source]:
    meta = item.data.get("metadata") or {}
    if "name" not in meta:
        raise item.document.error(item.path + ("metadata",), "a Namespace needs metadata.name",
                                  "the lab has no generateName: set metadata.name" if "generateName" in meta else None)
    renames: dict[Path, Path] = {("name",): ("metadata", "name"), ("labels",): ("metadata", "labels")}
    return {"name": meta["name"], "labels": meta.get("labels") or {}}, Source(item.document, item.path, renames)


def _pod_manifest(item: Item) -> tuple[dict[str, Any], Source]:
    """The topology's pod entry for a real `kind: Pod` manifest (spec.nodeName places it)."""
    data = item.data
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    if "name" not in meta:
        raise item.document.error(item.path + ("metadata",), "a Pod needs metadata.name",
                                  "the lab names pods itself and has no generateName: set metadata.name"
                                  if "generateName" in meta else None)
    if "nodeName" not in spec:
        raise item.document.error(item.path + ("spec",), f"pod {meta['name']!r} has no spec.nodeName",
                                  "the lab has no scheduler: set spec.nodeName to a node of the topology")
    renames: dict[Path, Path] = {("name",): ("metadata", "name"), ("namespace",): ("metadata", "namespace"),
                     ("labels",): ("metadata", "labels"), ("node",): ("spec", "nodeName")}
    ports: list[dict[str, Any]] = []
    for c, container in enumerate(spec.get("containers") or []):
        for p, port in enumerate(container.get("ports") or []):
            renames[("containerPorts", len(ports))] = ("spec", "containers", c, "ports", p)
            ports.append({k: port[k] for k in ("name", "containerPort", "protocol") if k in port})
    entry = {"name": meta["name"], "namespace": meta.get("namespace", "default"), "node": spec["nodeName"],
             "labels": meta.get("labels") or {}, "containerPorts": ports}
    return entry, Source(item.document, item.path, renames)
