"""`lab report` on a REAL run: a tiny experiment over two topologies, then its report.

The synthetic data in tests/report_data.py exercise every figure; this test holds the report to what
the runner really writes today. Expected values come from the run's own files (samples.csv and
environment.json), never from the report code: the figure set follows from the metrics measured, the
labels from the implementations recorded, and no axis of a positive quantity may go below zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from lab.experiment.results import Results
from lab.report import render
from lab.report.figures import STYLE, draw_all
from lab.report.runs import load_run

pytestmark = pytest.mark.needs_root

EXPERIMENT = """\
name: report-real
title: two small topologies, reported
notes: |
  A first paragraph of notes
  that wraps over two lines.

  A second paragraph.
baseline: hostgw
repetitions: 2
warmup: 0
modes:
  - {name: hostgw, topology: flannel-hostgw}
  - {name: vxlan, topology: calico-vxlan}
measurements:
  - {kind: latency, protocols: [icmp, tcp], duration: 1, count: 10, interval: 0.005}
  - {kind: throughput, tests: [tcp_1], duration: 1}
"""
# the metrics above, as docs/experiments.md names them: per-repetition p50 (+ p90/p99/mean), iperf3 rates
LATENCY_METRICS = {"rtt_icmp", "rtt_tcp_rr"}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-real")
    (root / "e.yaml").write_text(EXPERIMENT)
    done = subprocess.run([sys.executable, "-m", "lab.cli", "experiment", "run", str(root / "e.yaml"),
                           "--out", str(root / "results")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = [p for p in (root / "results" / "report-real").iterdir() if p.is_dir()]
    return run


def test_real_run_figure_set(real_run: Path) -> None:
    html = render(real_run)
    results = Results.load(real_run)
    metrics = {s.metric for s in results.samples}
    assert LATENCY_METRICS <= metrics
    expected = {"bars-latency", "percentiles-latency", "bars-throughput"}
    if any(m.endswith("_raw") for m in metrics):     # the runner keeps every round trip: a CDF of them
        expected.add("cdf-latency")
    found = {p.stem for p in (html.parent / "figures").glob("*.png")}
    assert found == expected
    assert {p.stem for p in (html.parent / "figures").glob("*.svg")} == expected


def test_real_run_data_path_labels(real_run: Path) -> None:
    html = render(real_run)
    env = json.loads((real_run / "environment.json").read_text())
    text = html.read_text(encoding="utf-8")
    for mode, info in env["modes"].items():
        impl = info.get("implementations") or {}
        emulated = [k for k, v in impl.items() if k in ("ipip", "vxlan") and v and v != "kernel"]
        if not emulated:    # neither flannel host-gw nor Calico VXLAN emulates anything: the bare name
            for svg in (html.parent / "figures").glob("*.svg"):
                body = svg.read_text(encoding="utf-8")
                assert f">{mode}<" in body or f"> {mode} <" in body or mode in body, (svg.name, mode)
                assert f"{mode} (" not in body, (svg.name, mode)
        for key in impl:     # tool and other non-data-path keys never reach a label
            if key not in ("ipip", "vxlan"):
                assert f"{mode} ({key}" not in text
        if info.get("datapath"):
            assert info["datapath"] in text
        if info.get("route_programming"):
            assert info["route_programming"] in text
    assert "latency_tool" not in "".join(p.read_text(encoding="utf-8") for p in
                                         (html.parent / "figures").glob("*.svg"))


def test_real_run_no_negative_axis_for_positive_quantities(real_run: Path) -> None:
    run = load_run(real_run)
    assert min(s.value for s in run.results.samples) >= 0     # every metric here is positive
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]
        for drawn in draw_all([run]):
            drawn.figure.canvas.draw()   # limits as drawn, after layout
            for ax in drawn.figure.axes:
                if not ax.get_visible():
                    continue
                assert ax.get_ylim()[0] >= 0, (drawn.name, ax.get_title(), ax.get_ylim())
                if ax.get_xlabel():      # a value axis (RTT, latency); bar charts' x is categories
                    assert ax.get_xlim()[0] >= 0, (drawn.name, ax.get_title(), ax.get_xlim())
                labels = [t.get_text() for t in ax.get_yticklabels() + (ax.get_xticklabels() if ax.get_xlabel()
                                                                        else [])]
                assert not any(t.startswith(("−", "-")) for t in labels), (drawn.name, labels)
            drawn.figure.clear()


def test_real_run_notes_once_as_paragraphs(real_run: Path) -> None:
    text = render(real_run).read_text(encoding="utf-8")
    assert text.count("A first paragraph of notes") == 1
    assert "<p>A first paragraph of notes that wraps over two lines.</p>" in text
    assert "<p>A second paragraph.</p>" in text


def test_real_run_compare_with_itself_is_refused(real_run: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", str(real_run), "--compare", str(real_run)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "lab: error: --compare" in done.stderr and "itself" in done.stderr
