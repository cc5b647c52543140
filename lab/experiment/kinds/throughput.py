"""throughput: iperf3 TCP with 1 stream and with N streams, and UDP at a set rate (JSON output parsed).

Per repetition: the receiver's rate (`throughput_tcp_1`, `throughput_tcp_n`, `throughput_udp`, Gbit/s),
the sender's (`..._sender`), TCP retransmits (`retransmits_tcp_1`, `retransmits_tcp_n`), UDP loss
(`loss_udp`, %), and iperf3's own CPU use of client and server for the 1-stream run
(`cpu_client_tcp_1`, `cpu_server_tcp_1`, %, as knb reports them) with their peak memory
(`rss_client_peak_kb`: the client's VmHWM from wait4's rusage; `rss_server_peak_kb`: the server's
/proc/<pid>/status VmHWM, its peak over the session so far).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from lab.experiment import iperf
from lab.experiment.kinds import Kind, PairContext, Value


class Throughput(Kind):
    id = "throughput"
    SCHEMA = {
        "tests": {"type": "array", "items": {"enum": ["tcp_1", "tcp_n", "udp"]}, "minItems": 1, "uniqueItems": True,
                  "default": ["tcp_1", "tcp_n", "udp"], "description": "tcp_1: one stream; tcp_n: `streams`; udp"},
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 3,
                     "description": "seconds per iperf3 run (iperf3 takes whole seconds)"},
        "streams": {"type": "integer", "minimum": 2, "maximum": 128, "default": 4,
                    "description": "parallel TCP streams of tcp_n (iperf3 -P)"},
        "udp_bandwidth": {"type": "string", "pattern": "^[0-9]+[KMG]?$", "default": "1G",
                          "description": "target rate of the UDP test (iperf3 -b)"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["iperf3", "ss"]

    def estimate(self, params: dict[str, Any]) -> float:
        duration: float = params["duration"]
        return len(params["tests"]) * (duration + 0.2)

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[Any]:
        ctx.implementations["throughput_tool"] = "iperf3"
        return self._serve(ctx)

    @contextlib.contextmanager
    def _serve(self, ctx: PairContext) -> Iterator[None]:
        with iperf.server(ctx) as server:
            ctx.servers["iperf3"] = server
            try:
                yield
            finally:
                ctx.servers.pop("iperf3", None)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        values: list[Value] = []
        duration = params["duration"]
        for test in params["tests"]:
            if test == "udp":
                report = iperf.client(ctx, duration, udp_bandwidth=params["udp_bandwidth"])
                values += [Value("throughput_udp", report.receiver_gbps, "Gbit/s"),
                           Value("throughput_udp_sender", report.sender_gbps, "Gbit/s"),
                           Value("loss_udp", report.lost_percent or 0.0, "%")]
                continue
            report = iperf.client(ctx, duration, streams=1 if test == "tcp_1" else params["streams"])
            values += [Value(f"throughput_{test}", report.receiver_gbps, "Gbit/s"),
                       Value(f"throughput_{test}_sender", report.sender_gbps, "Gbit/s"),
                       Value(f"retransmits_{test}", float(report.retransmits or 0), "count")]
            if test == "tcp_1":
                if report.client_cpu_pct is not None:
                    values.append(Value("cpu_client_tcp_1", report.client_cpu_pct, "%"))
                if report.server_cpu_pct is not None:
                    values.append(Value("cpu_server_tcp_1", report.server_cpu_pct, "%"))
                if report.client_usage is not None:
                    values.append(Value("rss_client_peak_kb", float(report.client_usage.peak_rss_kb), "kB"))
                rss = ctx.servers["iperf3"].peak_rss_kb() if "iperf3" in ctx.servers else None
                if rss is not None:
                    values.append(Value("rss_server_peak_kb", float(rss), "kB"))
        return values


KIND = Throughput()
