"""Mininet node classes whose shells live in the lab's named network namespaces.

Mininet's `Node.startShell` runs `mnexec -cd[n] ... bash`: `-n` would make a new, anonymous namespace.
`LabHost` keeps Mininet's shell (same pty, prompt and `cmd`/`sendCmd`/`popen` protocol) but drops `-n`
and runs the shell through `ip netns exec <netns>`, the way `lab exec` enters a namespace. `popen`
and `pexec` then attach to the shell's pid with `mnexec -a`, so they land in the same namespace.
"""

from __future__ import annotations

from typing import Any

from mininet.link import Intf, Link
from mininet.node import Host, Switch

from lab.mininet import inventory
from lab.mininet.inventory import Port


def _stay(*_args: Any) -> bool:
    """The interface already lives in the node's namespace: Mininet must not move it."""
    return True


class LabHost(Host):
    """A Mininet host attached to an existing named namespace; it owns nothing in the kernel."""

    def __init__(self, name: str, netns: str, role: str = "pod", lab_ip: str | None = None, **params: Any) -> None:
        self.netns = netns
        self.role = role
        self._attaching = False
        params.pop("inNamespace", None)
        super().__init__(name, inNamespace=True, **params)
        try:
            self.lab_ports = inventory.ports(inventory.Member(name, netns, role, lab_ip))
            for port in self.lab_ports:
                self.attach(port)
        except BaseException:
            self.terminate()
            raise

    def config(self, **_params: Any) -> dict[str, Any]:
        """The lab configured the namespace; Mininet's defaults (10.0.0.x, MACs) must not overwrite it."""
        return {}

    def startShell(self, mnopts: str | None = None) -> None:  # noqa: N802 (Mininet's name)
        self._attaching = True
        try:
            super().startShell(mnopts)
        finally:
            self._attaching = False

    def _popen(self, cmd: list[str], **params: Any) -> Any:
        if self._attaching and cmd[:1] == ["mnexec"]:
            cmd = ["mnexec", cmd[1].replace("n", ""), "ip", "netns", "exec", self.netns, *cmd[2:]]
        return super()._popen(cmd, **params)

    def cmd(self, *args: Any, **kwargs: Any) -> str:
        # Mininet's iperf clears old servers with `killall -9 iperf`, which would reach every iperf on
        # the machine; here it reaches only the iperf processes this node's shell started.
        if args and " ".join(str(a) for a in args) == "killall -9 iperf":
            args = (f"pkill -9 -x -P {self.pid} iperf",)
        output: str = super().cmd(*args, **kwargs)
        return output

    def attach(self, port: Port) -> Intf:
        """Add an interface object for an existing kernel interface, without configuring it."""
        intf = Intf(port.name, node=self, moveIntfFn=_stay, up=None)
        intf.ip, intf.prefixLen, intf.mac = port.ip, port.prefixlen, port.mac
        return intf


class LabPod(LabHost):
    """A pod's namespace (its eth0 is the default interface)."""


class LabNode(LabHost):
    """A Kubernetes node's namespace: it routes (CNI bridge, VXLAN, BIRD), it is no OpenFlow switch."""


class LabExternal(LabHost):
    """An external host of the topology."""


class LabUnderlay(LabHost):
    """The underlay namespace: the bridges and router the nodes are cabled to."""


class LabUnderlaySwitch(LabHost, Switch):
    """The underlay as `mn` sees it: the Linux bridges and router that cable the nodes, a Mininet switch
    with no OpenFlow and no controller (`mn --custom`: pods and nodes are the hosts, pingall covers them)."""

    def __init__(self, name: str, netns: str, role: str = "underlay", **params: Any) -> None:
        params.setdefault("dpid", "1")
        params.pop("inNamespace", None)       # Mininet's addSwitch passes its own
        super().__init__(name, netns, role, **params)

    def start(self, _controllers: list[Any]) -> None:
        """Its bridges forward already."""

    def connected(self) -> bool:
        return True

    def stop(self, deleteIntfs: bool = False) -> None:  # noqa: N803 (Mininet's name)
        """End the shell; the bridges and their ports stay the lab's."""
        self.terminate()


ROLE_CLASSES: dict[str, type[LabHost]] = {"pod": LabPod, "node": LabNode, "external": LabExternal,
                                          "underlay": LabUnderlay}


class LabLink(Link):
    """A veth pair of the lab between two attached interfaces. Mininet's `Link` would create the pair and
    delete it on stop; this one only describes it, so `links` and `net` show it (`link a b up|down` is
    refused: see `lab.mininet.net.refuse_link_status`)."""

    def __init__(self, intf1: Intf, intf2: Intf) -> None:  # pylint: disable=super-init-not-called
        self.intf1, self.intf2 = intf1, intf2
        intf1.link = intf2.link = self
        self.params1: dict[str, Any] = {}
        self.params2: dict[str, Any] = {}

    def stop(self) -> None:
        """The lab owns the pair: leave it."""

    def delete(self) -> None:
        """The lab owns the pair: leave it (`lab down` removes it)."""

    def __str__(self) -> str:
        return f"{self.intf1.node.name}:{self.intf1.name}<->{self.intf2.node.name}:{self.intf2.name}"
