"""`mn --custom`: the lab's cluster as a Mininet topology (`--topo lab,<topology>`).

`LabTopo` brings the lab up with `lab up` (or takes the lab that is up) and describes its namespaces to
Mininet: pods, nodes and external hosts as hosts (`LabPod`, `LabNode`, `LabExternal`), the underlay as
the one switch (`LabUnderlaySwitch`: Linux bridges, no OpenFlow). The lab wires them; the topology has no
Mininet links (Mininet would create new veth pairs). A lab that `mn` brought up is removed when `mn`
exits, however it exits (normal end, exception, Ctrl-C, SIGTERM, SIGHUP); `lab down` removes it too,
whichever comes first. custom.py, the file `mn` loads, binds the names `mn` looks up: `topos`, `CLI`
(lab names as node names), `findController` (none), `Mininet` (`LabMininet`: the lab's iperf, no
`link` status changes), `cleanup` (`lab_cleanup`: only this mn's shells and lab, never Mininet's
machine-wide `mn -c`) and `validate` (refuses the options that would build beside the lab).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from mininet.net import Mininet
from mininet.topo import Topo

from lab.errors import LabError
from lab.mininet import inventory
from lab.mininet.net import LabNet, open_lab
from lab.mininet.node import ROLE_CLASSES, LabUnderlaySwitch

OWNER_FILE = "mn-owner"


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def orphaned_labs(lab_ops: Any) -> list[str]:
    """Labs brought up by an `mn` that no longer runs (killed with SIGKILL, say): their state directory
    holds `mn-owner` (pid and start time of that mn) and no such process exists."""
    found = []
    for lab in lab_ops.store.labs():
        try:
            owner = Path(lab_ops.store.lab_dir(lab), OWNER_FILE).read_text().split()
        except (OSError, LabError):
            continue
        if len(owner) == 2 and _start_time(int(owner[0])) != owner[1]:
            found.append(lab)
    return found


class StartedLabs:
    """The labs this `mn` process brought up (so that its exit, however it comes, removes them)."""

    def __init__(self) -> None:
        self.labs: list[tuple[Any, str]] = []

    def add(self, lab_ops: Any, lab: str) -> None:
        """Remember `lab`, and mark it in its state directory (`lab down` removes the mark with it)."""
        self.labs.append((lab_ops, lab))
        Path(lab_ops.store.lab_dir(lab), OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")

    def down(self) -> None:
        """`lab down` each lab this mn brought up that is still up (a `lab down` may have come first)."""
        while self.labs:
            lab_ops, lab = self.labs.pop()
            try:
                if lab_ops.store.load(lab) is not None:
                    lab_ops.down(lab)
            except Exception as exc:  # noqa: BLE001 (at exit: say it, do not mask mn's own status)
                _say(f"lab: error: could not remove lab {lab}: {exc}; run `lab down {lab}`")


STARTED = StartedLabs()


def _say(message: str) -> None:
    """Print to stderr; after a SIGHUP the terminal may be gone, which must not stop the clean-up."""
    try:
        print(message, file=sys.stderr)
    except OSError:
        pass


def _own_shells() -> list[int]:
    """Pids of this process's Mininet node shells (`... mininet:<node>`, children of this mn)."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and any(arg.startswith(b"mininet:") for arg in cmdline):
            found.append(int(entry))
    return found


def stop_own_shells(wait: float = 5.0) -> None:
    """Hang up this mn's node shells and what they started (each leads its own process group: mnexec -d),
    then kill them; reap them for at most `wait` seconds (an exit must never block on a shell)."""
    shells = _own_shells()
    for pid in shells:
        for sig in (signal.SIGHUP, signal.SIGKILL):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, sig)
                except OSError:
                    pass
    deadline = time.monotonic() + wait
    pending = set(shells)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.05)


