"""Stable stand-ins for the random identifiers real CNIs choose (MACs, veth names).

Real flannel picks a random VTEP MAC once and persists it; the CNI bridge plugin picks a random
`veth` + 8 hex name. The lab derives them from the lab and object names instead, so that a lab is
reproducible and two labs side by side never share one.
"""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


def local_mac(*parts: str) -> str:
    """A locally administered unicast MAC, as flannel's mac.NewHardwareAddr makes."""
    raw = bytearray(_digest("mac", *parts)[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def nic_mac(*parts: str) -> str:
    """A MAC for a node's underlay NIC, in the 52:54:00 range virtual machines use."""
    raw = _digest("nic", *parts)[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in raw)


def veth_name(*parts: str, attempt: int = 0) -> str:
    """`veth` + 8 hex characters, like the CNI bridge plugin's RandomVethName."""
    return "veth" + _digest("veth", *parts, str(attempt)).hex()[:8]
