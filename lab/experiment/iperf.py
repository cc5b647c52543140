"""iperf3 in a lab's pods: the server in the destination pod, the client's JSON report parsed."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

from lab.experiment import proc
from lab.experiment.kinds import PairContext

PORT = 5201
RETRIES = 2
TRANSIENT = ("server is busy", "control message", "Connection reset", "Connection refused")
GBIT = 1e9


@dataclass(frozen=True)
class Report:
    """The figures of one iperf3 run that the kinds record."""

    sender_gbps: float
    receiver_gbps: float
    retransmits: int | None
    lost_percent: float | None
    seconds: float
    client_cpu_pct: float | None
    server_cpu_pct: float | None
    raw: dict[str, Any]
    client_usage: proc.Usage | None = None      # the iperf3 client's own CPU seconds and peak RSS


def server(ctx: PairContext, port: int = PORT) -> proc.Server:
    """`iperf3 -s` in the destination pod, bound to its address; stopped when the `with` ends."""
    return proc.Server(ctx.dst.netns, ["iperf3", "-s", "-B", ctx.dst.ip, "-p", str(port)], port)


def client(ctx: PairContext, duration: int, streams: int = 1, udp_bandwidth: str | None = None,
           mss: int | None = None, length: str | int | None = None, port: int = PORT) -> Report:
    """One iperf3 run from the source pod to the destination pod (TCP unless `udp_bandwidth` is given)."""
    argv = ["iperf3", "-c", ctx.dst.ip, "-p", str(port), "-t", str(duration), "-J"]
    if streams > 1:
        argv += ["-P", str(streams)]
    if udp_bandwidth is not None:
        argv += ["-u", "-b", str(udp_bandwidth)]
    if mss is not None:
        argv += ["-M", str(mss)]
    if length is not None:
        argv += ["-l", str(length)]
    for attempt in range(RETRIES + 1):
        try:
            done, usage = proc.run_measured(ctx.src.netns, argv, timeout=duration + 30)
            return dataclasses.replace(parse(done.stdout, udp_bandwidth is not None), client_usage=usage)
        except proc.ToolError as exc:
            # a server still closing the previous test refuses or resets the next control connection
            if attempt == RETRIES or not any(text in exc.message for text in TRANSIENT):
                raise
            time.sleep(0.3)
    raise AssertionError("not reached")




def parse(text: str, udp: bool) -> Report:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise proc.ToolError(f"iperf3 printed no JSON report: {text.strip()[-300:]}") from exc
    if "error" in data:
        raise proc.ToolError(f"iperf3: {data['error']}")
    end = data["end"]
    sent, received = end["sum_sent"], end["sum_received"]
    cpu = end.get("cpu_utilization_percent", {})
    return Report(sender_gbps=sent["bits_per_second"] / GBIT, receiver_gbps=received["bits_per_second"] / GBIT,
                  retransmits=None if udp else sent.get("retransmits"),
                  lost_percent=received.get("lost_percent") if udp else None,
                  seconds=float(received.get("seconds", sent.get("seconds", 0.0))),
                  client_cpu_pct=cpu.get("host_total"), server_cpu_pct=cpu.get("remote_total"), raw=data)
