"""Expected Calico kernel state and BGP sessions, derived from a topology file and the reference only.

Nothing here imports the lab. The rules are those of ../shared/reference/dataplane-fidelity.md
§4-§6 (Calico v3.28 rendering: BIRD programs `proto bird` routes, Felix `proto 80` ones),
applied to the YAML as written, plus the lab's documented IPAM choice (README/docs/topology.md:
a node's block is its `podCIDR`, else the lowest free block of its pool in node order):

* §4.7 IPAM: addresses in ordinal order from the block's network address; a tunnel address
  (ordinal 0 once fixed pod addresses are held) only when an IPIP or VXLAN pool applies;
* §4.9 workloads: `cali` + sha1("<ns>.<pod>")[:11], ee:ee:ee:ee:ee:ee, /32, 169.254.1.1,
  proxy_arp, static ARP, `<pod>/32 dev caliX scope link`;
* §4.3/§4.4 sessions: mesh (N-1, route reflectors skipped), node-specific BGPPeers with the
  automatic reverse peering;
* §4.6/§5.2 BIRD routes, §6.1-§6.5 Felix's VXLAN state; §4.9 pod MTU (IPIP 1480, VXLAN 1450).

Routes are compared as sets of `Route` (dst, gateway, dev, proto, type, onlink, scope, src).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

API = "projectcalico.org/v3"
HOST_MAC = "ee:ee:ee:ee:ee:ee"
DUMMY_GATEWAY = "169.254.1.1"
VXLAN_DEVICE, VXLAN_VNI, VXLAN_PORT = "vxlan.calico", 4096, 4789
IPIP_DEVICE = "tunl0"
IPIP_OVERHEAD, VXLAN_OVERHEAD = 20, 50
DEFAULT_AS = 64512
# calico/node's defaults for the pool it creates when none is given (manifests/calico.yaml, §4.1)
DEFAULT_POOL = {"cidr": "192.168.0.0/16", "blockSize": 26, "ipipMode": "Always", "vxlanMode": "Never",
                "natOutgoing": True, "nodeSelector": "all()"}
ENV_KEYS = {"CALICO_IPV4POOL_CIDR": "cidr", "CALICO_IPV4POOL_BLOCK_SIZE": "blockSize",
            "CALICO_IPV4POOL_IPIP": "ipipMode", "CALICO_IPV4POOL_VXLAN": "vxlanMode",
            "CALICO_IPV4POOL_NAT_OUTGOING": "natOutgoing", "CALICO_IPV4POOL_NODE_SELECTOR": "nodeSelector"}


@dataclass(frozen=True)
class Route:
    """One main-table route as the kernel reports it (proto/type by iproute2 name or number)."""

    dst: str
    gateway: str | None
    dev: str | None
    proto: str
    type: str = "unicast"
    onlink: bool = False
    scope: str = "global"
    src: str | None = None

    def __str__(self) -> str:  # iproute2-like, for readable assertion messages
        text = f"{self.type + ' ' if self.type != 'unicast' else ''}{self.dst}"
        text += f" via {self.gateway}" if self.gateway else ""
        text += f" dev {self.dev}" if self.dev else ""
        text += f" proto {self.proto}" + (f" scope {self.scope}" if self.scope != "global" else "")
        text += f" src {self.src}" if self.src else ""
        return text + (" onlink" if self.onlink else "")


def cali_name(namespace: str, pod: str) -> str:
    """libcalico-go VethNameForWorkload (§4.9)."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def vtep_mac(node: str) -> str:
    """Felix vtepMACForHost (§6.2): 'f' (0x66) then sha1(node name)[0:5]."""
    raw = b"f" + hashlib.sha1(node.encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in raw)


def peer_protocol(kind: str, ip: IPv4Address | str) -> str:
    """BIRD protocol names confd gives peers: Mesh_192_168_10_72, Node_..., Global_..."""
    return f"{kind}_{str(ip).replace('.', '_')}"


# -- a small Calico selector evaluator (enough for the shipped and test topologies) ---------------------
_TERM = re.compile(r"""^\s*(?:(all\(\))|has\(([\w./-]+)\)|!\s*has\(([\w./-]+)\)|"""
                   r"""([\w./-]+)\s*(==|!=)\s*(['"])(.*?)\6)\s*$""")


