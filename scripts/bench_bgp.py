#!/usr/bin/env python3
"""Benchmark Calico BGP (BIRD 1.6 + the lab's route agent) on generated labs of N nodes.

Two variants per N: `mesh` (the node-to-node full mesh) and `rr` (mesh off; the first two nodes
are route reflectors with cluster ID 244.0.0.1, every node peers with them through a BGPPeer).
Every lab has one underlay segment (a /24, or 192.168.0.0/16 above 200 nodes), the pool
10.244.0.0/16 with /26 blocks and no encapsulation, and one pod per node.

For each (variant, N) it measures, as a user would see them:
  up          `lab up` itself
  converged   from starting `lab up` until every node's main table holds every other node's block
              as a unicast `proto bird` route (one filtered netlink route dump per node namespace
              per poll; polling starts when `lab up` returns: BIRD only connects after it starts)
  sessions    BGP protocols Established, in total (of those configured) and per node (min-max),
              from each node's `show protocols` on its BIRD control socket
  routes      `proto bird` routes in each node's main table (the blocks plus its own blackhole)
  RSS         VmRSS of every bird (avg/max) and of the lab's route agent, after convergence
  withdraw    SIGTERM to one non-reflector node's bird until its block has left every other node's
              main table
  re-learn    restarting that bird (as `lab up` starts it) until its block is back everywhere
  down        `lab down`, then leftovers: namespaces with the lab's prefix, bird and route-agent
              processes of the lab, /run/lab/<lab>
It also checks each converged route's next hop (the owning node's address) and reports the route
agent's write errors. MB here are MiB. Targets: the 100-node full mesh converged within 30 s; at
most 5 MB RSS per bird.

Usage (as root): .venv/bin/python scripts/bench_bgp.py [--nodes 3,10,50,100] [--variants mesh,rr]
                                                  [--large] [--interval 0.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from lab.bgp import birdc
from lab.bgp.daemons import NodePaths, start_birds, stop_bird
from lab.netns import namespace
from lab.topology import loader

LAB = [sys.executable, "-m", "lab.cli"]
LAB_PREFIX = "bgpbench"
DEFAULT_NODES = "3,10,50,100"
LARGE_NODES = (150, 200)
VARIANTS = ("mesh", "rr")
REFLECTORS = 2
RR_CLUSTER_ID = "244.0.0.1"
STATE_ROOT = "/run/lab"
TARGET_MESH_NODES = 100
TARGET_CONVERGED_S = 30.0
TARGET_BIRD_RSS_MB = 5.0
MEMORY_PER_NODE_MB = 24          # generous: a node namespace + bird + one pod namespace, for --large
MEMORY_RESERVE_MB = 2048

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
    path: Path
    node_names: tuple[str, ...]
    node_ips: dict[str, str]
    blocks: dict[str, tuple[RouteKey, ...]]

    def netns(self, node: str) -> str:
        return f"{self.lab}.{node}"

    def paths(self, node: str) -> NodePaths:
        return NodePaths(os.path.join(STATE_ROOT, self.lab, "files", node))

    def victim(self) -> str:
        """The node whose BIRD is stopped and restarted: the last one, never a reflector."""
        return self.node_names[-1]


@dataclass
class Result:
    """Everything measured for one scenario; None where a step timed out or did not run."""

    variant: str
    nodes: int
    sessions_established: int = 0
    sessions_configured: int = 0
    sessions_per_node: tuple[int, int] = (0, 0)
    up_s: float | None = None
    converged_s: float | None = None
    routes_per_node: tuple[int, int] = (0, 0)
    bird_rss_mb: tuple[float, float] | None = None
    agent_rss_mb: float | None = None
    withdraw_s: float | None = None
    relearn_s: float | None = None
    down_s: float | None = None
    leftovers: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
    topology = loader.load(str(path))
    blocks = topology.cluster.calico.ipam.blocks
    return Scenario(variant=variant, nodes=nodes, lab=lab, path=path,
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
        self.sockets = dict(zip(nodes, sockets))
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
            return json.load(handle)["summary"]["runtime"]["route_agent"]["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def agent_write_errors(lab: str) -> int | None:
    """The route agent's write errors over all nodes, from its stats file."""
    try:
        with open(os.path.join(STATE_ROOT, lab, "routeagent-stats.json"), encoding="utf-8") as handle:
            stats = json.load(handle)
        return sum(node.get("write_errors", 0) for node in stats["nodes"].values())
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
        elif b"lab.bgp.routeagent" in argv:
            found["agent"].append(int(entry))
    return found


