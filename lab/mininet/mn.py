"""`mn --custom`: the lab's cluster as a Mininet topology (`--topo lab,<topology>`).

`LabTopo` brings the lab up with `lab up` (or takes the lab that is up) and describes its namespaces to
Mininet: pods, nodes and external hosts as hosts (`LabPod`, `LabNode`, `LabExternal`), the underlay as
the one switch (`LabUnderlaySwitch`: Linux bridges, no OpenFlow). The lab wires them; the topology has no
Mininet links (Mininet would create new veth pairs). A lab that `mn` brought up is removed when `mn`
exits; `lab down` removes it too, whichever comes first. custom.py, the file `mn` loads, binds the
names `mn` looks up: `topos`, `CLI` (lab names as node names) and `findController` (none: the lab runs
no controller).
"""

from __future__ import annotations

import atexit
import sys
from typing import Any, NoReturn

from mininet.net import Mininet
from mininet.topo import Topo

from lab.errors import LabError
from lab.mininet import inventory
from lab.mininet.net import open_lab
from lab.mininet.node import ROLE_CLASSES, LabUnderlaySwitch


def _down_at_exit(lab_ops: Any, lab: str) -> None:
    def down() -> None:
        try:
            lab_ops.down(lab)
        except Exception as exc:  # noqa: BLE001 (at exit: say it, do not mask mn's own status)
            print(f"lab: error: could not remove lab {lab}: {exc}; run `lab down {lab}`")
    atexit.register(down)


def _refuse(message: str) -> NoReturn:
    """Leave `mn` with the lab's error and status 2. A SystemExit, because on an Exception `mn` runs its
    machine-wide cleanup (`mn -c`: killall of ping, controllers, every `mininet:` shell)."""
    print(f"lab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class LabTopo(Topo):
    """`--topo lab,<topology or lab name>`."""

    def build(self, topology: str | None = None, **_opts: Any) -> None:  # pylint: disable=arguments-differ
        from lab.lifecycle import Lab
        lab_ops = Lab()
        if not topology:
            _refuse("--topo lab needs a topology: --topo lab,<topology name, YAML file or lab name>")
        try:
            name, started = open_lab(lab_ops, topology, up=True)
        except LabError as exc:
            _refuse(str(exc))
        if started:
            _down_at_exit(lab_ops, name)
        self.lab = name
        for member in inventory.members(lab_ops.status(name)):
            params = {"netns": member.netns, "role": member.role, "lab_ip": member.ip}
            if member.role == "underlay":
                self.addSwitch(member.name, cls=LabUnderlaySwitch, **params)
            else:
                self.addHost(member.name, cls=ROLE_CLASSES[member.role], **params)


def no_controller() -> None:
    """`mn`'s `findController`: the lab runs no OpenFlow controller."""
    return None


def keep_host_limits() -> None:
    """Mininet's `Mininet.init()` runs `fixLimits()`, which raises sysctls of the host's root namespace;
    the lab never changes those, so `mn` is told that it ran."""
    Mininet.inited = True
