"""lab.experiment.results: the results directory's files written and read back, and precise errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.experiment.results import (
    SAMPLE_COLUMNS,
    TIMELINE_COLUMNS,
    Results,
    Sample,
    TimelinePoint,
    append_samples,
    append_timelines,
    read_samples,
    read_timelines,
    write_json,
    write_samples,
    write_timelines,
)

HEADER = "experiment,mode,measurement,pair,placement,repetition,metric,value,unit,param,param_value"


def samples() -> list[Sample]:
    return [
        Sample("e", "flannel-vxlan", "latency", "default/a1->default/b1", "cross-node", 0, "rtt_tcp_rr", 52.25, "us"),
        Sample("e", "calico-ipip", "mtu", "", "", 1, "throughput_at_mss", 0.1 + 0.2, "Gbit/s", "mss", 1460),
        Sample("e", "calico", "policy-scale", "", "cross-node", 2, "apply_to_enforced", 1e-7, "s", "policies", 0),
        Sample("e", "x,y", "latency", "", "", 0, "ratio", 2.5, "%", "fraction", 0.5),
    ]


def test_samples_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    write_samples(path, samples())
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER == ",".join(SAMPLE_COLUMNS)
    assert lines[1] == "e,flannel-vxlan,latency,default/a1->default/b1,cross-node,0,rtt_tcp_rr,52.25,us,,"
    assert lines[2].endswith(",mss,1460")
    assert read_samples(path) == samples()   # floats exact (repr), numeric param values as numbers


def test_append_writes_the_header_once(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    append_samples(path, samples()[:1])
    append_samples(path, samples()[1:])
    assert path.read_text().count("experiment,mode") == 1
    assert read_samples(path) == samples()
    tl = tmp_path / "timelines.csv"
    points = [TimelinePoint("e", "m", "bgp-convergence", 0, "routes:k8s-node01", 0.5, 3, "count")]
    append_timelines(tl, points)
    append_timelines(tl, points)
    assert tl.read_text().splitlines()[0] == ",".join(TIMELINE_COLUMNS)
    assert read_timelines(tl) == points * 2


@pytest.mark.parametrize("content,message", [
    ("a,b,c\n", "samples.csv:1: header: expected experiment,mode"),
    (HEADER + "\ne,m,latency,,,zero,rtt,1.0,us,,\n", "samples.csv:2: repetition: 'zero' is not an integer"),
    (HEADER + "\ne,m,latency,,,0,rtt,1.0,us,,\ne,m,latency,,,0,rtt,fast,us,,\n",
     "samples.csv:3: value: 'fast' is not a number"),
    (HEADER + "\ne,m,latency,,,0,rtt,1.0\n", "samples.csv:2: expected 11 columns, found 8"),
])
def test_bad_samples_name_file_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "samples.csv"
    path.write_text(content)
    with pytest.raises(LabError, match=message.replace("(", r"\(")):
        read_samples(path)


def test_header_without_param_columns_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    path.write_text("experiment,mode,measurement,pair,placement,repetition,metric,value,unit\n"
                    "e,m,latency,,,0,rtt,1.5,ms\n")
    assert read_samples(path) == [Sample("e", "m", "latency", "", "", 0, "rtt", 1.5, "ms")]


def test_results_load(tmp_path: Path) -> None:
    run = tmp_path / "exp" / "20261130T120000Z"
    run.mkdir(parents=True)
    write_samples(run / "samples.csv", samples())
    write_timelines(run / "timelines.csv", [TimelinePoint("e", "m", "rr-migration", 0, "probe_lost", 0.01, 1, "count")])
    write_json(run / "summary.json", {"experiment": "e", "status": "complete", "groups": [], "warnings": []})
    write_json(run / "environment.json", {"kernel": "6.18", "status": "incomplete", "reason": "interrupted"})
    results = Results.load(run)
    assert results.path == run and results.samples == samples() and len(results.timelines) == 1
    assert results.summary and results.summary["experiment"] == "e"
    assert results.environment["kernel"] == "6.18"
    assert results.status == "incomplete"            # environment.json's status wins: it is written last
    assert results.experiment == "e"
    older = tmp_path / "exp" / "20261130T110000Z"
    older.mkdir()
    write_samples(older / "samples.csv", [])
    assert Results.load(tmp_path / "exp").path == run   # the newest run of an experiment directory


def test_results_load_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no such results directory"):
        Results.load(tmp_path / "missing")
    with pytest.raises(LabError, match="no samples.csv"):
        Results.load(tmp_path)
    write_samples(tmp_path / "samples.csv", [])
    (tmp_path / "summary.json").write_text("{\n  oops\n}")
    with pytest.raises(LabError, match=r"summary.json:2: not valid JSON"):
        Results.load(tmp_path)
    (tmp_path / "summary.json").unlink()
    results = Results.load(tmp_path)
    assert results.samples == [] and results.summary is None and results.status == "unknown"


def test_write_json_is_strict_json(tmp_path: Path) -> None:
    write_json(tmp_path / "s.json", {"a": 1.5})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1.5}
    assert not (tmp_path / "s.json.tmp").exists()
    with pytest.raises(ValueError):
        write_json(tmp_path / "s.json", {"a": float("nan")})
