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
import textwrap
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# Human names of metrics, as axes and tables show them (the unit is added in parentheses).
METRIC_TITLES = {
    "throughput_tcp_1": "TCP throughput, 1 stream",
    "throughput_tcp_n": "TCP throughput, N streams",
    "throughput_udp": "UDP throughput",
    "retransmits": "TCP retransmits",
    "path_mtu": "Path MTU (DF ping sweep)",
    "encap_overhead": "Encapsulation overhead",
    "cpu_per_gbit": "CPU per Gbit",
    "throughput_at_mss": "TCP throughput",
    "throughput_at_msg_size": "TCP throughput",
    "retransmits_tcp_1": "TCP retransmits, 1 stream",
    "retransmits_tcp_n": "TCP retransmits, N streams",
    "loss_udp": "UDP datagrams lost",
    "cpu_client_tcp_1": "iperf3 client CPU, TCP 1 stream",
    "cpu_server_tcp_1": "iperf3 server CPU, TCP 1 stream",
    "conn_rate": "New TCP connections per second",
    "conn_failures": "Failed connections",
    "cpu_kernel_s_per_Gbit": "Kernel CPU per Gbit",
    "cpu_total_s_per_Gbit": "All CPU per Gbit",
    "cpu_kernel_pct": "Kernel CPU busy",
    "throughput_tcp_cpu_run": "TCP throughput during the CPU run",
    "apply_to_enforced": "Apply-to-enforced time",
    "apply_s": "Policy apply time",
    "enforced_s": "Policy enforced time",
    "iptables_rules": "iptables rules per node",
    "iptables_rules_per_node_avg": "iptables rules per node (mean)",
    "iptables_rules_per_node_max": "iptables rules per node (max)",
    "ipsets": "ipsets per node",
    "ipsets_per_node_max": "ipsets per node (max)",
    "time_to_routes": "Time from lab up to all routes",
    "up_s": "lab up time",
    "converged_s": "Time to all routes",
    "down_s": "Withdrawal time",
    "withdraw_s": "Block withdrawn everywhere",
    "relearn_s": "Block re-learned everywhere",
    "sessions_total": "BGP sessions Established",
    "sessions_configured": "BGP sessions configured",
    "sessions_per_node_min": "BGP sessions per node (min)",
    "sessions_per_node_max": "BGP sessions per node (max)",
    "sessions_per_node": "BGP sessions per node",
    "bird_memory": "BIRD memory per node",
    "bird_rss_avg": "BIRD RSS per node (mean)",
    "bird_rss_max": "BIRD RSS per node (max)",
    "agent_rss": "Route agent RSS",
    "tcp_crr": "TCP connect/request/response/close",
    "outage": "Outage",
    "outage_s": "Outage",
    "probes_lost": "UDP probes lost",
    "lost_probes": "UDP probes lost",
    "lost_pct": "Lost",
    "routes_back_s": "Routes back after the last step",
    "sessions_after": "BGP sessions Established after",
}
# Round trips: the runner records each repetition's median as the bare metric, its p90/p99/mean as
# companions and, when it keeps them, every sample as <metric>_raw.
RTT_TITLES = {
    "rtt_icmp": "ICMP echo RTT",
    "rtt_tcp_rr": "TCP request/response RTT",
    "rtt_udp_rr": "UDP request/response RTT",
}
COMPANION_WORDS = {"mean": "mean", "sender": "sender side", "raw": "every sample"}
# The metrics a reader looks at first: their statistical warnings are listed, the others folded.
HEADLINE_METRICS = re.compile(r"^(rtt_\w+?|throughput_(tcp|udp)\w*|conn_rate|cpu_\w*per_Gbit|cpu_per_gbit)$")
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
PERCENTILE_SUFFIX = re.compile(r"^p(\d{1,2}(\.\d+)?)$")


def unit_label(unit: str) -> str:
    return UNIT_LABELS.get(unit, unit)


def measurement_title(measurement: str) -> str:
    return MEASUREMENT_TITLES.get(measurement, measurement.replace("-", " ").replace("_", " ").capitalize())


