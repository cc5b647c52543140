"""latency: ICMP round-trip time (ping) and TCP/UDP request/response latency (sockperf ping-pong).

Per repetition and protocol: the median round trip (`rtt_icmp`, `rtt_tcp_rr`, `rtt_udp_rr`, in
microseconds) and its p90, p99 and mean (`..._p90`, `..._p99`, `..._mean`), and the raw round trips
themselves (`rtt_icmp_raw`, `rtt_tcp_rr_raw`, `rtt_udp_rr_raw`, one row each, for CDFs): ping's
per-echo times, sockperf's --full-log, the built-in tool's samples. At most `raw_cap` raw rows per
protocol and repetition (default 1000): when there are more, an evenly spaced subset of the sorted
round trips (every k-th quantile), so the CDF keeps its shape; the percentile rows always come from
every round trip. sockperf runs with --full-rtt (whole round trips, not its default half); where
sockperf is missing (or `tool: builtin`) the lab's own ping-pong (lab/experiment/pingpong.py) runs
instead, and environment.json says which.

sockperf spends about 2.2 s per run outside its measuring window (start-up, 0.4 s of warm-up
messages, its report); only its "[Valid Duration] RunTime" counts as measurement time, the rest is
reported to the runner as tool set-up (ctx.untimed_s).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from lab.experiment import proc
from lab.experiment.kinds import Kind, PairContext, Value

SOCKPERF_PORT = 11111
BUILTIN_PORT = 11112
PERCENTILE = re.compile(r"percentile\s+(\d+\.\d+)\s*=\s*([\d.]+)")
AVERAGE = re.compile(r"avg-rtt=([\d.]+)")
VALID = re.compile(r"\[Valid Duration\] RunTime=([\d.]+) sec")
FULL_LOG_ROW = re.compile(r"^\s*\d+,\s*[\d.]+,\s*[\d.]+,\s*([\d.]+)\s*$", re.MULTILINE)
RAW_CAP = 1000
SOCKPERF_SETUP_S = 2.3      # sockperf's time outside its measuring window, per run (for the ETA)
PING_RTT = re.compile(r"time=([\d.]+) ms")


class Latency(Kind):
    id = "latency"
    SCHEMA = {
        "protocols": {"type": "array", "items": {"enum": ["icmp", "tcp", "udp"]}, "minItems": 1, "uniqueItems": True,
                      "default": ["icmp", "tcp", "udp"], "description": "which round trips to measure"},
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 2,
                     "description": "seconds of ping-pong per protocol and repetition (sockperf warms up 0.4 s)"},
        "count": {"type": "integer", "minimum": 3, "maximum": 100000, "default": 100,
                  "description": "ICMP echoes per repetition"},
        "interval": {"type": "number", "minimum": 0.002, "maximum": 1, "default": 0.01,
                     "description": "seconds between ICMP echoes"},
        "size": {"type": "integer", "minimum": 14, "maximum": 65000, "default": 64,
                 "description": "request and response size in bytes (TCP/UDP)"},
        "tool": {"enum": ["auto", "sockperf", "builtin"], "default": "auto",
                 "description": "auto: sockperf when installed, else the built-in ping-pong"},
        "raw_cap": {"type": "integer", "minimum": 0, "maximum": 100000, "default": RAW_CAP,
                    "description": "at most this many raw round trips per protocol and repetition in "
                                   "samples.csv (an evenly spaced subset of the sorted ones; 0: none)"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        needed = ["ss"]
        if "icmp" in params["protocols"]:
            needed.append("ping")
        if params["tool"] == "sockperf":
            needed.append("sockperf")
        return needed

    def optional_tools(self, params: dict[str, Any]) -> list[str]:
        return ["sockperf"] if params["tool"] == "auto" else []

    def estimate(self, params: dict[str, Any]) -> float:
        icmp: float = params["count"] * params["interval"] + 0.1 if "icmp" in params["protocols"] else 0
        setup = SOCKPERF_SETUP_S if params["tool"] != "builtin" else 0.3
        duration: float = params["duration"]
        return icmp + sum(duration + setup for p in params["protocols"] if p != "icmp")

    def _tool(self, ctx: PairContext, params: dict[str, Any]) -> str:
        if params["tool"] == "builtin" or (params["tool"] == "auto" and not ctx.has("sockperf")):
            return "builtin"
        return "sockperf"

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[None]:
        return self._servers(ctx, params)

    @contextlib.contextmanager
    def _servers(self, ctx: PairContext, params: dict[str, Any]) -> Iterator[None]:
        tool = self._tool(ctx, params)
        ctx.implementations["latency_tool"] = tool
        with contextlib.ExitStack() as stack:
            for proto in [p for p in params["protocols"] if p != "icmp"]:
                if tool == "sockperf":
                    port = SOCKPERF_PORT + (proto == "tcp")
                    argv = (["sockperf", "server", "-i", ctx.dst.ip, "-p", str(port)]
                            + (["--tcp"] if proto == "tcp" else []))
                else:
                    port = BUILTIN_PORT + 2 + (proto == "tcp")
                    argv = proc.python_module("lab.experiment.pingpong", "server", "--proto", proto,
                                              "--port", str(port))
                stack.enter_context(proc.Server(ctx.dst.netns, argv, port, udp=proto == "udp"))
            yield

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        values: list[Value] = []
        for proto in params["protocols"]:
            if proto == "icmp":
                values += _summary("rtt_icmp", ping_rtts(ctx, params["count"], params["interval"]), params["raw_cap"])
            elif self._tool(ctx, params) == "sockperf":
                values += sockperf(ctx, proto, params)
            else:
                values += builtin(ctx, proto, params)
        return values


def ping_rtts(ctx: PairContext, count: int, interval: float) -> list[float]:
    """Round trips of `count` echoes from the source pod to the destination pod, in microseconds."""
    done = proc.run(ctx.src.netns, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", ctx.dst.ip],
                    timeout=count * interval + 10)
    rtts = [float(m) * 1000 for m in PING_RTT.findall(done.stdout)]
    if not rtts:
        raise proc.ToolError(f"ping {ctx.pair}: no reply", "check the pair with `lab ping`")
    return rtts


def _summary(metric: str, rtts: list[float], cap: int) -> list[Value]:
    return [Value(metric, proc.percentile(rtts, 50), "us"), Value(f"{metric}_p90", proc.percentile(rtts, 90), "us"),
            Value(f"{metric}_p99", proc.percentile(rtts, 99), "us"),
            Value(f"{metric}_mean", sum(rtts) / len(rtts), "us")
            ] + raw(metric, rtts, cap)


def capped(values: list[float], cap: int) -> list[float]:
    """`values` when there are at most `cap`; else `cap` evenly spaced order statistics (min and max kept)."""
    if len(values) <= cap:
        return list(values)
    if cap <= 0:
        return []
    ordered = sorted(values)
    if cap == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (cap - 1)
    return [ordered[round(i * step)] for i in range(cap)]


def raw(metric: str, rtts: list[float], cap: int) -> list[Value]:
    """One `<metric>_raw` row per round trip (at most `cap`)."""
    return [Value(f"{metric}_raw", round(rtt, 3), "us") for rtt in capped(rtts, cap)]


def sockperf(ctx: PairContext, proto: str, params: dict[str, Any]) -> list[Value]:
    port = SOCKPERF_PORT + (proto == "tcp")
    with tempfile.TemporaryDirectory(prefix="lab-sockperf-") as tmp:
        log = Path(tmp) / "full.csv"
        argv = ["sockperf", "ping-pong", "-i", ctx.dst.ip, "-p", str(port), "-t", str(params["duration"]),
                "-m", str(params["size"]), "--full-rtt", "--full-log", str(log)] + (["--tcp"] if proto == "tcp" else [])
        started = time.perf_counter()
        out = proc.run(ctx.src.netns, argv, timeout=params["duration"] + 20).stdout
        elapsed = time.perf_counter() - started
        rtts = [float(v) for v in FULL_LOG_ROW.findall(log.read_text(errors="replace"))] if log.exists() else []
    found = {float(q): float(v) for q, v in PERCENTILE.findall(out)}
    average = AVERAGE.search(out)
    if 50.0 not in found or average is None:
        raise proc.ToolError(f"sockperf {proto} {ctx.pair}: no percentiles in its output: {out.strip()[-300:]}")
    window = VALID.search(out)
    if window is not None:       # only sockperf's measuring window is measurement time
        ctx.untimed_s += max(0.0, elapsed - float(window.group(1)))
    metric = f"rtt_{proto}_rr"
    return [Value(metric, found[50.0], "us"), Value(f"{metric}_p90", found[90.0], "us"),
            Value(f"{metric}_p99", found[99.0], "us"), Value(f"{metric}_mean", float(average.group(1)), "us")
            ] + raw(metric, rtts, params["raw_cap"])


def builtin(ctx: PairContext, proto: str, params: dict[str, Any]) -> list[Value]:
    port = BUILTIN_PORT + 2 + (proto == "tcp")
    argv = proc.python_module("lab.experiment.pingpong", "rr", "--proto", proto, "--host", ctx.dst.ip,
                              "--port", str(port), "--duration", str(params["duration"]), "--size", str(params["size"]))
    result = json.loads(proc.run(ctx.src.netns, argv, timeout=params["duration"] + 20).stdout)
    if not result["rtt_us"]:
        raise proc.ToolError(f"built-in {proto} ping-pong {ctx.pair}: no round trip completed")
    return _summary(f"rtt_{proto}_rr", result["rtt_us"], params["raw_cap"])


KIND = Latency()