def selects(selector: str | None, labels: dict[str, str]) -> bool:
    if selector is None or selector.strip() in ("", "all()"):
        return True
    if "||" in selector:
        return any(selects(part, labels) for part in selector.split("||"))
    if "&&" in selector:
        return all(selects(part, labels) for part in selector.split("&&"))
    match = _TERM.match(selector)
    if not match:
        raise NotImplementedError(f"expect_calico cannot evaluate selector {selector!r}")
    everything, has, has_not, key, op, _, value = match.groups()
    if everything:
        return True
    if has:
        return has in labels
    if has_not:
        return has_not not in labels
    return (labels.get(key) == value) == (op == "==")


# -- the model -------------------------------------------------------------------------------------------
@dataclass
class Pool:
    name: str
    cidr: IPv4Network
    block_size: int
    ipip: str
    vxlan: str
    node_selector: str
    disabled: bool = False

    @property
    def encapsulated(self) -> bool:
        return self.ipip != "Never" or self.vxlan != "Never"


@dataclass
class Pod:
    namespace: str
    name: str
    node: str
    ip: IPv4Address | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cali(self) -> str:
        return cali_name(self.namespace, self.name)


@dataclass
class Node:
    name: str
    ip: IPv4Address
    network: str
    cidr: IPv4Network           # the underlay segment
    gateway: IPv4Address
    host_mtu: int
    labels: dict[str, str]
    bgp_network: IPv4Network    # the Calico Node's ipv4Address network (CrossSubnet decisions)
    as_number: int | None = None
    rr_cluster_id: str | None = None
    pod_cidr: IPv4Network | None = None
    pool: Pool | None = None
    blocks: list[IPv4Network] = field(default_factory=list)
    tunnel_ip: IPv4Address | None = None
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Peer:
    name: str
    peer_ip: IPv4Address | None
    as_number: int | None
    node: str | None
    node_selector: str | None
    peer_selector: str | None


