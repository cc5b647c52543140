"""Named network namespaces, compatible with `ip netns` (bind mounts under /run/netns).

Namespaces are entered per thread (setns affects only the calling thread), so the lab's own
process never leaves the host namespace on its main thread and never changes host state.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2
AT_EMPTY_PATH = 0x1000

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")  # an errno subclass: FileExistsError for EEXIST


def path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_all() -> list[str]:
    """Every named namespace on the machine (what `ip netns list` shows)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does on its first `ip netns add`."""
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(NETNS_RUN_DIR.encode(), NETNS_RUN_DIR.encode(), b"none", MS_BIND | MS_REC, None),
           f"bind-mount {NETNS_RUN_DIR}")
    _check(_libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None),
           f"make {NETNS_RUN_DIR} shared")


class MountPoints:
    """Makes the empty files under /run/netns that namespaces are bind-mounted on, as hard links of one
    unnamed file (O_TMPFILE) rather than one new file each.

    Allocating an inode is the costly part of making such a file where /run is a disk filesystem (ext4
    here): without a journal, ext4 skips every inode freed in the last minute or more, reading its inode
    table block each time, so after thousands of namespaces were removed (a lab taken down, a benchmark's
    floor) each new file scans past all of them: quadratic, and most of `lab up`'s namespace creation
    at 1000 nodes. A hard link allocates no inode. What is visible is unchanged: one empty file per
    name, each the mount point of its namespace, removed with umount and unlink as `ip netns delete`
    does. Where O_TMPFILE or links are refused, each file is created on its own, as iproute2 does."""

    def __init__(self, directory: str = NETNS_RUN_DIR) -> None:
        self.directory = directory
        self._anchor: int | None = None
        self._dir: int | None = None
        self._linking = True

    def make(self, name: str) -> None:
        """Create the empty file `name` in `directory`; FileExistsError if it exists."""
        if self._linking:
            for _ in range(2):   # a second anchor when the first has as many links as the filesystem allows
                try:
                    self._link(name)
                    return
                except FileExistsError:
                    raise
                except OSError as exc:
                    self.close()
                    if exc.errno != errno.EMLINK:
                        break
            self._linking = False
        os.close(os.open(os.path.join(self.directory, name), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    def _link(self, name: str) -> None:
        """linkat(anchor, "", directory, name, AT_EMPTY_PATH): needs CAP_DAC_READ_SEARCH, which root has.
        (Linking /proc/self/fd/N instead is refused here with EXDEV.)"""
        if self._anchor is None:
            self._dir = os.open(self.directory, os.O_PATH | os.O_DIRECTORY)
            self._anchor = os.open(self.directory, os.O_TMPFILE | os.O_WRONLY, 0)
        _check(_libc.linkat(self._anchor, b"", self._dir, name.encode(), AT_EMPTY_PATH), f"link {name}")

    def close(self) -> None:
        for fd in (self._anchor, self._dir):
            if fd is not None:
                os.close(fd)
        self._anchor = self._dir = None


def create_many(names: Iterable[str]) -> None:
    """Create each namespace (fresh, with only `lo`) and bind it under /run/netns.

    One helper thread unshares a new network namespace per name; the caller's threads stay put.
    """
    names = list(names)
    _ensure_run_dir()
    failure: list[BaseException] = []

    def worker() -> None:
        tid = threading.get_native_id()
        points = MountPoints()
        try:
            for name in names:
                if not _create_one(name, tid, points):
                    return
        finally:
            points.close()

    def _create_one(name: str, tid: int, points: MountPoints) -> bool:
        target = path(name)
        try:
            points.make(name)
        except FileExistsError:
            failure.append(OSError(errno.EEXIST, f"network namespace {name} already exists"))
            return False
        except OSError as exc:
            failure.append(OSError(exc.errno, f"cannot create {target}: {exc.strerror}"))
            return False
        try:
            _check(_libc.unshare(CLONE_NEWNET), f"unshare a network namespace for {name}")
            _check(_libc.mount(f"/proc/self/task/{tid}/ns/net".encode(), target.encode(), b"none", MS_BIND,
                               None), f"bind-mount namespace {name}")
        except OSError as exc:
            os.unlink(target)
            failure.append(exc)
            return False
        return True

    thread = threading.Thread(target=worker, name="netns-create")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def remove(name: str) -> bool:
    """Unmount and unlink a named namespace; the kernel frees it once nothing holds it."""
    target = path(name)
    if not os.path.exists(target):
        return False
    _libc.umount2(target.encode(), MNT_DETACH)
    try:
        os.unlink(target)
    except FileNotFoundError:
        return False
    return True


def inode(name: str) -> int | None:
    try:
        return os.stat(path(name)).st_ino
    except FileNotFoundError:
        return None


def _setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Move the calling thread into `name` for the block, then back (use only on helper threads)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def run_in(name: str, function: Callable[[], T]) -> T:
    """Run `function` on a helper thread inside namespace `name` and return its result."""
    return run_in_each([name], lambda _: function())[0]


def run_in_each(names: Iterable[str], function: Callable[[str], T]) -> list[T]:
    """Call `function(name)` inside each namespace in turn, on one helper thread.

    If the caller is interrupted (Ctrl-C), the helper stops after its current namespace and is
    joined before the interruption propagates, so a rollback never races it.
    """
    results: list[T] = []
    failure: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            for name in names:
                if stop.is_set():
                    return
                with entered(name):
                    results.append(function(name))
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=worker, name="netns-worker")
    thread.start()
    try:
        thread.join()
    except BaseException:
        stop.set()
        thread.join()
        raise
    if failure:
        raise failure[0]
    return results


def pids_by_namespace(inodes: set[int]) -> dict[int, list[int]]:
    """Processes whose network namespace is one of `inodes` (as `ip netns pids` finds them)."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if ino in inodes:
            found.setdefault(ino, []).append(int(entry))
    return found
