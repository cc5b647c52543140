"""The report's figures, drawn with matplotlib's object API (Agg canvas, no pyplot state).

Each builder looks at what the runs hold and returns only the figures it has data for:
- bars: mean and 95% interval per mode and placement, one panel per metric (latency, throughput,
  connection rate, CPU per Gb/s, outage lengths...);
- sweeps: a metric against a swept parameter (MSS, MTU, message size, policies, nodes);
- cdf: the distribution of latency samples;
- timelines: time series from timelines.csv (BGP sessions and routes per node, the migration trace).
Every series is named with Run.label(), so a mode that ran an emulated data path says so.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lab.experiment import stats
from lab.report.runs import Run, placement_label, placement_rank

STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "figure.titlesize": 12.5,
    "figure.titleweight": "bold",
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "svg.fonttype": "none",
    "svg.hashsalt": "lab-report",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
RUN_HATCH = ["", "///", "xx", ".."]
RUN_LINESTYLE = ["-", "--", ":", "-."]
PLACEMENT_MARKER = {"same-node": "o", "cross-node": "s", "cross-subnet": "^"}
WIDTH_IN = 10.0
PANEL_HEIGHT_IN = 3.5
MAX_CDF_POINTS = 600
DPI = 110
MAX_BAR_LABELS = 16  # more bars in one panel: no value labels (the tables have the numbers)

MEASUREMENT_TITLES = {
    "latency": "Latency",
    "throughput": "Throughput",
    "mtu": "MTU and encapsulation overhead",
    "connrate": "New TCP connections per second (TCP_CRR)",
    "cpu": "CPU time per Gb/s",
    "policy-scale": "Policy scale",
    "bgp-convergence": "BGP convergence",
    "rr-migration": "Route-reflector migration",
}
METRIC_TITLES = {
    "rtt_icmp": "ICMP echo RTT",
    "rtt_tcp_rr": "TCP request/response",
    "rtt_udp_rr": "UDP request/response",
    "throughput_tcp_1": "TCP, 1 stream",
    "throughput_tcp_n": "TCP, N streams",
    "throughput_udp": "UDP",
    "retransmits": "TCP retransmits",
    "path_mtu": "Path MTU (DF ping sweep)",
    "encap_overhead": "Encapsulation overhead",
    "cpu_per_gbit": "CPU per Gb/s",
    "throughput_at_mss": "TCP throughput",
    "throughput_at_msg_size": "TCP throughput",
    "retransmits_tcp_1": "TCP retransmits, 1 stream",
    "retransmits_tcp_n": "TCP retransmits, N streams",
    "loss_udp": "UDP datagrams lost",
    "cpu_client_tcp_1": "iperf3 client CPU, TCP 1 stream",
    "cpu_server_tcp_1": "iperf3 server CPU, TCP 1 stream",
    "conn_rate": "New connections per second",
    "conn_failures": "Failed connections",
    "cpu_kernel_s_per_Gbit": "Kernel CPU per Gbit",
    "cpu_total_s_per_Gbit": "All CPU per Gbit",
    "cpu_kernel_pct": "Kernel CPU busy",
    "throughput_tcp_cpu_run": "TCP throughput during the CPU run",
    "apply_to_enforced": "Apply-to-enforced time",
    "iptables_rules": "iptables rules per node",
    "ipsets": "ipsets per node",
    "time_to_routes": "Time from lab up to all routes",
    "sessions_per_node": "BGP sessions per node",
    "bird_memory": "BIRD memory per node",
    "tcp_crr": "TCP connect/request/response/close",
    "outage": "Traffic outage",
    "probes_lost": "UDP probes lost",
}
PARAM_TITLES = {
    "mss": "TCP MSS (bytes)",
    "mtu": "MTU (bytes)",
    "msg_size": "message size (bytes)",
    "message_size": "message size (bytes)",
    "size": "message size (bytes)",
    "policies": "NetworkPolicies loaded",
    "nodes": "nodes",
    "streams": "parallel streams",
}


@dataclass
class Drawn:
    """A figure ready to save: `name` is the file stem under figures/."""

    name: str
    title: str
    caption: str
    figure: Figure


@dataclass(frozen=True)
class SavedFigure:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


UNIT_LABELS = {"us": "µs", "cpu_s_per_Gbit": "CPU s per Gbit", "conn/s": "connections/s"}


def unit_label(unit: str) -> str:
    return UNIT_LABELS.get(unit, unit)


def measurement_title(measurement: str) -> str:
    return MEASUREMENT_TITLES.get(measurement, measurement.replace("-", " ").replace("_", " ").capitalize())


def metric_title(metric: str) -> str:
    if metric in METRIC_TITLES:
        return METRIC_TITLES[metric]
    text = metric.replace("_", " ")
    return text[:1].upper() + text[1:]


def param_title(param: str) -> str:
    return PARAM_TITLES.get(param, param.replace("_", " "))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def fmt(value: float | None) -> str:
    """Four significant digits, no exponent for everyday magnitudes."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude < 1e6:
        return f"{int(value):,}"
    if 1e-3 <= magnitude < 1e6:
        digits = max(0, 3 - int(math.floor(math.log10(magnitude))))
        return f"{value:,.{digits}f}"
    return f"{value:.3g}"