def metric_title(metric: str) -> str:
    """"TCP request/response RTT p90" for rtt_tcp_rr_p90: what a reader calls the metric."""
    if metric in METRIC_TITLES:
        return METRIC_TITLES[metric]
    if metric in RTT_TITLES:
        return f"{RTT_TITLES[metric]} p50"
    match = stats.COMPANION.match(metric)
    if match and (match.group("base") in RTT_TITLES or match.group("base") in METRIC_TITLES):
        base, what = match.group("base"), match.group("what")
        title = RTT_TITLES.get(base) or METRIC_TITLES[base]
        return f"{title} {what}" if PERCENTILE_SUFFIX.match(what) else f"{title}, {COMPANION_WORDS.get(what, what)}"
    text = metric.replace("_", " ")
    return text[:1].upper() + text[1:]


def metric_label(metric: str, unit: str) -> str:
    """"Outage (s)", "TCP request/response RTT p90 (µs)": the metric with its unit, for axes and tables."""
    return f"{metric_title(metric)} ({unit_label(unit)})" if unit else metric_title(metric)


def is_headline(metric: str) -> bool:
    """Latency p50, throughput, connection rate and CPU per Gbit: the figures a comparison is read by."""
    return bool(HEADLINE_METRICS.match(metric)) and stats.COMPANION.match(metric) is None or metric in RTT_TITLES


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


def _mode_note(runs: Sequence[Run], modes: Sequence[str] | None = None) -> str:
    """Each mode's data path and route programming, when the run's environment describes them."""
    lines = []
    for run in runs:
        for mode in run.modes:
            if modes is None or mode in modes:
                text = run.mode_caption(mode)
                if text and text not in lines:
                    lines.append(text)
    return (" Modes: " + "; ".join(lines) + ".") if lines else ""


# ---- whiskers ---------------------------------------------------------------------------------------

MIN_T_REPETITIONS = 5   # below this many repetitions the t factor dwarfs the data: show their range
RANGE = "range"
T_INTERVAL = "t"
CLIPPED = "clipped"


