"""The route agent: plays the part of Calico's BIRD fork for stock BIRD 1.6, once per lab.

Each node's BIRD exports its routes into kernel table `table` (protocol bird). The agent mirrors
them into the node's main table as Calico's fork would program them (`via <node> dev tunl0
onlink` for IPIP), copies the main table's alien routes into `table` for BIRD's `learn`, and,
for nodes whose tunnel device is a TUN device, carries IPIP in userspace ("userspace") or holds
the device open so that it has carrier while the lab's eBPF programs carry IPIP ("ebpf"). With
"table": null (flannel's ipip backend) it mirrors nothing and only serves the tunnels.

    python -m lab.cni.routeagent <spec.json>

Spec: {"lab": "x", "table": 201 | null, "log": "agent.log", "stats": "agent-stats.json",
       "ready": "agent.ready", "nodes": [{"name": "n1", "netns": "x.n1",
       "tunnel": "userspace" | "ebpf" | "kernel" | null, "device": "tunl0"}]}

SIGHUP re-reads the spec and reconciles again; SIGTERM/SIGINT exit and leave the kernel as is.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.bgp.channel import Channel, Overrun
from lab.bgp.route import Key, Route, link_dump_request, parse_link, route_dump_request
from lab.cni.calico.devices import IPIP_DEVICE as TUNNEL_DEVICE  # a spec entry's default device
from lab.cni.calico.mirror import Mirror
from lab.cni.tunnel import Counters, Holder, Tunnel, Verdict
from lab.netns import namespace
from lab.netns.rtnl import (
    RT_TABLE_COMPAT,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)

VERDICT_CACHE = 4096
TICK = 1.0
IMPLEMENTATIONS = {"userspace": "userspace-tun", "ebpf": "ebpf", "kernel": "kernel-ipip", None: "none"}
SERVED = ("userspace", "ebpf")   # tunnels whose TUN device the agent opens


@dataclass(frozen=True)
class NodeSpec:
    name: str
    netns: str
    tunnel: str | None
    device: str = TUNNEL_DEVICE


@dataclass(frozen=True)
class Spec:
    """The agent's spec file."""

    lab: str
    table: int | None     # None: no BIRD table to mirror, only tunnels to serve
    log: str
    stats: str
    ready: str
    nodes: tuple[NodeSpec, ...]

    @classmethod
    def load(cls, path: str) -> Spec:
        """Read and check the spec; ValueError says what is wrong."""
        with open(path) as handle:
            data = json.load(handle)
        try:
            table = None if data["table"] is None else int(data["table"])
            nodes = tuple(NodeSpec(str(n["name"]), str(n["netns"]), n.get("tunnel"),
                                   str(n.get("device", TUNNEL_DEVICE))) for n in data["nodes"])
            spec = cls(str(data["lab"]), table, str(data["log"]), str(data["stats"]), str(data["ready"]), nodes)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: bad spec ({type(exc).__name__}: {exc})") from None
        if table is not None and (not 0 < table < 2 ** 32 or table in (RT_TABLE_COMPAT, 253, RT_TABLE_MAIN, 255)):
            raise ValueError(f"{path}: table {table} is reserved or out of range")
        for node in nodes:
            if node.tunnel not in IMPLEMENTATIONS:
                raise ValueError(f"{path}: node {node.name}: tunnel must be userspace, ebpf, kernel or null")
        if len({node.name for node in nodes}) != len(nodes):
            raise ValueError(f"{path}: node names repeat")
        return spec


@dataclass
class Handles:
    """What a node's namespace gave: its inode, netlink socket and, for userspace IPIP, tunl0 and a raw socket
    (for eBPF IPIP, tunl0 alone)."""

    inode: int
    channel: Channel
    tunnel: tuple[int, socket.socket, int] | None = None
    tunnel_error: str | None = None


