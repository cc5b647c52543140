"""Who is who in a running lab, from its state: namespaces by name and by IP, for the path walker."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError
from lab.trace.kernel import Link
from lab.trace.model import Endpoint


@dataclass
class LabView:
    """What the lab's state says about its namespaces: who is who, by namespace and by IP."""

    lab: str
    summary: dict[str, Any]
    namespaces: list[str]
    bird_socket: Callable[[str], str] | None = None       # node -> its BIRD's control socket (Calico BGP labs)
    by_netns: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)   # netns -> (kind, name, row)
    by_ip: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rows in (("node", self.summary.get("nodes", [])), ("external", self.summary.get("externals", [])),
                           ("router", self.summary.get("routers", [])), ("pod", self.summary.get("pods", []))):
            for row in rows:
                name = row.get("key", row["name"])
                self.by_netns[row["netns"]] = (kind, name, row)
                self.by_ip[row["ip"]] = (kind, name, row)
        self.underlay = self.summary["underlay"]["netns"]
        self.by_netns[self.underlay] = ("underlay", "underlay", {})

    def endpoint(self, text: str, role: str) -> Endpoint:
        for kind, name, row in list(self.by_netns.values()):
            if kind != "underlay" and text in (name, row.get("name") if kind == "pod" else None, row["ip"]):
                if kind == "pod" and text == row["name"] and sum(
                        1 for k, _, r in self.by_netns.values() if k == "pod" and r["name"] == text) > 1:
                    raise LabError(f"pod name {text!r} is ambiguous", "write it as namespace/pod")
                return Endpoint(kind, name, row["ip"], row["netns"], row.get("node"))
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise LabError(f"{role} {text!r}: no pod, node or external host of that name in lab {self.lab}",
                           "`lab status` lists them (pods as namespace/pod); an IP address works too") from None
        if role == "source":
            raise LabError(f"source {text}: not an address of a pod, node or external host of lab {self.lab}",
                           "a trace starts inside the lab; give a pod, node or external host")
        return Endpoint("ip", text, text, None)

    def kind(self, netns: str) -> str:
        return self.by_netns.get(netns, ("",))[0]

    def target(self, netns: str) -> str:
        """What `lab exec` takes for a namespace."""
        kind, name, _ = self.by_netns.get(netns, ("", netns, {}))
        return netns if kind in ("underlay", "") else name

    def where(self, netns: str) -> str:
        kind, name, _ = self.by_netns.get(netns, ("namespace", netns, {}))
        return {"underlay": "underlay"}.get(kind, f"{kind} {name}")

    def hints(self, netns: str, link: Link) -> list[str]:
        """Namespaces most likely to hold a veth's far end, first; then every other namespace of the lab."""
        kind, name, row = self.by_netns.get(netns, ("", "", {}))
        first: list[str] = []
        if kind == "pod":
            first = [n for n, (k, nm, _) in self.by_netns.items() if k == "node" and nm == row.get("node")]
        elif (kind in ("node", "external") and link.name == "eth0") or kind == "router":
            first = [self.underlay]
        elif kind == "node":
            first = [p["netns"] for p in self.summary.get("pods", []) if p["node"] == name]
        elif kind == "underlay":
            first = [r["netns"] for r in self.summary.get("nodes", []) + self.summary.get("externals", [])
                     + self.summary.get("routers", []) if r["name"] == link.name.split(".")[0]]
        return first + [n for n in self.namespaces if n not in first]
