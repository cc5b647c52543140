"""Apply a LabPlan to the kernel, and undo it: create namespaces, configure each, roll back on failure."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Iterable

from lab.errors import ApplyError
from lab.netns import iptables, namespace, netlink, supervisor, tc
from lab.netns.plan import LabPlan


@dataclass(frozen=True)
class Removal:
    """What tearing down found and removed."""

    namespaces: int
    processes: int


class FaultInjected(RuntimeError):
    """Raised on purpose by `apply_plan(fail_after=...)`, to test rollback."""


def apply_plan(plan: LabPlan, fail_after: int | None = None) -> None:
    """Create every namespace, then configure them in plan order.

    On failure the caller rolls back (removes the plan's namespaces). `fail_after=N` raises after
    N namespaces have been configured: a seam for rollback tests.
    """
    names = [ns.name for ns in plan.namespaces]
    try:
        namespace.create_many(names)
    except OSError as exc:
        raise ApplyError(f"could not create network namespace: {exc.strerror or exc}",
                         "run `lab cleanup` to remove what an earlier lab left behind") from None
    fds = netlink.open_netns_fds(names)
    configured = 0

    def configure(name: str) -> list[netlink.Failure]:
        nonlocal configured
        if fail_after is not None and configured >= fail_after:
            raise FaultInjected(f"fault injected after {configured} namespaces")
        configured += 1
        try:
            return netlink.apply_namespace(plan.namespace(name), fds)
        except OSError as exc:
            return [netlink.Failure(name, "the netlink exchange", exc.errno or 1)]

    try:
        failures = [f for result in namespace.run_in_each(names, configure) for f in result]
    finally:
        netlink.close_fds(fds)
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise ApplyError(f"the kernel refused {failures[0]}{more}",
                         "the lab was rolled back; `lab up --dry-run` shows the commands it tried")
    tc.apply_all(plan)
    iptables.apply_all(plan)


def remove_namespaces(names: Iterable[str], grace: float = 1.0) -> Removal:
    """Stop every process living in the namespaces, then remove the namespaces."""
    names = [n for n in names if namespace.exists(n)]
    inodes = {ino for n in names if (ino := namespace.inode(n)) is not None}
    pids = [pid for group in namespace.pids_by_namespace(inodes).values() for pid in group]
    supervisors = [pid for pid in pids if supervisor.is_supervisor(pid)]   # first, so nothing is restarted
    stopped = stop_processes(supervisors, grace) + stop_processes([p for p in pids if p not in supervisors], grace)
    removed = sum(1 for n in names if namespace.remove(n))
    return Removal(namespaces=removed, processes=stopped)


def stop_processes(pids: list[int], grace: float = 1.0) -> int:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left; returns how many were signalled."""
    signalled = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return signalled


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