def whisker(run: Run, g: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """(low, high, how) of a group's whisker.

    Fewer than MIN_T_REPETITIONS repetitions: the range (min–max) of the repetitions' values, which is
    what was seen, not a t interval whose factor (12.7 for n = 2) reaches far beyond it. Otherwise the
    95% t interval of the mean, clipped at 0 for a quantity that cannot be negative (how = "clipped").
    """
    values = run.replicate_values(g)
    reps = g.get("n_repetitions") or 0
    if 0 < reps < MIN_T_REPETITIONS and len(values) >= 2:
        return min(values), max(values), RANGE
    ci = g.get("ci95")
    if not ci or ci[0] is None or ci[1] is None:
        return None, None, ""
    low, high = float(ci[0]), float(ci[1])
    if low < 0 <= min(values or [g.get("min") or 0.0]):
        return 0.0, high, CLIPPED
    return low, high, T_INTERVAL


def whisker_sentence(hows: set[str], what: str = "whiskers") -> str:
    """The caption's account of the whiskers actually drawn."""
    parts = []
    if RANGE in hows:
        parts.append(f"the range (min–max) of the repetitions where fewer than {MIN_T_REPETITIONS} ran")
    if hows & {T_INTERVAL, CLIPPED}:
        parts.append("the 95% confidence interval of the mean (Student t over repetitions)"
                     + (", clipped at 0 since the quantity cannot be negative" if CLIPPED in hows else ""))
    if not parts:
        return f"no {what}: each value rests on a single sample."
    return f"{what}: " + "; elsewhere ".join(parts) + "."


# ---- bars -------------------------------------------------------------------------------------------

def bar_figures(runs: Sequence[Run], palette: Palette, measurement: str) -> Iterator[Drawn]:
    """The measurement's figure: a panel per metric, bars per mode grouped by placement."""
    index = _group_index(runs)
    skip = companions(runs, measurement)
    flat = [g for run in runs for g in run.groups() if g["param"] in ("", None) and g["measurement"] == measurement
            and g["metric"] not in skip]
    if flat and not any(is_migration(run, measurement) for run in runs):
        panels = _ordered([(g["metric"], g["unit"]) for g in flat if g["measurement"] == measurement])
        rows, cols = _grid(len(panels))
        title = f"{measurement_title(measurement)}: mean per mode and placement"
        fig, axes = _new_figure(rows, cols, title)
        legend: dict[str, Any] = {}
        hows: set[str] = set()
        for ax, (metric, unit) in zip(axes, panels, strict=False):
            _bar_panel(ax, runs, palette, index, measurement, metric, unit, legend, hows)
        _hide_unused(axes, len(panels))
        _legend_below(fig, list(legend.values()), list(legend))
        kinds = sorted({what for what in (w for _b, w in skip.values())})
        caption = ("Bars: mean over repetitions; " + whisker_sentence(hows)
                   + (" A bar without whiskers rests on a single sample." if "" in hows else "")
                   + (f" The {', '.join(kinds)} companions of these metrics are in the tables." if kinds else "")
                   + (ROUTE_AGENT_CAVEAT if measurement in ROUTE_AGENT_MEASUREMENTS else "")
                   + _tool_note(runs, measurement) + _mode_note(runs) + _run_note(runs))
        yield Drawn(f"bars-{slug(measurement)}", title, caption, fig)


def _bar_panel(ax: Any, runs: Sequence[Run], palette: Palette, index: dict[Any, dict[str, Any]],
               measurement: str, metric: str, unit: str, legend: dict[str, Any], hows: set[str]) -> None:
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
            lo, hi, how = whisker(run, g)
            hows.add(how)
            bars.append((p_i - 0.4 + width * (s_i + 0.5), g["mean"], lo, hi, run, mode))
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
    ax.set_ylabel(textwrap.fill(metric_label(metric, unit) + (", log scale" if log else ""), 34))
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
        hows: set[str] = set()
        for ax, (metric, unit) in zip(axes, panels, strict=False):
            _sweep_panel(ax, runs, palette, mine, metric, unit, param, placements, legend, hows)
        _hide_unused(axes, len(panels))
        _legend_below(fig, list(legend.values()), list(legend))
        caption = ("Points: mean over repetitions; shaded band and " + whisker_sentence(hows)
                   + (" Marker shape: placement." if len(placements) > 1 else "")
                   + (ROUTE_AGENT_CAVEAT if measurement in ROUTE_AGENT_MEASUREMENTS else "")
                   + _tool_note(runs, measurement) + _mode_note(runs) + _run_note(runs))
        yield Drawn(f"sweep-{slug(measurement)}-{slug(param)}", title, caption, fig)


def _sweep_panel(ax: Any, runs: Sequence[Run], palette: Palette, mine: list[tuple[int, dict[str, Any]]],
                 metric: str, unit: str, param: str, placements: list[str], legend: dict[str, Any],
                 hows: set[str]) -> None:
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
        ends = [whisker(run, g) for g in groups]
        hows.update(e[2] for e in ends)
        lo = np.array([e[0] if e[0] is not None else g["mean"] for e, g in zip(ends, groups, strict=True)], dtype=float)
        hi = np.array([e[1] if e[1] is not None else g["mean"] for e, g in zip(ends, groups, strict=True)], dtype=float)
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
    ax.set_ylabel(metric_label(metric, unit))
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

    Where the runner kept every round trip (rtt_icmp_raw, rtt_tcp_rr_raw...), those are the samples,
    keyed by their base metric. Otherwise only metrics that are not per-repetition summaries count
    (those with percentile companions and the companions are not raw samples: the percentile figure
    shows them instead).
    """
    summaries: dict[str, set[str]] = {}
    raw: dict[str, dict[str, str]] = {}
    values: CdfValues = defaultdict(lambda: defaultdict(list))
    for i, run in enumerate(runs):
        for s in run.results.samples:
            if s.param in ("", None) and s.unit in TIME_UNITS and (s.metric.startswith("rtt") or
                                                                   s.measurement == "latency"):
                if s.measurement not in summaries:
                    found = companions(runs, s.measurement)
                    raw[s.measurement] = {m: b for m, (b, w) in found.items() if w == "raw"}
                    summaries[s.measurement] = set(found) | {b for b, w in found.values() if PERCENTILE_SUFFIX.match(w)}
                if raw[s.measurement]:
                    if s.metric in raw[s.measurement]:
                        values[s.measurement][(i, s.mode, raw[s.measurement][s.metric], s.placement, s.unit)].append(
                            s.value)
                elif s.metric not in summaries[s.measurement]:
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
    fig, axes = _new_figure(rows, cols,
                            f"{measurement_title(measurement)}: distribution (empirical CDF of all samples)")
    legend: dict[str, Any] = {}
    for ax, (metric, unit, placement) in zip(axes, panels, strict=False):
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
        elif low >= 0:
            ax.set_xlim(left=0)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{RTT_TITLES.get(metric, metric_title(metric))}, {placement_label(placement)}")
        ax.set_xlabel(f"latency ({unit_label(unit)})" + (", log scale" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("fraction of samples ≤ x")
    _hide_unused(axes, len(panels))
    _legend_below(fig, list(legend.values()), list(legend))
    counts = sorted(len(v) for v in values.values())
    caption = ("Each curve is the empirical CDF of every round trip the tool measured for a mode (all repetitions "
               f"pooled, {counts[0]:,}–{counts[-1]:,} samples per curve); dotted lines mark the median and the 99th "
               "percentile; further right is slower." + _tool_note(runs, measurement) + _mode_note(runs)
               + _run_note(runs))
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
    hows: set[str] = set()
    for ax, (metric, placement, unit) in zip(axes, panels, strict=False):
        ladder = {0.5: metric, **levels[metric]}
        lows: list[float] = []
        highs: list[float] = []
        for mode in palette.modes:
            for i, run in enumerate(runs):
                points = []
                for level, name in sorted(ladder.items()):
                    g = index.get((i, mode, measurement, placement, name, "", "", unit))
                    if g is not None and g.get("mean") is not None:
                        lo, hi, how = whisker(run, g)
                        hows.add(how)
                        points.append((g["mean"], level, g["mean"] if lo is None else lo,
                                       g["mean"] if hi is None else hi))
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
        elif lows:
            ax.set_xlim(left=0, right=max(highs) * 1.05)   # a round trip is never negative
        ax.set_title(f"{RTT_TITLES.get(metric, metric_title(metric))}, {placement_label(placement)}")
        ax.set_xlabel(f"round-trip time ({unit_label(unit)})" + (", log scale" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("percentile")
    _hide_unused(axes, len(panels))
    _legend_below(fig, list(legend.values()), list(legend))
    caption = ("Each line joins a mode's median, p90 and p99 round trip as the tool reported them per repetition "
               "(mean over repetitions). Horizontal " + whisker_sentence(hows) + " Further right is slower, a "
               "steeper line is a tighter distribution." + _tool_note(runs, measurement) + _mode_note(runs)
               + _run_note(runs))
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
                ax.set_ylabel(f"{SERIES_TITLES.get(kind, kind.replace('_', ' '))}"
                              + (f" ({unit_label(unit)})" if unit else ""))
            if unit == "count":
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if r == len(kinds) - 1:
                ax.set_xlabel("time (s)")
            ax.set_ylim(bottom=0)
    caption = ("Step plots of the time series recorded during the run, one column per mode at the same scale"
               + ("; shaded red: intervals with lost probes" if any("lost" in k for k in kinds) else "")
               + ". Shown: " + "; ".join(repetitions_used) + "."
               + (ROUTE_AGENT_CAVEAT if measurement in ROUTE_AGENT_MEASUREMENTS else "") + _run_note(runs))
    name = f"timeline-{slug(measurement)}" + (f"-{chunk_no + 1}" if total_cols > MAX_TIMELINE_COLS else "")
    return Drawn(name, title, caption, fig)


# ---- route-reflector migration: both orders side by side ----------------------------------------------

ORDER_STYLE = {"seed": ("#d62728", "--"), "safe": ("#2ca02c", ":")}
MIGRATION_METRICS = ("outage_s", "lost_pct", "routes_back_s")
LOSS_SERIES = "probe_lost"


def is_loss_series(series: str) -> bool:
    """The migration's loss trace: `probe_lost`, or `probe_lost:<order>` as the runner names it."""
    return series == LOSS_SERIES or series.startswith(LOSS_SERIES + ":")


def is_migration(run: Run, measurement: str) -> bool:
    """A route-reflector migration measurement: its samples carry an order, an outage, or step times."""
    return measurement in migration_orders(run)


def migration_orders(run: Run) -> dict[str, str]:
    """{measurement: order} for the run's migration measurements.

    The order is the samples' param order=seed|safe when recorded, else read from the measurement's
    name (seed-order, safe-order), else the name itself.
    """
    found: dict[str, str] = {}
    for s in run.results.samples:
        if s.param == "order" and s.param_value not in ("", None):
            found[s.measurement] = str(s.param_value)
    names = {s.measurement for s in run.results.samples if s.metric == "outage_s"}
    names |= {p.measurement for p in run.results.timelines if p.series.startswith("step:")}
    for name in names:
        if name not in found:
            found[name] = next((o for o in ORDER_STYLE if o in name.lower()), name)
    return found


def order_label(order: str) -> str:
    return f"{order} order" if order in ORDER_STYLE else order


def _order_style(order: str, n: int) -> tuple[str, str]:
    return ORDER_STYLE.get(order, (PALETTE[n % len(PALETTE)], "-"))


def migration_figures(runs: Sequence[Run], palette: Palette) -> Iterator[Drawn]:
    """One outage bar chart with both orders side by side, one loss trace with both orders on one time axis."""
    orders_of = [migration_orders(run) for run in runs]
    if not any(orders_of):
        return
    yield from _migration_bars(runs, orders_of)
    yield from _migration_trace(runs, orders_of)


def _order_of(g: dict[str, Any], orders: dict[str, str]) -> str:
    return str(g["param_value"]) if g.get("param") == "order" else orders[g["measurement"]]


def _migration_bars(runs: Sequence[Run], orders_of: list[dict[str, str]]) -> Iterator[Drawn]:
    groups = [(i, g) for i, run in enumerate(runs) for g in run.groups()
              if g["measurement"] in orders_of[i] and g["metric"] in MIGRATION_METRICS and g.get("mean") is not None]
    if not groups:
        return
    panels = [m for m in MIGRATION_METRICS if any(g["metric"] == m for _, g in groups)]
    columns = _ordered([(i, g["mode"]) for i, g in groups])
    orders = _ordered([_order_of(g, orders_of[i]) for i, g in groups])
    orders.sort(key=lambda o: list(ORDER_STYLE).index(o) if o in ORDER_STYLE else len(ORDER_STYLE))
    title = "Route-reflector migration: outage in the seed order against the safe order"
    fig, axes = _new_figure(1, len(panels), title)
    legend: dict[str, Any] = {}
    hows: set[str] = set()
    width = 0.8 / max(1, len(orders))
    for ax, metric in zip(axes, panels, strict=False):
        top = 0.0
        for o_i, order in enumerate(orders):
            color, _ = _order_style(order, o_i)
            for c_i, (i, mode) in enumerate(columns):
                g = next((g for j, g in groups if j == i and g["mode"] == mode and g["metric"] == metric
                          and _order_of(g, orders_of[i]) == order), None)
                if g is None:
                    continue
                x = c_i - 0.4 + width * (o_i + 0.5)
                bar = ax.bar(x, g["mean"], width * 0.9, color=color, edgecolor="white")
                lo, hi, how = whisker(runs[i], g)
                hows.add(how)
                high = g["mean"]
                if lo is not None and hi is not None:
                    ax.errorbar(x, g["mean"], yerr=[[max(0.0, g["mean"] - lo)], [max(0.0, hi - g["mean"])]],
                                fmt="none", ecolor="#222222", elinewidth=1.0, capsize=3)
                    high = max(high, hi)
                ax.annotate(_short(g["mean"]), (x, high), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=8, color="#333333")
                top = max(top, high)
                legend.setdefault(order_label(order), bar[0])
        ax.set_xticks(range(len(columns)), [runs[i].label(mode) for i, mode in columns])
        ax.set_xlim(-0.5, len(columns) - 0.5)
        ax.set_title(metric_title(metric))
        ax.set_ylabel(metric_label(metric, next(g["unit"] for _, g in groups if g["metric"] == metric)))
        ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)
        ax.grid(axis="x", visible=False)
    _hide_unused(axes, len(panels))
    _legend_below(fig, list(legend.values()), list(legend))
    caption = ("Bars: mean over repetitions of each order; " + whisker_sentence(hows)
               + " Outage: the longest run of lost UDP probes; lost: the share of probes without an echo; routes "
               "back: from the last step until every node has every block again. Seed order: mesh off first, as "
               "the article runs it; safe order: label the reflector, set its cluster ID, add the BGPPeer, and "
               "turn the mesh off last." + ROUTE_AGENT_CAVEAT + _mode_note(runs) + _run_note(runs))
    yield Drawn("migration-outage", title, caption, fig)


