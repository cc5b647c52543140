"""Experiments: declarative, repeatable comparisons of modes (docs/experiments.md).

lab.experiment.run(path, repeat=None, out=None, only=None, quick=False) -> Results runs one;
lab.experiment.results.Results.load(directory) reads one back. Imports are lazy so that the
measurement helpers (python -m lab.experiment.pingpong) start fast inside pod namespaces.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.experiment.results import Results


def run(path: str, repeat: int | None = None, out: str | os.PathLike[str] | None = None,
        only: list[str] | None = None, quick: bool = False) -> Results:
    """Run the experiment file at `path`; returns its results (status "incomplete" if it stopped early)."""
    from lab.experiment import runner
    return runner.run(path, repeat=repeat, out=out, only=only, quick=quick)
