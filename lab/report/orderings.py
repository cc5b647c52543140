"""The published orderings a run can be held against, and whether this run reproduced each.

From the project reference shared/reference/anchors.md:
- C.4 / E.5: cross-node pod-to-pod request/response latency orders native < IPIP < VXLAN
  (netperf TCP_RR: 195.61 / 248.72 / 275.22 us on one testbed);
- C.2 / E.5: MTU dominates encapsulated throughput (Calico IPIP UDP 1.87 Gb/s at pod MTU 1440 against
  9.76 Gb/s at 8940; "MTU matters far more than the encapsulation type").

A mode's class (native, IPIP, VXLAN) comes from its environment entry (cni, backend, mode,
encapsulation), else from its name; the verdict names the modes it put in each class. The latency
ordering is judged within one CNI, as the anchor measured it (Calico BGP < Calico IPIP < Calico
VXLAN): a flannel host-gw figure says nothing about Calico's IPIP. Every step of an ordering must
hold with non-overlapping 95% intervals; where the intervals overlap the verdict is "inconclusive".
Modes whose data path is emulated (userspace IPIP) are left out of the verdict, and the verdict says so.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from lab.report.figures import fmt, metric_title, unit_label
from lab.report.runs import Run

REPRODUCED = "reproduced"
REPRODUCED_OVERLAP = "reproduced, not significant"   # kept for older callers; verdicts now say INCONCLUSIVE
INCONCLUSIVE = "inconclusive"
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


KERNEL_DATA_PATHS = ("kernel ", "eBPF ")   # data_path_notes() prefixes of implementations counted as the kernel's


def is_emulated(run: Run, mode: str, placement: str = "cross-node") -> bool:
    """A mode whose data path for this placement ran outside the kernel's data path (the userspace tunnel).

    eBPF IPIP counts: its tc programs encapsulate and decapsulate in the kernel's data path, at kernel
    speed, and are the project's IPIP where the kernel has no ipip module; verdicts name it "eBPF IPIP".
    A cross-subnet mode's tunnel is not on the path within one subnet, however it is implemented.
    """
    if mode_class(run, mode, placement) == "native":
        return False
    return any(not n.startswith(KERNEL_DATA_PATHS) for n in run.data_path_notes(mode))


def cni_of(run: Run, mode: str) -> str:
    """The mode's CNI from the environment (`cni`), else the first word of its name (calico-ipip -> calico)."""
    cni = run.mode_info.get(mode, {}).get("cni")
    return str(cni) if cni else mode.split("-")[0]