def _migration_trace(runs: Sequence[Run], orders_of: list[dict[str, str]]) -> Iterator[Drawn]:
    columns = _ordered([(i, p.mode) for i, run in enumerate(runs) for p in run.results.timelines
                        if p.measurement in orders_of[i]])
    if not columns:
        return
    title = "Route-reflector migration: probes lost over time, both orders"
    fig, axes = _new_figure(len(columns), 1, title)
    shown = []
    for ax, (i, mode) in zip(axes, columns, strict=False):
        run = runs[i]
        mine = [p for p in run.results.timelines if p.mode == mode and p.measurement in orders_of[i]]
        by_order: dict[str, list[Any]] = defaultdict(list)
        for p in mine:
            by_order[orders_of[i][p.measurement]].append(p)
        names = sorted(by_order, key=lambda o: list(ORDER_STYLE).index(o) if o in ORDER_STYLE else 9)
        peak = max([p.value for p in mine if is_loss_series(p.series)] or [1.0])
        for o_i, order in enumerate(names):
            pts = by_order[order]
            rep = min(p.repetition for p in pts)
            shown.append(f"{order_label(order)}: repetition {rep} of {len({p.repetition for p in pts})}")
            color, style = _order_style(order, o_i)
            loss = sorted((p for p in pts if is_loss_series(p.series) and p.repetition == rep), key=lambda p: p.t_s)
            if loss:
                t = [p.t_s for p in loss]
                v = [p.value for p in loss]
                ax.step(t, v, where="post", color=color, linewidth=1.5, label=f"{order_label(order)}: probes lost")
                ax.fill_between(t, 0, v, step="post", color=color, alpha=0.18, linewidth=0)
            steps = sorted((p for p in pts if p.series.startswith("step:") and p.repetition == rep),
                           key=lambda p: p.t_s)
            for _s_i, p in enumerate(steps):
                ax.axvline(p.t_s, color=color, linestyle=style, linewidth=1.1)
                ax.annotate(p.series.partition(":")[2], (p.t_s, 1.0 - 0.09 * o_i), xycoords=("data", "axes fraction"),
                            xytext=(3, -2), textcoords="offset points", ha="left", va="top", fontsize=7.5,
                            color=color, fontweight="bold")
            if steps:
                ax.plot([], [], color=color, linestyle=style, linewidth=1.1, label=f"{order_label(order)}: steps")
        ax.set_ylim(0, peak * 1.35)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("UDP probes lost per 100 ms")
        ax.set_xlabel("time from the first step (s)")
        ax.set_title(run.label(mode), fontsize=9.5)
        ax.legend(fontsize=8, loc="upper right", frameon=False)
    caption = ("UDP probes lost per 100 ms (a probe every 10 ms, echoed back) in each order, on one time axis "
               "starting at each order's first step; vertical lines: when each step ran, in the colour of its "
               "order. Shown: " + "; ".join(shown) + "." + ROUTE_AGENT_CAVEAT + _run_note(runs))
    yield Drawn("migration-trace", title, caption, fig)


