"""The runs a report shows: each results directory with its summary, its modes and how each mode ran."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.experiment import stats
from lab.experiment.results import Results, parse_param_value

PLACEMENT_ORDER = ("same-node", "cross-node", "cross-subnet")

# Implementation keys that describe a tool or a raw detail rather than the data path: shown in
# captions and the environment, not in labels ({"latency_tool": "sockperf", "ipip_raw": "userspace-tun"}).
TOOL_SUFFIXES = ("_tool", "_tools", "_source")
DETAIL_SUFFIXES = ("_raw",)
PRETTY_IMPL = {"ebpf": "eBPF", "kernel": "kernel", "userspace": "userspace", "emulated": "emulated"}
PRETTY_FEATURE = {"ipip": "IPIP", "vxlan": "VXLAN", "gre": "GRE", "wireguard": "WireGuard", "fou": "FOU",
                  "nat": "NAT"}
# Only these implementation keys describe the data path a packet takes; anything else a kind records
# (bgp, enforcer, rr_migration_steps...) is context for captions, never part of a mode's label.
DATAPATH_KEYS = frozenset(PRETTY_FEATURE)


@dataclass
class Run:
    """One results directory as the report sees it. `tag` is "" for a single run, "A"/"B" when comparing."""

    results: Results
    summary: dict[str, Any]
    tag: str = ""
    modes: list[str] = field(default_factory=list)
    mode_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiment_file: dict[str, Any] = field(default_factory=dict)
    _replicates: dict[tuple[Any, ...], list[float]] | None = field(default=None, repr=False)

    def replicate_values(self, group: dict[str, Any]) -> list[float]:
        """The values a group's mean rests on: one mean per repetition (or the samples of a single one)."""
        if self._replicates is None:
            members: dict[tuple[Any, ...], list[Any]] = {}
            for s in self.results.samples:
                members.setdefault(stats.group_key(s), []).append(s)
            self._replicates = {k: stats.replicates(v)[0] for k, v in members.items()}
        return self._replicates.get(stats.group_key_of(group), [])

    @property
    def name(self) -> str:
        """How the run is named in a comparison: experiment/timestamp."""
        return f"{self.results.experiment}/{self.results.path.name}"

    @property
    def baseline(self) -> str | None:
        return self.summary.get("baseline")

    def groups(self) -> list[dict[str, Any]]:
        return list(self.summary.get("groups", []))

    def implementations(self, mode: str) -> dict[str, Any]:
        impl = self.mode_info.get(mode, {}).get("implementations") or {}
        return impl if isinstance(impl, dict) else {}

    def data_path_notes(self, mode: str) -> list[str]:
        """"userspace IPIP", "eBPF IPIP", "kernel IPIP": how each emulated feature of the mode ran."""
        notes = []
        for key, value in sorted(self.implementations(mode).items()):
            if value in (None, "", False) or key.lower() not in DATAPATH_KEYS:
                continue
            notes.append(f"{PRETTY_IMPL.get(str(value).lower(), str(value))} "
                         f"{PRETTY_FEATURE.get(key.lower(), key)}")
        return notes

    def label(self, mode: str, with_tag: bool = True) -> str:
        """The mode as every figure and table names it, e.g. "calico-ipip (userspace IPIP)"."""
        notes = self.data_path_notes(mode)
        text = f"{mode} ({', '.join(notes)})" if notes else mode
        return f"{text} [{self.tag}]" if with_tag and self.tag else text

    def datapath(self, mode: str) -> str:
        """The runner's one-line description of the mode's data path (environment `datapath`), or ""."""
        return str(self.mode_info.get(mode, {}).get("datapath") or "")

    def route_programming(self, mode: str) -> str:
        """How routes reach the kernel (environment `route_programming`), e.g. "BIRD -> table 201 -> ..."."""
        return str(self.mode_info.get(mode, {}).get("route_programming") or "")

    def mode_caption(self, mode: str) -> str:
        """"calico-bgp — data path: ...; routes: ..." when the environment describes them, else ""."""
        parts = [f"data path: {d}" for d in [self.datapath(mode)] if d]
        parts += [f"routes: {r}" for r in [self.route_programming(mode)] if r]
        return f"{self.label(mode, with_tag=False)} — {'; '.join(parts)}" if parts else ""

    def tools(self, mode: str) -> dict[str, str]:
        """Tool choices recorded for a mode, e.g. {"latency": "sockperf", "cpu": "/proc/stat"}."""
        out = {}
        for key, value in self.implementations(mode).items():
            suffix = next((x for x in TOOL_SUFFIXES if key.endswith(x)), None)
            if suffix and value:
                out[key[:-len(suffix)]] = str(value)
        return out

    def _report_section(self) -> dict[str, Any]:
        section = self.experiment_file.get("report")
        return section if isinstance(section, dict) else {}

    def title(self) -> str:
        report = self._report_section()
        return str(report.get("title") or self.experiment_file.get("title") or self.results.environment.get("title")
                   or self.results.experiment)

    def notes(self) -> list[str]:
        """The experiment's notes, one entry per paragraph."""
        report = self._report_section()
        notes = report.get("notes", self.experiment_file.get("notes")) or self.results.environment.get("notes")
        if not notes:
            return []
        texts = [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]
        return [" ".join(p.split()) for t in texts for p in t.split("\n\n") if p.strip()]

    def mtu(self, mode: str) -> float | None:
        """The mode's pod MTU from the environment (`mtu`, or a single `pod_mtu`), if recorded."""
        info = self.mode_info.get(mode, {})
        value = info.get("mtu")
        if value is None and isinstance(info.get("pod_mtu"), list) and len(set(info["pod_mtu"])) == 1:
            value = info["pod_mtu"][0]
        return float(value) if isinstance(value, (int, float)) else None