def _latency_order(run: Run, groups: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(status, detail, short detail) of the latency ordering over these groups, judged per CNI."""
    per_cni: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        cls = mode_class(run, g["mode"], g["placement"])
        if cls:
            per_cni[cni_of(run, g["mode"])][cls].append(g)
    judged: list[tuple[str, str, str]] = []    # (cni, status, detail)
    unjudged: list[str] = []
    for cni, by_class in per_cni.items():
        present = [c for c in CLASSES if by_class[c]]
        members = "; ".join(f"{c}: " + ", ".join(f"{run.label(g['mode'], with_tag=False)} {fmt(g['mean'])} "
                                                  f"{unit_label(g['unit'])}" for g in by_class[c]) for c in present)
        if len(present) < 2:
            unjudged.append(f"{cni} ({members}: one class only)")
            continue
        status = REPRODUCED
        notes = []
        for low, high in zip(present, present[1:], strict=False):
            worst_low = max(by_class[low], key=lambda g: g["mean"])
            best_high = min(by_class[high], key=lambda g: g["mean"])
            if _hi(worst_low) < _lo(best_high):
                continue                                      # holds, intervals apart
            if _hi(best_high) < _lo(worst_low):
                status = NOT_REPRODUCED                       # reversed, intervals apart
                notes.append(f"{high} < {low}")
            elif status != NOT_REPRODUCED:
                status = INCONCLUSIVE
                notes.append(f"{low} and {high} overlap")
        observed = " < ".join(sorted(present, key=lambda c: median(g["mean"] for g in by_class[c])))
        judged.append((cni, status, f"{cni}: observed {observed}" + (f" ({', '.join(notes)} in 95% intervals)"
                                                                      if notes else "") + f" — {members}"))
    if not judged:
        short = "needs two of native, IPIP, VXLAN within one CNI"
        return NOT_MEASURED, short + (f"; measured: {'; '.join(unjudged)}" if unjudged else ""), short
    statuses = {st for _, st, _ in judged}
    complete = any(all(per_cni[cni][c] for c in CLASSES) for cni, _, _ in judged)
    if NOT_REPRODUCED in statuses:
        status = NOT_REPRODUCED
    elif INCONCLUSIVE in statuses:
        status = INCONCLUSIVE
    else:
        status = REPRODUCED if complete else PARTLY
    detail = "; ".join(d for _, _, d in judged)
    if not complete:
        detail += "; no CNI had all of native, IPIP and VXLAN measured"
    if unjudged:
        detail += f"; not judged: {'; '.join(unjudged)}"
    short = ", ".join(f"{cni} {st}" for cni, st, _ in judged)
    return status, detail, short


def _lo(g: dict[str, Any]) -> float:
    ci = g.get("ci95")
    low: float = ci[0] if ci and ci[0] is not None else g["mean"]
    return low


def _hi(g: dict[str, Any]) -> float:
    ci = g.get("ci95")
    high: float = ci[1] if ci and ci[1] is not None else g["mean"]
    return high


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


def _apart(low: dict[str, Any], high: dict[str, Any]) -> bool:
    """The 95% intervals of two groups do not overlap (low's top below high's bottom)."""
    return _hi(low) < _lo(high)


def _mtu_check(run: Run, modes: list[str]) -> tuple[str, str, str]:
    """Compare the throughput gained from a larger MTU/MSS with the spread between encapsulations.

    Each effect carries whether its two ends have non-overlapping 95% intervals: the verdict is
    "inconclusive" when the effect it rests on is not significant. Returns (status, detail, short detail)."""
    groups = [g for g in run.groups() if _throughput(g) and g["mode"] in modes]
    encapsulated = {g["mode"] for g in groups if mode_class(run, g["mode"], g["placement"]) in ("IPIP", "VXLAN")}
    mtu_effects: list[tuple[str, float, str, bool]] = []   # (mode, ratio, how, significant)
    encap_effects: list[tuple[float, str, bool]] = []

    # A: a swept MTU-like parameter (MSS sweep, MTU sweep) within each mode
    sweeps: dict[tuple[str, str, str, str], dict[str, dict[float, dict[str, Any]]]] = \
        defaultdict(lambda: defaultdict(dict))
    for g in groups:
        if g["param"] in MTU_PARAMS and isinstance(g["param_value"], (int, float)):
            sweeps[(g["metric"], g["placement"], g["param"], g["unit"])][g["mode"]][float(g["param_value"])] = g
    for (metric, placement, param, _unit), curves in sweeps.items():
        for mode, curve in curves.items():
            if mode in encapsulated and len(curve) >= 2:
                lo_p, hi_p = min(curve), max(curve)
                mtu_effects.append((mode, curve[hi_p]["mean"] / curve[lo_p]["mean"],
                                    f"{metric_title(metric)} {placement}: {param} {fmt(lo_p)} -> {fmt(hi_p)}",
                                    _apart(curve[lo_p], curve[hi_p])))
        common = set.intersection(*(set(c) for c in curves.values())) if len(curves) >= 2 else set()
        spreads = []
        for p in common:
            at = [c[p] for c in curves.values()]
            low, high = min(at, key=lambda g: g["mean"]), max(at, key=lambda g: g["mean"])
            spreads.append((high["mean"] / low["mean"], _apart(low, high)))
        if spreads:
            spreads.sort()
            mid = spreads[len(spreads) // 2]
            encap_effects.append((mid[0], f"{metric_title(metric)} {placement}, median over "
                                          f"{len(spreads)} {param} values, {len(curves)} modes", mid[1]))

    # B: modes that differ by their MTU (environment "mtu"), same encapsulation class
    mtus = {m: run.mtu(m) for m in modes}
    flat = [g for g in groups if g["param"] in ("", None)]
    by_metric: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for g in flat:
        by_metric[(g["metric"], g["placement"], g["unit"])][g["mode"]] = g
    for (metric, placement, _unit), found in by_metric.items():
        for cls in ("IPIP", "VXLAN"):
            sized = sorted((mtu, m) for m in found if mode_class(run, m, placement) == cls
                           and (mtu := mtus.get(m)) is not None)
            if len(sized) >= 2 and sized[0][0] != sized[-1][0]:
                (small, m_small), (big, m_big) = sized[0], sized[-1]
                mtu_effects.append((m_big, found[m_big]["mean"] / found[m_small]["mean"],
                                    f"{metric_title(metric)} {placement}: {m_small} (MTU {fmt(small)}) -> "
                                    f"{m_big} (MTU {fmt(big)})", _apart(found[m_small], found[m_big])))
        same_mtu: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for m, g in found.items():
            if mtus.get(m) is not None:
                same_mtu[mtus[m]].append(g)
        for mtu, at in same_mtu.items():
            if len(at) >= 2:
                low, high = min(at, key=lambda g: g["mean"]), max(at, key=lambda g: g["mean"])
                encap_effects.append((high["mean"] / low["mean"], f"{metric_title(metric)} {placement} at MTU {mtu}",
                                      _apart(low, high)))

    if not mtu_effects:
        short = "needs the throughput of an encapsulated (IPIP or VXLAN) mode at two MTUs or MSS values"
        return NOT_MEASURED, short, short
    weakest = min(mtu_effects, key=lambda e: e[1])
    gains = "; ".join(f"{run.label(m, with_tag=False)} ×{r:.2f}" + ("" if sig else " (intervals overlap)")
                      for m, r, _how, sig in mtu_effects[:6])
    if not encap_effects:
        detail = f"MTU gains: {gains} ({weakest[2]}); no two encapsulations measured at the same MTU to compare with"
        return PARTLY, detail, f"smallest MTU gain ×{weakest[1]:.2f}"
    strongest = max(encap_effects, key=lambda e: e[0])
    short = f"smallest MTU gain ×{weakest[1]:.2f} against a spread between modes of ×{strongest[0]:.2f}"
    detail = (f"smallest MTU gain ×{weakest[1]:.2f} ({run.label(weakest[0], with_tag=False)}, {weakest[2]}) against "
              f"the largest spread between modes at one MTU ×{strongest[0]:.2f} ({strongest[1]}); gains: {gains}")
    if weakest[1] > strongest[0]:
        # every MTU gain must be real (intervals apart) and beat the spread
        status = REPRODUCED if all(e[3] for e in mtu_effects) and weakest[1] > 1 else INCONCLUSIVE
    else:
        status = NOT_REPRODUCED if strongest[2] else INCONCLUSIVE
    if status == INCONCLUSIVE:
        detail += "; the 95% intervals of the effect the verdict rests on overlap"
    return status, detail, short