ROUTE_AGENT_MEASUREMENTS = ("bgp-convergence",)
ROUTE_AGENT_CAVEAT = (" These times include the lab's route agent, which copies BIRD's routes (kernel table 201) "
                      "into the main table; a real Calico node has BIRD program the main table directly.")


# ---- all of them ------------------------------------------------------------------------------------

MEASUREMENT_ORDER = ("latency", "throughput", "connrate", "cpu", "mtu", "policy-scale", "bgp-convergence")


def draw_all(runs: Sequence[Run]) -> Iterator[Drawn]:
    """Every figure, measurement by measurement (the usual kinds first, in MEASUREMENT_ORDER)."""
    palette = Palette(runs)
    cdfs = cdf_values(runs)
    points = timeline_points(runs)
    found = _ordered([g["measurement"] for run in runs for g in run.groups()] + [k[1] for k in points])
    ordered = sorted(found, key=lambda m: (MEASUREMENT_ORDER.index(m) if m in MEASUREMENT_ORDER
                                           else len(MEASUREMENT_ORDER), found.index(m)))
    for measurement in ordered:
        if any(is_migration(run, measurement) for run in runs):
            continue    # drawn once for all orders below
        yield from bar_figures(runs, palette, measurement)
        yield from cdf_figures(runs, palette, measurement, cdfs)
        yield from percentile_figures(runs, palette, measurement)
        yield from sweep_figures(runs, palette, measurement)
        yield from timeline_figures(runs, palette, measurement, points)
    yield from migration_figures(runs, palette)


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