def load_run(directory: str | os.PathLike[str], tag: str = "") -> Run:
    """Load a results directory; summary.json is computed from the samples when the run did not write one."""
    results = Results.load(directory)
    summary = results.summary
    if summary and isinstance(summary.get("groups"), list):
        for g in summary["groups"]:   # "1460" from a runner that kept param values as text
            if isinstance(g.get("param_value"), str):
                g["param_value"] = parse_param_value(g["param_value"])
    if not summary or "groups" not in summary:
        baseline = results.environment.get("baseline")
        present = {s.mode for s in results.samples}
        summary = stats.summarize(results.samples, baseline=baseline if baseline in present else None,
                                  experiment=results.experiment,
                                  status=results.status if results.status != "unknown" else "incomplete")
    modes: list[str] = []
    for s in results.samples:
        if s.mode not in modes:
            modes.append(s.mode)
    summary["warnings"] = _ordering_warnings(summary, modes)
    for p in results.timelines:
        if p.mode not in modes:
            modes.append(p.mode)
    return Run(results=results, summary=summary, tag=tag, modes=modes,
               mode_info=_mode_info(results.environment), experiment_file=_experiment_file(results.path))


def _ordering_warnings(summary: dict[str, Any], modes: list[str]) -> list[str]:
    """summary.json's warnings with the ordering ones redone from its groups by today's stats module.

    A summary written by an older runner may quote intervals below zero for a positive quantity; the
    groups hold everything the ordering warning needs, so it is recomputed and other warnings kept.
    """
    groups = {stats.group_key_of(g): g for g in summary.get("groups", [])
              if all(k in g for k in ("mean", "ci95", "min"))}
    order = {m: i for i, m in enumerate(modes)}
    for key in groups:
        order.setdefault(key[0], len(order))
    kept = [w for w in summary.get("warnings", []) if "overlapping 95% intervals" not in str(w)]
    return stats.ordering_warnings(groups, order) + kept


def _mode_info(environment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """environment["modes"] as {mode: info}; accepts a mapping or a list of objects naming their mode."""
    modes = environment.get("modes") or {}
    if isinstance(modes, dict):
        return {str(k): v for k, v in modes.items() if isinstance(v, dict)}
    out = {}
    if isinstance(modes, list):
        for item in modes:
            if isinstance(item, dict):
                name = item.get("mode") or item.get("label") or item.get("name")
                if name:
                    out[str(name)] = item
    return out


def _experiment_file(path: Path) -> dict[str, Any]:
    source = path / "experiment.yaml"
    if not source.exists():
        return {}
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def placement_rank(placement: str) -> tuple[int, str]:
    return (PLACEMENT_ORDER.index(placement), "") if placement in PLACEMENT_ORDER else (len(PLACEMENT_ORDER), placement)


def placement_label(placement: str) -> str:
    return placement or "n/a"
