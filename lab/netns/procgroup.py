"""Stopping tools the lab started in process groups of their own (tcpdump, iperf3, sockperf, ...)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send `signum` to the process group led by `process`, if it still runs."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass


def stop_groups(processes: list[subprocess.Popen[Any]], first: int = signal.SIGTERM, grace: float = 2.0) -> None:
    """Send `first` to every group, give them `grace` seconds together, then SIGKILL; reap all and close stderr."""
    for process in processes:
        signal_group(process, first)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
        if process.stderr:
            process.stderr.close()
