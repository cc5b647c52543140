"""`lab bgp monitor`: an ExaBGP observer that peers passively with the lab and reports every UPDATE.

The observer lives in its own namespace, `<lab>._bgpmon`, with one interface per network it needs
(`eth<i>`, a port of that network's switch). What it peers with depends on the topology:

* routers (`routers:`), if the lab has any: at the address the loader reserved for each
  (`Router.monitor_ip`). Each router's ExaBGP already has a passive iBGP neighbour there, and its
  helper tells it every best path with the original next hop and AS path;
* else, in a Calico BGP lab, the route reflectors, as their route-reflector client, or, without
  reflectors, every node as a plain iBGP peer (each node then sends its own blocks). Their BIRD gets
  one protocol more, `Lab_monitor` (not in Calico's templates), from a file `lab_monitor.cfg` that
  includes bird.cfg, loaded with `birdc configure "lab_monitor.cfg"`; `birdc configure` reloads
  bird.cfg when the monitor stops.

The observer sends nothing. Its own ExaBGP's API process (`python -m lab.bgp.monitor <spec>`) turns
each message into one JSON line:

    {"time": 1796058070.86, "peer": "tor-b", "peer_ip": "192.168.20.2", "event": "update",
     "prefix": "10.244.0.0/26", "next_hop": "10.255.0.11", "as_path": [65001], "communities": []}
    {"time": ..., "peer": "tor-b", "peer_ip": ..., "event": "withdraw", "prefix": "10.244.0.0/26"}
    {"time": ..., "peer": "tor-b", "peer_ip": ..., "event": "state", "state": "up"}

`time` is when ExaBGP received the message (its own JSON `time`). Everything (namespace, ExaBGP,
files) is removed when the monitor stops, and `lab down` removes the namespace with the lab's others.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lab.bgp import birdc, daemons, exabgp
from lab.errors import LabError
from lab.netns import apply, names, namespace
from lab.topology.model import CalicoConfig, Topology

MONITOR = "_bgpmon"
MONITOR_CFG = "lab_monitor.cfg"


def netns(lab: str) -> str:
    return f"{lab}.{MONITOR}"


@dataclass(frozen=True)
class Target:
    """One BGP session of the monitor: who it peers with, and from which of its own addresses."""

    name: str                    # router or node name
    kind: str                    # router | reflector | node
    ip: ipaddress.IPv4Address
    as_number: int
    network: str
    local_ip: ipaddress.IPv4Address
    hold_time: int = 180
    cluster_id: str | None = None


def targets(topology: Topology, wanted: list[str] | None) -> list[Target]:
    """What to peer with (see the module docstring), `wanted` names only some of them."""
    if topology.routers:
        found = [Target(r.name, "router", r.ip, r.as_number, r.network, r.monitor_ip, r.hold_time)
                 for r in topology.routers if r.monitor_ip is not None]
    else:
        found = _bird_targets(topology)
    if wanted:
        unknown = [w for w in wanted if w not in {t.name for t in found}]
        if unknown:
            raise LabError(f"the monitor cannot peer with {unknown[0]!r} in lab {topology.name}",
                           f"it peers with: {', '.join(t.name for t in found)}")
        found = [t for t in found if t.name in wanted]
    return found


def _bird_targets(topology: Topology) -> list[Target]:
    calico = topology.cluster.config
    if not isinstance(calico, CalicoConfig) or calico.backend != "bird":
        raise LabError(f"lab {topology.name} runs no BGP speaker to peer with",
                       "the monitor peers with `routers:` or a Calico BGP lab's BIRD (calico_backend bird)")
    reflectors = [n for n in calico.nodes if n.rr_cluster_id]
    chosen = reflectors or list(calico.nodes)
    local = _free_addresses(topology, {topology.node(n.name).network for n in chosen})
    return [Target(n.name, "reflector" if n.rr_cluster_id else "node", n.ipv4_address.ip,
                   n.as_number if n.as_number is not None else calico.bgp.as_number,
                   topology.node(n.name).network, local[topology.node(n.name).network],
                   cluster_id=n.rr_cluster_id) for n in chosen]


def _free_addresses(topology: Topology, networks: set[str]) -> dict[str, ipaddress.IPv4Address]:
    """The highest free host address of each network (not a gateway, node, external or router's)."""
    used = {n.ip for n in topology.nodes} | {e.ip for e in topology.externals} | {
        ip for r in topology.routers for _, ip in r.addresses()}
    found = {}
    for name in networks:
        network = topology.network(name)
        for value in range(int(network.cidr.broadcast_address) - 1, int(network.cidr.network_address), -1):
            ip = ipaddress.IPv4Address(value)
            if ip != network.gateway and ip not in used:
                found[name] = ip
                break
        else:
            raise LabError(f"network {name} has no free address for the monitor", "use a larger network")
    return found


def config(watched: list[Target], spec_path: str) -> str:
    lines = ["# Generated by lab: the BGP monitor (lab/bgp/monitor.py)", "process observer {",
             f"  run {sys.executable} -m lab.bgp.monitor {spec_path};", "  encoder json;", "}", ""]
    for target in watched:
        lines += exabgp.neighbour(str(target.ip), str(target.local_ip), target.as_number, target.as_number,
                                  target.hold_time, False, "observer", str(target.local_ip))
        lines.append("")
    return "\n".join(lines)


def bird_protocol(target: Target, own_ip: ipaddress.IPv4Address) -> str:
    """`lab_monitor.cfg` for a node's BIRD: bird.cfg, plus a passive session with the monitor."""
    lines = ["# lab bgp monitor: not in Calico's templates (lab/bgp/monitor.py)", 'include "bird.cfg";', "",
             "protocol bgp Lab_monitor from bgp_template {", f"  neighbor {target.local_ip} as {target.as_number};",
             f"  source address {own_ip};", "  passive on;", "  import none;",
             "  export filter { calico_export_to_bgp_peers(true); reject; };"]
    if target.cluster_id:
        lines += ["  rr client;", f"  rr cluster id {target.cluster_id};"]
    return "\n".join(lines + ["}"]) + "\n"


def _interfaces(watched: list[Target]) -> dict[str, tuple[str, str, set[ipaddress.IPv4Address]]]:
    """network -> (device in the monitor's namespace, its switch port, the addresses it carries)."""
    found: dict[str, tuple[str, str, set[ipaddress.IPv4Address]]] = {}
    for target in watched:
        if target.network not in found:
            index = len(found)
            found[target.network] = (f"eth{index}", f"bgpmon{index}", set())
        found[target.network][2].add(target.local_ip)
    return found


def _unwire(topology: Topology, watched: list[Target]) -> None:
    """Delete the monitor's switch ports (and so their veths) from the underlay, if there.

    Deleting the monitor's namespace alone is not enough: the kernel cleans a namespace up asynchronously, and
    until it has, the veth's far end (`bgpmon<i>`, a name the lab owns in its underlay) is still a switch port,
    so a monitor started right after the previous one failed with `File exists`."""
    from pyroute2 import IPRoute
    underlay = names.underlay_netns(topology.name)
    if not namespace.exists(underlay):
        return
    ports = [port for _, port, _ in _interfaces(watched).values()]

    def delete() -> None:
        with IPRoute() as ipr:
            for port in ports:
                for index in ipr.link_lookup(ifname=port):
                    ipr.link("del", index=index)
    namespace.run_in(underlay, delete)


def _wire(topology: Topology, watched: list[Target]) -> None:
    """The monitor's namespace and one veth per network, its far end a port of the network's switch."""
    from pyroute2 import IPRoute
    mon, underlay = netns(topology.name), names.underlay_netns(topology.name)
    _unwire(topology, watched)          # a previous monitor's ports, if the kernel has not cleaned them up yet
    namespace.create_many([mon])
    interfaces = _interfaces(watched)

    def inside() -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            for name, (device, port, addresses) in interfaces.items():
                network = topology.network(name)
                ipr.link("add", ifname=port, kind="veth", peer=device)
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], net_ns_fd=underlay)
                index = ipr.link_lookup(ifname=device)[0]
                ipr.link("set", index=index, mtu=network.mtu, state="up")
                for address in sorted(addresses):
                    ipr.addr("add", index=index, address=str(address), prefixlen=network.cidr.prefixlen)

    def outside() -> None:
        with IPRoute() as ipr:
            for name, (_, port, _) in interfaces.items():
                bridge = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=bridge,
                         mtu=topology.network(name).mtu, state="up")
    namespace.run_in(mon, inside)
    namespace.run_in(underlay, outside)