# ---- series: one (run, mode) pair, styled consistently across figures --------------------------------

class Palette:
    """A colour per mode (the same in every figure and both runs); hatch and line style per run."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.modes: list[str] = []
        for run in runs:
            for mode in run.modes:
                if mode not in self.modes:
                    self.modes.append(mode)
        self.run_index = {id(run): i for i, run in enumerate(runs)}

    def color(self, mode: str) -> str:
        return PALETTE[self.modes.index(mode) % len(PALETTE)] if mode in self.modes else "#333333"

    def hatch(self, run: Run) -> str:
        return RUN_HATCH[self.run_index[id(run)] % len(RUN_HATCH)]

    def linestyle(self, run: Run) -> str:
        return RUN_LINESTYLE[self.run_index[id(run)] % len(RUN_LINESTYLE)]


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _new_figure(rows: int, cols: int, title: str, extra_height: float = 0.9) -> tuple[Figure, list[Any]]:
    width = WIDTH_IN if cols >= 2 else WIDTH_IN * 0.75
    fig = Figure(figsize=(width, PANEL_HEIGHT_IN * rows + extra_height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.suptitle(title)
    flat = [ax for row in axes for ax in row]
    return fig, flat


def _hide_unused(axes: list[Any], used: int) -> None:
    for ax in axes[used:]:
        ax.set_visible(False)


def _legend_below(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """The legend goes outside, under the panels: it never covers data."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), frameon=False)


PERCENTILE_SUFFIX = re.compile(r"^p(\d{1,2}(\.\d+)?)$")


def companions(runs: Sequence[Run], measurement: str) -> dict[str, tuple[str, str]]:
    """Metrics that accompany another of the measurement: {"rtt_tcp_rr_p99": ("rtt_tcp_rr", "p99")}.

    A runner that records per-repetition percentiles (rtt_tcp_rr = p50, rtt_tcp_rr_p90, _p99, _mean)
    or sender-side rates (throughput_tcp_1_sender) gets one bar panel per base metric; the companions
    are in the tables and the percentile figure.
    """
    metrics = {g["metric"] for run in runs for g in run.groups() if g["measurement"] == measurement}
    out = {}
    for metric in metrics:
        found = stats.companion_of(metric, metrics)
        if found:
            out[metric] = found
    return out


def _group_index(runs: Sequence[Run]) -> dict[tuple[int, str, str, str, str, str, Any, str], dict[str, Any]]:
    index = {}
    for i, run in enumerate(runs):
        for g in run.groups():
            index[(i, g["mode"], g["measurement"], g["placement"], g["metric"], g["param"], g["param_value"],
                   g["unit"])] = g
    return index


