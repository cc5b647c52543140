"""Persistent TUN devices (IFF_TUN | IFF_NO_PI) in the calling thread's network namespace.

`/dev/net/tun` binds a device to the namespace of the thread that opens it, so callers enter the
namespace first (lab.netns.namespace.entered) and the returned fd keeps working from any thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_PERSIST = 0x0800
IFREQ = struct.Struct("16sH22x")
IFNAMSIZ = 16


def _ifreq(name: str, flags: int) -> bytes:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise OSError(errno.EINVAL, f"invalid TUN device name {name!r} (1 to {IFNAMSIZ - 1} bytes)")
    return IFREQ.pack(raw, flags)


def _open_device() -> int:
    try:
        return os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open {TUN_PATH}: {exc.strerror} (is the tun module loaded?)") from None


def _set_iff(fd: int, name: str) -> bytes:
    """Attach `fd` to TUN device `name` (creating it if absent); explain the kernel's refusals."""
    request = _ifreq(name, IFF_TUN | IFF_NO_PI)
    try:
        return fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as exc:
        reason = {
            errno.EINVAL: "it exists and is not a TUN device with IFF_NO_PI",
            errno.EBUSY: "another process is already attached to it",
            errno.EPERM: "CAP_NET_ADMIN is needed",
        }.get(exc.errno or 0, exc.strerror)
        raise OSError(exc.errno, f"TUNSETIFF {name}: {reason}") from None


def create_persistent_tun(name: str) -> None:
    """Create (or keep) a persistent TUN device `name` in the current thread's namespace."""
    fd = _open_device()
    try:
        _set_iff(fd, name)
        try:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as exc:
            raise OSError(exc.errno, f"TUNSETPERSIST {name}: {exc.strerror}") from None
    finally:
        os.close(fd)


def open_tun(name: str) -> int:
    """Attach to the existing persistent TUN device `name`; return a non-blocking fd for its packets."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise OSError(errno.ENODEV, f"TUN device {name} does not exist in this network namespace") from None
    fd = _open_device()
    try:
        _set_iff(fd, name)
        _, flags = IFREQ.unpack(fcntl.ioctl(fd, TUNGETIFF, bytes(IFREQ.size)))
        if not flags & IFF_PERSIST:
            raise OSError(errno.ENODEV, f"{name} vanished before it could be attached (it was not persistent)")
        os.set_blocking(fd, False)
        return fd
    except BaseException:
        os.close(fd)
        raise
