"""tcpdump inside a namespace while traffic flows."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


class Capture:
    def __init__(self) -> None:
        self.lines: list[str] = []


@contextmanager
def tcpdump(netns: str, iface: str, bpf: str, extra: tuple[str, ...] = (), seconds: int = 4) -> Iterator[Capture]:
    """Capture on `iface` in `netns` for the block (plus up to `seconds` after it); lines land in .lines."""
    argv = ["ip", "netns", "exec", netns, "timeout", str(seconds + 6), "tcpdump", "-l", "-nn", "-i", iface,
            *extra, bpf]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    capture = Capture()
    try:
        banner = ""
        while "listening on" not in banner:
            line = proc.stderr.readline()
            assert line, f"tcpdump did not start: {banner}"
            banner += line
        yield capture
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=seconds + 10)
        capture.lines = out.splitlines()
