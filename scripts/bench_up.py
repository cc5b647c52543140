#!/usr/bin/env python3
"""Benchmark `lab up` / `lab down` on generated flannel-vxlan labs of N nodes x 10 pods.

For each N it measures, as a user would see them:
  up+reach   from starting `lab up` until one pod on every node has reached one pod on every other
             node (N x (N-1) ICMP probes, all answered)
  down       `lab down`
  peak RSS   of the `lab up` process
  leftovers  namespaces, state files and processes of the lab after `lab down`
  floor      the same plan replayed with `ip -batch` (one batch per namespace; `bridge -batch` for
             the fdb entries; one iptables-restore per node; sysctls written directly), then the same
             probes
and prints the ratio lab / floor. Targets (issue 2): 100 x 10 up in at most 2x the floor and at most
10 s; down in at most 5 s; zero leftovers.

Usage (as root): .venv/bin/python scripts/bench_up.py [--nodes 3 10 50 100] [--pods 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.lifecycle import Lab
from lab.netns import apply, iptables, namespace, names, render
from lab.probe.icmp import Pair, reachability
from lab.topology import loader

LAB = [sys.executable, "-m", "lab.cli"]


def topology_yaml(name: str, nodes: int, pods: int) -> str:
    lines = [f"name: {name}", "cluster: {cni: flannel}",
             "networks:", "  - {name: lan, cidr: 192.168.0.0/16, gateway: 192.168.0.1}", "nodes:"]
    for i in range(nodes):
        lines.append(f"  - {{name: node{i:03d}, ip: 192.168.{1 + i // 250}.{1 + i % 250}}}")
    lines.append("pods:")
    for i in range(nodes):
        for j in range(pods):
            lines.append(f"  - {{name: p{i:03d}-{j}, node: node{i:03d}}}")
    lines += ["resources:", "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}"]
    return "\n".join(lines) + "\n"


def probe_pairs(topology) -> list[Pair]:
    """One pod on each node to one pod on every other node."""
    first = {}
    for pod in topology.pods:
        first.setdefault(pod.node, pod)
    return [Pair(names.pod_netns(topology.name, a.namespace, a.name), str(b.ip))
            for a in first.values() for b in first.values() if a is not b]


def run_timed(argv: list[str]) -> tuple[float, int, subprocess.CompletedProcess | None]:
    """Run a command; return (seconds, peak RSS in KiB, result)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{out.decode()}\n{err.decode()}")
    return elapsed, usage.ru_maxrss, None


def wait_reachable(pairs: list[Pair], timeout: float = 30.0) -> int:
    results = reachability(pairs, timeout=timeout)
    return sum(1 for rtt in results.values() if rtt is not None)


def leftovers(lab: str) -> dict[str, int]:
    ns = [n for n in namespace.list_all() if names.is_lab_netns(n, lab)]
    inodes = {namespace.inode(n) for n in ns}
    procs = sum(len(p) for p in namespace.pids_by_namespace({i for i in inodes if i}).values())
    return {"namespaces": len(ns), "state": int(os.path.exists(f"/run/lab/{lab}")), "processes": procs}


def floor(plan, pairs: list[Pair], workdir: Path) -> tuple[float, float, int]:
    """Replay the plan with `ip -batch`: returns (apply seconds, apply+reach seconds, pairs answered)."""
    batches: list[tuple[str, Path, Path | None]] = []
    sysctls: dict[str, list] = {}
    rules: dict[str, str] = {}
    for ns in plan.namespaces:
        commands = render.namespace_commands(ns)
        ip_lines = [" ".join(c.args) for c in commands if c.tool == "ip"]
        br_lines = [" ".join(c.args) for c in commands if c.tool == "bridge"]
        ip_file = workdir / f"{ns.name}.ip"
        ip_file.write_text("\n".join(ip_lines) + "\n")
        br_file = None
        if br_lines:
            br_file = workdir / f"{ns.name}.bridge"
            br_file.write_text("\n".join(br_lines) + "\n")
        batches.append((ns.name, ip_file, br_file))
        sysctls[ns.name] = list(ns.sysctls)
        rules[ns.name] = iptables.restore_text(ns.iptables) if ns.iptables else ""
    create = workdir / "netns.ip"
    create.write_text("\n".join(f"netns add {ns.name}" for ns in plan.namespaces) + "\n")
    start = time.perf_counter()
    subprocess.run(["ip", "-batch", str(create)], check=True)
    for name, ip_file, br_file in batches:
        # without -force, ip stops at the first refused command and check=True fails the run;
        # stderr only carries iproute2's "vxlan: destination port not specified" advice
        subprocess.run(["ip", "-n", name, "-batch", str(ip_file)], check=True, stderr=subprocess.DEVNULL)
        if sysctls[name]:
            namespace.run_in(name, lambda s=sysctls[name]: [open(f"/proc/sys/{x.key}", "w").write(x.value) for x in s])
        if br_file:
            subprocess.run(["bridge", "-n", name, "-batch", str(br_file)], check=True)
        if rules[name]:
            subprocess.run(iptables.restore_argv(name), input=rules[name], text=True, check=True)
    applied = time.perf_counter() - start
    answered = wait_reachable(pairs)
    total = time.perf_counter() - start
    apply.remove_namespaces([ns.name for ns in plan.namespaces])
    return applied, total, answered


