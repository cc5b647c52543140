"""`LabNet`: a running lab as a `mininet.net.Mininet`, for Mininet scripts and Mininet's CLI.

Where Mininet's API applies it is Mininet's own code (`pingAll`, `ping`, `pingFull`, `iperf`, `get`,
`net[name]`, `values()`, `configLinkStatus`...), over `LabHost` nodes attached to the lab's named
namespaces. Where it does not:

- no OpenFlow switches and no controller: `switches` and `controllers` are empty; the lab's nodes route
  (they are `LabNode`s in `knodes`, with `externals` and `underlay`);
- `hosts` holds the pods only, so `pingAll()` and `iperf()` without arguments are pod to pod (as
  `pingall` is in the lab); `ping(net.knodes)` or `ping(list(net.values()))` reach further;
- `configLinkStatus` (the CLI's `link a b up|down`) is refused: `ip link set down` on a veth end drops
  the routes the data plane installed through it (a pod's default route, the node's route to it), and
  `up` does not bring them back; `lab` has no per-interface route replay, so it says so instead;
- `interact()` runs `LabCLI` (Mininet's `CLI` reads `k8s-node01` as `k8s`); use `LabCLI(net)` where a
  script would call `CLI(net)`;
- `build()`, `start()`, `addHost()`, `addLink()` add nothing: the lab is built by `lab up` (the data
  plane's plan), not by Mininet; `stop()` ends the node shells and removes the lab only if this
  `LabNet` brought it up;
- `Mininet.__init__` is not run: its `fixLimits()` would raise the host's sysctls (ARP table, TCP
  buffers) in the root namespace, which the lab never changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import yaml
from mininet.log import info, output
from mininet.net import Mininet

from lab.errors import LabError
from lab.mininet import inventory
from lab.mininet.node import ROLE_CLASSES, LabHost, LabLink

LISTEN_WAIT = 5.0


def _listening(server: LabHost, port: int) -> bool:
    """Whether a TCP socket listens on `port` in the server's namespace, within LISTEN_WAIT seconds."""
    deadline = time.monotonic() + LISTEN_WAIT
    while time.monotonic() < deadline:
        out, _err, _code = server.pexec(["ss", "-Hltn", f"sport = :{port}"])
        if out.strip():
            return True
        time.sleep(0.1)
    return False


def _is_up(lab_ops: Any, lab: str) -> bool:
    """Whether `lab` names a lab that is up (a topology path or an invalid name is not one)."""
    try:
        return lab_ops.store.load(lab) is not None
    except LabError:
        return False


def _up_from_file(lab_ops: Any, lab: str) -> str | None:
    """The name of the lab a topology YAML declares, when that lab is up and was brought up from the same
    file (then it is attached to, even if the file changed since: `lab up` would refuse the name)."""
    path = Path(lab)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return None
    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(name, str) or name == lab or not _is_up(lab_ops, name):
        return None
    state = lab_ops.store.load(name)
    source = getattr(state, "topology", None)
    if source and Path(str(source)).resolve() == path.resolve():
        return name
    raise LabError(f"{lab}: name: lab {name} is up, brought up from {source or 'another topology'}",
                   f"attach with LabNet({name!r}), or `lab down {name}` first")


def open_lab(lab_ops: Any, lab: str | None, up: bool = True) -> tuple[str, bool]:
    """(lab name, whether it was brought up here) for a lab that is up, or a topology brought up and
    waited for (a lab that does not get ready is removed again)."""
    if lab is None:
        return lab_ops.only_lab(), False
    if _is_up(lab_ops, lab):
        return lab, False
    attached = _up_from_file(lab_ops, lab)
    if attached:
        return attached, False
    if not up:
        raise LabError(f"no lab named {lab!r} is up", "`lab list` shows the labs that are up; "
                       "bring one up with `lab up <topology>`")
    result = lab_ops.up(lab)
    try:
        ready = lab_ops.wait(result.lab, 120.0)
        if not ready.ready:
            raise LabError(f"lab {result.lab} is not ready after {ready.seconds:.0f} s",
                           f"`lab wait {result.lab}` says what is pending")
    except BaseException:
        if result.created:
            lab_ops.down(result.lab)
        raise
    return result.lab, result.created


