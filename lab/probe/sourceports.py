"""Fresh UDP source ports for probes, so that no probe rides on an earlier probe's conntrack entry.

Both enforcers accept `ctstate RELATED,ESTABLISHED` before any policy, as the real ones do, and a
UDP conntrack entry outlives its flow (30 s unreplied, 120 s once a reply was seen). A probe that
happened to reuse the source port of an earlier allowed probe of the same pair would therefore pass
a policy that denies new flows: real behaviour for a long-lived flow, a false "allowed" for a probe.
So every UDP probe binds a source port from a window below the kernel's ephemeral range, and each
`lab probe` run takes the next window: a per-lab cursor in the lab's state directory, advanced under
a file lock, only wraps after hundreds of runs, far longer than any conntrack timeout.
"""

from __future__ import annotations

import fcntl
import os
import random

LOW, HIGH = 20000, 32767   # the kernel's ephemeral range (ip_local_port_range) starts at 32768
SPAN = HIGH - LOW + 1


class SourcePorts:
    """Windows of UDP source ports, handed out in turn; with `path`, the cursor is shared by every run."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.cursor = random.randrange(SPAN)   # used only without a path

    def reserve(self, count: int) -> int:
        """The first port of a window of `count` ports that no recent run used (ports wrap at HIGH)."""
        count = max(1, min(count, SPAN))
        if self.path is None:
            start, self.cursor = self.cursor, (self.cursor + count) % SPAN
            return LOW + start
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read().strip()
            start = int(text) % SPAN if text.isdigit() else 0
            handle.seek(0)
            handle.truncate()
            handle.write(str((start + count) % SPAN))
        return LOW + start


def port_at(first: int, index: int) -> int:
    """The `index`-th port of a window starting at `first`, wrapping within LOW..HIGH."""
    return LOW + (first - LOW + index) % SPAN
