"""The runner's side of a results directory: a new directory per run, samples written as they come.

The formats are lab.experiment.results' (shared with `lab report`); this only decides where and when.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.experiment import results

SAMPLES, TIMELINES = results.SAMPLES_FILE, results.TIMELINES_FILE


def new_directory(root: str | os.PathLike[str], experiment: str, now: float | None = None) -> Path:
    """results/<experiment>/<UTC timestamp>[-2, -3, ...]/, created; never one that exists."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    base = Path(root) / experiment
    base.mkdir(parents=True, exist_ok=True)
    for index in range(1, 1000):
        candidate = base / (stamp if index == 1 else f"{stamp}-{index}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}/{stamp}: too many runs in one second")


class Recorder:
    """Appends samples and timeline points as they are measured (flushed: a killed run keeps them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[results.Sample] = []
        results.write_samples(path / SAMPLES, [])       # the header, even for a run that measures nothing

    def add(self, samples: Iterable[results.Sample]) -> None:
        batch = list(samples)
        results.append_samples(self.path / SAMPLES, batch)
        self.samples += batch

    def add_timeline(self, points: Iterable[results.TimelinePoint]) -> None:
        batch = list(points)
        if batch:
            results.append_timelines(self.path / TIMELINES, batch)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        results.write_json(self.path / name, data)
