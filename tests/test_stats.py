"""lab.experiment.stats against values computed by hand (the working is in the comments)."""

from __future__ import annotations

import json
import math

import pytest

from lab.experiment import stats
from lab.experiment.results import Sample

# Student t 0.975 quantiles from a printed table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042,
           100: 1.984}


def sample(mode: str, value: float, rep: int = 0, metric: str = "rtt_tcp_rr", placement: str = "cross-node",
           param: str = "", param_value: object = "", unit: str = "us", measurement: str = "latency") -> Sample:
    return Sample("exp", mode, measurement, "default/a->default/b", placement, rep, metric, value, unit,
                  param, param_value)  # type: ignore[arg-type]


def test_percentiles_interpolate_linearly_like_numpy() -> None:
    # [1,2,3,4]: h = 3q; p50 -> h=1.5 -> 2.5; p5 -> h=0.15 -> 1.15; p95 -> h=2.85 -> 3 + 0.85 = 3.85
    assert stats.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert stats.percentile([4, 1, 3, 2], 5) == pytest.approx(1.15)
    assert stats.percentile([4, 1, 3, 2], 95) == pytest.approx(3.85)
    # [10..50]: h = 4q; p5 -> 0.2 -> 12; p95 -> 3.8 -> 48; p0/p100 are the extremes
    xs = [50, 10, 40, 20, 30]
    assert stats.percentile(xs, 5) == pytest.approx(12.0)
    assert stats.percentile(xs, 95) == pytest.approx(48.0)
    assert stats.percentile(xs, 0) == 10 and stats.percentile(xs, 100) == 50
    assert stats.median(xs) == 30
    assert stats.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_stdev_is_the_sample_standard_deviation() -> None:
    # [2,4,4,4,5,5,7,9]: mean 5, squared deviations sum 32, / 7 -> sqrt(32/7) = 2.13809
    assert stats.stdev([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7))
    assert stats.stdev([3.0]) is None


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df: int, expected: float) -> None:
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_closed_forms_and_symmetry() -> None:
    # df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2: (2p - 1) sqrt(2 / (4 p (1 - p)))
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)
    p = 0.975
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-9)
    assert stats.t_quantile(0.025, 7) == pytest.approx(-stats.t_quantile(0.975, 7))
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)  # the normal quantile


def test_mean_ci95_is_student_t() -> None:
    # [1,2,3,4,5]: mean 3, s = sqrt(2.5), se = s / sqrt(5) = 0.707107, t(4) = 2.776445 -> half 1.963243
    m, ci = stats.mean_ci95([1, 2, 3, 4, 5])
    assert m == 3
    assert ci == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-5)
    assert stats.mean_ci95([4.0]) == (4.0, None)


def test_fieller_ratio_interval() -> None:
    # a = [9,10,11]: mean 10, va = 1/3; b = [4.5,5,5.5]: mean 5, vb = 0.25/3 = 1/12; r = 2
    # Welch df at r: (va + r^2 vb)^2 / (va^2/2 + (r^2 vb)^2/2) = (2/3)^2 / (1/18 + 1/18) = 4 -> t = 2.776445
    # qa = b^2 - t^2 vb = 25 - 7.708647/12 = 24.357613
    # disc = (ab)^2 - qa (a^2 - t^2 va) = 2500 - 24.357613 * (100 - 2.569549) = 126.8274
    # interval = (ab -+ sqrt(disc)) / qa = (50 -+ 11.26177) / 24.357613 = [1.590405, 2.515083]
    ratio = stats.ratio_ci95([9, 10, 11], [4.5, 5, 5.5])
    assert ratio is not None and ratio.value == pytest.approx(2.0)
    assert ratio.ci95 == pytest.approx((1.590405, 2.515083), abs=2e-5)


def test_fieller_edge_cases() -> None:
    assert stats.ratio_ci95([1, 2], [0, 0]) is None                      # baseline mean 0
    assert stats.ratio_ci95([4, 4], [2, 2]) == stats.Ratio(2.0, (2.0, 2.0))  # no spread at all
    assert stats.ratio_ci95([4], [2, 2]) == stats.Ratio(2.0, None)       # one value: no interval
    unbounded = stats.ratio_ci95([10, 11, 12], [-1, 0.5, 2])            # baseline within noise of 0
    assert unbounded is not None and unbounded.ci95 is None


