"""Apply a LabPlan to the kernel, and undo it: create namespaces, configure each, roll back on failure.

Quiet switch ports (`Link.quiet`: the underlay's segment switches) flood no multicast while the lab is
built, and flood again once every namespace is configured. Each node's eth0 starts IPv6 on coming up:
duplicate address detection, MLD reports and router solicitations, about six link-local multicast
packets that no other host on the segment acts on (it is not a member of the groups, nor a router).
A switch floods each to every port, so a segment of N nodes would deliver about 6 N² of them while
it is built (6 million at 1000 nodes, a quarter of the machine's time). Held back, they are simply
not delivered; what the lab leaves is the same: a switch that floods multicast to every port.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from lab.errors import ApplyError
from lab.netns import iptables, namespace, netlink, procfs, supervisor, tc
from lab.netns import workers as workers_
from lab.netns.plan import LabPlan, NamespacePlan


@dataclass(frozen=True)
class Removal:
    """What tearing down found and removed."""

    namespaces: int
    processes: int


class FaultInjected(RuntimeError):
    """Raised on purpose by `apply_plan(fail_after=...)`, to test rollback."""


def apply_plan(plan: LabPlan, fail_after: int | None = None, parallelism: workers_.Parallelism | None = None
               ) -> None:
    """Create every namespace, then configure them (on every CPU, lab.netns.workers: devices, addresses,
    routes, iptables), then load tc, then let the quiet switch ports flood again.

    On failure the caller rolls back (removes the plan's namespaces). `fail_after=N` raises
    FaultInjected on reaching the namespace at position N of the plan (whichever worker configures
    it): a seam for rollback tests. `parallelism` sets the worker count (default: the CPUs available).
    """
    with workers_.collector_paused():
        _apply(plan, fail_after, parallelism)


def _apply(plan: LabPlan, fail_after: int | None, parallelism: workers_.Parallelism | None) -> None:
    names = [ns.name for ns in plan.namespaces]
    try:
        namespace.create_many(names)
    except OSError as exc:
        raise ApplyError(f"could not create network namespace: {exc.strerror or exc}",
                         "run `lab cleanup` to remove what an earlier lab left behind") from None
    failures = configure_all(plan, fail_after, parallelism)
    if failures:
        raise _refused(failures)
    tc.apply_all(plan)
    flood_again(plan)


def _refused(failures: list[netlink.Failure]) -> ApplyError:
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    if first.what == iptables.WHAT:
        message = f"iptables-restore refused the rules of {first.netns}: {first.detail}{more}"
    else:
        message = f"the kernel refused {first}{more}"
    return ApplyError(message, "the lab was rolled back; `lab up --dry-run` shows the commands it tried")


def configure_all(plan: LabPlan, fail_after: int | None = None, parallelism: workers_.Parallelism | None = None
                  ) -> list[netlink.Failure]:
    """Every namespace's devices, sysctls, addresses, neighbours, fdb entries, routes, then its iptables rules
    (loaded by the worker that configured it, so they overlap the other workers' netlink); the refusals."""
    fds = netlink.open_netns_fds([ns.name for ns in plan.namespaces])
    position = {ns.name: i for i, ns in enumerate(plan.namespaces)}
    local = threading.local()   # each worker thread: sysctls through a procfs of its own, a message cache

    def configure(ns: NamespacePlan) -> list[netlink.Failure]:
        if fail_after is not None and position[ns.name] == fail_after:
            raise FaultInjected(f"fault injected after {fail_after} namespaces")
        if not hasattr(local, "sysctls"):
            local.sysctls, local.messages = procfs.SysctlWriter(), netlink.MessageCache()
        try:
            failures = netlink.apply_namespace(ns, fds, local.sysctls, local.messages)
        except OSError as exc:
            return [netlink.Failure(ns.name, "the netlink exchange", exc.errno or 1)]
        complaint = iptables.restore_here(ns) if ns.iptables else None
        if complaint is not None:
            failures.append(netlink.Failure(ns.name, iptables.WHAT, 0, complaint))
        return failures

    try:
        return workers_.configure_waves(plan, configure, parallelism or workers_.Parallelism())
    except workers_.WorkerFault as exc:
        if exc.kind == FaultInjected.__name__:
            raise FaultInjected(str(exc)) from None
        raise ApplyError(f"a worker configuring the namespaces failed: {exc.kind}: {exc}",
                         "the lab was rolled back; this is a bug in lab, please report it") from None
    finally:
        netlink.close_fds(fds)


def flood_again(plan: LabPlan) -> None:
    """Let every quiet switch port of the plan flood multicast again (the module's docstring says why)."""
    quiet = {ns.name: ns for ns in plan.namespaces if any(link.quiet for link in ns.links)}
    failures = [f for found in namespace.run_in_each(list(quiet), lambda name: netlink.flood_again(quiet[name]))
                for f in found]
    if failures:
        raise _refused(failures)


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