@dataclass
class Expected:
    lab: str
    backend: str                # bird | vxlan
    pools: list[Pool]
    nodes: list[Node]
    mesh: bool
    as_number: int
    peers: list[Peer]

    # -- lookups ---------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def pods(self) -> list[Pod]:
        return [p for n in self.nodes for p in n.pods]

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name or p.key == name)

    def node_netns(self, node: Node | str) -> str:
        return f"{self.lab}.{node if isinstance(node, str) else node.name}"

    def pod_netns(self, pod: Pod | str) -> str:
        pod = self.pod(pod) if isinstance(pod, str) else pod
        return f"{self.lab}.{pod.namespace}.{pod.name}"

    @property
    def underlay_netns(self) -> str:
        return f"{self.lab}._underlay"

    @property
    def bgp(self) -> bool:
        return self.backend == "bird"

    @property
    def mode(self) -> str:
        pool = next((p for p in self.pools if not p.disabled), None)
        if pool is None:
            return "none"
        if pool.ipip != "Never":
            return "ipip" + ("-crosssubnet" if pool.ipip == "CrossSubnet" else "")
        if pool.vxlan != "Never":
            return "vxlan" + ("-crosssubnet" if pool.vxlan == "CrossSubnet" else "")
        return "bgp"

    def ipip_enabled(self) -> bool:
        return any(p.ipip != "Never" and not p.disabled for p in self.pools)

    def vxlan_enabled(self) -> bool:
        return any(p.vxlan != "Never" and not p.disabled for p in self.pools)

    def pod_mtu(self, node: Node) -> int:
        """§4.9 / Felix determinePodMTU: the smallest MTU of the enabled encapsulations."""
        mtus = [node.host_mtu]
        if self.ipip_enabled():
            mtus.append(node.host_mtu - IPIP_OVERHEAD)
        if self.vxlan_enabled():
            mtus.append(node.host_mtu - VXLAN_OVERHEAD)
        return min(mtus)

    def has_tunl0(self, node: Node) -> bool:
        return self.bgp and node.pool is not None and node.pool.ipip != "Never"

    def has_vxlan(self, node: Node) -> bool:
        return node.pool is not None and node.pool.vxlan != "Never"

    def same_subnet(self, node: Node, other: Node) -> bool:
        return other.ip in node.bgp_network

    def tunnelled(self, node: Node, other: Node) -> bool:
        """Whether traffic from `node` to `other`'s blocks is encapsulated (IPIP or VXLAN)."""
        pool = other.pool
        if pool is None:
            return False
        mode = pool.vxlan if pool.vxlan != "Never" else pool.ipip
        return mode == "Always" or (mode == "CrossSubnet" and not self.same_subnet(node, other))

    # -- routes ------------------------------------------------------------------------------------
    def bird_proto(self, pool: Pool) -> str:
        """Who programs a pool's routes: BIRD (`proto bird`) unless VXLAN (Felix, proto 80)."""
        return "80" if pool.vxlan != "Never" else "bird"

    def remote_route(self, node: Node, other: Node, block: IPv4Network) -> Route:
        pool = other.pool
        if pool.vxlan != "Never":                                   # §6.3
            if pool.vxlan == "CrossSubnet" and self.same_subnet(node, other):
                return Route(str(block), str(other.ip), "eth0", "80", onlink=True)
            return Route(str(block), str(other.tunnel_ip), VXLAN_DEVICE, "boot", onlink=True)
        if pool.ipip == "Always" or (pool.ipip == "CrossSubnet" and not self.same_subnet(node, other)):
            return Route(str(block), str(other.ip), IPIP_DEVICE, "bird", onlink=True)   # §4.6 / §5.2
        if not self.same_subnet(node, other):
            raise NotImplementedError("no-encap routes to a node on another subnet are not modelled")
        return Route(str(block), str(other.ip), "eth0", "bird")                      # §4.10

    def routes(self, node: Node) -> set[Route]:
        """The node's whole main table (§4.10, §5.4, §6.5)."""
        routes = {Route("default", str(node.gateway), "eth0", "boot"),
                  Route(str(node.cidr), None, "eth0", "kernel", scope="link", src=str(node.ip))}
        for pod in node.pods:
            routes.add(Route(f"{pod.ip}/32", None, pod.cali, "boot", scope="link"))
        for block in node.blocks:
            if block.prefixlen != 32:
                routes.add(Route(str(block), None, None, self.bird_proto(node.pool), type="blackhole"))
        for other in self.nodes:
            if other is not node and other.pool is not None and self.knows(node, other):
                for block in other.blocks:
                    routes.add(self.remote_route(node, other, block))
        return routes

    def knows(self, node: Node, other: Node) -> bool:
        """Whether `node` has `other`'s blocks: always from Felix (VXLAN pools, §6), else by BGP - a direct
        session, or a route reflector peering with both where one of them is its client (§4.4)."""
        if other.pool.vxlan != "Never":
            return True
        peers = {ip for ip, _ in self.sessions(node)}
        if str(other.ip) in peers:
            return True
        for rr in self.nodes:
            if rr.rr_cluster_id is None or str(rr.ip) not in peers:
                continue
            rr_peers = {ip for ip, _ in self.sessions(rr)}
            clients = {str(n.ip) for n in self.nodes if n.rr_cluster_id != rr.rr_cluster_id}
            if str(other.ip) in rr_peers and (str(node.ip) in clients or str(other.ip) in clients):
                return True
        return False

    def remote_block_routes(self, node: Node, of: Node) -> set[Route]:
        return {self.remote_route(node, of, b) for b in of.blocks}

    def pod_routes(self) -> set[Route]:
        return {Route("default", DUMMY_GATEWAY, "eth0", "boot"),
                Route(f"{DUMMY_GATEWAY}/32", None, "eth0", "boot", scope="link")}

    # -- VXLAN (§6.2) ------------------------------------------------------------------------------
    def vxlan_peers(self, node: Node) -> list[Node]:
        return [o for o in self.nodes if o is not node and self.has_vxlan(o)]

    def vxlan_neighbours(self, node: Node) -> set[tuple[str, str]]:
        return {(str(o.tunnel_ip), vtep_mac(o.name)) for o in self.vxlan_peers(node)}

    def vxlan_fdb(self, node: Node) -> set[tuple[str, str, bool, bool]]:
        """(mac, dst, NTF_SELF, NUD_PERMANENT) per remote VTEP."""
        return {(vtep_mac(o.name), str(o.ip), True, True) for o in self.vxlan_peers(node)}

    # -- BGP sessions (§4.3, §4.4) -------------------------------------------------------------------
    def sessions(self, node: Node) -> set[tuple[str, str]]:
        """(peer address, calicoctl peer type) of every BGP session `node`'s BIRD should have."""
        if not self.bgp:
            return set()
        found: dict[str, str] = {}
        if self.mesh and node.rr_cluster_id is None:
            for other in self.nodes:
                if other is not node and other.rr_cluster_id is None:
                    found[str(other.ip)] = "node-to-node mesh"
        for peer in self.peers:
            if peer.node is None and peer.node_selector is None:
                targets = self.nodes                      # global peer
                kind = "global"
            else:
                targets = [n for n in self.nodes if (peer.node == n.name if peer.node
                                                     else selects(peer.node_selector, n.labels))]
                kind = "node specific"
            remote = ([str(peer.peer_ip)] if peer.peer_ip else
                      [str(n.ip) for n in self.nodes if selects(peer.peer_selector, n.labels)])
            if node in targets:
                for ip in remote:
                    if ip != str(node.ip):
                        found.setdefault(ip, kind)
            # automatic reverse peering: a selected Calico node peers back with every selecting node
            if peer.peer_selector is not None and str(node.ip) in remote:
                for other in targets:
                    if other is not node:
                        found.setdefault(str(other.ip), "node specific")
        return set(found.items())

    def session_pairs(self) -> set[frozenset[str]]:
        return {frozenset((str(n.ip), ip)) for n in self.nodes for ip, _ in self.sessions(n)}


