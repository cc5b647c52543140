"""`lab mininet`: Mininet's own CLI (`mininet.cli.CLI`) over a running lab's `LabNet`.

Lab names such as `k8s-node01` and `default/bs1` are words for this CLI (Mininet's splits a line at
the first character that is not a letter, digit or `_`); in `py`, each node is also bound to a Python
name with every other character replaced by `_` (`k8s_node01`, `default_bs1`). Mininet's own `CLI(net)`
cannot reach such names; scripts use `LabCLI(net)` (or `net.interact()`, which runs it).

Before each command the CLI checks that every node's shell runs and its namespace exists: after a
`lab down` (from `sh lab down <lab>` or another terminal) a command would wait forever on a shell that
is gone, so the CLI says so and ends. `link a b up|down` is refused (see `lab.mininet.net`).
"""

from __future__ import annotations

import re
from cmd import Cmd
from typing import Any

from mininet.cli import CLI
from mininet.log import error

from lab.errors import LabError
from lab.mininet.net import dead_members

LEAVE = ("exit", "quit", "EOF")


def py_alias(name: str) -> str:
    """The Python name `py` binds a node to: `default/bs1` -> `default_bs1`."""
    alias = re.sub(r"\W", "_", name)
    return alias if alias[:1].isalpha() or alias[:1] == "_" else f"_{alias}"


class LabCLI(CLI):
    """Mininet's CLI, with lab names as node names and a clear word for an unknown one."""

    identchars = Cmd.identchars + "-./"
    prompt = "mininet> "

    def getLocals(self) -> dict[str, Any]:  # noqa: N802 (Mininet's name)
        found: dict[str, Any] = super().getLocals()
        found.update({py_alias(name): self.mn[name] for name in self.mn})
        return found

    def default(self, line: str) -> None:
        first, _args, _line = self.parseline(line)
        if first and first not in self.mn:
            error(f"*** Unknown command or node: {first}\n"
                  f"*** nodes are: {' '.join(self.mn)} (pods as namespace/pod; `nodes` lists them, "
                  f"`help` the commands)\n")
            return
        super().default(line)

    def onecmd(self, line: str) -> bool:
        first = line.strip().split(" ", 1)[0]
        if first and first not in LEAVE:
            dead = dead_members(self.mn)
            if dead:
                lab = getattr(self.mn, "lab", None) or "the lab"
                error(f"*** lab {lab} is down or its node shells ended ({', '.join(dead[:4])}"
                      f"{' ...' if len(dead) > 4 else ''}): leaving the CLI; "
                      f"`lab up <topology>` and run it again\n")
                return True
        return bool(super().onecmd(line))

    def do_link(self, line: str) -> None:
        """Refused over a lab: `link a b down` then `up` loses the routes the CNI put on that interface."""
        args = line.split()
        try:
            if len(args) != 3:
                raise LabError("invalid number of args: link end1 end2 [up down]", "see `help link`")
            self.mn.configLinkStatus(*args)
        except LabError as exc:
            error(f"*** {exc}\n")
