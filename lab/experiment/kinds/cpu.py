"""cpu: CPU time per Gbit during an iperf3 TCP run (the "cost" column of CNI benchmarks), with the
client's and the server's own CPU and peak memory (as knb records them).

All of a lab's namespaces share the host's kernel, so the kernel's work for every packet (veth,
bridge, routing, encapsulation, iptables, softirq) shows in /proc/stat's system, irq and softirq
times - of the whole machine, other work on it included. So the kind measures two ways and records
which (environment.json: implementations.cpu_source):

* per process: the iperf3 client's utime + stime (wait4 rusage) and the server's (/proc/<pid>/stat,
  before and after); peak RSS from /proc/<pid>/status VmHWM (the client's polled every 10 ms): the tools'
  own CPU, in their syscalls included; softirq work the kernel does for their packets outside their
  context is not in it.
* host-wide, minus an idle baseline: /proc/stat over `baseline` seconds just before the run gives
  the machine's background rate (other agents, daemons); that rate times the run's wall time is
  subtracted from the run's /proc/stat deltas. What remains is the run's share, softirq included,
  as far as the background stayed steady (the report shows the spread over repetitions).

Per repetition:
  cpu_kernel_s_per_Gbit   (system + irq + softirq, all CPUs, minus baseline) / Gbit received
  cpu_total_s_per_Gbit    every non-idle second (user too, a userspace tunnel), minus baseline / Gbit
  cpu_kernel_pct          that kernel time as a share of all CPUs during the run
  cpu_tools_s_per_Gbit    client + server CPU seconds (per process) / Gbit
  cpu_client_s, cpu_server_s   the client's and the server's CPU seconds (per process)
  cpu_baseline_pct        the machine's busy share during the baseline (all CPUs)
  rss_client_peak_kb, rss_server_peak_kb   VmHWM of the iperf3 client and server (peak RSS)
  throughput_tcp_cpu_run  the run's receiver rate (Gbit/s)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from lab.experiment import iperf, proc
from lab.experiment.kinds import Kind, PairContext, Value

HZ = os.sysconf("SC_CLK_TCK")
METHOD = ("per process: iperf3 client (wait4 rusage; VmHWM polled) and server (/proc/<pid>/stat) utime+stime; "
          "host-wide: /proc/stat system+irq+softirq minus an idle baseline measured just before each run")


def cpu_times() -> tuple[float, float]:
    """(kernel seconds, non-idle seconds) summed over all CPUs since boot."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    kernel = system + irq + softirq
    busy = user + nice + kernel + steal
    return kernel / HZ, busy / HZ


def baseline_rates(seconds: float) -> tuple[float, float]:
    """The machine's background (kernel, busy) CPU seconds per second, over `seconds` of nothing."""
    kernel0, busy0 = cpu_times()
    started = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - started
    kernel1, busy1 = cpu_times()
    return (kernel1 - kernel0) / wall, (busy1 - busy0) / wall


class Cpu(Kind):
    id = "cpu"
    SCHEMA = {
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 3,
                     "description": "seconds of the iperf3 TCP run"},
        "streams": {"type": "integer", "minimum": 1, "maximum": 128, "default": 1,
                    "description": "parallel TCP streams (iperf3 -P)"},
        "baseline": {"type": "number", "minimum": 0.1, "maximum": 60, "default": 0.5,
                     "description": "seconds of idle /proc/stat just before each run (the background to subtract)"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["iperf3", "ss"]

    def estimate(self, params: dict[str, Any]) -> float:
        duration: float = params["duration"]
        baseline: float = params["baseline"]
        return duration + baseline + 0.2

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[Any]:
        return self._serve(ctx)

    @contextlib.contextmanager
    def _serve(self, ctx: PairContext) -> Iterator[None]:
        ctx.implementations["cpu_source"] = METHOD
        with iperf.server(ctx, port=iperf.PORT + 1) as server:
            ctx.servers["iperf3-cpu"] = server
            try:
                yield
            finally:
                ctx.servers.pop("iperf3-cpu", None)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        kernel_rate, busy_rate = baseline_rates(params["baseline"])
        server: proc.Server | None = ctx.servers.get("iperf3-cpu")
        server_before = server.cpu_s() if server is not None else None
        kernel0, busy0 = cpu_times()
        started = time.perf_counter()
        report = iperf.client(ctx, params["duration"], streams=params["streams"], port=iperf.PORT + 1)
        wall = time.perf_counter() - started
        kernel1, busy1 = cpu_times()
        server_after = server.cpu_s() if server is not None else None
        cores = os.cpu_count() or 1
        kernel = max(0.0, (kernel1 - kernel0) - kernel_rate * wall)
        busy = max(0.0, (busy1 - busy0) - busy_rate * wall)
        gbit = report.receiver_gbps * report.seconds
        values = [Value("cpu_kernel_pct", 100 * kernel / (wall * cores), "%"),
                  Value("cpu_baseline_pct", 100 * busy_rate / cores, "%"),
                  Value("throughput_tcp_cpu_run", report.receiver_gbps, "Gbit/s")]
        tools = 0.0
        if report.client_usage is not None:
            tools += report.client_usage.cpu_s
            values += [Value("cpu_client_s", report.client_usage.cpu_s, "cpu_s"),
                       Value("rss_client_peak_kb", float(report.client_usage.peak_rss_kb), "kB")]
        if server_before is not None and server_after is not None and server is not None:
            tools += server_after - server_before
            values.append(Value("cpu_server_s", server_after - server_before, "cpu_s"))
            rss = server.peak_rss_kb()
            if rss is not None:
                values.append(Value("rss_server_peak_kb", float(rss), "kB"))
        if gbit > 0:     # a run that moved nothing has no cost per Gbit
            values += [Value("cpu_kernel_s_per_Gbit", kernel / gbit, "cpu_s_per_Gbit"),
                       Value("cpu_total_s_per_Gbit", busy / gbit, "cpu_s_per_Gbit"),
                       Value("cpu_tools_s_per_Gbit", tools / gbit, "cpu_s_per_Gbit")]
        else:
            ctx.note(f"cpu {ctx.pair}: iperf3 moved no data; no CPU per Gbit recorded")
        return values


KIND = Cpu()
