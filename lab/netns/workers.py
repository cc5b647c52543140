"""Configure a plan's namespaces on several CPUs: waves of independent namespaces, shared out to
worker processes.

A namespace can be configured once the namespaces that create its veth peers have been (the underlay
makes every node's eth0, a node makes its pods' eth0). So the plan is cut into waves: wave 0 holds
the namespaces nobody creates devices in, wave k those whose devices come from wave k-1. Within a
wave namespaces are independent, so each wave is shared out: the calling process configures one
share (on a helper thread, which enters each namespace) while forked worker processes configure the
others. Python's encoding runs on every CPU; the kernel serialises only what it must (RTNL).

The outcome is the same as configuring the plan in order: every namespace gets exactly its plan,
and any failure, in any worker, is reported to the caller, which rolls the whole lab back. A plan
whose order does not put creators first is configured serially, in one wave.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.netns import namespace
from lab.netns.plan import LabPlan, NamespacePlan

if TYPE_CHECKING:
    from lab.netns.netlink import Failure

PR_SET_PDEATHSIG = 1

# What configuring one namespace returns: the kernel's refusals (empty when all was accepted).
Configure = Callable[[NamespacePlan], list["Failure"]]


class WorkerFault(RuntimeError):
    """An exception raised inside a worker process, carried back to the caller by its message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Outcome:
    """What a share of namespaces produced: the refusals, or the exception that stopped it."""

    failures: tuple[Failure, ...]
    error: tuple[str, str] | None = None   # (exception class name, message)


@dataclass(frozen=True)
class Parallelism:
    """How many workers configure a wave (None: one per CPU), and the fewest namespaces worth a worker."""

    workers: int | None = None
    min_share: int = 64


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the block: while a big plan is made or applied it is millions of
    long-lived objects, and each collection would walk them all again (4% of a 300-node `up`'s CPU).
    Planning and applying make little cyclic garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def waves(plan: LabPlan) -> list[list[NamespacePlan]]:
    """The plan's namespaces by dependency wave, each wave in plan order."""
    level: dict[str, int] = {}
    seen: set[str] = set()
    for ns in plan.namespaces:
        seen.add(ns.name)
        mine = level.setdefault(ns.name, 0)
        for link in ns.links:
            if link.peer is None or link.peer.netns == ns.name:
                continue
            if link.peer.netns in seen:
                return [list(plan.namespaces)]   # a device made in a namespace already configured
            level[link.peer.netns] = max(level.get(link.peer.netns, 0), mine + 1)
    result: list[list[NamespacePlan]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for ns in plan.namespaces:
        result[level[ns.name]].append(ns)
    return result


def weight(ns: NamespacePlan) -> int:
    """A namespace's work, roughly in netlink messages (a device costs a few)."""
    return (4 * len(ns.links) + len(ns.addresses) + len(ns.routes) + len(ns.neighbours) + len(ns.fdb)
            + 2 * len(ns.sysctls) + 1)


def shares(wave: Sequence[NamespacePlan], count: int) -> list[list[NamespacePlan]]:
    """`wave` cut into at most `count` consecutive runs of about equal weight, in order."""
    total = sum(weight(ns) for ns in wave)
    result: list[list[NamespacePlan]] = [[]]
    done = 0
    for ns in wave:
        if len(result) < count and result[-1] and done >= total * len(result) / count:
            result.append([])
        result[-1].append(ns)
        done += weight(ns)
    return [share for share in result if share]


def configure_waves(plan: LabPlan, configure: Configure, parallelism: Parallelism | None = None) -> list[Failure]:
    """Configure every namespace of `plan` with `configure` (called on a thread inside it); returns
    every refusal. Exceptions raised by `configure` (in this process or a worker) are re-raised here
    once all the wave's workers have stopped: as themselves in this process, as WorkerFault from a worker."""
    parallelism = parallelism or Parallelism()
    count = cpus() if parallelism.workers is None else max(1, parallelism.workers)
    failures: list[Failure] = []
    for wave in waves(plan):
        parts = shares(wave, max(1, min(count, len(wave) // max(1, parallelism.min_share))))
        failures += _run_wave(parts, configure)
    return failures


def _run_wave(parts: list[list[NamespacePlan]], configure: Configure) -> list[Failure]:
    children: list[tuple[int, int]] = []
    try:
        for part in parts[1:]:
            children.append(_fork(part, configure))
        local: list[Failure] = []
        error: BaseException | None = None
        try:
            local = _configure_share(parts[0], configure) if parts else []
        except Exception as exc:  # the workers are collected before it propagates
            error = exc
        outcomes = []
        while children:
            outcomes.append(_collect(*children[0]))
            children.pop(0)
    finally:
        _kill(children)   # interrupted (Ctrl-C): no worker may outlive the call and race the rollback
    if error is not None:
        raise error
    for outcome in outcomes:
        if outcome.error is not None:
            raise WorkerFault(*outcome.error)
    return local + [f for outcome in outcomes for f in outcome.failures]


def _kill(children: list[tuple[int, int]]) -> None:
    """Stop and reap workers not yet collected (their pipe may already be closed by an interrupted read),
    with whatever they started (an iptables-restore): each worker leads a process group of its own."""
    for pid, reader in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:
            os.close(reader)
        except OSError:
            pass


def _configure_share(part: list[NamespacePlan], configure: Configure) -> list[Failure]:
    by_name = {ns.name: ns for ns in part}
    return [f for result in namespace.run_in_each(list(by_name), lambda name: configure(by_name[name]))
            for f in result]


def _fork(part: list[NamespacePlan], configure: Configure) -> tuple[int, int]:
    """A worker process configuring `part`; returns (pid, read end of the pipe carrying its Outcome)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 0
        try:
            _own_process_group()
            _die_with_parent()
            os.close(reader)
            try:
                outcome = Outcome(tuple(_configure_share(part, configure)))
            except BaseException as exc:
                outcome = Outcome((), (type(exc).__name__, str(exc) or traceback.format_exc(limit=3)))
            data = pickle.dumps(outcome)
            view = memoryview(data)
            while view:
                view = view[os.write(writer, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(writer)
    _own_process_group(pid)   # here too: whichever runs first, the group exists before anyone signals it
    return pid, reader


def _own_process_group(pid: int = 0) -> None:
    """Make the worker `pid` (0: this process) the leader of a process group of its own."""
    try:
        os.setpgid(pid, pid)
    except OSError:   # the worker already did it (EACCES once it has run), or has exited
        pass


def _die_with_parent() -> None:
    """SIGKILL this worker if the lab process dies (killed `lab up`): nothing may go on configuring a lab
    that `lab cleanup` is removing. Where prctl is missing, the worker finishes its share and exits."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _collect(pid: int, reader: int) -> Outcome:
    chunks = []
    try:
        while chunk := os.read(reader, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(reader)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        return Outcome((), ("WorkerDied", f"a worker process exited with status {os.waitstatus_to_exitcode(status)} "
                                          "before reporting"))
    try:
        outcome: Outcome = pickle.loads(b"".join(chunks))
        return outcome
    except (pickle.UnpicklingError, EOFError, AttributeError) as exc:
        return Outcome((), ("WorkerDied", f"a worker's report was unreadable: {exc}"))
