"""Link impairments: `impair: {rate: 100mbit, delay: 20ms, jitter: 5ms, loss: 1%}` on a network or a node.

Pure parsing and validation (the model never imports the runtime). Values take tc's units: rates in
bit/kbit/mbit/gbit/tbit (bits per second) or bps/kbps/mbps/gbps (bytes per second), times in us/ms/s,
loss in percent. A network's impairment applies to every host interface on that segment (each node's
and external host's eth0: every packet crossing the segment meets it once, at its sender's egress); a
node's applies to its `interface` (eth0 unless given).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)[ \t]*(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps)\Z", re.IGNORECASE)
TIME = re.compile(r"^([0-9]+(?:\.[0-9]+)?)[ \t]*(us|ms|s)\Z", re.IGNORECASE)
LOSS = re.compile(r"^([0-9]+(?:\.[0-9]+)?)[ \t]*%?\Z")
RATE_FACTORS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12, "bps": 8, "kbps": 8e3, "mbps": 8e6,
                "gbps": 8e9}
TIME_FACTORS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
FIELDS = ("rate", "delay", "jitter", "loss")


class ImpairValueError(ValueError):
    """A value that is not a valid impairment: the message says what is wrong and what to write."""

    def __init__(self, field: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.field, self.hint = field, hint


@dataclass(frozen=True)
class Impairment:
    """What one interface suffers; None = not impaired in that respect."""

    rate_bps: int | None = None        # bits per second
    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None

    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in ("rate_bps", "delay_ms", "jitter_ms", "loss_pct"))

    def text(self) -> str:
        parts = []
        if self.rate_bps is not None:
            parts.append(f"rate {format_rate(self.rate_bps)}")
        if self.delay_ms is not None:
            parts.append(f"delay {self.delay_ms:g}ms" + (f" jitter {self.jitter_ms:g}ms" if self.jitter_ms else ""))
        if self.loss_pct is not None:
            parts.append(f"loss {self.loss_pct:g}%")
        return ", ".join(parts) or "none"

    def as_dict(self) -> dict[str, Any]:
        return {"rate_bps": self.rate_bps, "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
                "loss_pct": self.loss_pct}


@dataclass(frozen=True)
class ImpairSpec:
    """An impairment declared in a topology: on a network (every host interface there) or a node's interface."""

    kind: str            # network | node
    name: str
    interface: str
    impairment: Impairment
    source: str = ""     # file:line of the `impair:` key, for errors found later (a missing interface)


def format_rate(bps: int) -> str:
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps >= factor and bps % factor == 0:
            return f"{bps // factor}{unit}"
    return f"{bps}bit"


def _text(field: str, value: Any) -> str:
    text = str(value).strip()
    if text.startswith("-"):
        raise ImpairValueError(field, f"{field} {text}: negative values make no sense",
                               f"give a positive {field}, e.g. " + {"rate": "100mbit", "loss": "1%"}.get(field, "20ms"))
    return text


def parse_rate(value: Any) -> int:
    text = _text("rate", value)
    match = RATE.match(text)
    if not match:
        raise ImpairValueError("rate", f"rate {text!r}: unknown unit or not a number",
                               "write a number and a unit: bit, kbit, mbit, gbit (bits/s) or bps, kbps, mbps "
                               "(bytes/s), e.g. 100mbit")
    bps = int(float(match.group(1)) * RATE_FACTORS[match.group(2).lower()])
    if bps < 8000:
        raise ImpairValueError("rate", f"rate {text!r} is below 8kbit", "give at least 8kbit")
    return bps


def parse_time(field: str, value: Any) -> float:
    text = _text(field, value)
    match = TIME.match(text)
    if not match:
        raise ImpairValueError(field, f"{field} {text!r}: unknown unit or not a number",
                               "write a number and a unit: us, ms or s, e.g. 20ms")
    return float(match.group(1)) * TIME_FACTORS[match.group(2).lower()]


def parse_loss(value: Any) -> float:
    text = _text("loss", value)
    match = LOSS.match(text)
    if not match:
        raise ImpairValueError("loss", f"loss {text!r}: not a percentage", "write a percentage, e.g. 1% or 0.5%")
    pct = float(match.group(1))
    if pct > 100:
        raise ImpairValueError("loss", f"loss {text}: over 100%", "give a percentage between 0 and 100")
    return pct


def parse(values: dict[str, Any]) -> Impairment:
    """An Impairment from {rate, delay, jitter, loss} (missing keys: not impaired that way)."""
    rate = parse_rate(values["rate"]) if values.get("rate") is not None else None
    delay = parse_time("delay", values["delay"]) if values.get("delay") is not None else None
    jitter = parse_time("jitter", values["jitter"]) if values.get("jitter") is not None else None
    loss = parse_loss(values["loss"]) if values.get("loss") is not None else None
    if jitter is not None and delay is None:
        raise ImpairValueError("jitter", "jitter without delay", "give a delay too, e.g. delay: 20ms, jitter: 5ms")
    found = Impairment(rate, delay, jitter, loss)
    if found.empty():
        raise ImpairValueError("rate", "an impairment with nothing in it",
                               "give at least one of rate, delay, jitter, loss")
    return found


def from_topology(data: dict[str, Any], fail: Callable[..., Exception],
                  where: Callable[[tuple[str | int, ...]], str] = lambda path: "") -> tuple[ImpairSpec, ...]:
    """Every `impair:` of the topology's networks and nodes; `fail(path, message, hint)` builds the error,
    `where(path)` names the file and line."""
    specs: list[ImpairSpec] = []
    for kind, key in (("network", "networks"), ("node", "nodes")):
        for index, entry in enumerate(data.get(key, [])):
            values = entry.get("impair")
            if values is None:
                continue
            path = (key, index, "impair")
            if kind == "network" and "interface" in values:
                raise fail(path + ("interface",), "a network's impairment applies to every host interface on it",
                           "drop `interface`, or put the impairment on a node")
            try:
                impairment = parse(values)
            except ImpairValueError as exc:
                field = exc.field if exc.field in values else None
                raise fail(path + ((field,) if field else ()), str(exc), exc.hint) from None
            specs.append(ImpairSpec(kind, entry["name"], values.get("interface", "eth0"), impairment,
                                    where(path + (("interface",) if "interface" in values else ()))))
    return tuple(specs)
