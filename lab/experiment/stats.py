"""Statistics over an experiment's samples: pure functions, no I/O, no numpy.

Definitions (docs/report.md repeats them for readers of a report):

- Percentiles use linear interpolation between closest ranks, numpy's default ("linear", Hyndman and
  Fan type 7): for sorted x of length n, p(q) = x[k] + (h - k) * (x[k+1] - x[k]) with h = (n - 1) q.
- The unit of replication is the repetition. When a group holds samples from two or more repetitions,
  its mean and 95% confidence interval are computed over the per-repetition means (many RTTs from one
  run are not independent evidence); with a single repetition they fall back to the samples and the
  summary warns that the interval covers one run only. median, p5, p95, min, max and stdev describe
  all the samples of the group.
- The 95% interval of a mean is Student's t: mean +- t(0.975, n - 1) s / sqrt(n). The t quantile is
  computed here (regularised incomplete beta function, bisection), so scipy is not needed.
- The ratio of a mode to the baseline is the ratio of the means, with a 95% interval from Fieller's
  theorem for two independent means, with Welch-Satterthwaite degrees of freedom taken at the point
  estimate. When the baseline's mean is not clearly away from zero (Fieller's g >= 1) the interval is
  unbounded and reported as null.
- The ordering warning: within one comparison (same measurement, placement, metric, parameter and
  unit), modes are ordered by mean; each neighbouring pair whose 95% intervals overlap is reported,
  because the data then do not support the order a chart shows.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from lab.experiment.results import Sample, parse_param_value

GroupKey = tuple[str, str, str, str, str, Any, str]  # mode, measurement, placement, metric, param, param_value, unit
KEY_FIELDS = ("mode", "measurement", "placement", "metric", "param", "param_value", "unit")


# ---- elementary statistics --------------------------------------------------------------------------

def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1 in the denominator); None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The q-th percentile (q in 0..100) by linear interpolation, as numpy.percentile's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    xs = values if presorted else sorted(values)
    h = (len(xs) - 1) * q / 100.0
    k = math.floor(h)
    if k + 1 >= len(xs):
        return float(xs[-1])
    return float(xs[k] + (h - k) * (xs[k + 1] - xs[k]))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---- Student's t ------------------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df (> 0) degrees of freedom, e.g. t_quantile(0.975, 4) = 2.776."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile {p} is outside (0, 1)")
    if df <= 0:
        raise ValueError(f"degrees of freedom {df} must be positive")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def mean_ci95(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """The mean and its 95% Student-t interval; the interval is None for fewer than 2 values."""
    m = mean(values)
    s = stdev(values)
    if s is None:
        return m, None
    half = t_quantile(0.975, len(values) - 1) * s / math.sqrt(len(values))
    return m, (m - half, m + half)


# ---- ratio of two means (Fieller) -------------------------------------------------------------------

@dataclass(frozen=True)
class Ratio:
    value: float
    ci95: tuple[float, float] | None


def ratio_ci95(numerator: Sequence[float], denominator: Sequence[float]) -> Ratio | None:
    """mean(numerator) / mean(denominator) with Fieller's 95% interval for independent samples.

    None when the denominator's mean is 0. The interval is None when either side has fewer than
    2 values, or when it is unbounded (the denominator's mean is within its own uncertainty of 0).
    """
    a, b = mean(numerator), mean(denominator)
    if b == 0:
        return None
    r = a / b
    if len(numerator) < 2 or len(denominator) < 2:
        return Ratio(r, None)
    va = (stdev(numerator) or 0.0) ** 2 / len(numerator)    # squared standard errors
    vb = (stdev(denominator) or 0.0) ** 2 / len(denominator)
    spread = va + r * r * vb
    if spread == 0:
        return Ratio(r, (r, r))
    df = spread ** 2 / (va ** 2 / (len(numerator) - 1) + (r * r * vb) ** 2 / (len(denominator) - 1))
    t = t_quantile(0.975, df)
    # (a - rho b)^2 = t^2 (va + rho^2 vb)  <=>  rho^2 (b^2 - t^2 vb) - 2 a b rho + (a^2 - t^2 va) = 0
    qa = b * b - t * t * vb
    if qa <= 0:
        return Ratio(r, None)
    disc = (a * b) ** 2 - qa * (a * a - t * t * va)
    root = math.sqrt(max(disc, 0.0))
    return Ratio(r, ((a * b - root) / qa, (a * b + root) / qa))


# ---- grouping and the summary -----------------------------------------------------------------------

def group_key(s: Sample) -> GroupKey:
    """The group of a sample; a numeric param_value given as text ("1460") counts as the number."""
    value = parse_param_value(s.param_value) if isinstance(s.param_value, str) else s.param_value
    return (s.mode, s.measurement, s.placement, s.metric, s.param, value, s.unit)


def group_key_of(group: dict[str, Any]) -> GroupKey:
    """The key of a summary.json group (the inverse of writing KEY_FIELDS)."""
    return cast(GroupKey, tuple(group[f] for f in KEY_FIELDS))


def comparison_key(key: GroupKey) -> tuple[Any, ...]:
    """What two modes must share to be compared: the key without the mode."""
    return key[1:]


def replicates(samples: Sequence[Sample]) -> tuple[list[float], bool]:
    """The values a mean and its interval are computed over, and whether they are per-repetition means.

    Two or more repetitions: one mean per repetition. One repetition: the samples themselves.
    """
    by_rep: dict[int, list[float]] = defaultdict(list)
    for s in samples:
        by_rep[s.repetition].append(s.value)
    if len(by_rep) >= 2:
        return [mean(by_rep[r]) for r in sorted(by_rep)], True
    return [s.value for s in samples], False


def describe(samples: Sequence[Sample]) -> dict[str, Any]:
    """The statistics of one group, as in a summary.json group (without its key and ratio)."""
    values = sorted(s.value for s in samples)
    reps, per_rep = replicates(samples)
    m, ci = mean_ci95(reps)
    return {
        "n": len(values),
        "n_repetitions": len({s.repetition for s in samples}),
        "mean": m,
        "ci95": list(ci) if ci else None,
        "median": percentile(values, 50, presorted=True),
        "p5": percentile(values, 5, presorted=True),
        "p95": percentile(values, 95, presorted=True),
        "min": values[0],
        "max": values[-1],
        "stdev": stdev(values),
        "ci_over": "repetition means" if per_rep else "samples",
    }


PLACEMENTS = ("same-node", "cross-node", "cross-subnet")


def _placement_sort(placement: str) -> tuple[int, str]:
    return (PLACEMENTS.index(placement), "") if placement in PLACEMENTS else (len(PLACEMENTS), placement)


def _param_sort(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


RAW_SUFFIX = "_raw"


def is_raw(metric: str) -> bool:
    """A per-packet metric (many values per repetition), not one value per repetition."""
    return metric.endswith(RAW_SUFFIX)


def summarize(samples: Iterable[Sample], baseline: str | None = None, *, experiment: str | None = None,
              status: str = "complete") -> dict[str, Any]:
    """summary.json for these samples (see the module docstring for the definitions).

    Groups are keyed by (mode, measurement, placement, metric, param, param_value, unit) and listed
    by measurement and metric (in the order they first appear), placement (same-node, cross-node,
    cross-subnet, others), parameter value, then modes in the order they first appear. Raw per-packet
    metrics (`..._raw`, e.g. every round trip of a repetition) are not statistics over repetitions:
    they are left out here (the report draws their CDFs from samples.csv).
    """
    samples = [s for s in samples if not is_raw(s.metric)]
    groups: dict[GroupKey, list[Sample]] = defaultdict(list)
    mode_order: dict[str, int] = {}
    measurement_order: dict[str, int] = {}
    metric_order: dict[str, int] = {}
    invalid: dict[tuple[str, str, str], int] = defaultdict(int)
    for s in samples:
        mode_order.setdefault(s.mode, len(mode_order))
        if not math.isfinite(s.value):   # e.g. CPU per Gbit of a run that moved nothing
            invalid[(s.mode, s.measurement, s.metric)] += 1
            continue
        groups[group_key(s)].append(s)
        measurement_order.setdefault(s.measurement, len(measurement_order))
        metric_order.setdefault(s.metric, len(metric_order))

    stats = {key: describe(members) for key, members in groups.items()}
    reps = {key: replicates(members)[0] for key, members in groups.items()}
    ordered = sorted(groups, key=lambda k: (measurement_order[k[1]], metric_order[k[3]], _placement_sort(k[2]), k[4],
                                            _param_sort(k[5]), k[6], mode_order[k[0]]))

    out_groups = []
    for key in ordered:
        entry: dict[str, Any] = dict(zip(KEY_FIELDS, key, strict=False))
        entry.update(stats[key])
        entry["ratio_to_baseline"] = _ratio_entry(key, baseline, reps)
        out_groups.append(_finite(entry))

    warnings = ordering_warnings(stats, mode_order) + _single_run_warnings(stats)
    if baseline is not None and baseline not in mode_order:
        warnings.append(f"the baseline {baseline} has no samples (an interrupted run, or --only without it): "
                        f"no ratios to the baseline")
    warnings += [f"{mode}/{measurement}/{metric}: {count} sample(s) are not finite numbers (nan or inf) and are "
                 f"left out of the statistics" for (mode, measurement, metric), count in invalid.items()]
    return {
        "experiment": experiment if experiment is not None else (samples[0].experiment if samples else ""),
        "baseline": baseline,
        "status": status,
        "groups": out_groups,
        "warnings": warnings,
    }


def _ratio_entry(key: GroupKey, baseline: str | None, reps: dict[GroupKey, list[float]]) -> dict[str, Any] | None:
    if baseline is None:
        return None
    base_key = (baseline, *key[1:])
    if base_key not in reps:
        return None
    if key[0] == baseline:
        return {"value": 1.0, "ci95": [1.0, 1.0]}
    ratio = ratio_ci95(reps[key], reps[base_key])
    if ratio is None:
        return None
    return {"value": ratio.value, "ci95": list(ratio.ci95) if ratio.ci95 else None}


def _finite(obj: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _floor(low: float, group: dict[str, Any]) -> float:
    """An interval's lower end as shown: clipped at 0 when every sample of the group is >= 0."""
    return max(0.0, low) if group.get("min") is not None and group["min"] >= 0 else low


def _fmt(value: float) -> str:
    return f"{value:.4g}"


COMPANION = re.compile(r"^(?P<base>.+)_(?P<what>p\d{1,2}(\.\d+)?|mean|sender|raw)$")


def companion_of(metric: str, metrics: set[str] | frozenset[str]) -> tuple[str, str] | None:
    """(base, what) when `metric` accompanies another metric of the same measurement.

    rtt_tcp_rr_p99 -> ("rtt_tcp_rr", "p99") when rtt_tcp_rr exists; throughput_tcp_1_sender ->
    ("throughput_tcp_1", "sender"); rtt_icmp_raw -> ("rtt_icmp", "raw"). A runner records such
    per-repetition percentiles, sender-side rates and raw samples beside the metric they describe.
    """
    match = COMPANION.match(metric)
    if match and match.group("base") in metrics:
        return match.group("base"), match.group("what")
    return None


def _warning_rank(placement: str) -> int:
    return {"cross-node": 0, "cross-subnet": 1, "same-node": 2}.get(placement, 3)


def ordering_warnings(stats: dict[GroupKey, dict[str, Any]], mode_order: dict[str, int]) -> list[str]:
    """Neighbouring modes (ordered by mean) whose 95% intervals overlap, per comparison.

    A sweep (param set) is reported once per pair of modes, with how many of its values overlap.
    """
    metrics_of: dict[str, set[str]] = defaultdict(set)
    for key in stats:
        metrics_of[key[1]].add(key[3])
    by_comparison: dict[tuple[Any, ...], list[GroupKey]] = defaultdict(list)
    for key in stats:
        if companion_of(key[3], metrics_of[key[1]]) is None:   # p90/p99/mean/sender: the base metric speaks
            by_comparison[comparison_key(key)].append(key)
    # (measurement, placement, metric, param, unit, mode_a, mode_b) -> [param values with overlap], total
    overlaps: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    totals: dict[tuple[Any, ...], int] = defaultdict(int)
    examples: dict[tuple[Any, ...], str] = {}
    for comparison, keys in by_comparison.items():
        measurement, placement, metric, param, param_value, unit = comparison
        ranked = sorted((k for k in keys if stats[k]["ci95"] is not None), key=lambda k: stats[k]["mean"])
        for low, high in zip(ranked, ranked[1:], strict=False):
            pair = tuple(sorted((low[0], high[0]), key=lambda m: mode_order[m]))
            where = (measurement, placement, metric, param, unit, *pair)
            totals[where] += 1
            lo_ci, hi_ci = stats[low]["ci95"], stats[high]["ci95"]
            if hi_ci[0] <= lo_ci[1]:
                overlaps[where].append(param_value)
                examples.setdefault(where, (
                    f"{low[0]} {_fmt(stats[low]['mean'])} [{_fmt(_floor(lo_ci[0], stats[low]))}, {_fmt(lo_ci[1])}] vs "
                    f"{high[0]} {_fmt(stats[high]['mean'])} [{_fmt(_floor(hi_ci[0], stats[high]))}, "
                    f"{_fmt(hi_ci[1])}] {unit}"))
    warnings = []
    # cross-node and cross-subnet first: where the modes' data paths differ
    for where, values in sorted(overlaps.items(), key=lambda item: _warning_rank(item[0][1])):
        measurement, placement, metric, param, unit, mode_a, mode_b = where
        scope = f"{measurement}/{metric}" + (f" ({placement})" if placement else "")
        if param:
            warnings.append(
                f"{scope}: {mode_a} and {mode_b} have overlapping 95% intervals at {len(values)} of "
                f"{totals[where]} {param} values (e.g. {param}={values[0]}: {examples[where]}); "
                f"the data do not support ordering them there")
        else:
            warnings.append(
                f"{scope}: {mode_a} and {mode_b} have overlapping 95% intervals ({examples[where]}); "
                f"the data do not support the order shown")
    return warnings


def _single_run_warnings(stats: dict[GroupKey, dict[str, Any]]) -> list[str]:
    """Groups whose interval rests on one repetition, or which have no interval at all."""
    one_rep: dict[tuple[str, str], int] = defaultdict(int)
    no_ci: dict[tuple[str, str], int] = defaultdict(int)
    for key, st in stats.items():
        if st["ci95"] is None:
            no_ci[(key[0], key[1])] += 1
        elif st["ci_over"] == "samples":
            one_rep[(key[0], key[1])] += 1
    warnings = [f"{mode}/{measurement}: {count} group(s) have a single sample: no confidence interval"
                for (mode, measurement), count in no_ci.items()]
    warnings += [f"{mode}/{measurement}: {count} group(s) come from one repetition: their intervals cover "
                 f"the variation within one run only" for (mode, measurement), count in one_rep.items()]
    return warnings
