"""Running measurement tools inside a lab's namespaces: one-shot clients and servers that are always stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType

from lab.errors import LabError
from lab.netns import procgroup

SERVER_READY_TIMEOUT = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ToolError(LabError):
    """A measurement tool failed; the message carries its output."""


def in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def run(netns: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `netns` to completion; a non-zero exit is a ToolError with its output."""
    try:
        done = subprocess.run(in_netns(netns, argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{' '.join(argv)} in {netns} did not finish within {timeout:.0f} s",
                        "the pair may not be reachable; check it with `lab ping`") from exc
    if done.returncode != 0:
        raise ToolError(f"{' '.join(argv)} in {netns} exited {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()[-400:]}")
    return done


@dataclass(frozen=True)
class Usage:
    """What one process used: CPU seconds (user + system) and peak resident memory (VmHWM), in kB."""

    cpu_s: float
    peak_rss_kb: int


def run_measured(netns: str, argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str], Usage]:
    """`run`, and the tool's own CPU time (wait4's rusage: `ip netns exec` execs the tool in place, so the
    child is the tool itself) and peak RSS: its /proc/<pid>/status VmHWM, read every 10 ms while it runs
    (the last reading before it exits; rusage's ru_maxrss would count the forked Python before exec)."""
    full = in_netns(netns, argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(full, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = peak_rss_kb(process.pid) or peak
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise ToolError(f"{' '.join(argv)} in {netns} did not finish within {timeout:.0f} s",
                                "the pair may not be reachable; check it with `lab ping`")
            time.sleep(0.01)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(full, process.returncode, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
    if done.returncode != 0:
        raise ToolError(f"{' '.join(argv)} in {netns} exited {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()[-400:]}")
    return done, Usage(usage.ru_utime + usage.ru_stime, peak)


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a running process (/proc/<pid>/stat), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM of a running process (/proc/<pid>/status), in kB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith("VmHWM:")), None)
    except OSError:
        return None


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs one of the lab's Python modules with this interpreter."""
    return [sys.executable, "-m", module, *args]


def listening(netns: str, port: int, udp: bool) -> bool:
    """True when something in `netns` listens on `port` (TCP) or has it bound (UDP)."""
    flag = "-Hlun" if udp else "-Hltn"
    done = subprocess.run(in_netns(netns, ["ss", flag, f"sport = :{port}"]), capture_output=True, text=True)
    return bool(done.stdout.strip())


class Server:
    """A server process in a namespace, from `with` until exit; terminated (then killed) on exit.

    It runs in its own session, so a Ctrl-C in the terminal reaches the runner, which stops it."""

    def __init__(self, netns: str, argv: list[str], port: int, udp: bool = False) -> None:
        self.netns, self.argv, self.port, self.udp = netns, argv, port, udp
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(in_netns(self.netns, self.argv), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + SERVER_READY_TIMEOUT
        while not listening(self.netns, self.port, self.udp):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.stop()
                raise ToolError(f"{' '.join(self.argv)} in {self.netns} exited {self.process.returncode}: "
                                f"{err.strip()[-400:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ToolError(f"{' '.join(self.argv)} in {self.netns} is not listening on port {self.port} "
                                f"after {SERVER_READY_TIMEOUT:.0f} s")
            time.sleep(0.02)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The server's pid (the tool itself: `ip netns exec` execs it in place)."""
        return self.process.pid if self.process is not None else None

    def cpu_s(self) -> float | None:
        return process_cpu_s(self.pid) if self.pid is not None else None

    def peak_rss_kb(self) -> int | None:
        return peak_rss_kb(self.pid) if self.pid is not None else None

    def stop(self) -> None:
        if self.process is not None:
            procgroup.stop_groups([self.process])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
