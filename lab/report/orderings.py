"""The published orderings a run can be held against, and whether this run reproduced each.

From the project reference shared/reference/anchors.md:
- C.4 / E.5: cross-node pod-to-pod request/response latency orders native < IPIP < VXLAN
  (netperf TCP_RR: 195.61 / 248.72 / 275.22 us on one testbed);
- C.2 / E.5: MTU dominates encapsulated throughput (Calico IPIP UDP 1.87 Gb/s at pod MTU 1440 against
  9.76 Gb/s at 8940; "MTU matters far more than the encapsulation type").

A mode's class (native, IPIP, VXLAN) comes from its environment entry (cni, backend, mode,
encapsulation), else from its name; the verdict names the modes it put in each class.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from statistics import median
from typing import Any, Sequence

from lab.report.figures import fmt, metric_title, unit_label
from lab.report.runs import Run

REPRODUCED = "reproduced"
REPRODUCED_OVERLAP = "reproduced, not significant"
NOT_REPRODUCED = "not reproduced"
PARTLY = "partly measured"
NOT_MEASURED = "not measured"

LATENCY_CLAIM = "native < IPIP < VXLAN for cross-node request/response latency"
LATENCY_SOURCE = ("anchors.md §C.4, §E.5: pod-to-pod across nodes, netperf TCP_RR 195.61 (Calico BGP, no encap) "
                  "< 248.72 (Calico IPIP) < 275.22 µs (Calico VXLAN)")
MTU_CLAIM = "MTU dominates encapsulated throughput (more than the choice of encapsulation)"
MTU_SOURCE = ("anchors.md §C.2, §E.5: Calico IPIP UDP 1.87 Gb/s at pod MTU 1440 against 9.76 Gb/s at 8940; "
              "\"MTU matters far more than the encapsulation type\"")

CLASSES = ("native", "IPIP", "VXLAN")
NATIVE_WORDS = ("host-gw", "hostgw", "native", "bgp", "direct", "underlay", "kube-router", "noencap", "no-encap")
MTU_PARAMS = ("mtu", "mss", "pod_mtu", "underlay_mtu")
HYBRID_WORDS = ("crosssubnet", "directrouting")
RR_METRIC = re.compile(r"^rtt_\w*rr$")


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str
    status: str
    detail: str


def mode_class(run: Run, mode: str, placement: str = "cross-node") -> str | None:
    """native, IPIP or VXLAN, from the environment's description of the mode, else from its name.

    A cross-subnet mode (Calico IPIP/VXLAN CrossSubnet, flannel VXLAN DirectRouting) encapsulates only
    between subnets: for a pair in one subnet its path is native.
    """
    info = run.mode_info.get(mode, {})
    words = " ".join(str(info.get(k, "")) for k in ("cni", "backend", "mode", "encapsulation", "topology"))
    hybrid = f"{words} {mode}".lower().replace("-", "").replace("_", "")
    if placement != "cross-subnet" and any(w in hybrid for w in HYBRID_WORDS):
        return "native"
    for text in (words.lower(), mode.lower()):
        if "vxlan" in text:
            return "VXLAN"
        if "ipip" in text:
            return "IPIP"
    text = f"{words} {mode}".lower()
    if any(w in text for w in NATIVE_WORDS):
        return "native"
    return None


def verdicts(runs: Sequence[Run]) -> list[Verdict]:
    """Each published ordering against the first run (the one the report is about)."""
    run = runs[0]
    return latency_verdicts(run) + [mtu_verdict(run)]


# ---- native < IPIP < VXLAN --------------------------------------------------------------------------

def latency_verdicts(run: Run) -> list[Verdict]:
    groups = [g for g in run.groups() if g["placement"] == "cross-node" and g["param"] in ("", None)
              and RR_METRIC.match(str(g["metric"])) and g.get("mean") is not None]
    metrics = list(dict.fromkeys(g["metric"] for g in groups))
    if not metrics:
        return [Verdict(LATENCY_CLAIM, LATENCY_SOURCE, NOT_MEASURED,
                        "no cross-node request/response latency (rtt_*_rr) in this run")]
    return [_latency_verdict(run, metric, [g for g in groups if g["metric"] == metric]) for metric in metrics]


def _latency_verdict(run: Run, metric: str, groups: list[dict[str, Any]]) -> Verdict:
    """Judged on the modes that ran the kernel data path; emulated modes are reported beside it."""
    claim = f"{LATENCY_CLAIM} ({metric_title(metric)})"
    emulated = [m for m in dict.fromkeys(g["mode"] for g in groups) if is_emulated(run, m, "cross-node")]
    status, detail, _ = _latency_order(run, [g for g in groups if g["mode"] not in emulated])
    if emulated:
        with_status, _, with_short = _latency_order(run, groups)
        detail += (f". Not counted: {', '.join(run.label(m, with_tag=False) for m in emulated)} (not the kernel data "
                   f"path the published figures measured); counting them: {with_status}, {with_short}")
    return Verdict(claim, LATENCY_SOURCE, status, detail)


def is_emulated(run: Run, mode: str, placement: str = "cross-node") -> bool:
    """A mode whose data path for this placement ran somewhere else than the kernel (userspace, eBPF...).

    A cross-subnet mode's tunnel is not on the path within one subnet, however it is implemented.
    """
    if mode_class(run, mode, placement) == "native":
        return False
    return any(not n.startswith("kernel") for n in run.data_path_notes(mode))


def _latency_order(run: Run, groups: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(status, detail, short detail) of the latency ordering over these groups."""
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in groups:
        cls = mode_class(run, g["mode"], g["placement"])
        if cls:
            by_class[cls].append(g)
    present = [c for c in CLASSES if by_class[c]]
    members = "; ".join(f"{c}: " + ", ".join(f"{run.label(g['mode'], with_tag=False)} {fmt(g['mean'])} "
                                              f"{unit_label(g['unit'])}" for g in by_class[c]) for c in present)
    if len(present) < 2:
        missing = ", ".join(c for c in CLASSES if c not in present)
        short = f"needs at least two of native, IPIP, VXLAN; missing {missing}"
        return NOT_MEASURED, short + (f" ({members})" if members else ""), short
    holds, significant = True, True
    for low, high in zip(present, present[1:]):
        worst_low = max(by_class[low], key=lambda g: g["mean"])
        best_high = min(by_class[high], key=lambda g: g["mean"])
        if not worst_low["mean"] < best_high["mean"]:
            holds = False
        elif not (_hi(worst_low) < _lo(best_high)):
            significant = False
    observed = " < ".join(sorted(present, key=lambda c: median(g["mean"] for g in by_class[c])))
    if not holds:
        status = NOT_REPRODUCED
    elif len(present) < len(CLASSES):
        status = PARTLY
    else:
        status = REPRODUCED if significant else REPRODUCED_OVERLAP
    detail = f"observed {observed} ({members})"
    if holds and not significant:
        detail += "; the 95% intervals of neighbouring classes overlap"
    if len(present) < len(CLASSES):
        detail += f"; no {' or '.join(c for c in CLASSES if c not in present)} mode measured"
    return status, detail, f"observed {observed}"