def bench(nodes: int, pods: int, workdir: Path) -> dict:
    name = f"bench{nodes}"
    path = workdir / f"{name}.yaml"
    path.write_text(topology_yaml(name, nodes, pods))
    topology = loader.load(str(path))
    plan, _ = Lab().plan(topology)  # the same plan `lab up` applies, static neighbours included
    pairs = probe_pairs(topology)

    start = time.perf_counter()
    up_seconds, peak_kib, _ = run_timed(LAB + ["up", "--no-wait", str(path)])
    answered = wait_reachable(pairs)
    up_reach = time.perf_counter() - start
    down_seconds, _, _ = run_timed(LAB + ["down", name])
    left = leftovers(name)

    floor_apply, floor_reach, floor_answered = floor(plan, pairs, workdir)
    return {"nodes": nodes, "pods": nodes * pods, "namespaces": len(plan.namespaces), "objects": plan.object_count,
            "probes": len(pairs), "answered": answered, "up_s": round(up_seconds, 3), "up_reach_s": round(up_reach, 3),
            "down_s": round(down_seconds, 3), "peak_rss_mib": round(peak_kib / 1024, 1),
            "leftovers": left, "floor_apply_s": round(floor_apply, 3), "floor_reach_s": round(floor_reach, 3),
            "floor_answered": floor_answered, "ratio": round(up_reach / floor_reach, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 10, 50, 100])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_up: run as root (a root shell, or sudo); it builds labs in network namespaces")
    rows = []
    header = (f"{'nodes':>5} {'pods':>5} {'netns':>5} {'probes':>6} {'ok':>6} {'up':>7} {'up+reach':>8} "
              f"{'floor':>7} {'floor+r':>7} {'ratio':>5} {'down':>6} {'peakMiB':>7} leftovers")
    print(header)
    with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
        for n in args.nodes:
            row = bench(n, args.pods, Path(tmp))
            rows.append(row)
            left = row["leftovers"]
            print(f"{row['nodes']:>5} {row['pods']:>5} {row['namespaces']:>5} {row['probes']:>6} {row['answered']:>6} "
                  f"{row['up_s']:>7.2f} {row['up_reach_s']:>8.2f} {row['floor_apply_s']:>7.2f} "
                  f"{row['floor_reach_s']:>7.2f} {row['ratio']:>5.2f} {row['down_s']:>6.2f} {row['peak_rss_mib']:>7.1f} "
                  f"ns={left['namespaces']} state={left['state']} procs={left['processes']}", flush=True)
    biggest = rows[-1]
    print()
    print(f"targets at {biggest['nodes']} x {args.pods}: up+reach {biggest['up_reach_s']:.2f} s (<= 10 s: "
          f"{'met' if biggest['up_reach_s'] <= 10 else 'MISSED'}), ratio to floor {biggest['ratio']:.2f} (<= 2: "
          f"{'met' if biggest['ratio'] <= 2 else 'MISSED'}), down {biggest['down_s']:.2f} s (<= 5 s: "
          f"{'met' if biggest['down_s'] <= 5 else 'MISSED'}), leftovers "
          f"{'none' if not any(biggest['leftovers'].values()) else biggest['leftovers']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
