#!/usr/bin/env python3
"""Benchmark the data planes pod to pod across two nodes, as ratios to flannel host-gw.

Modes, in one run: flannel host-gw, flannel vxlan, flannel ipip and Calico IPIP on every IPIP
implementation this kernel offers (kernel ipip module, eBPF on tc, userspace TUN tunnel; forced with
options.ipipImplementation), Calico BGP (no encapsulation), Calico VXLAN, and Terway ENIIP (veth +
policy routing through the emulated VPC router) and Terway VPC mode. Each lab is two nodes on
one segment with one pod each, brought up from a generated topology. All labs are up at once and
measured round-robin (`--reps` rounds, each mode once per round), so a change of load on the shared
machine falls on every mode alike; then they are taken down.

Per mode:
  throughput   iperf3, one TCP stream pod a -> pod b, `--reps` runs of `--seconds` s: median (min-max);
  RTT          ping, `--pings` echo requests 5 ms apart after each throughput run: median of all the
               per-packet times;
  CPU per Gb/s CPU cores busy per Gb/s during the throughput runs: the iperf3 sender and receiver
               processes (their own figures, which include the softirq work done in their context) plus
               the lab's route agent where it runs (the userspace tunnel does its work there).
Every figure is also given as a ratio to host-gw, and throughput / RTT as ratios to the same CNI
without encapsulation (flannel host-gw, Calico BGP), which isolates the cost of the encapsulation.
The machine's load average is printed before and after: other work on the machine moves these
numbers, so repeat when it was high.

Usage: sudo .venv/bin/python scripts/bench_datapath.py [--reps 5] [--seconds 3] [--pings 200]
                                                       [--modes host-gw,calico-ipip-ebpf,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import progress  # noqa: E402
from lab.netns import capabilities, names  # noqa: E402

PREFIX = "bd"
NODES = (("n1", "192.168.31.11", "10.244.1.0"), ("n2", "192.168.31.12", "10.244.2.0"))
PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mode:
    name: str
    cni: str
    backend: str                      # flannel: host-gw | vxlan | ipip; calico: bgp | ipip | vxlan; terway: eniip | vpc
    implementation: str | None = None  # IPIP: kernel | ebpf | userspace


@dataclass
class Result:
    mode: str
    implementation: str
    throughput_gbps: list[float] = field(default_factory=list)
    rtt_us: list[float] = field(default_factory=list)
    cpu_cores: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def gbps(self) -> float:
        return statistics.median(self.throughput_gbps) if self.throughput_gbps else float("nan")

    @property
    def rtt(self) -> float:
        return statistics.median(self.rtt_us) if self.rtt_us else float("nan")

    @property
    def cpu_per_gbps(self) -> float:
        per = [c / g for c, g in zip(self.cpu_cores, self.throughput_gbps, strict=False) if g > 0]
        return statistics.median(per) if per else float("nan")


def topology(mode: Mode) -> str:
    """Two nodes, one pod each, on one segment."""
    lab = f"{PREFIX}-{mode.name}"
    lines = [f"name: {lab}", f"description: bench_datapath {mode.name}"]
    if mode.implementation:
        lines += ["options:", f"  ipipImplementation: {mode.implementation}"]
    lines += ["cluster:", f"  cni: {mode.cni}"]
    if mode.cni == "terway":
        return "\n".join(lines + terway_topology(mode)) + "\n"
    if mode.cni == "calico" and mode.backend == "vxlan":
        lines.append("  calico: {backend: vxlan}")
    lines += ["networks:", "  - {name: lan, cidr: 192.168.31.0/24, gateway: 192.168.31.1}", "nodes:"]
    for name, ip, subnet in NODES:
        cidr = f"{subnet}/24" if mode.cni == "flannel" else f"{subnet}/26"
        lines.append(f"  - {{name: {name}, ip: {ip}, podCIDR: {cidr}}}")
    lines += ["pods:", "  - {name: a, node: n1}", "  - {name: b, node: n2}", "resources:"]
    if mode.cni == "flannel":
        lines += ["  - Network: 10.244.0.0/16", f"    Backend: {{Type: {mode.backend}}}"]
    else:
        ipip = "Always" if mode.backend == "ipip" else "Never"
        vxlan = "Always" if mode.backend == "vxlan" else "Never"
        lines += ["  - apiVersion: projectcalico.org/v3", "    kind: IPPool",
                  "    metadata: {name: default-ipv4-ippool}",
                  f"    spec: {{cidr: 10.244.0.0/16, blockSize: 26, ipipMode: {ipip}, vxlanMode: {vxlan}, "
                  "natOutgoing: true}"]
    return "\n".join(lines) + "\n"


def terway_topology(mode: Mode) -> list[str]:
    """Terway's part: the nodes on a vSwitch (gateway .253); ENIIP pods on ENI secondary IPs, VPC-mode pods
    in a podCIDR per node reached through the VPC route table."""
    lines = [f"  terway: {{mode: {mode.backend}" + (", podCIDR: 10.244.0.0/16}" if mode.backend == "vpc" else "}"),
             "networks:", "  - {name: vsw, cidr: 192.168.31.0/24, gateway: 192.168.31.253}", "nodes:"]
    lines += [f"  - {{name: {name}, ip: {ip}}}" for name, ip, _subnet in NODES]
    return lines + ["pods:", "  - {name: a, node: n1}", "  - {name: b, node: n2}"]


def modes(caps: capabilities.Capabilities) -> list[Mode]:
    """Every mode, with one IPIP row per implementation this kernel offers."""
    impls = [impl for impl, ok in (("kernel", caps.has("ipip")), ("ebpf", caps.ebpf_ipip), ("userspace", True))
             if ok]
    found = [Mode("host-gw", "flannel", "host-gw"), Mode("flannel-vxlan", "flannel", "vxlan")]
    found += [Mode(f"flannel-ipip-{impl}", "flannel", "ipip", impl) for impl in impls]
    found += [Mode("calico-bgp", "calico", "bgp")]
    found += [Mode(f"calico-ipip-{impl}", "calico", "ipip", impl) for impl in impls]
    found += [Mode("calico-vxlan", "calico", "vxlan")]
    found += [Mode("terway-eniip", "terway", "eniip"), Mode("terway-vpc", "terway", "vpc")]
    return found


def lab_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode:
        raise RuntimeError(f"lab {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def in_netns(netns: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)


def wait_reachable(src: str, dst_ip: str, timeout: float = 60.0) -> None:
    """Calico BGP labs learn their routes after `lab up` returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_netns(src, "ping", "-c", "1", "-W", "1", dst_ip).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{dst_ip} unreachable from {src} after {timeout:.0f} s")