# -- loading ---------------------------------------------------------------------------------------------
def _key(doc: dict) -> tuple[str, str]:
    return doc.get("kind"), (doc.get("metadata") or {}).get("name")


def _documents(data: dict, base: Path) -> list[dict]:
    docs = []
    for item in data.get("resources", []) or []:
        if isinstance(item, dict) and set(item) == {"file"}:
            docs += [d for d in yaml.safe_load_all((base / item["file"]).read_text()) if d]
        else:
            docs.append(item)
    return docs


def _pool(doc: dict) -> Pool:
    spec = doc.get("spec") or {}
    return Pool(name=doc["metadata"]["name"], cidr=IPv4Network(spec["cidr"]), block_size=int(spec.get("blockSize", 26)),
                ipip=spec.get("ipipMode", "Never"), vxlan=spec.get("vxlanMode", "Never"),
                node_selector=spec.get("nodeSelector", "all()"), disabled=bool(spec.get("disabled", False)))


def load(path: Path, applied: list[dict] = (), deleted: list[tuple[str, str]] = (),
         label_edits: dict[str, dict[str, str | None]] | None = None,
         held: dict[str, IPv4Address] | None = None) -> Expected:
    """Expectations for the topology at `path`, optionally after live changes: manifests `applied`
    (replacing resources of the same kind and name), resources `deleted` by (kind, name), node label
    edits (None removes a label) and pod addresses already `held` (pods keep them across changes)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    docs = [d for d in _documents(data, path.parent) if _key(d) not in set(deleted)]
    for doc in applied:
        docs = [d for d in docs if _key(d) != _key(doc)] + [copy.deepcopy(doc)]
    calico_docs = [d for d in docs if isinstance(d, dict) and d.get("apiVersion") == API]
    settings = (data["cluster"].get("calico") or {})
    backend = settings.get("backend", "bird")

    pools = [_pool(d) for d in calico_docs if d["kind"] == "IPPool"]
    if not pools:
        spec = dict(DEFAULT_POOL)
        for env, key in ENV_KEYS.items():
            if env in (settings.get("env") or {}):
                spec[key] = settings["env"][env]
        pools = [_pool({"metadata": {"name": "default-ipv4-ippool"}, "spec": spec})]

    bgpconf = next((d.get("spec") or {} for d in calico_docs if d["kind"] == "BGPConfiguration"), {})
    mesh = bgpconf.get("nodeToNodeMeshEnabled", True)
    as_number = int(bgpconf.get("asNumber", DEFAULT_AS))
    peers = [Peer(d["metadata"]["name"], IPv4Address(str((d["spec"]).get("peerIP")).split(":")[0])
                  if d["spec"].get("peerIP") else None, d["spec"].get("asNumber"), d["spec"].get("node"),
                  d["spec"].get("nodeSelector"), d["spec"].get("peerSelector"))
             for d in calico_docs if d["kind"] == "BGPPeer"]
    calico_nodes = {d["metadata"]["name"]: d for d in calico_docs if d["kind"] == "Node"}

    networks = {n["name"]: n for n in data["networks"]}
    nodes: list[Node] = []
    for entry in data["nodes"]:
        net = networks[entry.get("network", data["networks"][0]["name"])]
        cidr = IPv4Network(net["cidr"])
        gateway = IPv4Address(net.get("gateway", str(cidr.network_address + 1)))
        labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
        resource = calico_nodes.get(entry["name"])
        labels.update({str(k): str(v) for k, v in ((resource or {}).get("metadata", {}).get("labels") or {}).items()})
        for key, value in ((label_edits or {}).get(entry["name"]) or {}).items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        bgp = ((resource or {}).get("spec") or {}).get("bgp") or {}
        iface = ipaddress.IPv4Interface(bgp.get("ipv4Address", f"{entry['ip']}/{cidr.prefixlen}"))
        node = Node(name=entry["name"], ip=IPv4Address(entry["ip"]), network=net["name"], cidr=cidr, gateway=gateway,
                    host_mtu=net.get("mtu", 1500), labels=labels, bgp_network=iface.network,
                    as_number=bgp.get("asNumber"), rr_cluster_id=bgp.get("routeReflectorClusterID"),
                    pod_cidr=IPv4Network(entry["podCIDR"]) if "podCIDR" in entry else None)
        node.pool = next((p for p in pools if not p.disabled and selects(p.node_selector, node.labels)), None)
        nodes.append(node)
    by_name = {n.name: n for n in nodes}

    pods = [Pod(p.get("namespace", "default"), p["name"], p["node"],
                IPv4Address(p["ip"]) if "ip" in p else None) for p in data.get("pods", []) or []]
    pods += [Pod((d.get("metadata") or {}).get("namespace", "default"), d["metadata"]["name"], d["spec"]["nodeName"])
             for d in docs if isinstance(d, dict) and d.get("kind") == "Pod" and d.get("apiVersion") == "v1"]
    for pod in pods:
        if pod.ip is None and held and pod.key in held:
            pod.ip = IPv4Address(held[pod.key])
        by_name[pod.node].pods.append(pod)
    _allocate(nodes, pools)
    return Expected(lab=data["name"], backend=backend, pools=pools, nodes=nodes, mesh=mesh, as_number=as_number,
                    peers=peers)


def _allocate(nodes: list[Node], pools: list[Pool]) -> None:
    """Blocks (podCIDR first, then the lowest free in node order), fixed pod addresses, the tunnel
    address, then the other pods, each taking the lowest free ordinal (a full block claims another)."""
    owned = {n.pod_cidr for n in nodes if n.pod_cidr is not None}

    def free_block(pool: Pool) -> IPv4Network:
        block = next(b for b in pool.cidr.subnets(new_prefix=pool.block_size) if b not in owned)
        owned.add(block)
        return block

    for node in nodes:
        if node.pod_cidr is not None:
            node.blocks.append(node.pod_cidr)
    for node in nodes:
        if node.pod_cidr is None and node.pool is not None:
            node.blocks.append(free_block(node.pool))
    for node in nodes:
        taken = {p.ip for p in node.pods if p.ip is not None}

        def lowest(node: Node = node, taken: set[IPv4Address] = taken) -> IPv4Address:
            while True:
                for block in node.blocks:
                    for i in range(block.num_addresses):
                        ip = block.network_address + i
                        if ip not in taken:
                            taken.add(ip)
                            return ip
                node.blocks.append(free_block(node.pool))

        if node.pool is not None and node.pool.encapsulated:
            node.tunnel_ip = lowest()
        for pod in node.pods:
            if pod.ip is None:
                pod.ip = lowest()


def renamed(path: Path, name: str, target: Path) -> Path:
    """A copy of a topology under another lab name (so tests never collide with labs others run)."""
    text = re.sub(r"(?m)^name:.*$", f"name: {name}", Path(path).read_text(), count=1)
    target.write_text(text)
    return target
