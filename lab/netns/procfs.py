"""Per-namespace sysctls written through a private procfs instance, renewed every few namespaces.

Every network namespace's `/proc/sys/net/...` entries share one dentry tree per procfs instance:
the `eth0` of 10,000 pods are 10,000 dentries with one parent and one name, in one hash chain, and
each lookup compares against all of them (proc_sys_compare). Writing a pod's sysctls through the
host's /proc therefore costs time in proportion to the namespaces already configured: quadratic
over a lab, and the largest cost of a 1000-node `lab up`.

So sysctls are written through a procfs instance of the lab's own: created with the mount API
(fsopen/fsmount), never attached to any mount tree (nothing changes on the host, no mount namespace
is needed), reached by `openat` from its file descriptor, and replaced after `RENEW` namespaces so
its hash chains stay short. What a thread reads and writes under `sys/net` is the network namespace
the thread is in, as through /proc. Where the mount API is missing (kernel < 5.2, or refused), it
falls back to /proc, with the quadratic cost.
"""

from __future__ import annotations

import ctypes
import os

SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432   # the same number on every architecture
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC = 1, 1
FSCONFIG_CMD_CREATE = 6
RENEW = 64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_private_proc() -> int | None:
    """A detached procfs mount (its root directory's fd), or None where the mount API is unavailable."""
    fs = _libc.syscall(SYS_FSOPEN, b"proc", FSOPEN_CLOEXEC)
    if fs < 0:
        return None
    try:
        if _libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            return None
        mount = _libc.syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0)
        return int(mount) if mount >= 0 else None
    finally:
        os.close(fs)


class SysctlWriter:
    """Writes sysctls of the namespace the calling thread is in; one writer per thread."""

    def __init__(self, renew: int = RENEW, private: bool = True) -> None:
        self.renew = renew
        self._root: int | None = None
        self._uses = 0
        self.private = private   # False (or once the mount API is refused): through /proc

    def begin_namespace(self) -> None:
        """Call before each namespace's writes: renews the private instance every `renew` namespaces."""
        if not self.private:
            return
        if self._root is None or self._uses >= self.renew:
            self.close()
            self._root = open_private_proc()
            self._uses = 0
            self.private = self._root is not None
        self._uses += 1

    def write(self, key: str, value: str) -> None:
        """Write `value` to the sysctl `key` (slash-separated, as under /proc/sys); raises OSError."""
        if self._root is None:
            with open(f"/proc/sys/{key}", "w") as handle:
                handle.write(value)
            return
        fd = os.open(f"sys/{key}", os.O_WRONLY, dir_fd=self._root)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._root is not None:
            os.close(self._root)
            self._root = None