class Monitor:
    """A running observer: start it, iterate its events, stop it (also on errors)."""

    def __init__(self, topology: Topology, lab_dir: str, bird_paths: Callable[[str], daemons.BirdPaths],
                 only: list[str] | None = None) -> None:
        """`bird_paths(node)`: where the node's BIRD is (the data plane's layout: lab/cni/calico/layout.py)."""
        self.topology = topology
        self.bird_paths = bird_paths
        self.watched = targets(topology, only)
        self.birds: list[Target] = []          # BIRDs configured with Lab_monitor, to restore
        self.directory = os.path.join(lab_dir, "bgpmon")
        self.events = os.path.join(self.directory, "events.jsonl")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        program = exabgp.binary()
        if program is None:
            raise LabError("the BGP monitor needs exabgp, which is not installed", "run `sudo scripts/install-deps.sh`")
        if namespace.exists(netns(self.topology.name)):
            raise LabError(f"a BGP monitor already runs on lab {self.topology.name} (namespace "
                           f"{netns(self.topology.name)})", "stop it first (Ctrl-C); one monitor per lab")
        os.makedirs(self.directory, exist_ok=True)
        spec_path = os.path.join(self.directory, "observer.json")
        with open(spec_path, "w", encoding="utf-8") as handle:
            json.dump({"events": self.events, "names": {str(t.ip): t.name for t in self.watched}}, handle)
        open(self.events, "w").close()
        conf = os.path.join(self.directory, "exabgp.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(config(self.watched, spec_path))
        try:
            _wire(self.topology, self.watched)
            for target in self.watched:
                if target.kind != "router":
                    self._configure_bird(target)
            argv = ["nsenter", f"--net={namespace.path(netns(self.topology.name))}", program, "server", conf]
            with open(os.path.join(self.directory, "exabgp.out"), "ab") as out:
                self.process = subprocess.Popen(argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=out, start_new_session=True,
                                                env=exabgp.environment(os.path.join(self.directory, "exabgp.log")))
        except BaseException:
            self.stop()
            raise

    def follow(self, duration: float | None, should_stop: Callable[[], bool] = lambda: False
               ) -> Iterator[dict[str, Any]]:
        """The events as they arrive, until `duration` seconds have passed (None: until interrupted)."""
        deadline = None if duration is None else time.monotonic() + duration
        with open(self.events, encoding="utf-8") as handle:
            pending = ""
            while deadline is None or time.monotonic() < deadline:
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith("\n"):
                        yield json.loads(pending)
                        pending = ""
                    continue
                if should_stop() or (self.process is not None and self.process.poll() is not None):
                    break
                time.sleep(0.02)

    def _bird_paths(self, node: str) -> daemons.BirdPaths:
        return self.bird_paths(node)

    def _configure_bird(self, target: Target) -> None:
        paths = self._bird_paths(target.name)
        calico = self.topology.cluster.config
        assert isinstance(calico, CalicoConfig)
        own_ip = calico.node(target.name).ipv4_address.ip
        path = os.path.join(paths.config_dir, MONITOR_CFG)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(bird_protocol(target, own_ip))
        self.birds.append(target)
        reply = birdc.command(paths.socket, f'configure "{path}"')
        if "Reconfigur" not in reply:
            raise LabError(f"BIRD on {target.name} refused the monitor's session: {reply.strip()}", f"see {path}")

    def _restore_birds(self) -> None:
        """BIRD back to bird.cfg alone (a BIRD that is gone, e.g. after `lab down`, needs nothing)."""
        for target in self.birds:
            paths = self._bird_paths(target.name)
            try:
                birdc.command(paths.socket, "configure")
            except (OSError, birdc.BirdError):
                pass
            try:
                os.unlink(os.path.join(paths.config_dir, MONITOR_CFG))
            except OSError:
                pass
        self.birds = []

    def stop(self) -> None:
        """Stop ExaBGP and its observer, restore the BIRDs, delete the veths, remove the namespace and files."""
        self._restore_birds()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _unwire(self.topology, self.watched)
        apply.remove_namespaces([netns(self.topology.name)])
        shutil.rmtree(self.directory, ignore_errors=True)


def line(event: dict[str, Any]) -> str:
    """One event for people: time, router, what happened."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event["time"])) + f".{int(event['time'] * 1000) % 1000:03d}"
    head = f"{stamp} {event['peer']:<10}"
    if event["event"] == "state":
        return f"{head} session {event['state']}"
    if event["event"] == "withdraw":
        return f"{head} WITHDRAW {event['prefix']}"
    path = " ".join(map(str, event["as_path"])) or "(local AS)"
    extra = f" communities {' '.join(event['communities'])}" if event["communities"] else ""
    return f"{head} UPDATE   {event['prefix']:<18} next hop {event['next_hop']:<15} AS path {path}{extra}"


# -- the observer (ExaBGP's API process) -------------------------------------------------------------
def observe(lines: Iterator[str], names_by_ip: dict[str, str], write: Callable[[dict[str, Any]], None]) -> None:
    """ExaBGP JSON messages -> events (see the module docstring)."""
    from lab.bgp.exabgp_api import parse
    for text in lines:
        event = parse(text)
        if event is None:
            continue
        base = {"time": event["time"], "peer": names_by_ip.get(event["peer"], event["peer"]), "peer_ip": event["peer"]}
        if event["kind"] == "state":
            if event["state"] in ("up", "down"):
                write(base | {"event": "state", "state": event["state"]})
            continue
        for prefix in event["withdraw"]:
            write(base | {"event": "withdraw", "prefix": prefix})
        for prefix, path in event["announce"]:
            write(base | {"event": "update", "prefix": prefix, "next_hop": path.next_hop,
                          "as_path": list(path.as_path), "communities": list(path.communities)})


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    with open(spec["events"], "a", encoding="utf-8") as out:
        def write(event: dict[str, Any]) -> None:
            out.write(json.dumps(event) + "\n")
            out.flush()
        observe(iter(sys.stdin.readline, ""), spec["names"], write)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