def _ordered(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tool_note(runs: Sequence[Run], measurement: str) -> str:
    """"Tools: latency: sockperf (flannel-vxlan), builtin (calico-ipip)" from the environment."""
    used: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for mode in run.modes:
            for tool_for, tool in run.tools(mode).items():
                if tool_for in measurement or measurement in tool_for or len(run.tools(mode)) == 1:
                    used[tool_for][tool].append(run.label(mode))
    parts = []
    for tool_for, tools in used.items():
        if len(tools) == 1:
            parts.append(f"{tool_for} tool: {next(iter(tools))} for every mode")
        else:
            parts.append(f"{tool_for} tool: " + "; ".join(f"{t} ({', '.join(m)})" for t, m in tools.items()))
    return (" " + ". ".join(parts) + ".") if parts else ""


def _run_note(runs: Sequence[Run]) -> str:
    if len(runs) < 2:
        return ""
    return " " + "; ".join(f"[{r.tag}] = {r.name}" for r in runs) + " (hatched/dashed: the second run)."


# ---- bars -------------------------------------------------------------------------------------------

def bar_figures(runs: Sequence[Run], palette: Palette, measurement: str) -> Iterator[Drawn]:
    """The measurement's figure: a panel per metric, bars per mode grouped by placement."""
    index = _group_index(runs)
    skip = companions(runs, measurement)
    flat = [g for run in runs for g in run.groups() if g["param"] in ("", None) and g["measurement"] == measurement
            and g["metric"] not in skip]
    if flat:
        panels = _ordered([(g["metric"], g["unit"]) for g in flat if g["measurement"] == measurement])
        rows, cols = _grid(len(panels))
        title = f"{measurement_title(measurement)}: mean per mode and placement"
        fig, axes = _new_figure(rows, cols, title)
        legend: dict[str, Any] = {}
        for ax, (metric, unit) in zip(axes, panels):
            _bar_panel(ax, runs, palette, index, measurement, metric, unit, legend)
        _hide_unused(axes, len(panels))
        _legend_below(fig, list(legend.values()), list(legend))
        kinds = sorted({what for what in (w for _b, w in skip.values())})
        caption = ("Bars: mean; whiskers: 95% confidence interval of the mean (Student t over repetitions); "
                   "a bar without whiskers rests on a single sample."
                   + (f" The {', '.join(kinds)} companions of these metrics are in the tables." if kinds else "")
                   + _tool_note(runs, measurement) + _run_note(runs))
        yield Drawn(f"bars-{slug(measurement)}", title, caption, fig)


def _bar_panel(ax: Any, runs: Sequence[Run], palette: Palette, index: dict[Any, dict[str, Any]],
               measurement: str, metric: str, unit: str, legend: dict[str, Any]) -> None:
    # the same mode of both runs side by side when comparing
    keyed = [(i, run, mode) for mode in palette.modes for i, run in enumerate(runs) if mode in run.modes]
    placements = sorted({k[3] for k in index if k[2] == measurement and k[4] == metric and k[7] == unit
                         and k[5] in ("", None)}, key=placement_rank)
    series = [(i, run, mode) for i, run, mode in keyed
              if any((i, mode, measurement, p, metric, "", "", unit) in index for p in placements)]
    width = 0.8 / max(1, len(series))
    bars = []   # (x, mean, lo, hi, run, mode)
    for s_i, (i, run, mode) in enumerate(series):
        for p_i, placement in enumerate(placements):
            g = index.get((i, mode, measurement, placement, metric, "", "", unit))
            if g is None or g.get("mean") is None:
                continue
            ci = g.get("ci95") or [None, None]
            bars.append((p_i - 0.4 + width * (s_i + 0.5), g["mean"], ci[0] if ci[1] is not None else None,
                         ci[1] if ci[0] is not None else None, run, mode))
    positive = [b[1] for b in bars if b[1] > 0]
    log = bool(positive) and len(positive) == len(bars) and max(positive) / min(positive) > 15
    labelled = len(bars) <= MAX_BAR_LABELS
    vertical = len(bars) > 6
    top = 0.0
    for x, mean, lo, hi, run, mode in bars:
        bar = ax.bar(x, mean, width * 0.92, color=palette.color(mode), hatch=palette.hatch(run),
                     edgecolor="white" if not palette.hatch(run) else "#333333", linewidth=0.6)
        high = mean
        if lo is not None and hi is not None:
            low_err = max(0.0, mean - lo)
            if log:
                low_err = min(low_err, mean * 0.999)
            ax.errorbar(x, mean, yerr=[[low_err], [max(0.0, hi - mean)]], fmt="none", ecolor="#222222",
                        elinewidth=1.0, capsize=3 if not vertical else 2)
            high = max(high, hi)
        top = max(top, high)
        if labelled:
            ax.annotate(_short(mean), (x, high), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7 if vertical else 7.5, color="#333333", rotation=90 if vertical else 0)
        legend.setdefault(run.label(mode), bar[0])
    ax.set_xticks(range(len(placements)), [placement_label(p) for p in placements])
    ax.set_title(metric_title(metric))
    ax.set_ylabel(unit_label(unit) + (" (log scale)" if log else ""))
    ax.set_xlim(-0.5, len(placements) - 0.5)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2.5, top * (3.5 if vertical and labelled else 2.2))
        _plain_log_axis(ax.yaxis)
    elif top > 0:
        ax.set_ylim(0, top * (1.28 if vertical and labelled else 1.14 if labelled else 1.05))
    ax.grid(axis="x", visible=False)


