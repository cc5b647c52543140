"""cpu: CPU time per Gbit during an iperf3 TCP run, from /proc/stat (the "cost" column of CNI benchmarks).

All of a lab's namespaces share the host's kernel, so the kernel's work for every packet (veth,
bridge, routing, encapsulation, iptables, softirq) shows in /proc/stat's system, irq and softirq
times. Per repetition:
  cpu_kernel_s_per_Gbit   (system + irq + softirq seconds, all CPUs) / Gbit received
  cpu_total_s_per_Gbit    every non-idle second (user too: iperf3 itself, a userspace tunnel) / Gbit
  cpu_kernel_pct          kernel time as a share of all CPUs during the run
  throughput_tcp_cpu_run  the run's receiver rate (Gbit/s)
/proc/stat counts the whole machine: other work on it during the run is counted too (see
environment.json's loadavg), which is why the kind repeats and the report shows the spread.
"""

from __future__ import annotations

import os
from typing import Any, ContextManager

from lab.experiment import iperf
from lab.experiment.kinds import Kind, PairContext, Value

HZ = os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[float, float]:
    """(kernel seconds, non-idle seconds) summed over all CPUs since boot."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    kernel = system + irq + softirq
    busy = user + nice + kernel + steal
    return kernel / HZ, busy / HZ


class Cpu(Kind):
    id = "cpu"
    SCHEMA = {
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 3,
                     "description": "seconds of the iperf3 TCP run"},
        "streams": {"type": "integer", "minimum": 1, "maximum": 128, "default": 1,
                    "description": "parallel TCP streams (iperf3 -P)"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["iperf3", "ss"]

    def estimate(self, params: dict[str, Any]) -> float:
        return params["duration"] + 0.2

    def session(self, ctx: PairContext, params: dict[str, Any]) -> ContextManager[Any]:
        ctx.implementations["cpu_source"] = "/proc/stat (host-wide)"
        return iperf.server(ctx, port=iperf.PORT + 1)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        kernel0, busy0 = cpu_times()
        report = iperf.client(ctx, params["duration"], streams=params["streams"], port=iperf.PORT + 1)
        kernel1, busy1 = cpu_times()
        gbit = report.receiver_gbps * report.seconds
        cores = os.cpu_count() or 1
        wall = max(report.seconds, 1e-6)
        values = [Value("cpu_kernel_pct", 100 * (kernel1 - kernel0) / (wall * cores), "%"),
                  Value("throughput_tcp_cpu_run", report.receiver_gbps, "Gbit/s")]
        if gbit > 0:     # a run that moved nothing has no cost per Gbit
            values += [Value("cpu_kernel_s_per_Gbit", (kernel1 - kernel0) / gbit, "cpu_s_per_Gbit"),
                       Value("cpu_total_s_per_Gbit", (busy1 - busy0) / gbit, "cpu_s_per_Gbit")]
        else:
            ctx.note(f"cpu {ctx.pair}: iperf3 moved no data; no CPU per Gbit recorded")
        return values


KIND = Cpu()