def leftovers(lab: str) -> dict[str, int]:
    """What `lab down` left: namespaces with the lab's prefix, bird/agent processes, the state directory."""
    processes = lab_processes(lab)
    return {"namespaces": sum(1 for n in namespace.list_all() if n.startswith(f"{lab}.")),
            "bird": len(processes["bird"]), "agent": len(processes["agent"]),
            "state_dir": int(os.path.exists(os.path.join(STATE_ROOT, lab)))}


# -- the lab CLI -----------------------------------------------------------------------------------
def run_lab(args: list[str], timeout: float) -> float:
    """Run `lab <args>`; returns its seconds. On Ctrl-C the child (which got the SIGINT too) may roll back."""
    argv = LAB + args
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except BaseException:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({process.returncode}):\n{out}{err}")
    return elapsed


def lab_down(lab: str) -> float:
    return run_lab(["down", lab], timeout=300)


def ensure_down(lab: str) -> None:
    """Bring the lab down if anything of it remains; never raises (used in `finally`)."""
    if not any(leftovers(lab).values()):
        return
    try:
        lab_down(lab)
    except BaseException as exc:  # noqa: BLE001 - best effort; the caller is already unwinding
        print(f"bench_bgp: `lab down {lab}` failed: {exc}", file=sys.stderr)


# -- one scenario ------------------------------------------------------------------------------------
def measure_convergence(scenario: Scenario, watcher: RouteWatcher, origin: float, args: argparse.Namespace,
                        result: Result) -> None:
    """Converged time, then sessions, routes, RSS and route checks at steady state."""
    others = {node: [o for o in scenario.node_names if o != node] for node in scenario.node_names}
    result.converged_s = wait_for(watcher, list(scenario.node_names), has_blocks(scenario, others.__getitem__),
                                  origin, args.timeout, args.interval)
    if result.converged_s is None:
        result.notes.append(f"not converged within {args.timeout:.0f} s")
    established, configured = wait_sessions(scenario, timeout=30.0)
    result.sessions_established = sum(established.values())
    result.sessions_configured = configured
    result.sessions_per_node = (min(established.values()), max(established.values()))
    result.routes_per_node = routes_per_node(scenario, watcher)
    result.bird_rss_mb = bird_rss(scenario)
    pid = agent_pid(scenario.lab)
    result.agent_rss_mb = vm_rss_mb(pid) if pid else None
    problems = route_problems(scenario, watcher)
    if problems:
        result.notes.append(f"{len(problems)} unexpected routes, e.g. " + "; ".join(problems[:3]))
    errors = agent_write_errors(scenario.lab)
    if errors:
        result.notes.append(f"route agent reports {errors} write errors (see /run/lab/{scenario.lab}/routeagent.log)")


def measure_reconvergence(scenario: Scenario, watcher: RouteWatcher, args: argparse.Namespace,
                          result: Result) -> None:
    """Stop the victim's bird until its block is withdrawn everywhere; restart it until it is back."""
    victim = scenario.victim()
    paths = scenario.paths(victim)
    others = [node for node in scenario.node_names if node != victim]
    start = time.perf_counter()
    if stop_bird(paths) is None:
        raise RuntimeError(f"no running bird behind {paths.pid_file}")
    result.withdraw_s = wait_for(watcher, others, lacks_blocks(scenario, victim), start, args.timeout, args.interval)
    if result.withdraw_s is None:
        result.notes.append(f"{victim}'s block still present somewhere {args.timeout:.0f} s after SIGTERM")
    start = time.perf_counter()
    start_birds({victim: (scenario.netns(victim), paths)})
    result.relearn_s = wait_for(watcher, others, has_blocks(scenario, lambda _: [victim]), start, args.timeout,
                                args.interval)
    if result.relearn_s is None:
        result.notes.append(f"{victim}'s block not back everywhere {args.timeout:.0f} s after restarting bird")


def bench(scenario: Scenario, args: argparse.Namespace) -> Result:
    """Up, converge, measure, reconverge, down; the lab is brought down whatever happens."""
    result = Result(variant=scenario.variant, nodes=scenario.nodes)
    ensure_down(scenario.lab)  # a previous, interrupted run
    watcher: RouteWatcher | None = None
    try:
        origin = time.perf_counter()
        result.up_s = run_lab(["up", "--no-wait", str(scenario.path)], timeout=600)
        watcher = RouteWatcher({node: scenario.netns(node) for node in scenario.node_names})
        measure_convergence(scenario, watcher, origin, args, result)
        measure_reconvergence(scenario, watcher, args, result)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        result.notes.append(f"aborted: {exc}")
    finally:
        if watcher is not None:
            watcher.close()  # before `lab down`: an open socket keeps its namespace alive
        try:
            result.down_s = lab_down(scenario.lab)
        except RuntimeError as exc:
            result.notes.append(f"lab down failed: {exc}")
        finally:
            result.leftovers = leftovers(scenario.lab)
            ensure_down(scenario.lab)
    return result


