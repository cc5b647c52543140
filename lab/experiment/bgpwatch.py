"""Calico BGP convergence, watched from inside the lab: generated mesh/RR topologies of N nodes,
one netlink route dump per node namespace per poll, BIRD sessions and memory.

Shared by the bgp-convergence measurement kind (lab/experiment/kinds/bgp_convergence.py) and
scripts/bench_bgp.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from lab.bgp import birdc
from lab.bgp.daemons import AGENT_MODULE, BirdPaths
from lab.cni.calico import config as calico_config
from lab.cni.calico import layout
from lab.netns import namespace
from lab.topology import loader
from lab.topology.model import Topology

LAB_PREFIX = "bgpbench"
VARIANTS = ("mesh", "rr")
REFLECTORS = 2
RR_CLUSTER_ID = "244.0.0.1"
STATE_ROOT = "/run/lab"


# netlink (linux/netlink.h, linux/rtnetlink.h)
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 9, 15
RT_TABLE_MAIN = 254
RTPROT_BIRD = 12
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
HEADER = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
NLA = struct.Struct("=HH")
RTNEXTHOP = struct.Struct("=HBBi")
U32 = struct.Struct("=I")
RECV_SIZE = 1 << 20

RouteKey = tuple[bytes, int]     # destination address (4 bytes), prefix length


class RouteView(NamedTuple):
    """A `proto bird` route of a main table: its type and its next hop(s)."""

    kind: int
    gateways: tuple[bytes, ...]
    multipath: bool


@dataclass(frozen=True)
class Scenario:
    """One generated lab: its variant, size, name, file, and the blocks and addresses of its nodes."""

    variant: str
    nodes: int
    lab: str
    path: Path | None
    node_names: tuple[str, ...]
    node_ips: dict[str, str]
    blocks: dict[str, tuple[RouteKey, ...]]

    def netns(self, node: str) -> str:
        return f"{self.lab}.{node}"

    def paths(self, node: str) -> BirdPaths:
        return layout.node_paths(os.path.join(STATE_ROOT, self.lab, "files", node))

    def victim(self) -> str:
        """The node whose BIRD is stopped and restarted: the last one, never a reflector."""
        return self.node_names[-1]



# -- topology generation ------------------------------------------------------------------------
def node_name(index: int) -> str:
    return f"node{index:03d}"


def underlay(nodes: int) -> tuple[str, str, Callable[[int], str], int]:
    """(cidr, gateway, address of node i, prefix length): a /24 up to 200 nodes, else a /16."""
    if nodes > 200:
        return "192.168.0.0/16", "192.168.0.1", lambda i: f"192.168.{1 + i // 250}.{1 + i % 250}", 16
    return "192.168.10.0/24", "192.168.10.1", lambda i: f"192.168.10.{10 + i}", 24


def topology_yaml(lab: str, nodes: int, variant: str) -> str:
    """A Calico BGP (no encapsulation) topology of `nodes` nodes with one pod each."""
    cidr, gateway, address, prefix = underlay(nodes)
    reflectors = REFLECTORS if variant == "rr" else 0
    lines = [f"name: {lab}", f"description: bench_bgp {variant} with {nodes} nodes", "cluster: {cni: calico}",
             "networks:", f"  - {{name: lan, cidr: {cidr}, gateway: {gateway}}}", "nodes:"]
    for i in range(nodes):
        labels = ", labels: {route-reflector: \"true\"}" if i < reflectors else ""
        lines.append(f"  - {{name: {node_name(i)}, ip: {address(i)}{labels}}}")
    lines.append("pods:")
    lines += [f"  - {{name: p{i:03d}, node: {node_name(i)}}}" for i in range(nodes)]
    lines += ["resources:",
              "  - apiVersion: projectcalico.org/v3",
              "    kind: IPPool",
              "    metadata: {name: default-ipv4-ippool}",
              "    spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never, "
              "natOutgoing: true, nodeSelector: all()}"]
    if variant == "rr":
        lines += ["  - apiVersion: projectcalico.org/v3",
                  "    kind: BGPConfiguration",
                  "    metadata: {name: default}",
                  "    spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}"]
        for i in range(reflectors):
            lines += ["  - apiVersion: projectcalico.org/v3",
                      "    kind: Node",
                      f"    metadata: {{name: {node_name(i)}}}",
                      f"    spec: {{bgp: {{ipv4Address: {address(i)}/{prefix}, "
                      f"routeReflectorClusterID: {RR_CLUSTER_ID}}}}}"]
        lines += ["  - apiVersion: projectcalico.org/v3",
                  "    kind: BGPPeer",
                  "    metadata: {name: peer-with-route-reflectors}",
                  "    spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}"]
    return "\n".join(lines) + "\n"


def make_scenario(variant: str, nodes: int, workdir: Path) -> Scenario:
    """Write the topology and read back (with the lab's own loader) each node's address and blocks."""
    lab = f"{LAB_PREFIX}-{variant}-{nodes}"
    path = workdir / f"{lab}.yaml"
    path.write_text(topology_yaml(lab, nodes, variant))
    return scenario_from(loader.load(str(path)), lab, variant, path)


def scenario_from(topology: Topology, lab: str, variant: str, path: Path | None) -> Scenario:
    """A Calico topology brought up as `lab`: each node's address and blocks, from the model."""
    calico = calico_config.find(topology)
    if calico is None:
        raise ValueError(f"topology {topology.name} is not a Calico topology")
    blocks = calico.ipam.blocks
    return Scenario(variant=variant, nodes=len(topology.nodes), lab=lab, path=path,
                    node_names=tuple(n.name for n in topology.nodes),
                    node_ips={n.name: str(n.ip) for n in topology.nodes},
                    blocks={n.name: tuple((b.network_address.packed, b.prefixlen) for b in blocks.get(n.name, ()))
                            for n in topology.nodes})


# -- netlink route dumps ------------------------------------------------------------------------
def open_route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's namespace, with strict dump checking."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    except OSError:
        pass  # older kernels: the dump is unfiltered, and parse_routes filters instead
    sock.bind((0, 0))
    sock.settimeout(5.0)
    return sock


def dump_request(seq: int) -> bytes:
    """RTM_GETROUTE dump of IPv4 routes, asking the kernel for table main and protocol bird only."""
    body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BIRD, 0, 0, 0)
    return HEADER.pack(HEADER.size + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    """Netlink attributes between `offset` and `end`: type -> payload."""
    found: dict[int, bytes] = {}
    while offset + NLA.size <= end:
        length, kind = NLA.unpack_from(data, offset)
        if length < NLA.size:
            break
        found[kind & 0x3FFF] = data[offset + NLA.size:offset + length]
        offset += (length + 3) & ~3
    return found


def nexthop_gateways(payload: bytes) -> tuple[bytes, ...]:
    """The gateways of an RTA_MULTIPATH attribute."""
    gateways = []
    offset = 0
    while offset + RTNEXTHOP.size <= len(payload):
        length = RTNEXTHOP.unpack_from(payload, offset)[0]
        if length < RTNEXTHOP.size:
            break
        gateway = attributes(payload, offset + RTNEXTHOP.size, offset + length).get(RTA_GATEWAY)
        if gateway:
            gateways.append(gateway)
        offset += (length + 3) & ~3
    return tuple(gateways)


def parse_routes(data: bytes, routes: dict[RouteKey, RouteView]) -> bool:
    """Add the main-table `proto bird` routes of one datagram to `routes`; True once the dump is done."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, msg_type, _flags, _seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return True
        body_start, end = offset + HEADER.size, offset + length
        offset += (length + 3) & ~3
        if msg_type == NLMSG_DONE:
            return True
        if msg_type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, body_start)[0]
            if code:
                raise OSError(code, f"route dump: {os.strerror(code)}")
            continue
        if msg_type != RTM_NEWROUTE:
            continue
        family, dst_len, _src, _tos, table, protocol, _scope, kind, _fl = RTMSG.unpack_from(data, body_start)
        if family != socket.AF_INET or protocol != RTPROT_BIRD:
            continue
        attrs = attributes(data, body_start + RTMSG.size, end)
        if RTA_TABLE in attrs:
            table = U32.unpack(attrs[RTA_TABLE])[0]
        if table != RT_TABLE_MAIN:
            continue
        multipath = RTA_MULTIPATH in attrs
        gateways = nexthop_gateways(attrs[RTA_MULTIPATH]) if multipath else (
            (attrs[RTA_GATEWAY],) if RTA_GATEWAY in attrs else ())
        routes[(attrs.get(RTA_DST, b"\0\0\0\0"), dst_len)] = RouteView(kind, gateways, multipath)
    return False


class RouteWatcher:
    """One netlink socket per node namespace, opened once; each `routes` call is one dump."""

    def __init__(self, netns_by_node: dict[str, str]) -> None:
        nodes = list(netns_by_node)
        sockets = namespace.run_in_each([netns_by_node[n] for n in nodes], lambda _: open_route_socket())
        self.sockets = dict(zip(nodes, sockets, strict=False))
        self.seq = 0

    def routes(self, node: str) -> dict[RouteKey, RouteView]:
        """The node's main-table `proto bird` routes, now."""
        sock = self.sockets[node]
        self.seq += 1
        sock.send(dump_request(self.seq))
        found: dict[RouteKey, RouteView] = {}
        while not parse_routes(sock.recv(RECV_SIZE), found):
            pass
        return found

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


NodeCheck = Callable[[str, dict[RouteKey, RouteView]], bool]


def wait_for(watcher: RouteWatcher, nodes: list[str], check: NodeCheck, origin: float, timeout: float,
             interval: float) -> float | None:
    """Seconds from `origin` until `check` holds on every node in one pass, or None after `timeout`.

    Each poll dumps nodes starting at the one that failed last and stops at the first failure, so
    waiting costs one dump per poll; success needs every node to pass within a single poll.
    """
    start = 0
    while True:
        polled = time.perf_counter()
        for step in range(len(nodes)):
            index = (start + step) % len(nodes)
            if not check(nodes[index], watcher.routes(nodes[index])):
                start = index
                break
        else:
            return time.perf_counter() - origin
        if time.perf_counter() - origin > timeout:
            return None
        time.sleep(max(0.0, interval - (time.perf_counter() - polled)))


def has_blocks(scenario: Scenario, owners: Callable[[str], list[str]]) -> NodeCheck:
    """A check: the node has a unicast proto bird route for every block of `owners(node)`."""
    def check(node: str, routes: dict[RouteKey, RouteView]) -> bool:
        return all((view := routes.get(key)) is not None and view.kind == RTN_UNICAST
                   for owner in owners(node) for key in scenario.blocks[owner])
    return check


def lacks_blocks(scenario: Scenario, owner: str) -> NodeCheck:
    """A check: the node has no unicast proto bird route for any block of `owner`."""
    def check(node: str, routes: dict[RouteKey, RouteView]) -> bool:
        return node == owner or all(
            (view := routes.get(key)) is None or view.kind != RTN_UNICAST for key in scenario.blocks[owner])
    return check


def route_problems(scenario: Scenario, watcher: RouteWatcher) -> list[str]:
    """Converged routes that are not what Calico programs: wrong next hop, multipath, own block not blackhole."""
    problems: list[str] = []
    owner_of = {key: node for node, keys in scenario.blocks.items() for key in keys}
    for node in scenario.node_names:
        for (dst, length), view in watcher.routes(node).items():
            owner = owner_of.get((dst, length))
            text = f"{node}: {socket.inet_ntoa(dst)}/{length}"
            if owner is None:
                problems.append(f"{text}: proto bird route for no node's block")
            elif owner == node and view.kind != RTN_BLACKHOLE:
                problems.append(f"{text}: own block is type {view.kind}, not blackhole")
            elif owner != node and view.gateways != (socket.inet_aton(scenario.node_ips[owner]),):
                gateways = ", ".join(socket.inet_ntoa(g) for g in view.gateways) or "none"
                problems.append(f"{text}: via {gateways}{' (multipath)' if view.multipath else ''}, "
                                f"expected via {scenario.node_ips[owner]}")
    return problems


def routes_per_node(scenario: Scenario, watcher: RouteWatcher) -> tuple[int, int]:
    counts = [len(watcher.routes(node)) for node in scenario.node_names]
    return min(counts), max(counts)


# -- BIRD, the route agent, processes -------------------------------------------------------------
def established_counts(scenario: Scenario) -> tuple[dict[str, int], int]:
    """Established BGP sessions per node, and how many BGP protocols the nodes have in all."""
    established: dict[str, int] = {}
    configured = 0
    for node in scenario.node_names:
        try:
            states = birdc.established(scenario.paths(node).socket)
        except (OSError, birdc.BirdError):
            states = {}
        established[node] = sum(1 for state in states.values() if state == "Established")
        configured += len(states)
    return established, configured


def wait_sessions(scenario: Scenario, timeout: float) -> tuple[dict[str, int], int]:
    """Poll `show protocols` on every node until all sessions are Established, or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        established, configured = established_counts(scenario)
        if sum(established.values()) == configured or time.monotonic() > deadline:
            return established, configured
        time.sleep(0.5)


def read_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def vm_rss_mb(pid: int) -> float | None:
    """A process's VmRSS in MiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def bird_rss(scenario: Scenario) -> tuple[float, float] | None:
    """(average, maximum) VmRSS of the nodes' birds in MiB."""
    values = [rss for node in scenario.node_names
              if (pid := read_pid(scenario.paths(node).pid_file)) and (rss := vm_rss_mb(pid)) is not None]
    return (sum(values) / len(values), max(values)) if values else None


def agent_pid(lab: str) -> int | None:
    """The route agent's pid as `lab up` recorded it in the lab's state."""
    try:
        with open(os.path.join(STATE_ROOT, lab, "state.json"), encoding="utf-8") as handle:
            pid: int | None = json.load(handle)["summary"]["runtime"]["route_agent"]["pid"]
            return pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def agent_write_errors(lab: str) -> int | None:
    """The route agent's write errors over all nodes, from its stats file."""
    try:
        with open(os.path.join(STATE_ROOT, lab, "routeagent-stats.json"), encoding="utf-8") as handle:
            stats = json.load(handle)
        errors: int = sum(node.get("write_errors", 0) for node in stats["nodes"].values())
        return errors
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def lab_processes(lab: str) -> dict[str, list[int]]:
    """The lab's bird and route-agent processes, found by their command lines (namespaces may be gone)."""
    marker = f"{STATE_ROOT}/{lab}/".encode()
    found: dict[str, list[int]] = {"bird": [], "agent": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if marker not in b" ".join(argv) or not alive(int(entry)):
            continue
        if os.path.basename(argv[0]) == b"bird":
            found["bird"].append(int(entry))
        elif AGENT_MODULE.encode() in argv:
            found["agent"].append(int(entry))
    return found


def leftovers(lab: str) -> dict[str, int]:
    """What `lab down` left: namespaces with the lab's prefix, bird/agent processes, the state directory."""
    processes = lab_processes(lab)
    return {"namespaces": sum(1 for n in namespace.list_all() if n.startswith(f"{lab}.")),
            "bird": len(processes["bird"]), "agent": len(processes["agent"]),
            "state_dir": int(os.path.exists(os.path.join(STATE_ROOT, lab)))}


