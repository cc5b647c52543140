#!/usr/bin/env python3
"""Benchmark `lab report` on a large synthetic results directory (issue 18: <= 10 s and <= 500 MB RSS
for 100,000 samples).

The directory is written by tests/report_data.py: every measurement kind (latency with raw RTT samples,
throughput, MTU/MSS sweep, CPU, connection rate, policy scale, BGP convergence and the migration trace,
with their time series), 5 modes, 5 repetitions, padded with latency samples to exactly --samples rows.
Synthetic data: the figures measure the report, not a network.

`lab report` runs as a child process (`python -m lab.cli report DIR -o OUT`), as a user runs it; its wall
time and peak RSS (getrusage of the child) are printed against the targets. Two cases:
  - with summary.json (as `lab experiment run` writes it);
  - without summary.json (the report computes the statistics itself).
Then, in this process, the time of each phase (load, summary, figures, HTML).

Usage: .venv/bin/python scripts/bench_report.py [--samples 100000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from report_data import make_results  # noqa: E402

TARGET_S = 10.0
TARGET_MB = 500.0


def run_report(directory: Path, output: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one `lab report` child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "report", str(directory), "-o", str(output)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"lab report failed ({proc.returncode}): {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def phases(directory: Path, output: Path) -> dict[str, float]:
    from lab.experiment import stats
    from lab.experiment.results import Results
    from lab.report import document, figures, html, markdown
    from lab.report.runs import load_run

    times: dict[str, float] = {}
    t = time.perf_counter()
    results = Results.load(directory)
    times["load samples.csv + timelines.csv"] = time.perf_counter() - t
    t = time.perf_counter()
    stats.summarize(results.samples, baseline="flannel-host-gw")
    times["summarize (stats)"] = time.perf_counter() - t
    run = load_run(directory)
    t = time.perf_counter()
    saved = figures.save_all([run], output.parent / "figures")
    times[f"figures ({len(saved)} x PNG + SVG)"] = time.perf_counter() - t
    t = time.perf_counter()
    doc = document.build([run], saved)
    output.write_text(html.render(doc), encoding="utf-8")
    output.with_suffix(".md").write_text(markdown.render(doc, output.parent), encoding="utf-8")
    times["document + HTML + Markdown"] = time.perf_counter() - t
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (medians are reported)")
    parser.add_argument("--keep", type=Path, help="write the results directory and reports here and keep them")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        run = base / "results" / "bench" / "20261130T120000Z"
        t = time.perf_counter()
        make_results(run, total_samples=args.samples, reps=5)
        made = time.perf_counter() - t
        rows = sum(1 for _ in open(run / "samples.csv")) - 1
        points = sum(1 for _ in open(run / "timelines.csv")) - 1
        csv_mb = (run / "samples.csv").stat().st_size / 1e6
        print(f"bench_report: synthetic results: {rows:,} samples ({csv_mb:.1f} MB samples.csv), "
              f"{points:,} timeline points; written in {made:.1f} s")

        no_summary = base / "results" / "bench" / "20261130T130000Z"
        shutil.copytree(run, no_summary)
        (no_summary / "summary.json").unlink()

        print()
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
              f"(a shared machine inflates wall time; CPU time is the report's own cost)")
        print(f"{'case':<34} {'wall s':>7} {'(min-max)':>13} {'CPU s':>6} {'peak RSS MB':>12}  target")
        ok = True
        for label, directory in (("lab report (summary.json given)", run),
                                 ("lab report (summary computed)", no_summary)):
            walls, cpus, rss = [], [], []
            for i in range(args.repeat):
                wall, cpu, mb = run_report(directory, base / f"out-{directory.name}-{i}" / "report.html")
                walls.append(wall)
                cpus.append(cpu)
                rss.append(mb)
            wall_med, cpu_med, rss_max = statistics.median(walls), statistics.median(cpus), max(rss)
            good = wall_med <= TARGET_S and rss_max <= TARGET_MB
            ok &= good
            print(f"{label:<34} {wall_med:>7.2f} {f'({min(walls):.2f}-{max(walls):.2f})':>13} {cpu_med:>6.2f} "
                  f"{rss_max:>12.0f}  <= {TARGET_S:.0f} s, <= {TARGET_MB:.0f} MB: {'ok' if good else 'MISSED'} "
                  f"(wall {wall_med / TARGET_S:.0%}, CPU {cpu_med / TARGET_S:.0%} of the time; "
                  f"{rss_max / TARGET_MB:.0%} of the memory)")

        out = base / "out-phases" / "report.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        print()
        print("phases, in one process:")
        for name, seconds in phases(run, out).items():
            print(f"  {name:<40} {seconds:6.2f} s")
        size = out.stat().st_size / 1e6
        figures = sorted((out.parent / "figures").glob("*.png"))
        print(f"report.html {size:.1f} MB (figures embedded), {len(figures)} figures: "
              + ", ".join(p.stem for p in figures))
        if args.keep:
            print(f"kept: {base}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
