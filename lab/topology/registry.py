"""Shipped topologies (topologies/*.yaml in the repository) and name-or-path resolution."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from lab.errors import LabError


def topologies_dir() -> Path:
    """The repository's topologies/ (editable install), else the copy `pip install .` puts in share/lab."""
    in_repo = Path(__file__).resolve().parents[2] / "topologies"
    if in_repo.is_dir():
        return in_repo
    return Path(sys.prefix) / "share" / "lab" / "topologies"


def shipped() -> list[dict[str, str]]:
    """Name, path and description of every shipped topology."""
    rows = []
    for path in sorted(topologies_dir().glob("*.yaml")):
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        rows.append({"name": path.stem, "path": str(path), "description": str(data.get("description", "")).strip()})
    return rows


def resolve(name_or_path: str) -> str:
    """A topology file: an existing path as given, else a shipped topology by name."""
    if os.path.exists(name_or_path):
        return name_or_path
    candidate = topologies_dir() / f"{name_or_path}.yaml"
    if candidate.exists():
        return str(candidate)
    names = ", ".join(row["name"] for row in shipped()) or "none"
    raise LabError(f"no topology file or shipped topology named {name_or_path!r}",
                   f"give a path to a YAML file, or one of: {names}")
