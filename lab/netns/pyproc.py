"""How the lab runs its own Python modules as processes: argv, environment, and a log's last lines.

Shared by lab/netns/daemon.py (a lab daemon started directly) and lab/netns/supervisor.py (the supervisor,
and the daemons it starts); it imports nothing of the lab, so neither depends on the other.
"""

from __future__ import annotations

import os
import sys


def python_argv(module: str, spec_path: str) -> list[str]:
    """How a lab daemon is run (inside its namespace): this Python, the module, its spec."""
    return [sys.executable, "-m", module, spec_path]


def python_env() -> dict[str, str]:
    """What a lab daemon needs in its environment: the `lab` package on its path."""
    return {"PYTHONPATH": _package_root()}


def tail(path: str, lines: int = 1) -> str:
    """The last `lines` lines of a log, joined with " / ", or nothing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " / ".join(handle.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


def _package_root() -> str:
    """The directory holding the `lab` package, for the daemon's PYTHONPATH."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
