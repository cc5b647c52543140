"""Shipped experiments (experiments/*.yaml in the repository) and name-or-path resolution."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def experiments_dir() -> Path:
    """The repository's experiments/ (editable install), else the copy `pip install .` puts in share/lab."""
    in_repo = Path(__file__).resolve().parents[2] / "experiments"
    if in_repo.is_dir():
        return in_repo
    return Path(sys.prefix) / "share" / "lab" / "experiments"


def resolve(name_or_path: str) -> str:
    """An existing path as given, else experiments/<name>.yaml when it exists, else the argument unchanged
    (so the loader's error names it)."""
    if os.path.exists(name_or_path):
        return name_or_path
    candidate = experiments_dir() / f"{name_or_path}.yaml"
    return str(candidate) if candidate.exists() else name_or_path