# -- output ----------------------------------------------------------------------------------------
COLUMNS = ["nodes", "variant", "sessions total", "sessions/node min–max", "up (s)", "converged (s)", "routes/node",
           "bird RSS avg/max (MB)", "agent RSS (MB)", "withdraw (s)", "re-learn (s)", "down (s)", "leftovers"]


def seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f}"


def span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def row_cells(r: Result) -> list[str]:
    left = ", ".join(f"{k}={v}" for k, v in r.leftovers.items() if v) or "none"
    rss = f"{r.bird_rss_mb[0]:.2f} / {r.bird_rss_mb[1]:.2f}" if r.bird_rss_mb else "–"
    return [str(r.nodes), r.variant, f"{r.sessions_established}/{r.sessions_configured}",
            span(*r.sessions_per_node), seconds(r.up_s), seconds(r.converged_s), span(*r.routes_per_node), rss,
            f"{r.agent_rss_mb:.1f}" if r.agent_rss_mb is not None else "–", seconds(r.withdraw_s),
            seconds(r.relearn_s), seconds(r.down_s), left]


def markdown_table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def targets(results: list[Result]) -> list[str]:
    """The targets, each with its value and whether it was met."""
    lines = []
    mesh = [r for r in results if r.variant == "mesh" and r.nodes == TARGET_MESH_NODES]
    if mesh:
        converged = mesh[0].converged_s
        met = converged is not None and converged <= TARGET_CONVERGED_S
        lines.append(f"- {TARGET_MESH_NODES}-node full mesh converged within {TARGET_CONVERGED_S:.0f} s: "
                     f"{seconds(converged)} s: {'met' if met else 'MISSED'}")
    else:
        lines.append(f"- {TARGET_MESH_NODES}-node full mesh converged within {TARGET_CONVERGED_S:.0f} s: not run")
    rss = [(r.bird_rss_mb[1], r) for r in results if r.bird_rss_mb]
    if rss:
        worst, where = max(rss, key=lambda item: item[0])
        lines.append(f"- at most {TARGET_BIRD_RSS_MB:.0f} MB RSS per node (bird): max {worst:.2f} MB "
                     f"({where.variant}, {where.nodes} nodes): {'met' if worst <= TARGET_BIRD_RSS_MB else 'MISSED'}")
    return lines


def notes(results: list[Result]) -> Iterator[str]:
    for r in results:
        for note in r.notes:
            yield f"- {r.variant} {r.nodes}: {note}"


# -- main --------------------------------------------------------------------------------------------
def node_counts(text: str, large: bool) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if any(n < 3 for n in counts):
        raise SystemExit("bench_bgp: every N must be at least 3 (the rr variant needs a client besides 2 reflectors)")
    return counts + [n for n in LARGE_NODES if large and n not in counts]


def memory_allows(nodes: int) -> bool:
    """Whether MemAvailable covers a lab of `nodes` nodes with a reserve to spare."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        available = next(int(line.split()[1]) for line in handle if line.startswith("MemAvailable:")) / 1024
    return available >= MEMORY_RESERVE_MB + nodes * MEMORY_PER_NODE_MB


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default=DEFAULT_NODES, help=f"comma-separated node counts (default {DEFAULT_NODES})")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: mesh, rr (default both)")
    parser.add_argument("--large", action="store_true", help=f"also run {', '.join(map(str, LARGE_NODES))} nodes "
                        "(each only if memory allows)")
    parser.add_argument("--interval", type=float, default=0.1, help="route poll interval in seconds (default 0.1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each convergence")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    args.nodes = node_counts(args.nodes, args.large)
    return args


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_bgp: run as root (a root shell, or sudo); it builds labs in network namespaces")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: labs come down
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bgp-") as tmp:
            for nodes in args.nodes:
                if nodes in LARGE_NODES and not memory_allows(nodes):
                    print(f"bench_bgp: skipping {nodes} nodes: not enough memory available", file=sys.stderr)
                    continue
                for variant in args.variants:
                    result = bench(make_scenario(variant, nodes, Path(tmp)), args)
                    results.append(result)
                    print("  " + " | ".join(row_cells(result)), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench_bgp: interrupted; labs were brought down", file=sys.stderr)
    print(markdown_table(results))
    print()
    print("Targets:")
    print("\n".join(targets(results)))
    found = list(notes(results))
    if found:
        print()
        print("Notes:")
        print("\n".join(found))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if results and not found else 1


if __name__ == "__main__":
    sys.exit(main())
