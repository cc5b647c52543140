#!/usr/bin/env python3
"""Where does `lab up` spend its time? Brings a generated lab up in this process with a timer around
each phase, prints the breakdown, and takes the lab down.

Phases are timed by wrapping the lab's own functions from the outside (nothing in lab/ knows it is
being profiled). Work that runs on helper threads or in worker processes is timed as the wall time of
the call that waits for it. `--py-spy FILE` also records py-spy's collapsed stacks (pip install py-spy;
flamegraph.pl draws them).

Usage (as root): .venv/bin/python scripts/profile_up.py --nodes 300 [--pods 10] [--cni flannel|calico] [--workers N]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_up  # noqa: E402  (the topology generator)

from lab.lifecycle import Lab  # noqa: E402
from lab.netns import workers  # noqa: E402

# (module, attribute, phase): the functions `lab up` calls, in the order it calls them.
PHASES = [
    ("lab.lifecycle", "Lab.load", "load topology"),
    ("lab.netns.capabilities", "detect", "detect capabilities"),
    ("lab.lifecycle", "Lab.plan", "plan"),
    ("lab.lifecycle", "Lab._preflight", "preflight checks"),
    ("lab.netns.state", "StateStore.save", "state writing"),
    ("lab.netns.namespace", "create_many", "namespace creation"),
    ("lab.netns.namespace", "run_in_each", "configure (netlink, sysctls, iptables)"),   # before issue 17
    ("lab.netns.apply", "configure_all", "configure (netlink, sysctls, iptables)"),
    ("lab.netns.tc", "apply_all", "tc qdiscs/BPF"),
    ("lab.netns.iptables", "apply_all", "iptables-restore per node"),   # before issue 17's third pass
    ("lab.netns.apply", "flood_again", "switch ports flood again"),
    ("lab.netns.impairments", "apply", "impairments"),
    ("lab.netns.state", "StateStore.write_files", "state files"),
    ("lab.cni", "start", "data-plane daemons"),
    ("lab.lifecycle", "start_policy", "policy enforcer"),
    ("lab.probe.servers", "start", "probe servers"),
    ("lab.lifecycle", "summarize", "status summary"),
]


def instrument(totals: dict[str, float]) -> None:
    done: set[str] = set()
    for module_name, attribute, phase in reversed(PHASES):   # the later entry of a phase wins
        module = importlib.import_module(module_name)
        owner, _, name = attribute.rpartition(".")
        target = getattr(module, owner) if owner else module
        if not hasattr(target, name) or phase in done:
            continue
        done.add(phase)
        original = getattr(target, name)

        def timed(*args, __original=original, __phase=phase, **kwargs):
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                totals[__phase] += time.perf_counter() - start
        setattr(target, name, functools.wraps(original)(timed))


def time_waves(waves: list[tuple[int, int, float]]) -> None:
    """Record each configuration wave: (namespaces, shares, seconds). The waves run inside the
    "configure" phase (lab/netns/workers.py)."""
    original = workers._run_wave

    def timed(parts, configure):
        start = time.perf_counter()
        try:
            return original(parts, configure)
        finally:
            waves.append((sum(len(part) for part in parts), len(parts), time.perf_counter() - start))
    workers._run_wave = timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--cni", choices=["flannel", "calico"], default="flannel")
    parser.add_argument("--workers", type=int, help="configure the namespaces with this many workers (default: one "
                        "per CPU; 1: all in the lab process, to see what the other CPUs add)")
    parser.add_argument("--py-spy", help="record py-spy's collapsed stacks of the up into this file")
    parser.add_argument("--json", help="also write the breakdown to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("profile_up: run as root")
    if args.py_spy:
        spy_bin = os.path.join(os.path.dirname(sys.executable), "py-spy")
        spy = subprocess.Popen([spy_bin, "record", "--threads", "--subprocesses", "--rate", "50", "--format", "raw",
                                "-o", args.py_spy, "--pid", str(os.getpid())])
        time.sleep(1.0)
    bench_up.settle()   # let the kernel finish freeing earlier labs' namespaces first
    totals: dict[str, float] = defaultdict(float)
    instrument(totals)
    waves: list[tuple[int, int, float]] = []
    time_waves(waves)
    lab = Lab()
    with tempfile.TemporaryDirectory(prefix="profile-up-") as tmp:
        name = f"prof{args.nodes}"
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(bench_up.topology_yaml(name, args.nodes, args.pods, args.cni))
        start = time.perf_counter()
        try:
            lab.up(str(path), parallelism=workers.Parallelism(workers=args.workers) if args.workers else None)
            total = time.perf_counter() - start
        finally:
            down_start = time.perf_counter()
            lab.down(name)
            down = time.perf_counter() - down_start
    if args.py_spy:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    accounted = sum(totals.values())
    print(f"lab up {args.nodes} x {args.pods} ({args.cni}): {total:.2f} s; lab down {down:.2f} s")
    for phase in dict.fromkeys(phase for _, _, phase in PHASES):
        if totals.get(phase):
            print(f"  {phase:<34} {totals[phase]:8.2f} s  {100 * totals[phase] / total:5.1f} %")
        if phase == "configure (netlink, sysctls, iptables)":
            for level, (count, shares, seconds) in enumerate(waves):
                print(f"    wave {level}: {count:>6} namespaces, {shares} shares {seconds:8.2f} s")
    print(f"  {'other':<34} {total - accounted:8.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"nodes": args.nodes, "pods": args.pods, "cni": args.cni,
                                               "workers": args.workers, "up_s": total, "down_s": down, "phases": totals,
                                               "waves": waves}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