def open_in_namespace(spec: NodeSpec) -> Handles:
    """Open a node's sockets; the calling thread must be inside `spec.netns`."""
    inode = os.stat(namespace.path(spec.netns)).st_ino
    handles = Handles(inode, Channel.open())
    if spec.tunnel in SERVED:
        try:
            handles.tunnel = open_tunnel(spec)
        except OSError as exc:
            handles.tunnel_error = str(exc)
    return handles


def open_tunnel(spec: NodeSpec) -> tuple[int, socket.socket, int]:
    """The node's TUN device (and for userspace IPIP the raw socket), in the calling thread's namespace."""
    return Tunnel.open_here(spec.device) if spec.tunnel == "userspace" else Holder.open_here(spec.device)


def open_all(specs: list[NodeSpec]) -> dict[str, Handles | BaseException]:
    """Open every node's handles on one helper thread that visits each namespace in turn."""
    results: dict[str, Handles | BaseException] = {}

    def worker() -> None:
        for spec in specs:
            try:
                with namespace.entered(spec.netns):
                    results[spec.name] = open_in_namespace(spec)
            except Exception as exc:  # reported per node
                results[spec.name] = exc

    thread = threading.Thread(target=worker, name="routeagent-open")
    thread.start()
    thread.join()
    return results


class Log:
    """Timestamped lines appended to the agent's log file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.handle = open(path, "a", buffering=1)

    def __call__(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        self.handle.write(f"{stamp} {text}\n")

    def reopen(self, path: str) -> None:
        self.handle.close()
        self.path = path
        self.handle = open(path, "a", buffering=1)

    def close(self) -> None:
        self.handle.close()


class Node:
    """One node: its netlink channel, its mirror state and, for userspace IPIP, its tunnel."""

    def __init__(self, spec: NodeSpec, table: int | None, handles: Handles, log: Log, counters: Counters) -> None:
        self.spec, self.log, self.counters = spec, log, counters
        self.inode = handles.inode
        self.channel = handles.channel
        self.mirroring = table is not None
        self.mirror = Mirror(table if table is not None else 0)
        self.links: dict[int, tuple[str, bool]] = {}
        self.verdicts: dict[bytes, Verdict] = {}
        self.failed: set[Key] = set()
        self.errors = 0
        self.resync: str | None = None    # reconcile at the end of this loop turn, for this reason
        self.deferred: str | None = None  # reconcile at the next tick (a reconcile just failed)
        self.tunnel: Tunnel | Holder | None = None
        self.tunnel_error = handles.tunnel_error
        if handles.tunnel:
            self.tunnel = self._served(handles.tunnel)

    @property
    def name(self) -> str:
        return self.spec.name

    def _served(self, opened: tuple[int, socket.socket, int]) -> Tunnel | Holder:
        tun_fd, raw, index = opened
        if self.spec.tunnel == "ebpf":
            return Holder(tun_fd, raw, index, self.counters)
        return Tunnel(tun_fd, raw, index, self.resolve, self.counters)

    def device(self, index: int) -> str:
        return self.links.get(index, (f"if{index}", False))[0]

    def close(self) -> None:
        if self.tunnel:
            self.tunnel.close()
            self.tunnel = None
        self.channel.close()

    # -- reconcile --------------------------------------------------------------------------

    def reconcile(self, reason: str) -> None:
        """Dump links and routes, rebuild the state, and write whatever differs; one log line."""
        started = time.perf_counter()
        self.resync = None
        problem = "the tables kept changing during the dump"
        for _attempt in range(5):
            try:
                links, links_cut = self.channel.dump(link_dump_request)
                routes, routes_cut = self.channel.dump(route_dump_request)
            except (Overrun, TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
                continue
            if not (links_cut or routes_cut):
                break
        else:
            self.log(f"{self.name}: reconcile ({reason}) failed, retrying in a second: {problem}")
            self.deferred = reason
            return
        self.channel.overrun = False
        self.links = {}
        for _t, _f, _s, _p, body in links:
            index, name, up = parse_link(body)
            self.links[index] = (name, up)
        self.mirror.tunl0 = next((i for i, (name, _) in self.links.items() if name == self.spec.device), None)
        self.verdicts.clear()
        tables = self.mirror.tables
        if self.mirroring:
            self.mirror.load(r for _t, _f, _s, _p, body in routes if (r := Route.parse(body, tables)))
        found = (f"{len(self.mirror.source)} bird routes in table {self.mirror.table}, "
                 f"{len(self.mirror.mirrors)} in main" if self.mirroring
                 else f"no table to mirror ({self.spec.device})")
        writes = self._write(self.mirror.keys())
        elapsed = (time.perf_counter() - started) * 1000
        summary: dict[str, int] = {}
        for op, route in writes:
            where = "main" if route.table == RT_TABLE_MAIN else "table"
            sign = "+" if op == RTM_NEWROUTE else "-"
            summary[f"{where}{sign}"] = summary.get(f"{where}{sign}", 0) + 1
        self.log(f"{self.name}: reconciled ({reason}): found {found}; wrote main +{summary.get('main+', 0)} "
                 f"-{summary.get('main-', 0)}, table +{summary.get('table+', 0)} -{summary.get('table-', 0)} "
                 f"in {elapsed:.1f} ms")

    def ensure_tunnel(self) -> None:
        """Re-attach tunl0 when it was recreated or could not be attached before."""
        if self.spec.tunnel not in SERVED:
            return
        if self.tunnel and self.tunnel.failure is None and self.tunnel.tun_index == self.mirror.tunl0:
            return
        if self.tunnel:
            self.log(f"{self.name}: {self.spec.device} changed ({self.tunnel.failure or 'new index'}), attaching again")
            self.tunnel.close()
            self.tunnel = None
        if self.mirror.tunl0 is None:
            self.tunnel_error = f"no {self.spec.device} in the namespace"
            return
        try:
            opened = namespace.run_in(self.spec.netns, lambda: open_tunnel(self.spec))
        except OSError as exc:
            if self.tunnel_error != str(exc):
                self.log(f"{self.name}: cannot attach tunl0: {exc}")
            self.tunnel_error = str(exc)
            return
        self.tunnel = self._served(opened)
        self.tunnel_error = None

    # -- events -----------------------------------------------------------------------------

    def pump(self) -> None:
        """Handle the queued netlink events and send the writes they call for, in one batch."""
        messages = self.channel.events()
        if self.channel.overrun:
            self.resync = self.resync or "netlink overrun"
        keys: dict[Key, None] = {}
        retry = False
        tables = self.mirror.tables
        for msg_type, _flags, _seq, portid, body in messages:
            if msg_type == RTM_NEWROUTE or msg_type == RTM_DELROUTE:
                self.verdicts.clear()
                if not self.mirroring:
                    continue
                route = Route.parse(body, tables)
                if route is None:
                    continue
                self.mirror.observe(route, msg_type == RTM_DELROUTE)
                if portid != self.channel.portid:  # our own writes' echoes call for nothing
                    keys[route.key] = None
            elif msg_type == RTM_NEWLINK or msg_type == RTM_DELLINK:
                retry |= self._link_event(msg_type, body)
            elif msg_type == RTM_DELADDR:
                self.verdicts.clear()
                self.resync = self.resync or "address removed"
            elif msg_type == RTM_NEWADDR:
                retry = True
        if retry:
            keys.update(dict.fromkeys(self.failed))
        if keys:
            self._write(keys)

    def _link_event(self, msg_type: int, body: bytes) -> bool:
        """Track links; the kernel drops routes silently when a link goes down or away, so resync then."""
        index, name, up = parse_link(body)
        self.verdicts.clear()
        before = self.links.get(index)
        if msg_type == RTM_DELLINK:
            self.links.pop(index, None)
            self.resync = self.resync or f"{name} removed"
            return False
        self.links[index] = (name, up)
        if name == self.spec.device and self.mirror.tunl0 != index:
            self.resync = self.resync or f"{name} appeared"
        elif before and before[1] and not up:
            self.resync = self.resync or f"{name} down"
        return up and not (before and before[1])

    def _write(self, keys: Iterable[Key]) -> list[tuple[int, Route]]:
        """Plan and send the writes for `keys`; log refusals."""
        writes, notes = self.mirror.plan(keys)
        for note in notes:
            self.log(f"{self.name}: {note}")
        if not writes:
            return writes
        requests: list[bytes] = []
        sent: dict[int, tuple[int, Route]] = {}
        for op, route in writes:
            seq = self.channel.next_seq()
            requests.append(route.encode(op, seq))
            sent[seq] = (op, route)
        try:
            failures = self.channel.transact(requests)
        except (Overrun, TimeoutError) as exc:
            self.resync = self.resync or f"lost acks ({type(exc).__name__})"
            return writes
        for seq, (op, route) in sent.items():
            failure = failures.get(seq)
            if failure is None or (op == RTM_DELROUTE and failure[0] == errno.ESRCH):
                self.failed.discard(route.key)
                continue
            code, text = failure
            self.failed.add(route.key)
            self.errors += 1
            verb = "replace" if op == RTM_NEWROUTE else "delete"
            self.log(f"{self.name}: {verb} {route.describe(self.device)}: {os.strerror(code)}"
                     + (f": {text}" if text else ""))
        return writes

    # -- tunnel routing ---------------------------------------------------------------------

    def resolve(self, dst: bytes) -> Verdict:
        """Where an inner packet to `dst` goes: the gateway of the kernel's route, if via tunl0."""
        verdict = self.verdicts.get(dst)
        if verdict is None:
            verdict = self._decide(dst)
            if len(self.verdicts) >= VERDICT_CACHE:
                self.verdicts.clear()
            self.verdicts[dst] = verdict
        return verdict

    def _decide(self, dst: bytes) -> Verdict:
        tunnel_index = self.tunnel.tun_index if self.tunnel else None
        try:
            route = self.channel.query(dst)
        except (Overrun, TimeoutError):
            self.resync = self.resync or "netlink overrun"
            return "no-route"
        if route is None:
            return "no-route"
        if route.oif != tunnel_index:
            return "not-via-tunl0"
        if route.gateway is None:
            return "no-gateway"
        try:
            outer = self.channel.query(route.gateway)
        except (Overrun, TimeoutError):
            return "no-route"
        if outer is None:
            return "gateway-unreachable"
        if outer.oif == tunnel_index:
            return "loop"
        return route.gateway, socket.inet_ntoa(route.gateway)

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {"netns": self.spec.netns, "tunnel": self.spec.tunnel,
                "implementation": IMPLEMENTATIONS[self.spec.tunnel],
                "device": self.spec.device,
                "attached": self.tunnel is not None if self.spec.tunnel in SERVED else None,
                "tunnel_error": self.tunnel_error,
                "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "rx_packets": c.rx_packets,
                "rx_bytes": c.rx_bytes, "drops": dict(sorted(c.drops.items())), "drops_total": sum(c.drops.values()),
                "routes": {"bird": len(self.mirror.source), "mirrored": len(self.mirror.mirrors),
                           "copied": len(self.mirror.copies)},
                "write_errors": self.errors}