def _short(value: float) -> str:
    """A bar label: three significant digits."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _plain_log_axis(axis: Any) -> None:
    """Log-scale ticks as plain numbers (20, 50, 100...), not powers of ten."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _short(v)))
    axis.set_minor_formatter(NullFormatter())


# ---- sweeps -----------------------------------------------------------------------------------------

def sweep_figures(runs: Sequence[Run], palette: Palette, measurement: str) -> Iterator[Drawn]:
    """A metric against a swept numeric parameter: one figure per parameter of the measurement."""
    swept = [(i, g) for i, run in enumerate(runs) for g in run.groups()
             if g["measurement"] == measurement and g["param"] not in ("", None) and _is_number(g["param_value"])]
    for param in _ordered([g["param"] for _, g in swept]):
        mine = [(i, g) for i, g in swept if g["param"] == param]
        panels = _ordered([(g["metric"], g["unit"]) for _, g in mine])
        placements = sorted({g["placement"] for _, g in mine}, key=placement_rank)
        rows, cols = _grid(len(panels), max_cols=2)
        title = f"{measurement_title(measurement)}: against {param_title(param).split(' (')[0]}"
        fig, axes = _new_figure(rows, cols, title)
        legend: dict[str, Any] = {}
        for ax, (metric, unit) in zip(axes, panels):
            _sweep_panel(ax, runs, palette, mine, metric, unit, param, placements, legend)
        _hide_unused(axes, len(panels))
        _legend_below(fig, list(legend.values()), list(legend))
        caption = ("Points: mean; shaded band and whiskers: 95% confidence interval of the mean."
                   + (" Marker shape: placement." if len(placements) > 1 else "")
                   + _tool_note(runs, measurement) + _run_note(runs))
        yield Drawn(f"sweep-{slug(measurement)}-{slug(param)}", title, caption, fig)


