"""Running measurement tools inside a lab's namespaces: one-shot clients and servers that are always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import TracebackType

from lab.errors import LabError

SERVER_READY_TIMEOUT = 5.0


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

    def __enter__(self) -> "Server":
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

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            if process is not None and process.stderr:
                process.stderr.close()
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        if process.stderr:
            process.stderr.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
