#!/usr/bin/env python3
"""Benchmark the topology loader (and the dry-run plan) against pod count, for flannel and Calico.

For each CNI and each pod count N it generates a topology of N pods, 100 per node (kubelet admits
110), each pod with labels and a container port, and a NetworkPolicy, then runs in a fresh Python
process, one measurement each:
  load      lab.topology.loader.load(): read, parse, schema checks, IPAM -> the immutable model
  plan      the dry run's plan after loading (the CNI's plan plus the neighbour decision)
  peak RSS  of that process (the interpreter alone is about 30 MB)
Each point is measured --repeat times (3) and the fastest run is reported (the machine is shared;
the spread is printed too). It prints a table, the per-pod cost at each size relative to that at
1,000 pods (1.0 = linear), the growth exponent between the two largest sizes (time ~ pods^k; 1.0 =
linear), and the issue's target: linear, with 10,000 pods loaded in at most 5 s and 300 MB.

Needs no root. Usage: .venv/bin/python scripts/bench_loader.py [--pods 100 1000 5000 10000 20000]
                                                                [--cni flannel calico] [--repeat 3]
                                                                [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lab, not another install's
PODS_PER_NODE = 100
TARGET_PODS, TARGET_SECONDS, TARGET_MB = 10_000, 5.0, 300.0


def topology_yaml(cni: str, pods: int) -> str:
    """A topology of `pods` pods, PODS_PER_NODE per node, on one underlay network."""
    nodes = max(1, -(-pods // PODS_PER_NODE))
    lines = [f"name: bench-{cni}", f"cluster: {{cni: {cni}}}" if cni == "calico"
             else "cluster: {cni: flannel, networkPolicy: kube-router}",
             "networks:", "  - {name: lan, cidr: 192.168.0.0/16, gateway: 192.168.0.1}",
             "namespaces:", "  - {name: web, labels: {team: blue}}", "nodes:"]
    for i in range(nodes):
        lines.append(f"  - {{name: node{i:03d}, ip: 192.168.{1 + i // 250}.{1 + i % 250}}}")
    lines.append("pods:")
    for j in range(pods):
        lines.append(f"  - {{name: p{j:05d}, namespace: web, node: node{j // PODS_PER_NODE:03d}, "
                     f"labels: {{app: a{j % 10}}}, containerPorts: [{{containerPort: 80}}]}}")
    lines.append("resources:")
    if cni == "flannel":
        lines.append("  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}")
    else:
        lines += ["  - apiVersion: projectcalico.org/v3", "    kind: IPPool", "    metadata: {name: pool}",
                  "    spec: {cidr: 10.0.0.0/8, blockSize: 26, ipipMode: Always, natOutgoing: true}"]
    lines += ["  - apiVersion: networking.k8s.io/v1", "    kind: NetworkPolicy",
              "    metadata: {name: allow-a1, namespace: web}",
              "    spec: {podSelector: {matchLabels: {app: a1}}, ingress: [{from: [{podSelector: {}}], "
              "ports: [{port: 80}]}]}"]
    return "\n".join(lines) + "\n"


def child(path: str) -> None:
    """Load and plan `path`; print the timings and peak RSS as JSON (run in a fresh process)."""
    from lab.lifecycle import Lab
    from lab.topology import loader

    start = time.perf_counter()
    topology = loader.load(path)
    loaded = time.perf_counter()
    try:
        plan, decision = Lab().plan(topology)
        planned, neighbours = time.perf_counter() - loaded, decision.mode
    except Exception as exc:  # a refusal (LabError) is a result too
        planned, neighbours = None, f"refused: {str(exc).splitlines()[0][:60]}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pods": len(topology.pods), "nodes": len(topology.nodes), "load_s": loaded - start,
                      "plan_s": planned, "neighbours": neighbours, "peak_mb": peak}))


def measure(cni: str, pods: int, workdir: Path, repeat: int) -> dict:
    """The fastest of `repeat` fresh-process runs, with the slowest load time as `load_max_s`."""
    path = workdir / f"{cni}-{pods}.yaml"
    path.write_text(topology_yaml(cni, pods))
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                             timeout=900, env={**os.environ, "PYTHONHASHSEED": "0"})
        if out.returncode != 0:
            raise SystemExit(f"{cni} {pods}: failed\n{out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["load_s"])
    return {"cni": cni, "bytes": path.stat().st_size, **best, "load_max_s": max(r["load_s"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs), "runs": len(runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[100, 1000, 5000, 10000, 20000])
    parser.add_argument("--cni", nargs="+", default=["flannel", "calico"], choices=["flannel", "calico"])
    parser.add_argument("--repeat", type=int, default=3, help="runs per point; the fastest is reported")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cni in args.cni:
            for pods in args.pods:
                rows.append(measure(cni, pods, Path(tmp), args.repeat))
                print(f"  measured {cni} {pods} pods", file=sys.stderr)
    print(f"{'CNI':8} {'PODS':>6} {'NODES':>5} {'YAML KB':>8} {'LOAD s':>7} {'(max)':>6} {'us/pod':>7} {'ratio':>6} "
          f"{'PLAN s':>7} {'PEAK MB':>8}  NEIGHBOURS")
    verdicts = []
    for cni in args.cni:
        mine = [r for r in rows if r["cni"] == cni]
        reference = next((r for r in mine if r["pods"] >= 1000), mine[0])
        base = reference["load_s"] / reference["pods"]
        for r in mine:
            per_pod = r["load_s"] / r["pods"]
            plan = f"{r['plan_s']:.2f}" if r["plan_s"] is not None else "-"
            print(f"{cni:8} {r['pods']:>6} {r['nodes']:>5} {r['bytes'] / 1024:>8.0f} {r['load_s']:>7.2f} "
                  f"{r['load_max_s']:>6.2f} {per_pod * 1e6:>7.0f} {per_pod / base:>6.2f} {plan:>7} {r['peak_mb']:>8.0f}  {r['neighbours']}")
            if r["pods"] == TARGET_PODS:
                ok = r["load_s"] <= TARGET_SECONDS and r["peak_mb"] <= TARGET_MB
                verdicts.append(f"{cni}: {TARGET_PODS} pods loaded in {r['load_s']:.2f} s (target <= "
                                f"{TARGET_SECONDS:.0f} s), peak {r['peak_mb']:.0f} MB (target <= {TARGET_MB:.0f} MB): "
                                f"{'met' if ok else 'MISSED'}")
        big = mine[-1]
        line = (f"{cni}: time per pod at {big['pods']} pods is {big['load_s'] / big['pods'] / base:.2f}x that at "
                f"{reference['pods']} pods (1.0 = linear)")
        if len(mine) > 1 and mine[-2]["load_s"] > 0:
            small = mine[-2]
            exponent = math.log(big["load_s"] / small["load_s"]) / math.log(big["pods"] / small["pods"])
            line += f"; from {small['pods']} to {big['pods']} pods time grows as pods^{exponent:.2f}"
        print(line)
    for line in verdicts:
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
