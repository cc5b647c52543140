"""Reachability truth tables, printed as cyclonus prints them (a bordered grid, sources down, destinations across).

Cells: `.` allowed, `X` denied, `?` unsupported (the kernel cannot speak the protocol), `-` not
probed (the destination does not serve that port). The title sits in the top-left cell, where
cyclonus puts the probe's port and protocol. Headers are centred and cells left-aligned, as
tablewriter draws them; pod keys are kept as they are (tablewriter would upper-case them).
"""

from __future__ import annotations

from collections.abc import Mapping

MARKS = {True: ".", False: "X", None: "?"}
NOT_PROBED = "-"


def mark(verdicts: Mapping[tuple[str, str], bool | None], src: str, dst: str) -> str:
    """The cell for one ordered pair."""
    if (src, dst) not in verdicts:
        return NOT_PROBED
    return MARKS[verdicts[(src, dst)]]


def _centre(text: str, width: int) -> str:
    """Centred as tablewriter pads: the odd space goes to the right."""
    gap = width - len(text)
    return " " * (gap // 2) + text + " " * (gap - gap // 2)


def _row(cells: list[str], widths: list[int], centred: bool = False) -> str:
    """One bordered row."""
    padded = [_centre(c, w) if centred else c.ljust(w) for c, w in zip(cells, widths, strict=False)]
    return "| " + " | ".join(padded) + " |"


def render(pods: list[str], verdicts: Mapping[tuple[str, str], bool | None], title: str = "") -> str:
    """The truth table of `verdicts` ({(src, dst): allowed}) over `pods`, one row per source."""
    header = [title, *pods]
    rows = [[src, *(mark(verdicts, src, dst) for dst in pods)] for src in pods]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    return "\n".join([rule, _row(header, widths, centred=True), rule, *(_row(r, widths) for r in rows), rule])
