"""When is a lab ready? The checks `lab up` and `lab wait` poll until a person can use the lab.

A lab is ready when its data plane says so (Calico: every BGP session the configuration implies is
Established and every node routes every block it should learn; Flannel: nothing more, its plan is the
whole data plane) and its probe servers are answering. A check reports how far it is, so the wait can
show progress and, on a timeout, name exactly what is missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.netns.state import StateStore
from lab.topology.model import Topology

POLL_INTERVAL = 0.1
SHOWN_MISSING = 20


@dataclass(frozen=True)
class Check:
    """One readiness condition: `done` of `total` things are ready; `missing` names the others."""

    what: str
    done: int
    total: int
    missing: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.done >= self.total

    def progress(self) -> str:
        return f"{self.what} {self.done}/{self.total}"

    def explain(self, limit: int = SHOWN_MISSING) -> str:
        shown = ", ".join(self.missing[:limit])
        more = f" and {len(self.missing) - limit} more" if len(self.missing) > limit else ""
        return f"{self.progress()}; not ready: {shown}{more}" if shown else self.progress()


@dataclass(frozen=True)
class Readiness:
    """The outcome of a wait: how long it took and the last view of every check."""

    seconds: float
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ready for check in self.checks)

    def pending(self) -> list[Check]:
        return [check for check in self.checks if not check.ready]


def probe_servers(runtime: dict[str, Any]) -> list[Check]:
    """The lab's probe-server process is alive and has written its ready file (every socket bound)."""
    servers = runtime.get("probe_servers")
    if not servers:
        return []
    alive = _alive(servers.get("pid")) and os.path.exists(servers.get("ready", ""))
    return [Check("probe servers answering", int(alive), 1, () if alive else (f"pid {servers.get('pid')}",))]


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


DataplaneChecks = Callable[[Topology, StateStore, dict[str, Any]], list[Check]]


def wait(checks: Callable[[], list[Check]], timeout: float,
         on_progress: Callable[[list[Check]], None] | None = None) -> Readiness:
    """Poll `checks` until all are ready or `timeout` seconds pass; report progress after every poll."""
    start = time.monotonic()
    while True:
        current = checks()
        if on_progress is not None:
            on_progress(current)
        elapsed = time.monotonic() - start
        result = Readiness(elapsed, tuple(current))
        if result.ready or elapsed >= timeout:
            return result
        time.sleep(min(POLL_INTERVAL, max(0.0, timeout - elapsed)))