# ---------------------------------------------------------------------------------------------
# The agent


def write_json(path: str, data: dict[str, Any]) -> None:
    """Replace `path` atomically."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


class Agent:
    """Every node of one lab, served by one event loop on the calling thread."""

    def __init__(self, spec_path: str, spec: Spec) -> None:
        self.spec_path, self.spec = spec_path, spec
        self.log = Log(spec.log)
        self.selector = selectors.DefaultSelector()
        self.nodes: dict[str, Node] = {}
        self.generation = 0
        self.stats_written: dict[str, Any] | None = None
        self.stats_time = 0.0
        self.stop: str | None = None
        self.wake_read, self.wake_write = socket.socketpair()

    # -- nodes ------------------------------------------------------------------------------

    def add_nodes(self, specs: list[NodeSpec], counters: dict[str, Counters]) -> None:
        """Open and register nodes; a namespace that cannot be entered is logged and skipped."""
        results = open_all(specs)
        for spec in specs:
            result = results[spec.name]
            if isinstance(result, BaseException):
                self.log(f"{spec.name}: cannot serve namespace {spec.netns}: {result}")
                continue
            node = Node(spec, self.spec.table, result, self.log, counters.get(spec.name, Counters()))
            if result.tunnel_error:
                self.log(f"{spec.name}: cannot attach tunl0: {result.tunnel_error}")
            self.nodes[spec.name] = node
            self.selector.register(node.channel.fileno(), selectors.EVENT_READ, node.pump)
            self._register_tunnel(node)

    def _register_tunnel(self, node: Node) -> None:
        if node.tunnel:
            self.selector.register(node.tunnel.tun_fd, selectors.EVENT_READ, node.tunnel.from_tun)
            if isinstance(node.tunnel, Tunnel):
                self.selector.register(node.tunnel.raw.fileno(), selectors.EVENT_READ, node.tunnel.from_network)

    def _unregister_tunnel(self, node: Node) -> None:
        if node.tunnel:
            self.selector.unregister(node.tunnel.tun_fd)
            if isinstance(node.tunnel, Tunnel):
                self.selector.unregister(node.tunnel.raw.fileno())

    def drop_node(self, name: str, reason: str | None) -> Counters:
        """Stop serving a node and close its sockets (log why, unless the agent is stopping)."""
        node = self.nodes.pop(name)
        self._unregister_tunnel(node)
        self.selector.unregister(node.channel.fileno())
        node.close()
        if reason:
            self.log(f"{name}: no longer served ({reason})")
        return node.counters

    def reconcile(self, node: Node, reason: str) -> None:
        """Reconcile a node, re-attaching its tunnel if tunl0 changed."""
        self._unregister_tunnel(node)
        node.reconcile(reason)
        node.ensure_tunnel()
        self._register_tunnel(node)

    # -- files ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {"lab": self.spec.lab, "pid": os.getpid(), "table": self.spec.table,
                "nodes": {name: node.stats() for name, node in sorted(self.nodes.items())}}

    def write_stats(self, force: bool = False) -> None:
        """Write the stats file when they changed, at most once a second unless forced."""
        now = time.monotonic()
        if not force and now - self.stats_time < TICK:
            return
        data = self.stats()
        if data == self.stats_written and not force:
            return
        self.stats_written, self.stats_time = data, now
        try:
            write_json(self.spec.stats, {**data, "updated": time.time()})
        except OSError as exc:
            self.log(f"cannot write stats {self.spec.stats}: {exc}")

    def write_ready(self) -> None:
        write_json(self.spec.ready, {"pid": os.getpid(), "lab": self.spec.lab, "generation": self.generation,
                                     "nodes": sorted(self.nodes), "time": time.time()})

    def remove_ready(self) -> None:
        try:
            with open(self.spec.ready) as handle:
                if json.load(handle).get("pid") != os.getpid():
                    return
            os.unlink(self.spec.ready)
        except (OSError, ValueError):
            pass

    # -- signals ----------------------------------------------------------------------------

    def _on_wake(self) -> None:
        try:
            data = self.wake_read.recv(64)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGHUP:
                self.reload()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.stop = signal.Signals(signum).name

    def reload(self) -> None:
        """Re-read the spec, open or drop nodes accordingly, and reconcile every node."""
        try:
            spec = Spec.load(self.spec_path)
        except (OSError, ValueError) as exc:
            self.log(f"reload refused, keeping the old spec: {exc}")
            return
        if spec.log != self.spec.log:
            self.log.reopen(spec.log)
        wanted = {node.name: node for node in spec.nodes}
        counters: dict[str, Counters] = {}
        for name, node in list(self.nodes.items()):
            if spec.table != self.spec.table or wanted.get(name) != node.spec:
                counters[name] = self.drop_node(name, "spec changed" if name in wanted else "removed from the spec")
        if spec.ready != self.spec.ready:
            self.remove_ready()
        self.spec = spec
        self.add_nodes([n for n in spec.nodes if n.name not in self.nodes], counters)
        for node in list(self.nodes.values()):
            self.reconcile(node, "SIGHUP")
        self.generation += 1
        self.write_ready()
        self.write_stats(force=True)

    # -- the loop ---------------------------------------------------------------------------

    def check_namespaces(self) -> None:
        """Drop nodes whose namespace was deleted (or replaced by another of the same name)."""
        for name, node in list(self.nodes.items()):
            if namespace.inode(node.spec.netns) != node.inode:
                self.drop_node(name, f"namespace {node.spec.netns} is gone")

    def run(self) -> int:
        """Start, reconcile, write the ready file and serve until a signal or no namespace is left."""
        started = time.perf_counter()
        cpu = time.process_time()
        self.remove_ready_stale()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        self.selector.register(self.wake_read.fileno(), selectors.EVENT_READ, self._on_wake)
        self.log(f"starting: lab {self.spec.lab}, table {self.spec.table}, {len(self.spec.nodes)} nodes, "
                 f"pid {os.getpid()}")
        self.add_nodes(list(self.spec.nodes), {})
        if not self.nodes:
            self.log("no node namespace could be served; exiting")
            return 1
        for node in list(self.nodes.values()):
            self.reconcile(node, "start")
        self.write_stats(force=True)
        self.write_ready()
        self.log(f"ready: {len(self.nodes)} nodes in {(time.perf_counter() - started) * 1000:.0f} ms "
                 f"({(time.process_time() - cpu) * 1000:.0f} ms CPU)")
        try:
            return self.loop()
        except Exception:
            self.log(f"fatal: {traceback.format_exc()}")
            raise
        finally:
            self.write_stats(force=True)
            self.remove_ready()
            for name in list(self.nodes):
                self.drop_node(name, None)
            self.log(f"stopped ({time.process_time() * 1000:.0f} ms CPU in all)")
            self.log.close()

    def remove_ready_stale(self) -> None:
        try:
            os.unlink(self.spec.ready)
        except FileNotFoundError:
            pass

    def loop(self) -> int:
        next_tick = time.monotonic() + TICK
        while self.stop is None:
            busy = any(node.channel.backlog or node.resync for node in self.nodes.values())
            timeout = 0 if busy else max(0.0, next_tick - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if self.selector.get_map().get(key.fd) is key:  # a callback may have closed it
                    key.data()
            for node in list(self.nodes.values()):
                if node.channel.backlog:
                    node.pump()
                if node.tunnel and node.tunnel.failure:
                    node.resync = node.resync or node.tunnel.failure
                if node.resync:
                    self.reconcile(node, node.resync)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self.check_namespaces()
                for node in self.nodes.values():
                    node.resync, node.deferred = node.resync or node.deferred, None
                if not self.nodes:
                    self.log("every namespace is gone; exiting")
                    return 0
                self.write_stats()
        self.log(f"stopping on {self.stop}")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.cni.routeagent <spec.json>", file=sys.stderr)
        return 2
    try:
        spec = Spec.load(args[0])
    except (OSError, ValueError) as exc:
        print(f"routeagent: {exc}", file=sys.stderr)
        return 2
    try:
        agent = Agent(args[0], spec)
    except OSError as exc:
        print(f"routeagent: cannot open the log {spec.log}: {exc.strerror}", file=sys.stderr)
        return 2
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