def process_cpu(pid: int | None) -> float:
    """utime + stime of a process, in seconds (0 when there is none)."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def iperf3_run(src: str, dst: str, dst_ip: str, seconds: int, agent: int | None) -> tuple[float, float]:
    """One iperf3 TCP stream: (Gb/s received, CPU cores busy in iperf3 and the route agent)."""
    server = subprocess.Popen(["ip", "netns", "exec", dst, "iperf3", "-s", "-1", "-p", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        agent_before = process_cpu(agent)
        started = time.monotonic()
        result = in_netns(src, "iperf3", "-c", dst_ip, "-p", str(PORT), "-t", str(seconds), "-J",
                          timeout=seconds + 60)
        elapsed = time.monotonic() - started
        agent_cores = (process_cpu(agent) - agent_before) / elapsed
        data = json.loads(result.stdout or "{}")
        if "error" in data or "end" not in data:
            raise RuntimeError(f"iperf3: {data.get('error', result.stderr.strip())}")
        gbps = data["end"]["sum_received"]["bits_per_second"] / 1e9
        cpu = data["end"]["cpu_utilization_percent"]
        return gbps, (cpu["host_total"] + cpu["remote_total"]) / 100 + agent_cores
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def ping_rtts(src: str, dst_ip: str, count: int) -> list[float]:
    result = in_netns(src, "ping", "-c", str(count), "-i", "0.005", "-W", "1", dst_ip, timeout=count * 0.1 + 30)
    return [float(m) * 1000 for m in re.findall(r"time=([\d.]+) ms", result.stdout)]


@dataclass
class Running:
    """A mode's lab, up: where to send from and to."""

    mode: Mode
    lab: str
    src: str
    dst: str
    dst_ip: str
    agent: int | None


def bring_up(mode: Mode, workdir: Path, result: Result) -> Running | None:
    path = workdir / f"{PREFIX}-{mode.name}.yaml"
    path.write_text(topology(mode))
    lab = f"{PREFIX}-{mode.name}"
    try:
        lab_cli("up", str(path))
        status = json.loads(lab_cli("status", lab, "--json").stdout)
        result.implementation = status.get("ipip_implementation") or "-"
        pods = {p["name"]: p for p in status["pods"]}
        running = Running(mode, lab, pods["a"]["netns"], pods["b"]["netns"], pods["b"]["ip"],
                          status.get("runtime", {}).get("route_agent", {}).get("pid"))
        wait_reachable(running.src, running.dst_ip)
        return running
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        result.error = str(exc)
        return None


def measure_once(running: Running, args: argparse.Namespace, result: Result) -> None:
    """One throughput run, then the pings (so the RTT samples are spread over the whole benchmark)."""
    try:
        gbps, cores = iperf3_run(running.src, running.dst, running.dst_ip, args.seconds, running.agent)
        result.throughput_gbps.append(gbps)
        result.cpu_cores.append(cores)
        result.rtt_us += ping_rtts(running.src, running.dst_ip, args.pings)
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        result.error = str(exc)


