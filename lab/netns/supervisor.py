"""A lab's supervisor: one small process per lab that restarts the lab's daemons when they die.

Kubernetes' kubelet restarts calico-node when it dies (restartPolicy Always) with a back-off; a lab has
no kubelet, so `lab up` starts `python -m lab.netns.supervisor <spec.json>` in the lab's underlay
namespace (where `lab down` finds it) once every daemon is up. It adopts the running daemons through
pidfds (pidfd_open works on processes that are not its children), and when one exits it starts it
again with the same argv in the same namespace, as kubelet does:

- the first restart is immediate, then 10 s, 20 s, 40 s, ... capped at 300 s, and the delay is forgotten
  once a daemon has run for 10 minutes (kubelet's flowcontrol.Backoff: initial 10 s, max 300 s, reset
  after 2 x max). While it waits the daemon is in `crash-loop` (kubelet's CrashLoopBackOff);
- a daemon that exits before it is ready (its ready file written, its control socket answering) counts
  as a crash too.

A daemon stopped on request (`lab fault bird-stop`, `node-down`) is `stopped-by-fault` and not restarted
until started on request. Requests come as one JSON line on the unix socket `<state dir>/supervisor.sock`
and are answered when done. The supervisor writes what it knows, atomically, to
`<state dir>/supervisor-status.json` at every change; `lab status` reads that file. On SIGTERM it exits
and leaves the daemons alone (`lab down` stops it first, then everything else in the lab's namespaces).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.errors import LabError
from lab.netns import pyproc
from lab.netns.unixsock import answers, read_line

SPEC_FILE = "supervisor.json"
STATUS_FILE = "supervisor-status.json"
SOCKET_FILE = "supervisor.sock"
LOG_FILE = "supervisor.log"
MODULE = "lab.netns.supervisor"

BACKOFF_INITIAL = 10.0      # kubelet's (pkg/kubelet/kubelet.go: backOffPeriod, MaxContainerBackOff)
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0       # flowcontrol.Backoff forgets an entry after 2 x max without a new failure
READY_TIMEOUT = 30.0
STOP_GRACE = 5.0

RUNNING, STARTING, RESTARTING, CRASH_LOOP, STOPPED = (
    "running", "starting", "restarting", "crash-loop", "stopped-by-fault")


@dataclass(frozen=True)
class DaemonSpec:
    """How to run one daemon: its argv inside `netns`, and how to tell it is ready.

    `ready` is ("file", path): the daemon writes that file when ready; ("socket", path): a unix socket
    accepts connections; ("none", ""): ready once started. `clean` lists stale files removed before each
    start (a pid file, a control socket, a ready file). `pid_file`, if the daemon writes one, is where
    its pid is read from after a start (nsenter execs the daemon, so the child's pid is normally it).
    `node` is the node the daemon belongs to (`lab fault node-down` stops it), None for lab-wide ones."""

    name: str
    netns: str
    argv: tuple[str, ...]
    log: str
    ready: tuple[str, str] = ("none", "")
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    clean: tuple[str, ...] = ()
    pid_file: str | None = None
    node: str | None = None
    pid: int | None = None          # the instance `lab up` started, adopted by the supervisor

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DaemonSpec:
        return cls(name=data["name"], netns=data["netns"], argv=tuple(data["argv"]), log=data["log"],
                   ready=(data["ready"][0], data["ready"][1]), cwd=data.get("cwd"), env=dict(data.get("env", {})),
                   clean=tuple(data.get("clean", ())), pid_file=data.get("pid_file"), node=data.get("node"),
                   pid=data.get("pid"))


@dataclass
class Backoff:
    """kubelet's restart delay for one daemon: 0 for the first crash, then 10 s doubling to 300 s."""

    initial: float = BACKOFF_INITIAL
    maximum: float = BACKOFF_MAX
    reset_after: float = BACKOFF_RESET
    current: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The delay before restarting a daemon that ran `ran_for` seconds, and advance the back-off."""
        if ran_for >= self.reset_after:
            self.current = 0.0
        delay = self.current
        self.current = self.initial if self.current == 0 else min(self.current * 2, self.maximum)
        return delay


# -- the caller's side -----------------------------------------------------------------------------------
def paths(state_dir: str) -> dict[str, str]:
    return {"spec": os.path.join(state_dir, SPEC_FILE), "status": os.path.join(state_dir, STATUS_FILE),
            "socket": os.path.join(state_dir, SOCKET_FILE), "log": os.path.join(state_dir, LOG_FILE)}


def start(underlay_netns: str, state_dir: str, daemons: list[DaemonSpec], timeout: float = READY_TIMEOUT) -> int:
    """Write the spec, start the supervisor in the lab's underlay namespace, wait for its first status file;
    returns its pid."""
    where = paths(state_dir)
    for stale in (where["status"], where["socket"]):
        _unlink(stale)
    spec = {"state_dir": state_dir, "daemons": [asdict(d) for d in daemons]}
    with open(where["spec"], "w", encoding="utf-8") as handle:
        json.dump(spec, handle, indent=1)
    argv = ["nsenter", f"--net=/run/netns/{underlay_netns}", *pyproc.python_argv(MODULE, where["spec"])]
    with open(where["log"], "a", encoding="utf-8") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                   env={**os.environ, **pyproc.python_env()})
    deadline = time.monotonic() + timeout
    while not os.path.exists(where["status"]) or not os.path.exists(where["socket"]):
        if process.poll() is not None:
            raise LabError(f"the lab's supervisor exited with {process.returncode}: {pyproc.tail(where['log'], 2)}",
                           f"see {where['log']}")
        if time.monotonic() > deadline:
            process.kill()
            raise LabError(f"the lab's supervisor was not ready after {timeout:.0f} s", f"see {where['log']}")
        time.sleep(0.01)
    return process.pid


def read_status(state_dir: str) -> dict[str, Any] | None:
    """The supervisor's last status file, or None when there is none."""
    try:
        with open(paths(state_dir)["status"], encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
            return data
    except (OSError, ValueError):
        return None


def is_supervisor(pid: int) -> bool:
    """Whether `pid` runs a lab supervisor (so teardown can stop it before the daemons it would restart)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return MODULE.encode() in handle.read()
    except OSError:
        return False


def request(state_dir: str, op: str, names: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Ask the running supervisor to `stop` or `start` daemons (or for its `status`); returns its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(paths(state_dir)["socket"])
        except OSError as exc:
            raise LabError(f"the lab's supervisor does not answer ({exc.strerror or exc})",
                           "`lab status` shows whether it runs; `lab down` and `lab up` start a new one") from None
        sock.sendall(json.dumps({"op": op, "names": names}).encode() + b"\n")
        data = read_line(sock)
    finally:
        sock.close()
    answer: dict[str, Any] = json.loads(data or b"{}")
    if not answer.get("ok"):
        raise LabError(f"the lab's supervisor could not {op} {', '.join(names)}: {answer.get('error', 'no answer')}",
                       f"see {paths(state_dir)['log']}")
    return answer


# -- the supervisor ------------------------------------------------------------------------------------
@dataclass
class Daemon:
    """One supervised daemon and what the supervisor knows about it."""

    spec: DaemonSpec
    state: str = STARTING
    pid: int | None = None
    restarts: int = 0
    started: float = 0.0                    # monotonic time of the current instance's start
    since: float = field(default_factory=time.time)   # wall time of the last state change
    last_exit: str = ""
    retry_at: float | None = None           # monotonic time of the next restart (crash-loop, restarting)
    delay: float = 0.0                      # the back-off chosen at the last crash
    ready_by: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    pidfd: int | None = None
    process: subprocess.Popen[bytes] | None = None

    def row(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"name": self.spec.name, "netns": self.spec.netns, "node": self.spec.node, "pid": self.pid,
                "state": self.state, "restarts": self.restarts, "since": self.since, "last_exit": self.last_exit,
                "next_restart_in": round(self.retry_at - now, 1) if self.retry_at is not None else None,
                "delay_s": self.delay, "log": self.spec.log}


class Supervisor:
    def __init__(self, state_dir: str, specs: list[DaemonSpec]) -> None:
        self.where = paths(state_dir)
        self.daemons = {s.name: Daemon(s) for s in specs}
        self.selector = selectors.DefaultSelector()
        self.stop = False

    def log(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}", flush=True)

    # -- status ---------------------------------------------------------------------------------------
    def write_status(self) -> None:
        data = {"pid": os.getpid(), "written": time.time(),
                "daemons": [d.row() for d in self.daemons.values()]}
        temporary = self.where["status"] + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(temporary, self.where["status"])

    def set_state(self, daemon: Daemon, state: str) -> None:
        if daemon.state != state:
            daemon.state, daemon.since = state, time.time()
            self.log(f"{daemon.spec.name}: {state}" + (f" (pid {daemon.pid})" if daemon.pid else ""))

    # -- processes ------------------------------------------------------------------------------------
    def watch(self, daemon: Daemon, pid: int) -> bool:
        """Follow `pid` through a pidfd; False when it no longer exists."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        daemon.pid, daemon.pidfd = pid, fd
        self.selector.register(fd, selectors.EVENT_READ, ("pidfd", daemon.spec.name))
        return True

    def unwatch(self, daemon: Daemon) -> None:
        if daemon.pidfd is not None:
            self.selector.unregister(daemon.pidfd)
            os.close(daemon.pidfd)
            daemon.pidfd = None

    def spawn(self, daemon: Daemon) -> None:
        """Start a new instance (stale files removed first); it is `starting` until ready."""
        spec = daemon.spec
        for stale in spec.clean:
            _unlink(stale)
        os.makedirs(os.path.dirname(spec.log), exist_ok=True)
        argv = ["nsenter", f"--net=/run/netns/{spec.netns}", *spec.argv]
        with open(spec.log, "ab") as log:
            daemon.process = subprocess.Popen(argv, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              start_new_session=True, env={**os.environ, **spec.env})
        daemon.started, daemon.retry_at = time.monotonic(), None
        daemon.ready_by = daemon.started + READY_TIMEOUT
        daemon.pid = daemon.process.pid
        if not self.watch(daemon, daemon.process.pid):
            self.exited(daemon)
            return
        self.set_state(daemon, STARTING)

    def is_ready(self, daemon: Daemon) -> bool:
        kind, path = daemon.spec.ready
        if kind == "file":
            return os.path.exists(path)
        if kind == "socket":
            return answers(path)
        return True

    def exited(self, daemon: Daemon) -> None:
        """A daemon's process ended: reap it, then restart it (after its back-off) unless it was stopped."""
        self.unwatch(daemon)
        code = daemon.process.poll() if daemon.process is not None else None
        if daemon.process is not None and code is None:
            code = daemon.process.wait()
        daemon.process = None
        if daemon.state == STOPPED:
            return
        ran_for = time.monotonic() - daemon.started
        daemon.last_exit = (f"exit code {code}" if code is not None and code >= 0 else
                            f"killed by {signal.Signals(-code).name}" if code is not None else
                            "exited (started by `lab up`: its exit status went to init)")
        daemon.last_exit += f" at {time.strftime('%H:%M:%S')} after {ran_for:.1f} s"
        delay = daemon.delay = daemon.backoff.next_delay(ran_for)
        daemon.retry_at = time.monotonic() + delay
        daemon.pid = None
        self.log(f"{daemon.spec.name}: {daemon.last_exit}; restart in {delay:.0f} s")
        self.set_state(daemon, CRASH_LOOP if delay > 0 else RESTARTING)

    def terminate(self, daemon: Daemon) -> None:
        """Stop a daemon on request (SIGTERM, SIGKILL after a grace period) and keep it stopped."""
        self.set_state(daemon, STOPPED)
        daemon.retry_at = None
        pid = daemon.pid
        if pid is not None and daemon.pidfd is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not _wait_fd(daemon.pidfd, STOP_GRACE):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_fd(daemon.pidfd, STOP_GRACE)
            self.exited(daemon)
        daemon.pid = None
        daemon.last_exit = f"stopped on request at {time.strftime('%H:%M:%S')}"

    def start_now(self, daemon: Daemon) -> None:
        """Start a daemon on request and wait until it is ready (the request's answer waits for it)."""
        if daemon.state in (RUNNING, STARTING) and daemon.pid is not None:
            return
        self.spawn(daemon)
        while daemon.state == STARTING:
            self.check_starting(daemon)
            if daemon.state == STARTING:
                if daemon.pidfd is not None and _wait_fd(daemon.pidfd, 0.02):
                    self.exited(daemon)
        if daemon.state != RUNNING:
            raise RuntimeError(f"{daemon.spec.name} did not start: {daemon.last_exit}; see {daemon.spec.log}")

    def check_starting(self, daemon: Daemon) -> None:
        if self.is_ready(daemon):
            if daemon.spec.pid_file:
                daemon.pid = _read_pid(daemon.spec.pid_file) or daemon.pid
            self.set_state(daemon, RUNNING)
        elif time.monotonic() > daemon.ready_by:
            self.log(f"{daemon.spec.name}: not ready after {READY_TIMEOUT:.0f} s; killing it")
            if daemon.pid is not None:
                try:
                    os.kill(daemon.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- requests ---------------------------------------------------------------------------------------
    def answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            reply = self.handle(json.loads(read_line(conn) or b"{}"))
        except (OSError, ValueError) as exc:
            reply = {"ok": False, "error": str(exc)}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op, names = message.get("op"), list(message.get("names", []))
        unknown = [n for n in names if n not in self.daemons]
        if unknown:
            return {"ok": False, "error": f"no daemon named {', '.join(unknown)}"}
        try:
            for name in names:
                if op == "stop":
                    self.terminate(self.daemons[name])
                elif op == "start":
                    self.start_now(self.daemons[name])
                elif op != "status":
                    return {"ok": False, "error": f"unknown request {op!r}"}
        except RuntimeError as exc:
            return {"ok": False, "error": str(exc)}
        finally:
            self.write_status()
        return {"ok": True, "daemons": [d.row() for d in self.daemons.values()]}

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> int:
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)

        def on_signal(signum: int, _frame: Any) -> None:
            self.stop = True
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)
        self.selector.register(wake_read, selectors.EVENT_READ, ("wake", ""))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _unlink(self.where["socket"])
        listener.bind(self.where["socket"])
        listener.listen(16)
        self.selector.register(listener, selectors.EVENT_READ, ("listen", ""))
        for daemon in self.daemons.values():
            pid = daemon.spec.pid
            if pid is not None and self.watch(daemon, pid):
                daemon.started = time.monotonic()
                self.set_state(daemon, RUNNING)
            else:
                self.log(f"{daemon.spec.name}: not running when the supervisor started")
                daemon.started = time.monotonic()
                self.exited(daemon)
        self.write_status()
        self.log(f"supervising {len(self.daemons)} daemons (pid {os.getpid()})")
        while not self.stop:
            self.step(listener, wake_read)
        self.log("stopped on signal; the daemons are left running")
        listener.close()
        _unlink(self.where["socket"])
        return 0

    def step(self, listener: socket.socket, wake_read: socket.socket) -> None:
        now = time.monotonic()
        deadlines = [d.retry_at for d in self.daemons.values() if d.retry_at is not None]
        starting = any(d.state == STARTING for d in self.daemons.values())
        timeout = min([max(0.0, t - now) for t in deadlines] + ([0.05] if starting else [60.0]))
        changed = False
        for key, _ in self.selector.select(timeout):
            kind, name = key.data
            if kind == "wake":
                try:
                    wake_read.recv(4096)
                except BlockingIOError:
                    pass
            elif kind == "listen":
                conn, _ = listener.accept()
                self.answer(conn)
            elif kind == "pidfd" and name in self.daemons and self.daemons[name].pidfd == key.fd:
                self.exited(self.daemons[name])
                changed = True
            if self.stop:
                return
        now = time.monotonic()
        for daemon in self.daemons.values():
            if daemon.retry_at is not None and daemon.retry_at <= now and daemon.state in (RESTARTING, CRASH_LOOP):
                if not os.path.exists(f"/run/netns/{daemon.spec.netns}"):
                    self.log(f"{daemon.spec.name}: namespace {daemon.spec.netns} is gone; not restarting")
                    daemon.retry_at = None
                    continue
                daemon.restarts += 1
                self.spawn(daemon)
                changed = True
            if daemon.state == STARTING:
                before = daemon.state
                self.check_starting(daemon)
                changed = changed or daemon.state != before
        if changed:
            self.write_status()


def _wait_fd(fd: int, timeout: float) -> bool:
    """Whether `fd` (a pidfd) became readable, i.e. its process ended, within `timeout` seconds."""
    with selectors.DefaultSelector() as one:
        one.register(fd, selectors.EVENT_READ)
        return bool(one.select(timeout))


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m lab.netns.supervisor <supervisor.json>", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        data = json.load(handle)
    return Supervisor(data["state_dir"], [DaemonSpec.from_dict(d) for d in data["daemons"]]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
