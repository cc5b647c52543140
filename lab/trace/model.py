"""A trace as plain data: endpoints, hops, and the steps inside each hop (each with the command that shows it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A trace's source or destination: a pod, a node, an external host, or a bare IP outside the lab."""

    kind: str            # pod | node | external | ip
    name: str            # pod key, node or external name, or the IP
    ip: str
    netns: str | None
    node: str | None = None   # a pod's node

    def exec_target(self) -> str:
        return self.name


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    protocol: str        # ICMP | TCP | UDP | IPIP
    sport: int = 0
    dport: int = 0
    ttl: int = 64

    def text(self) -> str:
        if self.protocol in ("TCP", "UDP"):
            sport = self.sport or "(flow hash)"
            return f"{self.protocol} {self.src}:{sport} > {self.dst}:{self.dport}"
        return f"{self.protocol} {self.src} > {self.dst}"


@dataclass
class Step:
    """One fact that decides where the packet goes, and how a learner sees it for themselves."""

    kind: str            # route | neighbour | fdb | bridge | encap | decap | nat | policy | deliver | drop | link
    text: str
    command: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hop:
    """The packet inside one namespace: where it came in, what decided its way, where it left."""

    netns: str
    where: str           # "pod default/bs1", "node k8s-node03", "switch lan (underlay)", "router (underlay)"
    target: str          # what `lab exec` takes for this namespace
    iif: str | None
    oif: str | None = None
    packet: str = ""
    steps: list[Step] = field(default_factory=list)
    crossed: list[str] = field(default_factory=list)   # every interface the packet crosses here, in order
    forms: dict[str, str] = field(default_factory=dict)  # interface -> what a capture there shows: plain | vxlan | ipip

    def cross(self, iface: str, form: str = "plain") -> None:
        if iface not in self.crossed:
            self.crossed.append(iface)
            self.forms[iface] = form

    def add(self, kind: str, text: str, command: str = "", **data: Any) -> Step:
        step = Step(kind, text, command, dict(data))
        self.steps.append(step)
        return step


@dataclass
class Trace:
    src: Endpoint
    dst: Endpoint
    packet: Packet
    hops: list[Hop] = field(default_factory=list)
    outcome: str = "delivered"     # delivered | dropped
    reason: str = ""
    explanation: list[str] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    beyond: list[tuple[str, str]] = field(default_factory=list)   # interfaces the packet must NOT reach (after a drop)
    seconds: dict[str, float] = field(default_factory=dict)       # walk (kernel reads), capture

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def interfaces(self) -> list[tuple[str, str, str]]:
        """(netns, interface, form) of every interface the packet crosses, in order."""
        seen: list[tuple[str, str, str]] = []
        for hop in self.hops:
            for iface in hop.crossed:
                if not any(n == hop.netns and i == iface for n, i, _ in seen):
                    seen.append((hop.netns, iface, hop.forms.get(iface, "plain")))
        return seen