def run_all(chosen: list[Mode], args: argparse.Namespace, workdir: Path, show) -> list[Result]:
    """Every lab up at once, then `--reps` rounds that measure each mode in turn (a change of load on
    the machine then falls on every mode alike), then every lab down."""
    results = {mode.name: Result(mode=mode.name, implementation="-") for mode in chosen}
    running: list[Running] = []
    try:
        for number, mode in enumerate(chosen, 1):
            show(f"up {number}/{len(chosen)}: {mode.name}")
            lab = bring_up(mode, workdir, results[mode.name])
            if lab:
                running.append(lab)
        for round_number in range(1, args.reps + 1):
            for lab in running:
                if results[lab.mode.name].error is None:
                    show(f"round {round_number}/{args.reps}: {lab.mode.name}: iperf3 {args.seconds} s, "
                         f"{args.pings} pings")
                    measure_once(lab, args, results[lab.mode.name])
    finally:
        for mode in chosen:
            show(f"down: {mode.name}")
            lab_cli("down", f"{PREFIX}-{mode.name}", check=False)
    return [results[mode.name] for mode in chosen]


def load() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base and base == base and value == value else "-"


def same_cni(result: Result, results: list[Result]) -> str:
    """Throughput and RTT against the same CNI without encapsulation (flannel host-gw, Calico BGP)."""
    if result.mode.startswith("terway"):     # Terway has no encapsulation to compare against
        return "-"
    base_name = "calico-bgp" if result.mode.startswith("calico") else "host-gw"
    base = next((r for r in results if r.mode == base_name and not r.error), None)
    if base is None or result.mode == base_name:
        return "-"
    return f"{ratio(result.gbps, base.gbps)} / {ratio(result.rtt, base.rtt)}"


def report(results: list[Result], before: str, after: str, args: argparse.Namespace) -> str:
    base = next((r for r in results if r.mode == "host-gw" and not r.error), None)
    iperf = subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    lines = [f"bench_datapath: kernel {platform.release()}, {os.cpu_count()} CPUs, {iperf}",
             f"throughput: iperf3 1 TCP stream pod->pod across nodes, {args.reps} x {args.seconds} s, "
             f"median (min-max); RTT: ping {args.reps} x {args.pings}, median; "
             "CPU: iperf3 sender+receiver (+ route agent) cores per Gb/s",
             f"load average before: {before}; after: {after}", ""]
    header = (f"{'mode':22} {'IPIP impl':14} {'Gb/s':>6} {'(min-max)':>13} {'vs hgw':>7} {'RTT us':>7} {'vs hgw':>7} "
              f"{'CPU/Gb/s':>8} {'vs hgw':>7}   {'same CNI, no encap':>18}")
    lines += [header, "-" * len(header)]
    for r in results:
        if r.error:
            lines.append(f"{r.mode:22} {r.implementation:14} error: {r.error}")
            continue
        spread = f"({min(r.throughput_gbps):.2f}-{max(r.throughput_gbps):.2f})"
        lines.append(f"{r.mode:22} {r.implementation:14} {r.gbps:6.2f} {spread:>13} "
                     f"{ratio(r.gbps, base.gbps) if base else '-':>7} {r.rtt:7.0f} "
                     f"{ratio(r.rtt, base.rtt) if base else '-':>7} {r.cpu_per_gbps:8.3f} "
                     f"{ratio(r.cpu_per_gbps, base.cpu_per_gbps) if base else '-':>7}   {same_cni(r, results):>18}")
    lines.append("")
    for ebpf in [r for r in results if r.mode.endswith("-ebpf") and not r.error]:
        if base:
            lines.append(f"target {ebpf.mode}: throughput >= 0.8x host-gw: {ebpf.gbps / base.gbps:.2f}x "
                         f"({'met' if ebpf.gbps >= 0.8 * base.gbps else 'NOT met'}); RTT <= 1.5x host-gw: "
                         f"{ebpf.rtt / base.rtt:.2f}x ({'met' if ebpf.rtt <= 1.5 * base.rtt else 'NOT met'})")
            if ebpf.mode.startswith("flannel") and ebpf.gbps < 0.8 * base.gbps:
                lines.append(f"  {ebpf.mode} does NOT meet the 0.8x target (issue 12 sets it for Calico's IPIP): "
                             "without BPF_F_ADJ_ROOM_DECAP_IPXIP4 (not in this kernel) decapsulated TCP "
                             "super-packets keep their tunnel GSO marks, and flannel's cni0 bridge, which has no "
                             "tunnel offloads, segments each one in software on the way to the pod")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--modes", help="comma-separated subset of the mode names")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    capabilities.require_root()
    caps = capabilities.detect(names.probe_netns(f"{PREFIX}-probe"))
    chosen = modes(caps)
    if args.modes:
        wanted = args.modes.split(",")
        chosen = [m for m in chosen if m.name in wanted]
    before = load()
    with tempfile.TemporaryDirectory(prefix="bench-datapath-") as workdir, progress.spinner("bench_datapath") as show:
        results = run_all(chosen, args, Path(workdir), show)
    text = report(results, before, load(), args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": before, "load_after": load(),
                                               "results": [asdict(r) | {"median_gbps": r.gbps, "median_rtt_us": r.rtt,
                                                                        "cpu_per_gbps": r.cpu_per_gbps}
                                                           for r in results]}, indent=1))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
