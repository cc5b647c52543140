"""IPv4 CIDRs as Kubernetes and Calico read them, with hints that compute the fix or say nothing.

Python's ipaddress is laxer than Go's net.ParseCIDR: it takes `10.0.0.1` (as a /32), netmasks
(`10.0.0.0/255.0.0.0`) and host masks (`/0.255.255.255`, silently a /8). The lab takes only
`a.b.c.d/n`, as every Kubernetes and Calico field does. Two readings:

  * `network()`: a network the lab builds (a segment, a pool, a pod network): host bits set is an
    error, as Calico's "IPPool CIDR is not strictly masked"; the hint is the masked network.
  * `block()`: a NetworkPolicy ipBlock `cidr` or `except`: read as the API server reads these legacy
    fields (netutils.ParseCIDRSloppy): host bits are allowed and mean the masked network, and
    leading zeros in an octet are decimal; both come back with kubectl's warning text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

IPv4Network = ipaddress.IPv4Network
_FORM = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})\Z")
# Ranges the kernel treats as martian for a unicast segment or pod network (docs/topology.md).
MARTIANS = {IPv4Network("0.0.0.0/8"): "'this network' (0.0.0.0/8)",
            IPv4Network("127.0.0.0/8"): "loopback (127.0.0.0/8)",
            IPv4Network("224.0.0.0/4"): "multicast (224.0.0.0/4)",
            IPv4Network("240.0.0.0/4"): "reserved (240.0.0.0/4)"}


class CidrError(ValueError):
    """A CIDR that cannot be read; `hint` is a computed fix, or None."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Block:
    """An ipBlock CIDR: the network it means, the text as written, and kubectl's warnings about it."""

    network: IPv4Network
    written: str
    warnings: tuple[str, ...] = ()


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse(value: Any, sloppy: bool) -> tuple[ipaddress.IPv4Address, int, bool]:
    """(address, prefix length, had leading zeros) of `a.b.c.d/n`."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise CidrError(f"{_quoted(value)} is not a CIDR: write it as a string address/prefix")
    if ":" in value:
        raise CidrError(f"{_quoted(value)} is an IPv6 CIDR; the lab models IPv4 only")
    if "/" not in value:
        try:
            one = ipaddress.IPv4Address(value)
        except ValueError:
            raise CidrError(f"{_quoted(value)} is not a valid IPv4 CIDR (address/prefix)") from None
        raise CidrError(f"{_quoted(value)} has no prefix length", f"write {one}/32 for the one address")
    address, _, prefix = value.partition("/")
    if "." in prefix:
        raise CidrError(f"{_quoted(value)}: the prefix must be a length from 0 to 32, not a netmask")
    found = _FORM.match(value)
    if not found:
        raise CidrError(f"{_quoted(value)} is not a valid IPv4 CIDR (address/prefix)")
    octets = [int(x) for x in found.groups()[:4]]
    length = int(found.group(5))
    if any(x > 255 for x in octets) or length > 32 or (len(found.group(5)) > 1 and found.group(5)[0] == "0"):
        raise CidrError(f"{_quoted(value)} is not a valid IPv4 CIDR (octets 0-255, prefix 0-32)")
    zeros = any(len(x) > 1 and x[0] == "0" for x in found.groups()[:4])
    if zeros and not sloppy:
        clean = ".".join(map(str, octets)) + f"/{length}"
        raise CidrError(f"{_quoted(value)} has leading zeros, which some readers take as octal",
                        f"write {clean}")
    return ipaddress.IPv4Address(".".join(map(str, octets))), length, zeros


def network(value: Any) -> IPv4Network:
    """A network the lab builds: `a.b.c.d/n` with no host bits set."""
    address, length, _ = _parse(value, sloppy=False)
    masked = IPv4Network(f"{address}/{length}", strict=False)
    if masked.network_address != address:
        raise CidrError(f"{_quoted(value)} has host bits set", f"write {masked} (the network {value} is in)")
    return masked


def block(value: Any) -> Block:
    """An ipBlock CIDR, as the API server reads it (see the module docstring)."""
    address, length, zeros = _parse(value, sloppy=True)
    masked = IPv4Network(f"{address}/{length}", strict=False)
    warnings = []
    if masked.network_address != address:
        warnings.append(f'CIDR value "{value}" is ambiguous in this context (should be "{masked}" or '
                        f'"{address}/32"?)')
    if zeros:
        warnings.append(f'non-standard CIDR value "{value}" will be considered invalid in a future Kubernetes '
                        f'release: use "{masked}"')
    return Block(masked, value, tuple(warnings))


def martian(net: IPv4Network) -> str | None:
    """The special range `net` overlaps, described, or None."""
    for special, text in MARTIANS.items():
        if net.overlaps(special):
            return text
    return None


def interface(value: Any) -> ipaddress.IPv4Interface:
    """An address with its prefix (`a.b.c.d/n`, host bits being the point), e.g. a Calico Node's ipv4Address."""
    address, length, _ = _parse(value, sloppy=False)
    return ipaddress.IPv4Interface(f"{address}/{length}")


PRIVATE = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
CONVENTIONAL = IPv4Network("10.244.0.0/16")     # kube-flannel.yml's Network, and a common Calico pool
MAX_CANDIDATES = 4096                           # per private block: a hint is not worth a long search


def free_range(prefixlen: int, taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """A private network of `prefixlen` that overlaps none of `taken` (10.244.0.0/16 first when it is one),
    for a hint; None when none is found quickly (then the hint gives no example)."""
    used = list(taken)

    def free(candidate: IPv4Network) -> bool:
        return not any(candidate.overlaps(other) for other in used)
    if prefixlen == CONVENTIONAL.prefixlen and free(CONVENTIONAL):
        return CONVENTIONAL
    for block in PRIVATE:
        if prefixlen < block.prefixlen:
            continue
        for index, candidate in enumerate(block.subnets(new_prefix=prefixlen)):
            if index >= MAX_CANDIDATES:
                break
            if free(candidate):
                return candidate
    return None


def example(prefixlen: int, taken: Iterable[IPv4Network]) -> str:
    """`, e.g. <a free range>` for a hint, or "" when there is none to give."""
    found = free_range(prefixlen, taken)
    return f", e.g. {found}" if found else ""
