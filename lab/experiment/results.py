"""A run's results directory: the tidy samples, the time series, the summary and the environment.

Both the experiment runner (which writes) and the report (which reads) use this module, so the file
formats live in one place (docs/report.md describes them):

- samples.csv     one row per sample, columns SAMPLE_COLUMNS;
- timelines.csv   optional time series (BGP convergence, migration outage trace), TIMELINE_COLUMNS;
- summary.json    lab.experiment.stats.summarize() of the samples;
- environment.json kernel, CPU, tool versions, per-mode implementations, start/end, status.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError

SAMPLE_COLUMNS = ("experiment", "mode", "measurement", "pair", "placement", "repetition",
                  "metric", "value", "unit", "param", "param_value")
TIMELINE_COLUMNS = ("experiment", "mode", "measurement", "repetition", "series", "t_s", "value", "unit")

SAMPLES_FILE = "samples.csv"
TIMELINES_FILE = "timelines.csv"
SUMMARY_FILE = "summary.json"
ENVIRONMENT_FILE = "environment.json"

ParamValue = int | float | str


@dataclass(frozen=True)
class Sample:
    """One row of samples.csv: one value of one metric, from one repetition of one measurement.

    `pair` is "src->dst" or "" when the measurement is not pair-based; `placement` is same-node,
    cross-node, cross-subnet or "". `param`/`param_value` name a swept parameter (mss=1460,
    policies=100, nodes=10) and are "" when unused; read_samples() gives numeric values as int/float.
    """

    experiment: str
    mode: str
    measurement: str
    pair: str
    placement: str
    repetition: int
    metric: str
    value: float
    unit: str
    param: str = ""
    param_value: ParamValue = ""


@dataclass(frozen=True)
class TimelinePoint:
    """One row of timelines.csv: the value of one series (e.g. "routes:k8s-node01") at t_s seconds."""

    experiment: str
    mode: str
    measurement: str
    repetition: int
    series: str
    t_s: float
    value: float
    unit: str


@dataclass
class Results:
    """A loaded results directory. `status` is "complete", "incomplete" or "unknown"."""

    path: Path
    samples: list[Sample]
    timelines: list[TimelinePoint] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Results:
        """Load a run directory; given results/<experiment>/ instead, load its newest run."""
        path = resolve_run_dir(Path(directory))
        summary = _read_json(path / SUMMARY_FILE)
        environment = _read_json(path / ENVIRONMENT_FILE) or {}
        timelines = read_timelines(path / TIMELINES_FILE) if (path / TIMELINES_FILE).exists() else []
        status = str(environment.get("status") or (summary or {}).get("status") or "unknown")
        return cls(path=path, samples=read_samples(path / SAMPLES_FILE), timelines=timelines,
                   summary=summary, environment=environment, status=status)

    @property
    def experiment(self) -> str:
        """The experiment's name, from the summary, the environment, the samples or the directory."""
        for source in (self.summary or {}, self.environment):
            if source.get("experiment"):
                return str(source["experiment"])
        if self.samples:
            return self.samples[0].experiment
        return self.path.parent.name


def resolve_run_dir(path: Path) -> Path:
    """The run directory holding samples.csv: `path` itself or, for results/<experiment>/, its newest run."""
    if (path / SAMPLES_FILE).is_file():
        return path
    if not path.is_dir():
        raise LabError(f"{path}: no such results directory",
                       "pass a directory written by `lab experiment run`, e.g. results/<experiment>/<timestamp>")
    runs = sorted(p for p in path.iterdir() if (p / SAMPLES_FILE).is_file())
    if not runs:
        raise LabError(f"{path}: no {SAMPLES_FILE} here or in its subdirectories",
                       "pass a directory written by `lab experiment run`, e.g. results/<experiment>/<timestamp>")
    return runs[-1]


# ---- samples.csv ------------------------------------------------------------------------------------

