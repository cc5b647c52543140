#!/usr/bin/env python3
"""Benchmark the experiment framework: its overhead over the measurements it runs.

Runs an experiment's quick profile (default: experiments/modes-latency-throughput.yaml --quick)
through lab.experiment.run and reads the runner's own timing from environment.json:
  wall          the whole run, from the first `lab up` to the last `lab down` and the summary
  measurement   the sum of every measurement's run time (warm-up runs included: they are asked for),
                counting only a tool's measuring window (sockperf's own ~2.2 s start-up and warm-up
                per run is not measurement: it is the `tool set-up` row, part of the overhead)
  lab up / ready / down   `lab up`, waiting until every pair answers, `lab down`
  framework     what is left: servers started and stopped, parsing, writing results, the progress bar
and prints overhead = wall / measurement - 1 (target <= 15%), and the framework's own share
(framework / measurement). The machine's load (uptime) is printed next to the figures: it is shared.

Usage (as root): .venv/bin/python scripts/bench_experiment.py [--experiment FILE] [--full] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import experiment  # noqa: E402

TARGET_OVERHEAD = 0.15
DEFAULT = Path(__file__).resolve().parents[1] / "experiments" / "modes-latency-throughput.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(DEFAULT))
    parser.add_argument("--full", action="store_true", help="the full profile instead of --quick")
    parser.add_argument("--out", help="results root (default: a temporary directory)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_experiment: run as root (a root shell, or sudo); it builds labs in network namespaces")
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-experiment-") as tmp:
        results = experiment.run(args.experiment, quick=not args.full, out=args.out or tmp)
        timing = results.environment["timing"]
        samples = len(results.samples)
        status = results.status
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    measured = timing["measure_s"] + timing["warmup_s"]
    lifecycle = timing["up_s"] + timing["ready_s"] + timing["down_s"]
    setup = timing.get("tool_setup_s", 0.0)
    framework = timing["wall_s"] - measured - lifecycle - setup
    overhead = timing["wall_s"] / measured - 1 if measured else float("nan")
    print(f"experiment: {Path(args.experiment).name} ({'full' if args.full else 'quick'}), {status}, {samples} samples")
    print(f"uptime before: {before}")
    print(f"uptime after:  {after}")
    print()
    print("| figure | seconds | share of measurement |")
    print("|---|---|---|")
    rows = [("wall", timing["wall_s"]), ("measurement (incl. warm-up)", measured),
            ("  of which warm-up", timing["warmup_s"]),
            ("lab up", timing["up_s"]), ("ready (pairs answer)", timing["ready_s"]), ("lab down", timing["down_s"]),
            ("tool set-up (sockperf warm-up etc.)", setup), ("framework (the rest)", framework)]
    for name, value in rows:
        print(f"| {name} | {value:.2f} | {100 * value / measured:.1f}% |")
    print()
    met = overhead <= TARGET_OVERHEAD
    print(f"overhead = wall / measurement - 1 = {100 * overhead:.1f}% (target <= {100 * TARGET_OVERHEAD:.0f}%): "
          f"{'met' if met else 'MISSED'}")
    print(f"framework alone (without lab up/ready/down and tool set-up) = {100 * framework / measured:.1f}% "
          "of measurement")
    return 0 if met and status == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
