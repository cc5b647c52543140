"""Per-lab state on disk: what was created, so `lab down` and `lab cleanup` can remove all of it.

Layout: <root>/<lab>/state.json, <root>/<lab>/files/... (e.g. each node's run/flannel/subnet.env),
and <root>/<lab>.lock while a command works on the lab. The state is written before anything is
created. Lab names are checked before any path is built from them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.netns.names import check_lab_name

DEFAULT_ROOT = "/run/lab"


@dataclass
class LabState:
    """What the lab recorded about one lab."""

    lab: str
    topology: str
    fingerprint: str
    status: str = "creating"        # creating | up
    namespaces: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)   # changes made while up (lab/live.py)
    faults: list[dict[str, Any]] = field(default_factory=list)   # `lab fault`s in force (lab/fault.py)
    started: float = field(default_factory=time.time)


class StateStore:
    """The directory holding every lab's state."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def lab_dir(self, lab: str) -> str:
        return os.path.join(self.root, check_lab_name(lab))

    def files_dir(self, lab: str) -> str:
        return os.path.join(self.lab_dir(lab), "files")

    def load(self, lab: str) -> LabState | None:
        try:
            with open(os.path.join(self.lab_dir(lab), "state.json"), encoding="utf-8") as handle:
                return LabState(**json.load(handle))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # an unreadable state still names a lab whose namespaces `lab down` must find by prefix
            return LabState(lab=lab, topology="?", fingerprint="", status="corrupt (unreadable state.json)")

    def save(self, state: LabState) -> None:
        directory = self.lab_dir(state.lab)
        os.makedirs(directory, exist_ok=True)
        temporary = os.path.join(directory, "state.json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(asdict(state), handle, indent=1)
        os.replace(temporary, os.path.join(directory, "state.json"))

    def write_files(self, lab: str, files: dict[str, str]) -> None:
        for relative, content in files.items():
            target = os.path.join(self.files_dir(lab), relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(content)

    def remove(self, lab: str) -> None:
        shutil.rmtree(self.lab_dir(lab), ignore_errors=True)

    def labs(self) -> list[str]:
        try:
            return sorted(entry for entry in os.listdir(self.root)
                          if os.path.isdir(os.path.join(self.root, entry)))
        except FileNotFoundError:
            return []

    def stray_locks(self) -> list[str]:
        """Labs with a lock file but no state: left by a command killed while holding the lock."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        labs = set(self.labs())
        return sorted(e[:-5] for e in entries if e.endswith(".lock") and e[:-5] not in labs)

    def _lock_path(self, lab: str) -> str:
        return os.path.join(self.root, f"{check_lab_name(lab)}.lock")

    @contextmanager
    def locked(self, lab: str) -> Iterator[None]:
        """Serialise lifecycle commands on one lab; the lock file goes away with the lab's state.

        After taking the lock, check that the path still names the locked file: another command
        may have removed it while this one waited, in which case lock the new file instead.
        """
        os.makedirs(self.root, exist_ok=True)
        path = self._lock_path(lab)
        while True:
            handle = open(path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        try:
            yield
        finally:
            if not os.path.isdir(self.lab_dir(lab)):
                os.unlink(path)  # no state left: leave no lock file either
            handle.close()
