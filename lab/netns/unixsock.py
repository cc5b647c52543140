"""Unix stream sockets of the lab's daemons: whether one answers, and reading one newline-terminated message."""

from __future__ import annotations

import os
import socket


def answers(path: str) -> bool:
    """Whether a process listens on the Unix stream socket at `path` (a connect succeeds)."""
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def read_line(sock: socket.socket) -> bytes:
    """The bytes received up to and including a newline, or up to the peer closing (its timeout applies)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
