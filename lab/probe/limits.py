"""What the probe processes need from the kernel: many file descriptors, and knowing a missing protocol."""

from __future__ import annotations

import errno
import resource

# socket() errors meaning "this kernel does not speak the protocol" (SCTP without its module)
NO_PROTOCOL = {errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT, errno.EPFNOSUPPORT}


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
