"""What a report says, independent of its format: the HTML and Markdown writers both render a Document."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lab import __version__
from lab.experiment import stats
from lab.report.figures import (
    ROUTE_AGENT_CAVEAT,
    SavedFigure,
    fmt,
    is_headline,
    measurement_title,
    metric_label,
    param_title,
)
from lab.report.orderings import Verdict, verdicts
from lab.report.runs import Run, placement_label

GENERAL_CAVEAT = ("Every mode ran in network namespaces on one host, over veth pairs and a software underlay: "
                  "absolute figures are not those of physical NICs (no offloads, no wire, shared CPU), so hold "
                  "orderings and ratios, not absolute values, against published benchmarks.")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    highlight: set[int] = field(default_factory=set)   # row indexes to emphasise (the baseline)
    numeric: bool = False                               # right-align cells that start with a number


@dataclass
class Document:
    title: str
    subtitle: list[str]
    status: str
    status_reason: str
    notes: list[str]
    verdicts: list[Verdict]
    caveats: list[str]
    warnings: list[str]                 # about the headline metrics
    figures: list[SavedFigure]
    summary_tables: list[Table]
    compare_tables: list[Table]
    environment_tables: list[Table]
    generated: str
    other_warnings: list[str] = field(default_factory=list)   # every other metric: folded away
    mode_captions: list[str] = field(default_factory=list)    # "calico-bgp — data path: ...; routes: ..."


def build(runs: Sequence[Run], figures: list[SavedFigure]) -> Document:
    run = runs[0]
    env = run.results.environment
    subtitle = [f"experiment {run.results.experiment}", f"run {run.results.path.name}"]
    if env.get("start") or env.get("start_time"):
        subtitle.append(f"started {env.get('start') or env.get('start_time')}")
    if len(runs) > 1:
        subtitle.append("compared with " + ", ".join(r.name for r in runs[1:]))
    warnings: list[str] = []
    others: list[str] = []
    for r in runs:
        prefix = f"[{r.tag}] " if r.tag else ""
        for w in r.summary.get("warnings", []):
            (warnings if _about_headline(w) else others).append(prefix + w)
    return Document(
        title=run.title() + (" — comparison" if len(runs) > 1 else ""),
        subtitle=subtitle,
        status=run.results.status,
        status_reason=_status_reason(env),
        notes=run.notes(),
        verdicts=verdicts(runs),
        caveats=caveats(runs),
        warnings=warnings,
        figures=figures,
        summary_tables=summary_tables(run),
        compare_tables=compare_tables(runs) if len(runs) > 1 else [],
        environment_tables=environment_tables(runs),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") + f" by lab {__version__}",
        other_warnings=others,
        mode_captions=[c for r in runs for m in r.modes if (c := r.mode_caption(m))],
    )


WARNING_SCOPE = re.compile(r"^[^/\s]+/(?P<metric>[^\s:(]+)")


def _about_headline(warning: str) -> bool:
    """An ordering warning ("latency/rtt_tcp_rr (cross-node): ...") about a headline metric."""
    match = WARNING_SCOPE.match(warning)
    return match is not None and is_headline(match.group("metric"))


def status_sentence(status: str) -> str:
    """"This run is incomplete", or, when the run recorded no status, "This run recorded no status"."""
    return "This run recorded no status" if status in ("unknown", "") else f"This run is {status}"


def _status_reason(env: dict[str, Any]) -> str:
    for key in ("reason", "status_reason", "incomplete_reason", "error"):
        if env.get(key):
            return str(env[key])
    return ""


# ---- caveats ----------------------------------------------------------------------------------------

def caveats(runs: Sequence[Run]) -> list[str]:
    out = []
    for run in runs:
        tag = f"[{run.tag}] " if run.tag else ""
        if run.results.status != "complete":
            reason = _status_reason(run.results.environment)
            out.append(f"{tag}{status_sentence(run.results.status)}" + (f" ({reason})" if reason else "")
                       + ": modes or measurements may be missing; the figures show only what was measured.")
        for mode in run.modes:
            notes = run.data_path_notes(mode)
            emulated = [n for n in notes if not n.startswith(("kernel", "eBPF"))]
            ebpf = [n for n in notes if n.startswith("eBPF")]
            if emulated:
                out.append(f"{tag}{mode}: {', '.join(emulated)}, not the kernel data path a real cluster uses; "
                           f"every figure labels the mode \"{run.label(mode, with_tag=False)}\" and its numbers "
                           f"measure the lab's implementation, not the CNI's.")
            if ebpf:
                out.append(f"{tag}{mode}: {', '.join(ebpf)}: the lab's tc programs do in the kernel's data path what "
                           "the kernel module (absent here) does, and are counted in the published orderings; every "
                           f"figure labels the mode \"{run.label(mode, with_tag=False)}\" (the device is a TUN "
                           "device, and offloads differ from the module's).")

        builtin: dict[tuple[str, str], list[str]] = defaultdict(list)
        for mode in run.modes:
            for tool_for, tool in run.tools(mode).items():
                if tool.lower().startswith(("builtin", "built-in", "python")):
                    builtin[(tool_for, tool)].append(mode)
        for (tool_for, tool), modes in builtin.items():
            out.append(f"{tag}{tool_for} was measured with the lab's built-in tool ({tool}), not the usual one "
                       f"(sockperf, netperf), for {', '.join(modes)}: compare these only with each other.")
        for note in _as_list(run.results.environment.get("caveats")):   # the notes are shown once, above
            out.append(f"{tag}{note}")
        measurements = {g["measurement"] for g in run.groups()} | {p.measurement for p in run.results.timelines}
        if any("bgp" in m or "migration" in m or "order" in m for m in measurements):
            out.append(f"{tag}BGP convergence and migration times:" + ROUTE_AGENT_CAVEAT)
        if run.summary.get("baseline") is None and len(run.modes) > 1:
            out.append(f"{tag}No baseline mode was named: ratios to a baseline are not computed.")
    if len(runs) > 1:
        for key in ("kernel", "cpu_model", "cores", "memory_mb", "commit", "git_commit", "version", "lab_version"):
            values = [env_value(r.results.environment, key) for r in runs]
            if len({str(v) for v in values if v is not None}) > 1:
                out.append(f"The runs differ in {key}: " + " vs ".join(
                    f"[{r.tag}] {v}" for r, v in zip(runs, values, strict=False)))
    out.append(GENERAL_CAVEAT)
    return out


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# ---- summary tables ---------------------------------------------------------------------------------

def _interval(ci: Any, group: dict[str, Any] | None = None) -> str:
    """" [low, high]"; the low end clipped at 0 (marked "0*") for a group whose samples are all >= 0."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    low = fmt(ci[0])
    smallest = group.get("min") if group is not None else None
    if smallest is not None and ci[0] < 0 <= smallest:
        low = "0*"
    return f" [{low}, {fmt(ci[1])}]"


