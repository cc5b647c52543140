"""Experiments and their reports."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


def add_report(sub: Subparsers) -> None:
    report = sub.add_parser("report", help="plot a results directory: figures, one self-contained HTML, Markdown")
    report.add_argument("results", help="results/<experiment>/<timestamp> (or results/<experiment>: its newest run)")
    report.add_argument("--compare", metavar="DIR", help="a second results directory to put side by side")
    report.add_argument("-o", "--output", metavar="FILE", help="the HTML file (default: report.html in the results "
                        "directory)")
    report.set_defaults(func=cmd_report)


def add_experiment(sub: Subparsers) -> None:
    experiment = sub.add_parser("experiment", help="run an experiment: lab experiment run experiments/<name>.yaml")
    actions = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="bring each mode's lab up, measure, take it down; results/<name>/<time>/")
    run.add_argument("file", help="an experiment file (experiments/*.yaml), or the name of a shipped one")
    run.add_argument("--repeat", type=int, help="repetitions (overrides the file)")
    run.add_argument("--out", default="results", help="results root (default: results)")
    run.add_argument("--only", nargs="+", metavar="MODE", help="run only these modes")
    run.add_argument("--quick", action="store_true", help="the file's short `quick:` profile")
    run.set_defaults(func=cmd_experiment_run)


def cmd_report(lab: Lab, args: argparse.Namespace) -> int:
    from lab import report  # matplotlib loads only for this command

    html = report.render(args.results, compare=args.compare, output=args.output)
    print(f"report: {html}")
    print(f"        {html.with_suffix('.md')} and {html.parent / 'figures'}/ (PNG and SVG)")
    return 0


def cmd_experiment_run(lab: Lab, args: argparse.Namespace) -> int:
    from lab import experiment
    from lab.experiment import shipped
    outcome = experiment.run(shipped.resolve(args.file), repeat=args.repeat, out=args.out, only=args.only,
                             quick=args.quick)
    print(f"results: {outcome.path} ({outcome.status}, {len(outcome.samples)} samples)")
    print(f"next: lab report {outcome.path}")
    if outcome.status != "complete":
        print(f"incomplete: {outcome.environment.get('reason')}", file=sys.stderr)
        return 130 if outcome.environment.get("reason") == "interrupted" else 1
    return 0
