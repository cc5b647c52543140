"""The interfaces of a lab's namespace, as the kernel lists them (for checks before anything runs)."""

from __future__ import annotations

import subprocess

from lab.errors import LabError


def names(netns: str) -> list[str]:
    """The interface names of a namespace, as `ip -o link` lists them."""
    result = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"cannot list the interfaces of {netns}: {result.stderr.strip()}",
                       "is the lab still up? `lab status` says")
    return [line.split(": ", 2)[1].split("@", 1)[0] for line in result.stdout.splitlines() if ": " in line]


def require(netns: str, iface: str, target: str, allow_any: bool = False) -> None:
    """`iface` must be one of the namespace's interfaces (or tcpdump's pseudo-device `any`, where allowed)."""
    known = names(netns)
    if (iface == "any" and not allow_any) or (iface != "any" and iface not in known):
        raise LabError(f"{target}: no interface {iface!r} in {netns}", f"its interfaces are: {', '.join(known)}"
                       + (" (or `any`)" if allow_any else ""))