def _param(g: dict[str, Any]) -> str:
    return f"{g['param']}={fmt(g['param_value']) if isinstance(g['param_value'], (int, float)) else g['param_value']}" \
        if g.get("param") else ""


def _metric_unit(g: dict[str, Any]) -> str:
    return metric_label(g["metric"], g.get("unit") or "")


def summary_tables(run: Run) -> list[Table]:
    """One table per measurement (in summary.json's order): every group's statistics, the baseline emphasised."""
    by_measurement: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in run.groups():
        by_measurement[g["measurement"]].append(g)
    baseline = run.summary.get("baseline")
    tables = []
    for measurement, groups in by_measurement.items():
        rows: list[list[str]] = []
        highlight: set[int] = set()
        for g in groups:
            ratio = g.get("ratio_to_baseline")
            if g["mode"] == baseline:
                highlight.add(len(rows))
            rows.append([
                run.label(g["mode"], with_tag=False) + (" (baseline)" if g["mode"] == baseline else ""),
                placement_label(g["placement"]),
                _metric_unit(g),
                _param(g),
                f"{g['n']}" + (f" ({g['n_repetitions']} reps)" if g.get("n_repetitions") else ""),
                f"{fmt(g['mean'])}{_interval(g.get('ci95'), g)}",
                fmt(g.get("median")),
                f"{fmt(g.get('p5'))} – {fmt(g.get('p95'))}",
                (f"{ratio['value']:.3f}{_interval_ratio(ratio.get('ci95'), g)}" if ratio else ""),
            ])
        tables.append(Table(
            measurement_title(measurement),
            ["Mode", "Placement", "Metric (unit)", "Parameter", "n", "Mean [95% CI]", "Median", "p5 – p95",
             f"Ratio to {baseline or 'baseline'} [95% CI]"],
            rows, highlight=highlight, numeric=True,
            note="0*: the interval's lower end is clipped at 0 (the quantity cannot be negative); with few "
                 "repetitions the t interval is wide, the figures show the repetitions' range instead."
            if any("[0*," in r[5] or "[0*," in r[8] for r in rows) else ""))
    return tables