def write_samples(path: str | os.PathLike[str], samples: Iterable[Sample]) -> None:
    """Write samples.csv (header included), replacing the file."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        writer.writerows(_sample_row(s) for s in samples)


def append_samples(path: str | os.PathLike[str], samples: Iterable[Sample]) -> None:
    """Append to samples.csv, writing the header first if the file is new or empty (for incremental saves)."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        if new:
            writer.writerow(SAMPLE_COLUMNS)
        writer.writerows(_sample_row(s) for s in samples)
        out.flush()


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Read samples.csv; a malformed row raises LabError naming file:line and the column."""
    rows = _read_csv(Path(path), SAMPLE_COLUMNS, optional_tail=("param", "param_value"))
    params: dict[str, ParamValue] = {}   # few distinct values: parse each once
    samples = []
    for line, row in rows:
        try:
            repetition, value = int(row[5]), float(row[7])
        except ValueError:
            repetition = _int(path, line, "repetition", row[5])
            value = _float(path, line, "value", row[7])
        if len(row) > 10:
            text = row[10]
            param_value = params.get(text)
            if param_value is None:
                param_value = params[text] = parse_param_value(text)
            param = row[9]
        else:
            param, param_value = "", ""
        samples.append(Sample(row[0], row[1], row[2], row[3], row[4], repetition, row[6], value, row[8], param,
                              param_value))
    return samples


def _sample_row(s: Sample) -> tuple[Any, ...]:
    return (s.experiment, s.mode, s.measurement, s.pair, s.placement, int(s.repetition), s.metric,
            _format_float(s.value), s.unit, s.param, _format_param(s.param_value))


def parse_param_value(text: str) -> ParamValue:
    """"1460" -> 1460, "0.5" -> 0.5, "" -> "", anything else stays a string."""
    text = text.strip()
    if not text:
        return ""
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and "." not in text and "e" not in text.lower():
        return int(number)
    return number


def _format_param(value: ParamValue) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _format_float(value: float) -> str:
    return repr(float(value))


# ---- timelines.csv ----------------------------------------------------------------------------------

def write_timelines(path: str | os.PathLike[str], points: Iterable[TimelinePoint]) -> None:
    """Write timelines.csv (header included), replacing the file."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TIMELINE_COLUMNS)
        for p in points:
            writer.writerow((p.experiment, p.mode, p.measurement, int(p.repetition), p.series,
                             _format_float(p.t_s), _format_float(p.value), p.unit))


def append_timelines(path: str | os.PathLike[str], points: Iterable[TimelinePoint]) -> None:
    """Append to timelines.csv, writing the header first if the file is new or empty."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        if new:
            writer.writerow(TIMELINE_COLUMNS)
        for p in points:
            writer.writerow((p.experiment, p.mode, p.measurement, int(p.repetition), p.series,
                             _format_float(p.t_s), _format_float(p.value), p.unit))
        out.flush()


def read_timelines(path: str | os.PathLike[str]) -> list[TimelinePoint]:
    """Read timelines.csv; a malformed row raises LabError naming file:line and the column."""
    return [TimelinePoint(experiment=row[0], mode=row[1], measurement=row[2],
                          repetition=_int(path, line, "repetition", row[3]), series=row[4],
                          t_s=_float(path, line, "t_s", row[5]), value=_float(path, line, "value", row[6]),
                          unit=row[7])
            for line, row in _read_csv(Path(path), TIMELINE_COLUMNS)]


# ---- summary.json, environment.json -----------------------------------------------------------------

def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write summary.json or environment.json atomically (a reader never sees half a file)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}",
                       "re-run the experiment, or delete the file to render without it") from None
    if not isinstance(data, dict):
        raise LabError(f"{path}:1: expected a JSON object")
    return data


# ---- CSV helpers ------------------------------------------------------------------------------------

def _read_csv(path: Path, columns: tuple[str, ...],
              optional_tail: tuple[str, ...] = ()) -> list[tuple[int, list[str]]]:
    if not path.exists():
        raise LabError(f"{path}: no such file", "pass a directory written by `lab experiment run`")
    with open(path, newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        required = columns[:len(columns) - len(optional_tail)]
        if header is None or tuple(header) not in (columns, required):
            raise LabError(f"{path}:1: header: expected {','.join(columns)}, found {','.join(header or [])}",
                           "the file was not written by this version of `lab experiment run`")
        width = len(header)
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise LabError(f"{path}:{reader.line_num}: expected {width} columns, found {len(row)}",
                               "the run may have been cut off while writing; delete the partial last line")
            rows.append((reader.line_num, row))
    return rows


def _float(path: str | os.PathLike[str], line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LabError(f"{path}:{line}: {column}: {text!r} is not a number") from None


def _int(path: str | os.PathLike[str], line: int, column: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LabError(f"{path}:{line}: {column}: {text!r} is not an integer") from None


__all__ = ["Sample", "TimelinePoint", "Results", "SAMPLE_COLUMNS", "TIMELINE_COLUMNS", "write_samples",
           "append_samples", "read_samples", "write_timelines", "append_timelines", "read_timelines",
           "write_json", "resolve_run_dir", "parse_param_value"]
