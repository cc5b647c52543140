#!/usr/bin/env python3
"""Benchmark `lab trace` on a generated 50-node flannel-vxlan lab (and optionally others).

For each lab size it brings up a generated flannel vxlan lab of N nodes x P pods (`lab up --no-wait`),
then times, as a user sees it (the CLI in a child process, `--json` to check the outcome):
  trace            `lab trace <pod on the first node> <pod on the last node>` (the path crosses VXLAN)
  trace --capture  the same with --capture -w: one tcpdump per interface of the path, one real packet
repeated R times each; prints min / median / max and the targets of issue 14 (<= 1 s without capture,
<= 3 s with it, at 50 nodes), and checks every run delivered the packet and (with capture) saw it on
every predicted interface. The lab is taken down at the end.

Usage: sudo .venv/bin/python scripts/bench_trace.py [--nodes 50] [--pods 2] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB = [sys.executable, "-m", "lab.cli"]
TARGETS = {"trace": 1.0, "capture": 3.0}


def topology_yaml(name: str, nodes: int, pods: int) -> str:
    lines = [f"name: {name}", "cluster: {cni: flannel}",
             "networks:", "  - {name: lan, cidr: 192.168.0.0/16, gateway: 192.168.0.1}", "nodes:"]
    lines += [f"  - {{name: node{i:03d}, ip: 192.168.{1 + i // 250}.{1 + i % 250}}}" for i in range(nodes)]
    lines.append("pods:")
    lines += [f"  - {{name: p{i:03d}-{j}, node: node{i:03d}}}" for i in range(nodes) for j in range(pods)]
    lines += ["resources:", "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}"]
    return "\n".join(lines) + "\n"


def timed(argv: list[str]) -> tuple[float, dict]:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"bench_trace: {' '.join(argv)} failed: {result.stderr}")
    return seconds, json.loads(result.stdout)


def bench(nodes: int, pods: int, repeat: int, workdir: Path, prefix: str = "bt") -> dict:
    name = f"{prefix}-{nodes}"
    path = workdir / f"{name}.yaml"
    path.write_text(topology_yaml(name, nodes, pods))
    subprocess.run(LAB + ["up", str(path), "--no-wait"], check=True, capture_output=True)
    try:
        src, dst = "default/p000-0", f"default/p{nodes - 1:03d}-0"
        base = LAB + ["trace", src, dst, "--json", "--lab", name]
        subprocess.run(base, capture_output=True)          # warm the page cache once, as any first command does
        plain, captured, hops, interfaces, ok = [], [], 0, 0, True
        walks, captures = [], []
        for _ in range(repeat):
            seconds, result = timed(base)
            plain.append(seconds)
            walks.append(result["seconds"]["walk"])
            hops = len(result["hops"])
            ok &= result["outcome"] == "delivered"
        for i in range(repeat):
            seconds, result = timed(base + ["--capture", "-w", str(workdir / f"t{i}.pcap")])
            captured.append(seconds)
            captures.append(result["seconds"]["walk"] + result["seconds"]["capture"])
            interfaces = len(result["observed"]["interfaces"])
            ok &= result["outcome"] == "delivered" and not result["observed"]["differences"]
    finally:
        subprocess.run(LAB + ["down", name], capture_output=True)
    return {"nodes": nodes, "pods": nodes * pods, "hops": hops, "interfaces_captured": interfaces, "ok": ok,
            "trace_s": [round(s, 3) for s in plain], "capture_s": [round(s, 3) for s in captured],
            "walk_s": walks, "walk_capture_s": captures, "import_s": import_seconds(),
            "trace_imports_s": import_seconds("from lab.lifecycle import Lab; import lab.trace.run, lab.live")}


def import_seconds(code: str = "import lab.cli", repeat: int = 5) -> float:
    """What starting Python and importing costs, before any work (median of `repeat` child processes):
    `import lab.cli` alone, or what `lab trace` imports before it reads the kernel."""
    runs = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True)
        runs.append(time.monotonic() - start)
    return round(statistics.median(runs), 3)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[50])
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--prefix", default="bt", help="lab name prefix (labs are <prefix>-<nodes>)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_trace: run as root (sudo); it builds labs in network namespaces")
    rows = []
    print(f"uptime before: {uptime()}")
    print(f"{'nodes':>5} {'pods':>5} {'hops':>4} {'ifaces':>6} {'what':<16} {'min':>6} {'median':>6} {'max':>6} "
          f"{'target':>6} verdict")
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        for n in args.nodes:
            row = bench(n, args.pods, args.repeat, Path(tmp), args.prefix)
            rows.append(row)
            for key, label, target in (("trace_s", "trace", TARGETS["trace"]),
                                       ("capture_s", "trace --capture", TARGETS["capture"]),
                                       ("walk_s", "  in-process walk", TARGETS["trace"]),
                                       ("walk_capture_s", "  in-process w+cap", TARGETS["capture"])):
                values = row[key]
                median = statistics.median(values)
                verdict = ("met" if median <= target else "MISSED") if n == 50 else "-"
                print(f"{n:>5} {row['pods']:>5} {row['hops']:>4} {row['interfaces_captured']:>6} {label:<16} "
                      f"{min(values):>6.2f} {median:>6.2f} {max(values):>6.2f} {target:>6.1f} {verdict}"
                      + ("" if row["ok"] else "  (some runs did not deliver / differed)"), flush=True)
    print(f"uptime after: {uptime()}")
    print(f"\n(trace rows: wall time of the `lab` CLI in a child process, Python start-up and imports included "
          f"(`import lab.cli` alone: {rows[-1]['import_s']:.2f} s, median of 5; what `lab trace` imports before it "
          f"reads the kernel: {rows[-1]['trace_imports_s']:.2f} s); in-process rows: the kernel walk (and the capture) "
          f"as the CLI times them; {args.repeat} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          "other work on the machine is not controlled)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