def _interval_ratio(ci: Any, group: dict[str, Any] | None = None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return " [unbounded]" if ci is None else ""
    positive = group is None or (group.get("min") is not None and group["min"] >= 0)
    low = "0*" if ci[0] < 0 and positive else f"{ci[0]:.3f}"    # a ratio of positive means is never negative
    return f" [{low}, {ci[1]:.3f}]"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


# ---- comparison -------------------------------------------------------------------------------------

def compare_tables(runs: Sequence[Run]) -> list[Table]:
    """Per measurement, every group both runs measured: both means and the ratio of the second to the first."""
    a, b = runs[0], runs[1]
    samples_a = _by_key(a)
    samples_b = _by_key(b)
    groups_b = {stats.group_key_of(g): g for g in b.groups()}
    by_measurement: dict[str, list[list[str]]] = defaultdict(list)
    changed = common = 0
    for g in a.groups():
        key = stats.group_key_of(g)
        other = groups_b.get(key)
        if other is None:
            continue
        common += 1
        ratio = stats.ratio_ci95(stats.replicates(samples_b[key])[0], stats.replicates(samples_a[key])[0]) \
            if key in samples_a and key in samples_b else None
        verdict = ""
        if ratio and ratio.ci95:
            differs = ratio.ci95[0] > 1 or ratio.ci95[1] < 1
            changed += differs
            verdict = "differs" if differs else "same within noise"
        label_a, label_b = a.label(g["mode"], with_tag=False), b.label(g["mode"], with_tag=False)
        by_measurement[g["measurement"]].append([
            label_a if label_a == label_b else f"{label_a}; [{b.tag}] {label_b}",
            placement_label(g["placement"]), _metric_unit(g), _param(g),
            f"{fmt(g['mean'])}{_interval(g.get('ci95'), g)}",
            f"{fmt(other['mean'])}{_interval(other.get('ci95'), other)}",
            (f"{ratio.value:.3f}" + (_interval_ratio(list(ratio.ci95), g) if ratio.ci95 else "")) if ratio
            else "", verdict])
    note = (f"[{a.tag}] = {a.name}, [{b.tag}] = {b.name}. Ratio: mean of [{b.tag}] over mean of [{a.tag}] with a "
            f"Fieller 95% interval; \"differs\" when the interval excludes 1 ({changed} of {common} groups). "
            f"Groups in one run only: {len(a.groups()) - common} in [{a.tag}], {len(b.groups()) - common} in "
            f"[{b.tag}].")
    columns = ["Mode", "Placement", "Metric (unit)", "Parameter", f"[{a.tag}] mean [95% CI]",
               f"[{b.tag}] mean [95% CI]", f"[{b.tag}]/[{a.tag}] [95% CI]", "Verdict"]
    tables = [Table(f"{measurement_title(m)}: [{b.tag}] against [{a.tag}]", columns, rows, numeric=True)
              for m, rows in by_measurement.items()]
    if tables:
        tables[0].note = note
    else:
        tables = [Table("Nothing in common", columns, [], note)]
    return tables


def _by_key(run: Run) -> dict[tuple[Any, ...], list[Any]]:
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for s in run.results.samples:
        out[stats.group_key(s)].append(s)
    return out


# ---- environment ------------------------------------------------------------------------------------

def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    return "" if value is None else str(value)


MODE_SETUP_KEYS = ("cni", "mode", "backend", "enforcer")
MAX_CELL = 240


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def _flat_environment(env: dict[str, Any]) -> dict[str, str]:
    """Host and run fields, nested objects one level deep ("machine.kernel"); modes, tools and notes apart."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if key in ("modes", "tools", "caveats", "notes"):
            continue
        if isinstance(value, dict) and value:
            for sub, inner in value.items():
                out[f"{key}.{sub}"] = _clip(_scalar(inner))
        else:
            out[key] = _clip(_scalar(value))
    return out


def env_value(env: dict[str, Any], key: str) -> Any:
    """A field at the top of environment.json or one level down (the runner nests machine and lab)."""
    if key in env:
        return env[key]
    for value in env.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def environment_tables(runs: Sequence[Run]) -> list[Table]:
    tables = []
    flats = [_flat_environment(r.results.environment) for r in runs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    if len(runs) == 1:
        tables.append(Table("Host and run", ["Field", "Value"], [[k, flats[0][k]] for k in keys]))
    else:
        rows: list[list[str]] = []
        differing: set[int] = set()
        for k in keys:
            values = [flat.get(k, "") for flat in flats]
            if len(set(values)) > 1 and not any(w in k for w in ("start", "end", "loadavg", "timing", "results")):
                differing.add(len(rows))
            rows.append([k, *values])
        tables.append(Table("Host and run", ["Field", *[f"[{r.tag}]" for r in runs]], rows,
                            "Emphasised rows differ between the runs.", highlight=differing))
    tool_rows = []
    for r in runs:
        tools = r.results.environment.get("tools") or {}
        if isinstance(tools, dict):
            tool_rows += [([f"[{r.tag}]"] if len(runs) > 1 else []) + [str(k), _clip(_scalar(v))]
                          for k, v in tools.items()]
    if tool_rows:
        tables.append(Table("Tools", (["Run"] if len(runs) > 1 else []) + ["Tool", "Version"], tool_rows))
    mode_rows = []
    for r in runs:
        for mode in r.modes:
            info = r.mode_info.get(mode, {})
            setup = ", ".join(f"{k} {info[k]}" for k in MODE_SETUP_KEYS if info.get(k))
            mtu = next((_scalar(info[k]) for k in ("mtu", "pod_mtu") if info.get(k) not in (None, [], "")), "")
            mode_rows.append(([f"[{r.tag}]"] if len(runs) > 1 else []) + [
                mode,
                "; ".join(x for x in (", ".join(r.data_path_notes(mode)) or "kernel (nothing emulated)",
                                      r.datapath(mode)) if x),
                r.route_programming(mode),
                "; ".join(f"{k}: {v}" for k, v in r.tools(mode).items()),
                _clip(" · ".join(x for x in (str(info.get("topology") or ""), setup) if x)),
                mtu,
                _clip(_scalar(info.get("pairs"))),
                _clip(_scalar(info.get("capabilities"))),
            ])
    if mode_rows:
        tables.append(Table("Modes and how each ran", (["Run"] if len(runs) > 1 else []) +
                            ["Mode", "Data path", "Route programming", "Tools", "Topology and CNI", "Pod MTU", "Pairs",
                             "Capabilities"],
                            mode_rows,
                            "Data path: how each emulated feature was built on this kernel "
                            "(kernel, eBPF or userspace); "
                            "tools: which program measured what."))
    return tables


__all__ = ["Document", "Table", "build", "param_title"]
