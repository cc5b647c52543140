#!/usr/bin/env python3
"""Measure the memory one static neighbour entry needs: in the kernel, and in the lab's plan.

lab/netns/neighbours.py refuses static entries whose estimated memory exceeds MemAvailable, using
KERNEL_BYTES_PER_ENTRY and PLAN_BYTES_PER_ENTRY; this script measures both, to check those figures:
  kernel  in a scratch network namespace `tr2-neighbytes-<pid>` (root), a bridge gets N permanent IPv4
          entries through one `ip -batch`; the growth of Slab in /proc/meminfo, per entry
          (other processes on the machine add noise: the script repeats and prints each run);
  plan    the growth of Python's traced memory (tracemalloc) while with_static_neighbours() adds the
          entries of a generated flannel lab (no root), per entry.
The namespace is deleted afterwards. The host's root namespace is not touched.

Usage: .venv/bin/python scripts/bench_neighbours.py [--entries 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def slab() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no Slab in /proc/meminfo")


def kernel_bytes(entries: int) -> float:
    """Slab growth per permanent neighbour entry, in a scratch namespace."""
    netns = f"tr2-neighbytes-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for argv in (["link", "add", "br0", "type", "bridge"], ["addr", "add", "10.0.0.1/8", "dev", "br0"],
                     ["link", "set", "br0", "up"]):
            subprocess.run(["ip", "-n", netns, *argv], check=True)
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as batch:
            for i in range(2, entries + 2):
                a, b, c = (i >> 16) & 255, (i >> 8) & 255, i & 255
                batch.write(f"neigh replace 10.{a}.{b}.{c} lladdr 02:00:00:{a:02x}:{b:02x}:{c:02x} dev br0 "
                            "nud permanent\n")
            batch.flush()
            before = slab()
            subprocess.run(["ip", "-n", netns, "-batch", batch.name], check=True)
            after = slab()
        return (after - before) / entries
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def plan_bytes(nodes: int, pods: int) -> tuple[int, float]:
    """Traced memory growth per entry while the static entries of a flannel lab are planned."""
    from lab import cni
    from lab.netns import neighbours
    from lab.topology import loader
    text = ("name: nb\ncluster: {cni: flannel}\nnetworks:\n  - {name: lan, cidr: 192.168.0.0/16}\nnodes:\n"
            + "".join(f"  - {{name: n{i}, ip: 192.168.1.{10 + i}}}\n" for i in range(nodes))
            + "pods:\n" + "".join(f"  - {{name: p{i}-{j}, node: n{i}}}\n" for i in range(nodes) for j in range(pods)))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        plan = cni.plan(loader.load(handle.name))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    static = neighbours.with_static_neighbours(plan)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    added = sum(len(ns.neighbours) for ns in static.namespaces) - sum(len(ns.neighbours) for ns in plan.namespaces)
    return added, grown / added


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from lab.netns import neighbours
    added, per_entry = plan_bytes(20, 100)
    print(f"plan:   {per_entry:.0f} bytes per entry ({added:,} entries; the lab assumes "
          f"{neighbours.PLAN_BYTES_PER_ENTRY})")
    if os.geteuid() != 0:
        print("kernel: skipped (needs root for a scratch network namespace)")
        return 0
    runs = [kernel_bytes(args.entries) for _ in range(args.repeat)]
    print(f"kernel: {min(runs):.0f} bytes per entry (runs: {', '.join(f'{r:.0f}' for r in runs)}; "
          f"{args.entries:,} entries each; the lab assumes {neighbours.KERNEL_BYTES_PER_ENTRY})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