def _sweep_panel(ax: Any, runs: Sequence[Run], palette: Palette, mine: list[tuple[int, dict[str, Any]]],
                 metric: str, unit: str, param: str, placements: list[str], legend: dict[str, Any]) -> None:
    lines: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for i, g in mine:
        if g["metric"] == metric and g["unit"] == unit and g.get("mean") is not None:
            lines[(i, g["mode"], g["placement"])].append(g)
    xs_all: list[float] = []
    ys_all: list[float] = []
    for (i, mode, placement), groups in sorted(lines.items(), key=lambda kv: (kv[0][0], runs[kv[0][0]].modes.index(
            kv[0][1]) if kv[0][1] in runs[kv[0][0]].modes else 0, placement_rank(kv[0][2]))):
        run = runs[i]
        groups.sort(key=lambda g: g["param_value"])
        x = np.array([float(g["param_value"]) for g in groups])
        y = np.array([g["mean"] for g in groups], dtype=float)
        lo = np.array([g["ci95"][0] if g.get("ci95") and g["ci95"][0] is not None else g["mean"] for g in groups],
                      dtype=float)
        hi = np.array([g["ci95"][1] if g.get("ci95") and g["ci95"][1] is not None else g["mean"] for g in groups],
                      dtype=float)
        color = palette.color(mode)
        marker = PLACEMENT_MARKER.get(placement, "D") if len(placements) > 1 else "o"
        (line,) = ax.plot(x, y, linestyle=palette.linestyle(run), marker=marker, markersize=3.5, color=color,
                          linewidth=1.5)
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
        if len(x) <= 12:
            ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="none", ecolor=color,
                        elinewidth=0.8, capsize=2, alpha=0.8)
        label = run.label(mode) + (f" · {placement_label(placement)}" if len(placements) > 1 else "")
        legend.setdefault(label, line)
        xs_all.extend(x.tolist())
        ys_all.extend(lo.tolist())
        ys_all.extend(hi.tolist())
    ax.set_title(metric_title(metric))
    ax.set_ylabel(unit_label(unit))
    ax.set_xlabel(param_title(param))
    if unit == "count":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if xs_all:
        values = sorted(set(xs_all))
        positive = [v for v in values if v > 0]
        if positive and values[-1] / positive[0] >= 100:
            if values[0] <= 0:
                ax.set_xscale("symlog", linthresh=max(1.0, positive[0]), linscale=0.6)
            else:
                ax.set_xscale("log")
            if len(values) <= 12:
                ax.set_xticks(values, [fmt(v) for v in values])
                ax.minorticks_off()
        elif len(values) <= 8:
            ax.set_xticks(values, [fmt(v) for v in values])
    if ys_all and min(ys_all) >= 0:
        ax.set_ylim(bottom=0)


# ---- latency CDFs -----------------------------------------------------------------------------------

TIME_UNITS = {"ns", "us", "µs", "ms", "s"}
MIN_CDF_SAMPLES = 10


CdfValues = dict[str, dict[tuple[int, str, str, str, str], list[float]]]


def cdf_values(runs: Sequence[Run]) -> CdfValues:
    """Raw latency samples by measurement, then (run, mode, metric, placement, unit); only groups big enough.

    Metrics that are per-repetition summaries (those with percentile companions, and the companions)
    are not raw samples: the percentile figure shows them instead.
    """
    summaries: dict[str, set[str]] = {}
    values: CdfValues = defaultdict(lambda: defaultdict(list))
    for i, run in enumerate(runs):
        for s in run.results.samples:
            if s.param in ("", None) and s.unit in TIME_UNITS and (s.metric.startswith("rtt") or
                                                                   s.measurement == "latency"):
                if s.measurement not in summaries:
                    found = companions(runs, s.measurement)
                    summaries[s.measurement] = set(found) | {b for b, w in found.values() if PERCENTILE_SUFFIX.match(w)}
                if s.metric not in summaries[s.measurement]:
                    values[s.measurement][(i, s.mode, s.metric, s.placement, s.unit)].append(s.value)
    return {m: {k: v for k, v in groups.items() if len(v) >= MIN_CDF_SAMPLES} for m, groups in values.items()}