def test_interval_is_over_repetition_means_when_there_are_several() -> None:
    # rep 0: [1, 3] -> 2; rep 1: [5, 7] -> 6; two replicates: mean 4, s = sqrt(8), se = 2, t(1) = 12.7062
    group = [sample("m", v, rep) for v, rep in ((1, 0), (3, 0), (5, 1), (7, 1))]
    d = stats.describe(group)
    assert d["n"] == 4 and d["n_repetitions"] == 2 and d["ci_over"] == "repetition means"
    assert d["mean"] == 4
    assert d["ci95"] == pytest.approx([4 - 2 * 12.7062, 4 + 2 * 12.7062], abs=1e-3)
    # the distribution statistics describe all four samples: median 4, p5 = 1 + 0.15 * 2 = 1.3
    assert d["median"] == 4 and d["p5"] == pytest.approx(1.3) and d["min"] == 1 and d["max"] == 7
    assert d["stdev"] == pytest.approx(math.sqrt(20 / 3))


def test_summarize_groups_ratios_and_json() -> None:
    samples = []
    for rep, (host_gw, vxlan) in enumerate(((100, 150), (110, 160), (90, 140))):
        samples += [sample("host-gw", host_gw, rep), sample("vxlan", vxlan, rep)]
    samples.append(sample("vxlan", 9.5, 0, metric="throughput_tcp_1", unit="Gbit/s", measurement="throughput"))
    summary = stats.summarize(samples, baseline="host-gw", status="incomplete")
    json.dumps(summary, allow_nan=False)
    assert summary["experiment"] == "exp" and summary["baseline"] == "host-gw"
    assert summary["status"] == "incomplete"
    groups = {(g["mode"], g["metric"]): g for g in summary["groups"]}
    assert set(groups) == {("host-gw", "rtt_tcp_rr"), ("vxlan", "rtt_tcp_rr"), ("vxlan", "throughput_tcp_1")}
    for g in summary["groups"]:
        assert set(stats.KEY_FIELDS) <= set(g)
        assert {"n", "mean", "ci95", "median", "p5", "p95", "min", "max", "stdev", "ratio_to_baseline"} <= set(g)
    base, vx = groups[("host-gw", "rtt_tcp_rr")], groups[("vxlan", "rtt_tcp_rr")]
    # host-gw [100,110,90]: mean 100, s 10, se 5.7735, t(2) 4.302653 -> half 24.8414
    assert base["mean"] == 100 and base["ci95"] == pytest.approx([75.1586, 124.8414], abs=1e-3)
    assert base["ratio_to_baseline"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert vx["ratio_to_baseline"]["value"] == pytest.approx(1.5)
    lo, hi = vx["ratio_to_baseline"]["ci95"]
    assert lo < 1.5 < hi
    # a group the baseline has no counterpart for has no ratio; a single sample has no interval
    lone = groups[("vxlan", "throughput_tcp_1")]
    assert lone["ratio_to_baseline"] is None and lone["ci95"] is None and lone["stdev"] is None
    assert any("single sample" in w for w in summary["warnings"])
    # 100 +- 24.8 and 150 +- 24.8 do not overlap: no ordering warning
    assert not any("overlapping" in w for w in summary["warnings"])


def test_summarize_without_baseline_has_no_ratios() -> None:
    summary = stats.summarize([sample("a", 1, 0), sample("a", 2, 1)])
    assert summary["baseline"] is None and summary["groups"][0]["ratio_to_baseline"] is None
    missing = stats.summarize([sample("a", 1)], baseline="nope")   # e.g. interrupted before the baseline ran
    assert missing["groups"][0]["ratio_to_baseline"] is None
    assert any("baseline nope has no samples" in w for w in missing["warnings"])
    assert stats.summarize([])["groups"] == []


def test_summarize_leaves_out_non_finite_values_and_says_so() -> None:
    summary = stats.summarize([sample("a", 1.0, 0), sample("a", 3.0, 1), sample("a", float("nan"), 2),
                               sample("a", float("inf"), 3)])
    group = summary["groups"][0]
    assert group["n"] == 2 and group["mean"] == 2.0
    assert any("2 sample(s) are not finite" in w for w in summary["warnings"])
    json.dumps(summary, allow_nan=False)


def test_numeric_param_values_given_as_text_group_as_numbers() -> None:
    # a runner may pass param_value="1460" in memory; read back from samples.csv it is 1460
    as_text = stats.summarize([sample("a", 1.0, param="mss", param_value="1460"),
                               sample("a", 2.0, param="mss", param_value="96")])
    assert [g["param_value"] for g in as_text["groups"]] == [96, 1460]


def test_ordering_warning_when_intervals_overlap() -> None:
    samples = []
    for rep, (a, b, c) in enumerate(((100, 103, 200), (120, 125, 205), (80, 84, 195))):
        samples += [sample("ipip", a, rep), sample("vxlan", b, rep), sample("native", c, rep)]
    warnings = stats.summarize(samples)["warnings"]
    overlap = [w for w in warnings if "overlapping" in w]
    assert len(overlap) == 1, warnings
    assert "ipip" in overlap[0] and "vxlan" in overlap[0] and "native" not in overlap[0]
    assert "latency/rtt_tcp_rr (cross-node)" in overlap[0]


def test_ordering_warning_collapses_a_sweep() -> None:
    samples = []
    for mss in (536, 1460):
        for rep in range(3):
            # overlap at mss 536 only: a ~ 1.0 +- 0.1 vs b ~ 1.05 +- 0.1; at 1460 a 2 vs b 4
            samples.append(sample("a", (1.0 if mss == 536 else 2.0) + 0.1 * (rep - 1), rep, metric="throughput",
                                  param="mss", param_value=mss, unit="Gbit/s"))
            samples.append(sample("b", (1.05 if mss == 536 else 4.0) + 0.1 * (rep - 1), rep, metric="throughput",
                                  param="mss", param_value=mss, unit="Gbit/s"))
    overlap = [w for w in stats.summarize(samples)["warnings"] if "overlapping" in w]
    assert len(overlap) == 1 and "1 of 2 mss values" in overlap[0] and "mss=536" in overlap[0]


def test_summary_group_order_follows_parameters_numerically_and_modes_by_appearance() -> None:
    samples = [sample(mode, 1.0, 0, param="mss", param_value=v) for v in (1460, 96, 160) for mode in ("z", "a")]
    order = [(g["param_value"], g["mode"]) for g in stats.summarize(samples)["groups"]]
    assert order == [(96, "z"), (96, "a"), (160, "z"), (160, "a"), (1460, "z"), (1460, "a")]


def test_ordering_warnings_skip_companion_metrics_and_list_cross_node_first() -> None:
    samples = []
    for rep, (a, b) in enumerate(((100, 103), (120, 125), (80, 84))):
        for placement in ("same-node", "cross-node"):
            samples += [sample("ipip", a, rep, placement=placement), sample("vxlan", b, rep, placement=placement)]
            # the p99 companion of rtt_tcp_rr overlaps too, but the base metric already says so
            samples += [sample("ipip", a * 2, rep, metric="rtt_tcp_rr_p99", placement=placement),
                        sample("vxlan", b * 2, rep, metric="rtt_tcp_rr_p99", placement=placement)]
    overlap = [w for w in stats.summarize(samples)["warnings"] if "overlapping" in w]
    assert len(overlap) == 2 and not any("p99" in w for w in overlap), overlap
    assert "(cross-node)" in overlap[0] and "(same-node)" in overlap[1]
    assert stats.companion_of("rtt_tcp_rr_p99", {"rtt_tcp_rr"}) == ("rtt_tcp_rr", "p99")
    assert stats.companion_of("throughput_tcp_1_sender", {"throughput_tcp_1"}) == ("throughput_tcp_1", "sender")
    assert stats.companion_of("rtt_tcp_rr_p99", {"rtt_udp_rr"}) is None