def lab_cleanup() -> None:
    """`mn`'s `cleanup()` under the lab's custom file (on an exception, Ctrl-C, or `mn -c`): end this mn's
    own node shells and remove the labs it brought up, and those an `mn` brought up that no longer runs
    (so `mn --custom <file> -c` removes a lab of a killed mn). Mininet's own cleanup is machine-wide (`killall -9
    ping mnexec ...`, `pkill -9 -f mininet:`, `rm -f /tmp/*.out /tmp/*.log`) and is never run."""
    _say("*** lab: cleaning up this mn only (its node shells, the lab it brought up, labs of an mn that "
         "no longer runs); Mininet's machine-wide cleanup (`mn -c`) is not run")
    stop_own_shells()
    STARTED.down()
    from lab.lifecycle import Lab
    lab_ops = Lab()
    for lab in orphaned_labs(lab_ops):
        _say(f"*** lab: removing lab {lab}, brought up by an mn that no longer runs")
        STARTED.add(lab_ops, lab)
        STARTED.down()


def _exit_on_signal(signum: int, _frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


def install_exit_hooks() -> None:
    """SIGTERM and SIGHUP (a closed terminal) become SystemExit, so that the atexit hook runs; Mininet's
    own clean-up callbacks (`mininet.clean.cleanup()` in this process) also remove the lab."""
    from mininet.clean import Cleanup
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    atexit.register(stop_own_shells_and_down)
    Cleanup.addCleanupCallback(STARTED.down)


def stop_own_shells_and_down() -> None:
    if STARTED.labs:
        stop_own_shells()
        STARTED.down()


def _refuse(message: str) -> NoReturn:
    """Leave `mn` with the lab's error and status 2. A SystemExit, because on an Exception `mn` runs its
    `cleanup()` (here `lab_cleanup`; without the custom file, Mininet's machine-wide one)."""
    print(f"lab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class LabTopo(Topo):
    """`--topo lab,<topology>`."""

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
            STARTED.add(lab_ops, name)
        self.lab = name
        for member in inventory.members(lab_ops.status(name)):
            params = {"netns": member.netns, "role": member.role, "lab_ip": member.ip}
            if member.role == "underlay":
                self.addSwitch(member.name, cls=LabUnderlaySwitch, **params)
            else:
                self.addHost(member.name, cls=ROLE_CLASSES[member.role], **params)


class LabMininet(Mininet):
    """The `Mininet` class `mn` builds under the lab's custom file: Mininet's, with the lab's `iperf`
    (Mininet 2.3's waits for two `/sec` reports iperf 2.1.8 never prints) and no `link` status changes."""

    iperf = LabNet.iperf
    configLinkStatus = LabNet.configLinkStatus

    @property
    def lab(self) -> str | None:
        return getattr(self.topo, "lab", None)


REFUSED = {"nat": "--nat (a NAT node in the root namespace)", "arp": "--arp (static ARP over the lab's)",
           "innamespace": "--innamespace (a control network in the root namespace)"}


def validate(opts: Any) -> None:
    """`mn`'s `validate`: refuse options that would build beside the lab or change the host."""
    refused = [text for key, text in REFUSED.items() if getattr(opts, key, False)]
    if getattr(opts, "switch", "default") not in ("default", "ovsbr"):
        refused.append(f"--switch {opts.switch} (the underlay is the lab's Linux bridges)")
    if [c for c in getattr(opts, "controller", None) or [] if c != "none"]:
        refused.append(f"--controller {','.join(opts.controller)} (the lab runs no OpenFlow controller)")
    if refused:
        _refuse(f"mn --topo lab does not take {'; '.join(refused)}: the lab builds the network "
                "(see docs/design.md, Mininet); drop these options")


def no_controller() -> None:
    """`mn`'s `findController`: the lab runs no OpenFlow controller."""
    return None


def keep_host_limits() -> None:
    """Mininet's `Mininet.init()` runs `fixLimits()`, which raises sysctls of the host's root namespace
    (and fs.file-max, kernel.pty.max); the lab never changes those, so `mn` is told that it ran."""
    Mininet.inited = True


__all__ = ["LabMininet", "LabTopo", "lab_cleanup", "validate", "no_controller", "keep_host_limits",
           "install_exit_hooks"]