def _lo(g: dict[str, Any]) -> float:
    ci = g.get("ci95")
    return ci[0] if ci and ci[0] is not None else g["mean"]


def _hi(g: dict[str, Any]) -> float:
    ci = g.get("ci95")
    return ci[1] if ci and ci[1] is not None else g["mean"]


# ---- MTU dominates encapsulated throughput ----------------------------------------------------------

def _throughput(g: dict[str, Any]) -> bool:
    return "bit/s" in str(g.get("unit", "")) and g.get("mean") is not None and g["mean"] > 0


def mtu_verdict(run: Run) -> Verdict:
    """Judged on the modes that ran the kernel data path; emulated modes are reported beside it."""
    emulated = [m for m in run.modes if is_emulated(run, m)]
    status, detail, _ = _mtu_check(run, [m for m in run.modes if m not in emulated])
    if emulated:
        with_status, _, with_short = _mtu_check(run, run.modes)
        detail += (f". Not counted: {', '.join(run.label(m, with_tag=False) for m in emulated)} (not the kernel data "
                   f"path); counting them: {with_status}, {with_short}")
    return Verdict(MTU_CLAIM, MTU_SOURCE, status, detail)


def _mtu_check(run: Run, modes: list[str]) -> tuple[str, str, str]:
    """Compare the throughput gained from a larger MTU/MSS with the spread between encapsulations.

    Returns (status, detail, short detail)."""
    groups = [g for g in run.groups() if _throughput(g) and g["mode"] in modes]
    encapsulated = {g["mode"] for g in groups if mode_class(run, g["mode"], g["placement"]) in ("IPIP", "VXLAN")}
    mtu_effects: list[tuple[str, float, str]] = []   # (mode, ratio, how)
    encap_effects: list[tuple[float, str]] = []

    # A: a swept MTU-like parameter (MSS sweep, MTU sweep) within each mode
    sweeps: dict[tuple[str, str, str, str], dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for g in groups:
        if g["param"] in MTU_PARAMS and isinstance(g["param_value"], (int, float)):
            sweeps[(g["metric"], g["placement"], g["param"], g["unit"])][g["mode"]][float(g["param_value"])] = g["mean"]
    for (metric, placement, param, unit), curves in sweeps.items():
        for mode, curve in curves.items():
            if mode in encapsulated and len(curve) >= 2:
                lo_p, hi_p = min(curve), max(curve)
                mtu_effects.append((mode, curve[hi_p] / curve[lo_p],
                                    f"{metric_title(metric)} {placement}: {param} {fmt(lo_p)} -> {fmt(hi_p)}"))
        common = set.intersection(*(set(c) for c in curves.values())) if len(curves) >= 2 else set()
        spreads = [max(c[p] for c in curves.values()) / min(c[p] for c in curves.values()) for p in common]
        if spreads:
            encap_effects.append((median(spreads), f"{metric_title(metric)} {placement}, median over "
                                                   f"{len(spreads)} {param} values, {len(curves)} modes"))

    # B: modes that differ by their MTU (environment "mtu"), same encapsulation class
    mtus = {m: run.mtu(m) for m in modes}
    flat = [g for g in groups if g["param"] in ("", None)]
    by_metric: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for g in flat:
        by_metric[(g["metric"], g["placement"], g["unit"])][g["mode"]] = g["mean"]
    for (metric, placement, unit), means in by_metric.items():
        for cls in ("IPIP", "VXLAN"):
            sized = sorted((mtu, m) for m in means if mode_class(run, m, placement) == cls
                           and (mtu := mtus.get(m)) is not None)
            if len(sized) >= 2 and sized[0][0] != sized[-1][0]:
                (small, m_small), (big, m_big) = sized[0], sized[-1]
                mtu_effects.append((m_big, means[m_big] / means[m_small],
                                    f"{metric_title(metric)} {placement}: {m_small} (MTU {fmt(small)}) -> "
                                    f"{m_big} (MTU {fmt(big)})"))
        same_mtu: dict[Any, list[float]] = defaultdict(list)
        for m, v in means.items():
            if mtus.get(m) is not None:
                same_mtu[mtus[m]].append(v)
        for mtu, values in same_mtu.items():
            if len(values) >= 2:
                encap_effects.append((max(values) / min(values), f"{metric_title(metric)} {placement} at MTU {mtu}"))

    if not mtu_effects:
        short = "needs the throughput of an encapsulated (IPIP or VXLAN) mode at two MTUs or MSS values"
        return NOT_MEASURED, short, short
    weakest = min(mtu_effects, key=lambda e: e[1])
    gains = "; ".join(f"{run.label(m, with_tag=False)} ×{r:.2f}" for m, r, _how in mtu_effects[:6])
    if not encap_effects:
        detail = f"MTU gains: {gains} ({weakest[2]}); no two encapsulations measured at the same MTU to compare with"
        return PARTLY, detail, f"smallest MTU gain ×{weakest[1]:.2f}"
    strongest = max(encap_effects, key=lambda e: e[0])
    short = f"smallest MTU gain ×{weakest[1]:.2f} against a spread between modes of ×{strongest[0]:.2f}"
    detail = (f"smallest MTU gain ×{weakest[1]:.2f} ({run.label(weakest[0], with_tag=False)}, {weakest[2]}) against "
              f"the largest spread between modes at one MTU ×{strongest[0]:.2f} ({strongest[1]}); gains: {gains}")
    return (REPRODUCED if weakest[1] > strongest[0] else NOT_REPRODUCED), detail, short
