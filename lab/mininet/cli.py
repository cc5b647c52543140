"""`lab mininet`: Mininet's own CLI (`mininet.cli.CLI`) over a running lab's `LabNet`.

Lab names such as `k8s-node01` and `default/bs1` are words for this CLI (Mininet's splits a line at
the first character that is not a letter, digit or `_`); in `py`, each node is also bound to a Python
name with every other character replaced by `_` (`k8s_node01`, `default_bs1`).
"""

from __future__ import annotations

import re
from cmd import Cmd
from typing import Any

from mininet.cli import CLI
from mininet.log import error


def py_alias(name: str) -> str:
    """The Python name `py` binds a node to: `default/bs1` -> `default_bs1`."""
    alias = re.sub(r"\W", "_", name)
    return alias if alias[:1].isalpha() or alias[:1] == "_" else f"_{alias}"


class LabCLI(CLI):
    """Mininet's CLI, with lab names as node names and a clear word for an unknown one."""

    identchars = Cmd.identchars + "-./"
    prompt = "mininet> "

    def getLocals(self) -> dict[str, Any]:  # noqa: N802 (Mininet's name)
        found = super().getLocals()
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
