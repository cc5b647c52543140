"""Which nat POSTROUTING rule applies to a packet leaving a node: a small reader of iptables-save rules.

It follows jumps from POSTROUTING and understands the matches flannel and Felix write there: -s, -d
(with !), -o, -p, `-m set --match-set`, `-m mark` (the trace's packet carries no mark) and comments.
A rule with any other match is reported as not evaluated rather than guessed.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class NatResult:
    action: str          # MASQUERADE | SNAT | RETURN | ACCEPT | none
    rule: str | None
    chain_path: tuple[str, ...]
    unevaluated: tuple[str, ...] = ()


def ipset_members(netns: str) -> Callable[[str], list[str]]:
    cache: dict[str, list[str]] = {}

    def members(name: str) -> list[str]:
        if name not in cache:
            result = subprocess.run(["ip", "netns", "exec", netns, "ipset", "save", name], capture_output=True,
                                    text=True, check=False)
            cache[name] = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("add ")]
        return cache[name]
    return members


def _in(ip: str, cidr: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr, strict=False)


def _matches(words: list[str], src: str, dst: str, oif: str, proto: str,
             members: Callable[[str], list[str]]) -> bool | None:
    """True/False, or None when a match is not understood."""
    i, negate = 0, False
    while i < len(words):
        word = words[i]
        if word == "!":
            negate = True
            i += 1
            continue
        result: bool | None
        if word in ("-s", "-d"):
            result = _in(src if word == "-s" else dst, words[i + 1])
            i += 2
        elif word == "-o":
            pattern = words[i + 1]
            result = oif.startswith(pattern[:-1]) if pattern.endswith("+") else oif == pattern
            i += 2
        elif word == "-p":
            result = words[i + 1].upper() == proto
            i += 2
        elif word == "-m" and words[i + 1] in ("comment", "set", "mark", "multiport", "tcp", "udp"):
            i += 2
            continue
        elif word == "--comment":
            i += 2
            continue
        elif word == "--match-set":
            name, direction = words[i + 1], words[i + 2]
            ip = src if direction == "src" else dst
            result = any(_in(ip, m if "/" in m else m + "/32") for m in members(name))
            i += 3
        elif word == "--mark":
            value = words[i + 1].split("/")[0]
            result = int(value, 16) == 0
            i += 2
        else:
            return None
        if result == negate:
            return False
        negate = False
    return True


def postrouting(save: str, src: str, dst: str, oif: str, proto: str,
                members: Callable[[str], list[str]]) -> NatResult:
    """The verdict of the nat table's POSTROUTING for a packet (no mark) leaving on `oif`."""
    rules: dict[str, list[tuple[list[str], str, str, str]]] = {}
    for line in save.splitlines():
        if not line.startswith("-A "):
            continue
        words = shlex.split(line)
        chain = words[1]
        cut = next((k for k, w in enumerate(words) if w in ("-j", "-g")), len(words))
        target = words[cut + 1] if cut + 1 < len(words) else ""
        rules.setdefault(chain, []).append((words[2:cut], target, words[cut] if cut < len(words) else "", line))
    unevaluated: list[str] = []
    returned: list[NatResult] = []

    def walk(chain: str, path: tuple[str, ...]) -> NatResult | None:
        for matches, target, how, line in rules.get(chain, []):
            ok = _matches(matches, src, dst, oif, proto, members)
            if ok is None:
                unevaluated.append(line)
                continue
            if not ok:
                continue
            if target in ("MASQUERADE", "SNAT", "ACCEPT", "DNAT"):
                return NatResult(target, line, path + (chain,))
            if target == "RETURN":
                returned.append(NatResult("RETURN", line, path + (chain,)))
                return returned[-1]
            if target in rules:
                found = walk(target, path + (chain,))
                if found is not None and found.action != "RETURN":
                    return found
                if found is not None and how == "-g":
                    return None
        return None

    found = walk("POSTROUTING", ())
    if found is None or found.action == "RETURN":
        last = returned[-1] if returned else None
        return NatResult("none", last.rule if last else None, last.chain_path if last else (), tuple(unevaluated))
    return NatResult(found.action, found.rule, found.chain_path, tuple(unevaluated))