class LabNet(Mininet):
    """Attach to the lab `lab` (a lab that is up), or bring `lab` up (a topology name or file) first."""

    def __init__(self, lab: str | None = None, up: bool = True, lab_ops: Any = None) -> None:
        # pylint: disable=super-init-not-called
        from lab.lifecycle import Lab
        self.lab_ops = lab_ops or Lab()
        self.hosts: list[LabHost] = []
        self.knodes: list[LabHost] = []
        self.externals: list[LabHost] = []
        self.underlay: list[LabHost] = []
        self.switches: list[Any] = []
        self.controllers: list[Any] = []
        self.links: list[LabLink] = []
        self.nameToNode: dict[str, LabHost] = {}
        self.terms: list[Any] = []
        self.topo = None
        self.built = True
        self.started_lab = False
        self.lab = self._attach_or_up(lab, up)
        try:
            self._attach()
        except BaseException:
            self.stop()
            raise

    def _attach_or_up(self, lab: str | None, up: bool) -> str:
        name, self.started_lab = open_lab(self.lab_ops, lab, up)
        return name

    def _attach(self) -> None:
        summary = self.lab_ops.status(self.lab)
        if summary.get("missing_namespaces"):
            raise LabError(f"lab {self.lab} is degraded: namespaces missing: "
                           f"{', '.join(summary['missing_namespaces'])}", f"`lab down {self.lab}` and up again")
        lists = {"pod": self.hosts, "node": self.knodes, "external": self.externals, "underlay": self.underlay}
        all_ports: list[inventory.Port] = []
        intfs: dict[tuple[str, int], Any] = {}
        for member in inventory.members(summary):
            node = ROLE_CLASSES[member.role](member.name, netns=member.netns, role=member.role, lab_ip=member.ip)
            lists[member.role].append(node)
            self.nameToNode[member.name] = node
            for port in node.lab_ports:
                intfs[(port.netns, port.ifindex)] = node.intf(port.name)
                all_ports.append(port)
        for one, other in inventory.veth_pairs(all_ports):
            self.links.append(LabLink(intfs[(one.netns, one.ifindex)], intfs[(other.netns, other.ifindex)]))

    def __iter__(self) -> Iterator[str]:
        for node in chain(self.hosts, self.knodes, self.externals, self.underlay):
            yield node.name

    def __len__(self) -> int:
        return len(self.nameToNode)

    def build(self) -> None:
        """The lab is built by `lab up`; nothing to build."""

    def start(self) -> None:
        """The lab's nodes run already; no switch or controller to start."""
        info(f"*** lab {self.lab}: {len(self.hosts)} pods, {len(self.knodes)} nodes, "
             f"{len(self.externals)} externals, underlay (no switches, no controller)\n")

    def addHost(self, *_args: Any, **_kwargs: Any) -> Any:  # noqa: N802 (Mininet's name)
        raise LabError("LabNet does not add hosts", "add pods to the topology YAML and `lab up` it")

    def addSwitch(self, *_args: Any, **_kwargs: Any) -> Any:  # noqa: N802
        raise LabError("LabNet has no OpenFlow switches", "the lab's nodes route; see docs/design.md (Mininet)")

    def addController(self, *_args: Any, **_kwargs: Any) -> Any:  # noqa: N802
        raise LabError("LabNet has no controller", "the lab's nodes route; see docs/design.md (Mininet)")

    def addLink(self, *_args: Any, **_kwargs: Any) -> Any:  # noqa: N802
        raise LabError("LabNet does not add links", "the topology YAML wires the lab; `lab up` it")

    def iperf(self, hosts: Any = None, l4Type: str = "TCP", udpBw: str = "10M",  # noqa: N803 (Mininet's names)
              fmt: str | None = None, seconds: int = 5, port: int = 5001) -> list[str]:
        """Mininet's `iperf`: iperf 2 from `hosts[0]` (client) to `hosts[1]` (server), default the first and
        last pod; returns [server rate, client rate] (UDP: [udpBw, server, client]). Unlike Mininet 2.3's,
        it waits for the server with `ss` (not a telnet connection, whose empty report iperf 2.1 does not
        count, which leaves Mininet's own waiting for a second report forever) and kills no other iperf."""
        client, server = hosts or (self.hosts[0], self.hosts[-1])
        if l4Type not in ("TCP", "UDP"):
            raise LabError(f"iperf: l4Type {l4Type!r}", "use TCP or UDP")
        output(f"*** Iperf: testing {l4Type} bandwidth between {client} and {server} \n")
        args = f"iperf -p {port} " + ("-u " if l4Type == "UDP" else "") + (f"-f {fmt} " if fmt else "")
        server.sendCmd(args + "-s")
        try:
            if l4Type == "TCP" and not _listening(server, port):
                raise LabError(f"iperf: no server listening on {server}:{port} after {LISTEN_WAIT:g} s",
                               "is the port taken in that namespace? pass port=")
            bandwidth = f"-b {udpBw} " if l4Type == "UDP" else ""
            cliout = client.cmd(args + f"-t {seconds} -c {server.IP()} {bandwidth}")
            servout = ""
            deadline = time.monotonic() + seconds + 5
            while "/sec" not in servout and time.monotonic() < deadline:
                servout += server.monitor(timeoutms=500)
        finally:
            server.sendInt()
            servout_rest = server.waitOutput()
        result = [self._parseIperf(servout + servout_rest), self._parseIperf(cliout)]
        if l4Type == "UDP":
            result.insert(0, udpBw)
        output(f"*** Results: {result}\n")
        return result

    def configLinkStatus(self, src: str, dst: str, status: str) -> None:  # noqa: N802 (Mininet's name)
        """Refused: see the module docstring (`link a b down` then `up` loses the data plane's routes)."""
        refuse_link_status(src, dst, status)

    def interact(self) -> Any:
        """Mininet's `interact()` with `LabCLI` (lab names as node names)."""
        from lab.mininet.cli import LabCLI
        self.start()
        result = LabCLI(self)
        self.stop()
        return result

    def stop(self) -> None:
        """End every node shell (and what it started) and xterm; remove the lab only if this LabNet
        brought it up (and it is still up)."""
        if self.terms:
            self.stopXterms()
            self.terms = []
        for node in list(self.nameToNode.values()):
            node.terminate()
        self.nameToNode.clear()
        for group in (self.hosts, self.knodes, self.externals, self.underlay, self.links):
            group.clear()
        if self.started_lab and _is_up(self.lab_ops, self.lab):
            self.lab_ops.down(self.lab)
            self.started_lab = False


def refuse_link_status(src: str, dst: str, status: str) -> None:
    """`link src dst up|down` is not offered over a lab: bringing a veth end down drops the routes the
    data plane installed through it (a pod's default route, a node's route to the pod), and `up` does not
    restore them, so the lab would be left broken."""
    raise LabError(f"link {src} {dst} {status}: not offered over a lab: setting a veth down drops the "
                   "routes the CNI installed through it and `up` does not restore them",
                   f"cut traffic with a policy or `{src} ip link set <intf> down` knowingly, then "
                   "`lab down` and `lab up` to restore the lab")


def dead_members(net: Any) -> list[str]:
    """Nodes whose shell has ended or whose named namespace is gone (`lab down` came first)."""
    dead = []
    for name, node in list(net.nameToNode.items()):
        netns = getattr(node, "netns", None)
        shell = getattr(node, "shell", None)
        if (shell is not None and shell.poll() is not None) or (netns and not Path("/run/netns", netns).exists()):
            dead.append(name)
    return dead