def cdf_figures(runs: Sequence[Run], palette: Palette, measurement: str, all_values: CdfValues) -> Iterator[Drawn]:
    """The distribution of latency samples: a panel per (metric, placement), a curve per mode."""
    values = all_values.get(measurement, {})
    if not values:
        return
    panels = sorted({(k[2], k[4], k[3]) for k in values},
                    key=lambda p: (_ordered([k[2] for k in values]).index(p[0]), placement_rank(p[2])))
    rows, cols = _grid(len(panels), max_cols=2)
    fig, axes = _new_figure(rows, cols, f"{measurement_title(measurement)}: distribution (empirical CDF of all samples)")
    legend: dict[str, Any] = {}
    for ax, (metric, unit, placement) in zip(axes, panels):
        curves = [(k, np.sort(np.asarray(v, dtype=float))) for k, v in values.items()
                  if (k[2], k[4], k[3]) == (metric, unit, placement)]
        low = min(c[0] for _, c in curves)
        high = max(c[-1] for _, c in curves)
        for (i, mode, _m, _p, _u), xs in sorted(curves, key=lambda c: (c[0][0], palette.modes.index(c[0][1]))):
            n = len(xs)
            probs = np.linspace(0.0, 1.0, min(n, MAX_CDF_POINTS))
            x = np.quantile(xs, probs) if n > MAX_CDF_POINTS else xs
            y = probs if n > MAX_CDF_POINTS else np.arange(1, n + 1) / n
            (line,) = ax.step(x, y, where="post", color=palette.color(mode), linestyle=palette.linestyle(runs[i]),
                              linewidth=1.5)
            legend.setdefault(runs[i].label(mode), line)
        for level in (0.5, 0.99):
            ax.axhline(level, color="#999999", linewidth=0.7, linestyle=":")
            ax.annotate(f"p{int(level * 100)}", (1.0, level), xycoords=("axes fraction", "data"), xytext=(-2, 2),
                        textcoords="offset points", ha="right", va="bottom", fontsize=7, color="#777777")
        if low > 0 and high / low > 20:
            ax.set_xscale("log")
            _plain_log_axis(ax.xaxis)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{metric_title(metric)}, {placement_label(placement)}")
        ax.set_xlabel(f"latency ({unit_label(unit)})" + (", log scale" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("fraction of samples ≤ x")
    _hide_unused(axes, len(panels))
    _legend_below(fig, list(legend.values()), list(legend))
    caption = ("Each curve is the empirical CDF of every sample of a mode (all repetitions pooled); "
               "dotted lines mark the median and the 99th percentile; further right is slower."
               + _tool_note(runs, measurement) + _run_note(runs))
    yield Drawn(f"cdf-{slug(measurement)}", f"{measurement_title(measurement)}: distribution", caption, fig)


# ---- latency percentiles (per-repetition p50/p90/p99 recorded by the tool) --------------------------

def percentile_figures(runs: Sequence[Run], palette: Palette, measurement: str) -> Iterator[Drawn]:
    """Where the run recorded percentiles (M = p50, M_p90, M_p99), each mode's as a coarse CDF."""
    found = companions(runs, measurement)
    levels: dict[str, dict[float, str]] = defaultdict(dict)   # base metric -> {0.9: "rtt_tcp_rr_p90"}
    for metric, (base, what) in found.items():
        match = PERCENTILE_SUFFIX.match(what)
        if match:
            levels[base][float(match.group(1)) / 100] = metric
    if not levels:
        return
    index = _group_index(runs)
    groups = [g for run in runs for g in run.groups() if g["measurement"] == measurement and g["metric"] in levels
              and g["param"] in ("", None)]
    order = _ordered([g["metric"] for g in groups])
    panels = sorted({(g["metric"], g["placement"], g["unit"]) for g in groups},
                    key=lambda p: (order.index(p[0]), placement_rank(p[1])))
    rows, cols = _grid(len(panels), max_cols=2)
    fig, axes = _new_figure(rows, cols, f"{measurement_title(measurement)}: percentiles per mode")
    legend: dict[str, Any] = {}
    for ax, (metric, placement, unit) in zip(axes, panels):
        ladder = {0.5: metric, **levels[metric]}
        lows, highs = [], []
        for mode in palette.modes:
            for i, run in enumerate(runs):
                points = []
                for level, name in sorted(ladder.items()):
                    g = index.get((i, mode, measurement, placement, name, "", "", unit))
                    if g is not None and g.get("mean") is not None:
                        ci = g.get("ci95") or [None, None]
                        lo = ci[0] if ci[0] is not None else g["mean"]
                        hi = ci[1] if ci[1] is not None else g["mean"]
                        points.append((g["mean"], level, lo, hi))
                if not points:
                    continue
                x = np.array([p[0] for p in points])
                y = np.array([p[1] for p in points])
                err = [np.maximum(x - [p[2] for p in points], 0), np.maximum(np.array([p[3] for p in points]) - x, 0)]
                (line,) = ax.plot(x, y, marker="o", markersize=4, color=palette.color(mode),
                                  linestyle=palette.linestyle(run), linewidth=1.5)
                ax.errorbar(x, y, xerr=err, fmt="none", ecolor=palette.color(mode), elinewidth=0.9, capsize=2)
                legend.setdefault(run.label(mode), line)
                lows.append(min(p[2] for p in points))
                highs.append(max(p[3] for p in points))
        ax.set_yscale("logit")
        ticks = sorted({0.5, *levels[metric]})
        ax.set_yticks(ticks, [f"p{fmt(t * 100)}" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(min(ticks) * 0.9, 1 - (1 - max(ticks)) * 0.6)
        if lows and min(lows) > 0 and max(highs) / min(lows) > 20:
            ax.set_xscale("log")
            _plain_log_axis(ax.xaxis)
        ax.set_title(f"{metric_title(metric)}, {placement_label(placement)}")
        ax.set_xlabel(f"round-trip time ({unit_label(unit)})" + (", log scale" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("percentile")
    _hide_unused(axes, len(panels))
    _legend_below(fig, list(legend.values()), list(legend))
    caption = ("Each line joins a mode's median, p90 and p99 round trip as the tool reported them per repetition "
               "(mean over repetitions, whiskers: 95% interval); further right is slower, a steeper line is a "
               "tighter distribution." + _tool_note(runs, measurement) + _run_note(runs))
    yield Drawn(f"percentiles-{slug(measurement)}", f"{measurement_title(measurement)}: percentiles per mode",
                caption, fig)


# ---- timelines --------------------------------------------------------------------------------------

MAX_TIMELINE_COLS = 3
MAX_NODE_LEGEND = 8
TIMELINE_TITLES = {
    "bgp-convergence": "BGP convergence timeline",
    "rr-migration": "Route-reflector migration: traffic outage trace",
}
SERIES_TITLES = {
    "sessions_established": "BGP sessions Established",
    "routes": "routes installed",
    "probe_lost": "UDP probes lost",
    "probe_received": "UDP probes received",
}


Timelines = dict[tuple[int, str, str], list[Any]]


def timeline_points(runs: Sequence[Run]) -> Timelines:
    points: Timelines = defaultdict(list)
    for i, run in enumerate(runs):
        for p in run.results.timelines:
            points[(i, p.measurement, p.mode)].append(p)
    return points


def timeline_figures(runs: Sequence[Run], palette: Palette, measurement: str, points: Timelines) -> Iterator[Drawn]:
    """The measurement's time series: a row per series kind, a column per mode (side by side)."""
    if any(k[1] == measurement for k in points):
        columns = [(i, mode) for i, run in enumerate(runs) for mode in run.modes if (i, measurement, mode) in points]
        for chunk_no, start in enumerate(range(0, len(columns), MAX_TIMELINE_COLS)):
            chunk = columns[start:start + MAX_TIMELINE_COLS]
            yield _timeline_figure(runs, palette, measurement, chunk, points, chunk_no, len(columns))


def _series_kind(series: str) -> tuple[str, str]:
    kind, _, member = series.partition(":")
    return kind, member


def _timeline_figure(runs: Sequence[Run], palette: Palette, measurement: str, chunk: list[tuple[int, str]],
                     points: dict[tuple[int, str, str], list[Any]], chunk_no: int, total_cols: int) -> Drawn:
    kinds = _ordered([_series_kind(p.series)[0] for col in chunk for p in points[(col[0], measurement, col[1])]])
    fig = Figure(figsize=(WIDTH_IN, 2.9 * len(kinds) + 1.0), layout="constrained")
    axes = fig.subplots(len(kinds), len(chunk), squeeze=False, sharex="col", sharey="row")
    title = TIMELINE_TITLES.get(measurement, f"{measurement_title(measurement)} over time")
    fig.suptitle(title + (f" (part {chunk_no + 1})" if total_cols > MAX_TIMELINE_COLS else ""))
    repetitions_used = []
    for c, (i, mode) in enumerate(chunk):
        run = runs[i]
        mine = points[(i, measurement, mode)]
        rep = min(p.repetition for p in mine)
        n_reps = len({p.repetition for p in mine})
        repetitions_used.append(f"{run.label(mode)}: repetition {rep} of {n_reps}")
        for r, kind in enumerate(kinds):
            ax = axes[r][c]
            series: dict[str, list[Any]] = defaultdict(list)
            for p in mine:
                if p.repetition == rep and _series_kind(p.series)[0] == kind:
                    series[_series_kind(p.series)[1]].append(p)
            members = sorted(series)
            unit = next((p.unit for pts in series.values() for p in pts), "")
            many = len(members) > MAX_NODE_LEGEND
            cmap = matplotlib.colormaps["viridis"]
            for m_i, member in enumerate(members):
                pts = sorted(series[member], key=lambda p: p.t_s)
                t = [p.t_s for p in pts]
                v = [p.value for p in pts]
                color = cmap(m_i / max(1, len(members) - 1)) if many else (
                    palette.color(mode) if len(members) == 1 else PALETTE[m_i % len(PALETTE)])
                ax.step(t, v, where="post", color=color, linewidth=0.9 if many else 1.4,
                        alpha=0.8 if many else 1.0, label=member or kind)
                if "lost" in kind:
                    ax.fill_between(t, 0, v, step="post", color="#d62728", alpha=0.25, linewidth=0)
            if members and not many and any(members):
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                          borderaxespad=0.2) if c == len(chunk) - 1 else None
            elif many:
                ax.text(0.99, 0.03, f"{len(members)} nodes, one line each", transform=ax.transAxes,
                        ha="right", va="bottom", fontsize=7.5, color="#555555")
            if r == 0:
                ax.set_title(run.label(mode), fontsize=9.5)
            if c == 0:
                ax.set_ylabel(f"{SERIES_TITLES.get(kind, kind.replace('_', ' '))}" + (f" ({unit_label(unit)})" if unit else ""))
            if unit == "count":
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if r == len(kinds) - 1:
                ax.set_xlabel("time (s)")
            ax.set_ylim(bottom=0)
    caption = ("Step plots of the time series recorded during the run, one column per mode at the same scale"
               + ("; shaded red: intervals with lost probes" if any("lost" in k for k in kinds) else "")
               + ". Shown: " + "; ".join(repetitions_used) + "." + _run_note(runs))
    name = f"timeline-{slug(measurement)}" + (f"-{chunk_no + 1}" if total_cols > MAX_TIMELINE_COLS else "")
    return Drawn(name, title, caption, fig)


# ---- all of them ------------------------------------------------------------------------------------

MEASUREMENT_ORDER = ("latency", "throughput", "connrate", "cpu", "mtu", "policy-scale", "bgp-convergence",
                     "rr-migration")


def draw_all(runs: Sequence[Run]) -> Iterator[Drawn]:
    """Every figure, measurement by measurement (the usual kinds first, in MEASUREMENT_ORDER)."""
    palette = Palette(runs)
    cdfs = cdf_values(runs)
    points = timeline_points(runs)
    found = _ordered([g["measurement"] for run in runs for g in run.groups()] + [k[1] for k in points])
    ordered = sorted(found, key=lambda m: (MEASUREMENT_ORDER.index(m) if m in MEASUREMENT_ORDER
                                           else len(MEASUREMENT_ORDER), found.index(m)))
    for measurement in ordered:
        yield from bar_figures(runs, palette, measurement)
        yield from cdf_figures(runs, palette, measurement, cdfs)
        yield from percentile_figures(runs, palette, measurement)
        yield from sweep_figures(runs, palette, measurement)
        yield from timeline_figures(runs, palette, measurement, points)


def save_all(runs: Sequence[Run], directory: Path) -> list[SavedFigure]:
    """Draw every figure the runs have data for into directory as PNG and SVG (old ones are removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in list(directory.glob("*.png")) + list(directory.glob("*.svg")):
        old.unlink()
    saved = []
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]  # rcParams keys are Literal-typed
        for drawn in draw_all(runs):
            png, svg = directory / f"{drawn.name}.png", directory / f"{drawn.name}.svg"
            drawn.figure.savefig(png, dpi=DPI, metadata={"Software": None})
            drawn.figure.set_layout_engine("none")  # laid out once for the PNG; the SVG reuses it
            drawn.figure.savefig(svg, metadata={"Date": None, "Creator": None})
            saved.append(SavedFigure(drawn.name, drawn.title, drawn.caption, png, svg))
            drawn.figure.clear()
    return saved


__all__ = ["SavedFigure", "save_all", "draw_all", "fmt", "measurement_title", "metric_title", "param_title"]
