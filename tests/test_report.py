"""`lab report` on synthetic results directories: figure files, the self-contained HTML in a real headless
Chromium, Markdown, the published orderings, --compare and the CLI.

The expected figures, labels and verdicts follow from the data tests/report_data.py writes (which
measurements, which modes, which IPIP implementation), not from the report code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import browser
import matplotlib
import numpy as np
import pytest
from PIL import Image
from report_data import make_results, make_runner_style_results

from lab.report import render
from lab.report.figures import STYLE, draw_all
from lab.report.orderings import (
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    _latency_order,  # the verdict on hand-made groups
    mode_class,
    verdicts,
)
from lab.report.runs import load_run

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# what the synthetic run holds -> the figures it must get (one bar chart per measurement, a CDF of
# the raw latency samples, a sweep per swept parameter, a timeline per measurement with time series)
FULL_FIGURES = {
    "bars-latency", "cdf-latency", "bars-throughput", "bars-connrate", "bars-cpu", "bars-mtu", "sweep-mtu-mss",
    "sweep-policy-scale-policies", "sweep-bgp-convergence-nodes", "timeline-bgp-convergence",
    "migration-outage", "migration-trace", "percentiles-latency",
}
# figures in which calico-ipip (userspace IPIP in the synthetic environment) appears
IPIP_FIGURES = {"bars-latency", "cdf-latency", "bars-throughput", "bars-connrate", "bars-cpu", "bars-mtu",
                "sweep-mtu-mss", "percentiles-latency"}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_results(tmp_path_factory.mktemp("full") / "20261130T120000Z", reps=3, rtt_samples=40)
    return render(run)


def _figures(html: Path) -> dict[str, tuple[Path, Path]]:
    directory = html.parent / "figures"
    return {p.stem: (p, p.with_suffix(".svg")) for p in directory.glob("*.png")}


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as image:
        image.load()
        assert image.width >= 300 and image.height >= 200, f"{path}: {image.size}"
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 8, f"{path} is (nearly) a single colour"


def _svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", f"{path}: root element {root.tag}"
    return ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action") and value is not None:
                self.refs.append((tag, name, value))


# ---- figures ----------------------------------------------------------------------------------------

def test_every_figure_exists_as_valid_png_and_svg(full: Path) -> None:
    figures = _figures(full)
    assert set(figures) == FULL_FIGURES
    for name, (png, svg) in figures.items():
        _assert_png(png)
        assert svg.exists(), f"{name}: no SVG"
        assert _svg_texts(svg), f"{svg}: no text (title, axes, legend)"


def test_figures_name_the_emulated_mode_everywhere(full: Path) -> None:
    for name in IPIP_FIGURES:
        texts = _svg_texts(full.parent / "figures" / f"{name}.svg")
        mentions = [t for t in texts if "calico-ipip" in t]
        assert mentions, f"{name}: calico-ipip is not in the figure"
        assert all("calico-ipip (userspace IPIP)" in t for t in mentions), f"{name}: unlabelled {mentions}"
    for name in FULL_FIGURES - IPIP_FIGURES:
        assert not any("calico-ipip" in t for t in _svg_texts(full.parent / "figures" / f"{name}.svg")), name


def test_figures_have_titles_units_and_legends(full: Path) -> None:
    texts = _svg_texts(full.parent / "figures" / "bars-latency.svg")
    joined = " | ".join(texts)
    for expected in ("Latency", "µs", "same-node", "cross-node", "flannel-host-gw", "flannel-vxlan", "calico-bgp"):
        assert expected in joined, f"bars-latency lacks {expected!r}: {joined[:400]}"
    sweep = " | ".join(_svg_texts(full.parent / "figures" / "sweep-mtu-mss.svg"))
    assert "TCP MSS (bytes)" in sweep and "Gbit/s" in sweep
    timeline = " | ".join(_svg_texts(full.parent / "figures" / "timeline-bgp-convergence.svg"))
    assert "time (s)" in timeline and "calico-mesh" in timeline and "calico-rr" in timeline
    assert "Established" in timeline and "routes" in timeline


def test_only_figures_with_data(tmp_path: Path) -> None:
    run = make_results(tmp_path / "run", kinds=("latency",), reps=2, rtt_samples=12)
    html = render(run)
    assert set(_figures(html)) == {"bars-latency", "cdf-latency", "percentiles-latency"}
    run = make_results(tmp_path / "tput", kinds=("throughput",), reps=2, timelines=False)
    assert set(_figures(render(run))) == {"bars-throughput"}


# ---- HTML -------------------------------------------------------------------------------------------

def test_html_is_self_contained(full: Path) -> None:
    text = full.read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    images = [value for tag, name, value in parser.refs if tag == "img" and name == "src"]
    assert len(images) == len(FULL_FIGURES)
    assert all(v.startswith("data:image/png;base64,") for v in images)
    for tag, name, value in parser.refs:
        assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:60]!r}> leaves the file"
    assert "script" not in parser.tags
    without_data = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(https?|ftp|file):", without_data, re.I), "an external URL in the HTML"
    assert not re.search(r"url\(|@import", without_data), "CSS that loads something"


def test_html_states_orderings_caveats_environment(full: Path) -> None:
    text = full.read_text(encoding="utf-8")
    for expected in ("native &lt; IPIP &lt; VXLAN", "MTU dominates", "calico-ipip (userspace IPIP)",
                     "Caveats", "Environment", "6.18.0-lab", "iperf3", "Summary tables", "Mean [95% CI]"):
        assert expected in text, expected


def test_html_renders_in_headless_chromium(full: Path, tmp_path: Path) -> None:
    # chromium is installed by scripts/install-deps.sh --test: its absence is a failure, not a skip
    assert browser.chromium_binary(), "chromium is missing: run scripts/install-deps.sh --test"
    page = browser.open_page(full, tmp_path)
    assert page.alive_pids == [], "chromium left processes behind"
    assert page.console_errors == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    assert len(page.images) == len(FULL_FIGURES)
    for image in page.images:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
    with Image.open(page.screenshot) as shot:
        pixels = np.asarray(shot.convert("RGB"))
    assert pixels.shape[0] > 2000, "the page is shorter than its figures"
    assert len(np.unique(pixels[::7, ::7].reshape(-1, 3), axis=0)) > 50, "the screenshot is blank"
    dom = page.dom.read_text(encoding="utf-8")
    assert "Published orderings" in dom and "Latency: mean per mode and placement" in dom


# ---- Markdown ---------------------------------------------------------------------------------------

def test_markdown_next_to_html_links_existing_pngs(full: Path) -> None:
    md = full.with_suffix(".md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {Path(link).stem for link in links} == FULL_FIGURES
    for link in links:
        assert (full.parent / link).is_file(), link
    assert "| Published ordering |" in md and "calico-ipip (userspace IPIP)" in md


# ---- published orderings ----------------------------------------------------------------------------

def _verdicts(directory: Path) -> dict[str, object]:
    return {v.claim: v for v in verdicts([load_run(directory)])}


def test_orderings_reproduced_with_kernel_ipip(tmp_path: Path) -> None:
    # synthetic cross-node RR latency: native 38-40 < IPIP 46 < VXLAN 52-54 us (the reference's order)
    found = _verdicts(make_results(tmp_path / "k", kinds=("latency", "mtu"), ipip="kernel", reps=8, rtt_samples=200))
    tcp = found["native < IPIP < VXLAN for cross-node request/response latency (TCP request/response RTT p50)"]
    assert tcp.status == REPRODUCED, tcp.detail
    mtu = next(v for claim, v in found.items() if claim.startswith("MTU dominates"))
    assert mtu.status == REPRODUCED, mtu.detail


def test_orderings_do_not_count_userspace_ipip(tmp_path: Path) -> None:
    found = _verdicts(make_results(tmp_path / "u", kinds=("latency",), ipip="userspace", reps=4, rtt_samples=40))
    tcp = found["native < IPIP < VXLAN for cross-node request/response latency (TCP request/response RTT p50)"]
    # without the userspace IPIP mode only native < VXLAN can be judged; with it the order breaks
    assert tcp.status == PARTLY, tcp.detail
    assert "Not counted: calico-ipip (userspace IPIP)" in tcp.detail
    assert f"counting them: {NOT_REPRODUCED}" in tcp.detail
    mtu = next(v for claim, v in found.items() if claim.startswith("MTU dominates"))
    assert mtu.status == NOT_MEASURED


def test_orderings_count_ebpf_ipip_and_name_it(tmp_path: Path) -> None:
    # eBPF IPIP runs in the kernel's data path at kernel speed (same synthetic figures as kernel IPIP):
    # it is judged with the kernel modes, and the verdict names it
    found = _verdicts(make_results(tmp_path / "e", kinds=("latency", "mtu"), ipip="ebpf", reps=8, rtt_samples=200))
    tcp = found["native < IPIP < VXLAN for cross-node request/response latency (TCP request/response RTT p50)"]
    assert tcp.status == REPRODUCED, tcp.detail
    assert "calico-ipip (eBPF IPIP)" in tcp.detail and "Not counted" not in tcp.detail, tcp.detail
    mtu = next(v for claim, v in found.items() if claim.startswith("MTU dominates"))
    assert mtu.status == REPRODUCED and "Not counted" not in mtu.detail, mtu.detail


def test_orderings_not_measured_without_latency(tmp_path: Path) -> None:
    found = _verdicts(make_results(tmp_path / "t", kinds=("throughput",), reps=2))
    assert [v.status for v in found.values()] == [NOT_MEASURED, NOT_MEASURED]


# ---- compare, incomplete runs, CLI ------------------------------------------------------------------

def test_compare_puts_two_runs_side_by_side(tmp_path: Path) -> None:
    a = make_results(tmp_path / "a" / "20261130T100000Z", kinds=("latency", "throughput"), reps=3, rtt_samples=20)
    b = make_results(tmp_path / "b" / "20261130T110000Z", kinds=("latency", "throughput"), reps=3, rtt_samples=20,
                     speed=2.0, seed=7)
    html = render(a, compare=b)
    assert html == a / "compare-20261130T110000Z" / "report.html"
    assert (a / "report.html").exists() is False, "--compare must not overwrite the run's own report"
    text = html.read_text(encoding="utf-8")
    assert "Run against run" in text and "20261130T100000Z" in text and "20261130T110000Z" in text
    assert "Throughput: [B] against [A]" in text
    legend = " | ".join(_svg_texts(html.parent / "figures" / "bars-latency.svg"))
    assert "flannel-vxlan [A]" in legend and "flannel-vxlan [B]" in legend
    assert "calico-ipip (userspace IPIP) [B]" in legend
    # run B is twice as fast: every latency ratio B/A is about 0.5 and called a difference
    latency = text[text.index("<h3>Latency: [B] against [A]</h3>"):]
    latency = latency[:latency.index("</table>")]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>cross-node</td><td>TCP request/response RTT p50 \(µs\)</td><td></td>"
                      r"(?:<td[^>]*>[^<]*</td>){2}<td[^>]*>([0-9.]+)[^<]*</td><td>([^<]*)</td></tr>", latency)
    assert len(rows) == 5, rows
    for mode, ratio, verdict in rows:
        assert 0.4 < float(ratio) < 0.6 and verdict == "differs", (mode, ratio, verdict)


def test_incomplete_run_without_summary(tmp_path: Path) -> None:
    run = make_results(tmp_path / "run", kinds=("throughput",), reps=2, status="incomplete")
    (run / "summary.json").unlink()
    html = render(run, output=tmp_path / "out" / "r.html")
    assert html == tmp_path / "out" / "r.html" and (tmp_path / "out" / "r.md").exists()
    text = html.read_text(encoding="utf-8")
    assert "This run is incomplete" in text and "interrupted (SIGINT) during calico-vxlan" in text
    assert "bars-throughput" in text


def test_results_parent_directory_renders_newest_run(tmp_path: Path) -> None:
    make_results(tmp_path / "exp" / "20261130T100000Z", kinds=("throughput",), reps=2, seed=1)
    newest = make_results(tmp_path / "exp" / "20261130T110000Z", kinds=("throughput",), reps=2, seed=2)
    assert render(tmp_path / "exp") == newest / "report.html"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_cli_report(tmp_path: Path) -> None:
    run = make_results(tmp_path / "run", kinds=("throughput",), reps=2)
    out = tmp_path / "elsewhere" / "throughput.html"
    result = _cli("report", str(run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and out.exists() and (out.parent / "figures" / "bars-throughput.png").exists()


@pytest.mark.parametrize("args,message", [
    (["report", "/nonexistent/results"], "no such results directory"),
    (["report", "{run}", "-o", "{tmp}/report.pdf"], "the report is an HTML file"),
    (["report", "{empty}"], "no samples.csv"),
    (["report", "{bad}"], "samples.csv:3: value: 'fast' is not a number"),
])
def test_cli_report_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    run = make_results(tmp_path / "run", kinds=("throughput",), reps=1)
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (run / "samples.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[7] = "fast"   # the value column of the second sample (line 3 of the file)
    lines[2] = ",".join(cells)
    (bad / "samples.csv").write_text("\n".join(lines) + "\n")
    argv = [a.format(run=run, tmp=tmp_path, empty=tmp_path / "empty", bad=bad) for a in args]
    result = _cli(*argv)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("lab: error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_summary_json_written_by_the_run_is_used(tmp_path: Path) -> None:
    run = make_results(tmp_path / "run", kinds=("throughput",), reps=2)
    summary = json.loads((run / "summary.json").read_text())
    summary["warnings"].append("a warning only summary.json knows")
    (run / "summary.json").write_text(json.dumps(summary))
    assert "a warning only summary.json knows" in render(run).read_text(encoding="utf-8")


# ---- a directory shaped like the runner's ---------------------------------------------------------

def test_runner_shaped_results(tmp_path: Path) -> None:
    html = render(make_runner_style_results(tmp_path / "run"))
    # per-repetition percentiles (rtt_*, _p90, _p99) are not raw samples: a percentile figure, no CDF
    assert set(_figures(html)) == {"bars-latency", "percentiles-latency", "bars-throughput", "bars-cpu",
                                   "sweep-mtu-mss"}
    latency = " | ".join(_svg_texts(html.parent / "figures" / "bars-latency.svg"))
    assert "TCP request/response" in latency and "p99" not in latency and "mean" not in latency.split("|")[0]
    throughput = " | ".join(_svg_texts(html.parent / "figures" / "bars-throughput.svg"))
    assert "sender" not in throughput and "TCP retransmits, 1 stream" in throughput
    percentiles = " | ".join(_svg_texts(html.parent / "figures" / "percentiles-latency.svg"))
    assert "p50" in percentiles and "p90" in percentiles and "p99" in percentiles
    for name in ("bars-latency", "percentiles-latency", "bars-throughput", "bars-cpu", "sweep-mtu-mss"):
        texts = [t for t in _svg_texts(html.parent / "figures" / f"{name}.svg") if "calico-ipip" in t]
        assert texts and all("(userspace IPIP)" in t for t in texts), (name, texts)
        assert not any("userspace-tun" in t for t in texts)
    text = html.read_text(encoding="utf-8")
    # nested environment objects are shown field by field; the NaN CPU sample is left out and said so
    assert "machine.kernel" in text and "6.18.0-lab" in text and "lab.commit" in text
    assert "not finite numbers" in text
    assert "Runner-shaped synthetic run" in text


def test_cross_subnet_modes_count_as_native_within_a_subnet(tmp_path: Path) -> None:
    run = load_run(make_runner_style_results(tmp_path / "run"))
    # calico-ipip-crosssubnet encapsulates only between subnets (Calico's CrossSubnet): between two
    # nodes of one subnet its path is plain routing, whatever implements its tunnel
    assert mode_class(run, "calico-ipip-crosssubnet", "cross-node") == "native"
    assert mode_class(run, "calico-ipip-crosssubnet", "cross-subnet") == "IPIP"
    assert mode_class(run, "calico-ipip", "cross-node") == "IPIP"
    assert mode_class(run, "flannel-hostgw", "cross-node") == "native"
    assert mode_class(run, "calico-bgp", "cross-node") == "native"
    assert mode_class(run, "flannel-vxlan", "cross-node") == "VXLAN"
    tcp = next(v for v in verdicts([run]) if v.claim.endswith("(TCP request/response RTT p50)"))
    native = tcp.detail.split("calico: observed")[1].split("native: ")[1].split(";")[0]
    assert "calico-ipip-crosssubnet" in native, tcp.detail
    assert "Not counted: calico-ipip (userspace IPIP)" in tcp.detail
    assert tcp.status == PARTLY, tcp.detail   # native < VXLAN holds; the only IPIP mode ran in userspace


# ---- review fixes: migration, data-path captions, warnings, whiskers ------------------------------

def test_migration_orders_side_by_side_on_one_time_axis(full: Path) -> None:
    bars = " | ".join(_svg_texts(full.parent / "figures" / "migration-outage.svg"))
    assert "seed order" in bars and "safe order" in bars and "Outage (s)" in bars and "Lost (%)" in bars
    trace = _svg_texts(full.parent / "figures" / "migration-trace.svg")
    joined = " | ".join(trace)
    assert "seed order: probes lost" in joined and "safe order: probes lost" in joined
    # the steps of both orders (tests/report_data.py: the kind's ORDERS) as labelled vertical lines
    for step in ("mesh-off", "label", "rr-node", "bgppeer"):
        assert sum(t == step for t in trace) == 2, (step, trace)
    assert "time from the first step (s)" in joined


def test_no_non_datapath_key_in_a_label(full: Path) -> None:
    text = full.read_text(encoding="utf-8")
    svgs = " ".join(" | ".join(_svg_texts(p)) for p in (full.parent / "figures").glob("*.svg"))
    # the environment records rr_migration_steps and bgp for calico-bgp-mesh: context, not a data path
    for leak in ("rr_migration_steps", "label,rr-node", "BIRD mesh bgp", "calico-bgp-mesh ("):
        assert leak not in svgs, leak
    assert "calico-bgp-mesh (" not in text


def test_modes_captioned_with_data_path_and_route_programming(full: Path) -> None:
    text = full.read_text(encoding="utf-8")
    assert ("calico-bgp — data path: veth → node routing table → underlay, no encapsulation; routes: BIRD → "
            "table 201 → lab route agent → main") in text
    assert "lab&#x27;s route agent" in text or "lab's route agent" in text


def test_headline_warnings_apart_from_the_rest(tmp_path: Path) -> None:
    html = render(make_results(tmp_path / "run", kinds=("latency", "throughput"), reps=2, rtt_samples=12))
    text = html.read_text(encoding="utf-8")
    head = text[text.index("Statistical warnings on the headline metrics"):]
    listed, folded = head.split("<details>", 1) if "<details>" in head else (head, "")
    listed = listed[:listed.index("</ul>")]
    assert "_p90" not in listed and "_p99" not in listed and "_raw" not in listed and "sender" not in listed
    assert "retransmits" not in listed


def _rr(mode: str, mean: float, low: float, high: float) -> dict[str, object]:
    return {"mode": mode, "placement": "cross-node", "metric": "rtt_tcp_rr", "unit": "us", "param": "",
            "param_value": "", "mean": mean, "ci95": [low, high]}


@pytest.mark.parametrize("groups,status", [
    # Calico BGP < IPIP < VXLAN, intervals apart: reproduced
    ([("calico-bgp", 40, 38, 42), ("calico-ipip", 46, 44, 48), ("calico-vxlan", 54, 52, 56)], REPRODUCED),
    # BGP and IPIP overlap: the order of the means holds but the data do not support it
    ([("calico-bgp", 40, 30, 50), ("calico-ipip", 46, 41, 51), ("calico-vxlan", 54, 52, 56)], INCONCLUSIVE),
    # IPIP below BGP with overlapping intervals: still inconclusive, not a refutation
    ([("calico-bgp", 46, 41, 51), ("calico-ipip", 40, 30, 50), ("calico-vxlan", 54, 52, 56)], INCONCLUSIVE),
    # VXLAN clearly below IPIP: not reproduced
    ([("calico-bgp", 40, 38, 42), ("calico-ipip", 60, 58, 62), ("calico-vxlan", 50, 48, 52)], NOT_REPRODUCED),
    # flannel host-gw far below Calico's IPIP says nothing about Calico: judged within one CNI
    ([("flannel-host-gw", 20, 19, 21), ("calico-ipip", 46, 44, 48), ("calico-vxlan", 54, 52, 56)], PARTLY),
])
def test_latency_verdict_within_one_cni_with_intervals(tmp_path: Path, groups: list[tuple], status: str) -> None:
    run = load_run(make_results(tmp_path / "k", kinds=("throughput",), ipip="kernel", reps=2, timelines=False))
    found, detail, _ = _latency_order(run, [_rr(*g) for g in groups])
    assert found == status, detail


@pytest.mark.parametrize("reps", [2, 3, 6])
def test_no_negative_axis_for_positive_metrics(tmp_path: Path, reps: int) -> None:
    run = load_run(make_results(tmp_path / "run", kinds=("latency", "throughput", "connrate", "cpu", "rr-migration"),
                                reps=reps, rtt_samples=12, seed=reps))
    with matplotlib.rc_context(STYLE):  # type: ignore[arg-type]
        for drawn in draw_all([run]):
            drawn.figure.canvas.draw()
            for ax in drawn.figure.axes:
                if ax.get_visible():
                    assert ax.get_ylim()[0] >= 0, (drawn.name, ax.get_title())
                    if ax.get_xlabel() and "time from" not in ax.get_xlabel():
                        assert ax.get_xlim()[0] >= 0, (drawn.name, ax.get_title(), ax.get_xlim())
            caption = drawn.caption
            if reps < 5 and drawn.name.startswith(("bars-", "percentiles-", "migration-outage")):
                assert "range (min–max) of the repetitions" in caption, (drawn.name, caption)
            drawn.figure.clear()


def test_compare_with_itself_is_refused(tmp_path: Path) -> None:
    run = make_results(tmp_path / "run", kinds=("throughput",), reps=2)
    result = _cli("report", str(run), "--compare", str(run / "."))
    assert result.returncode == 2 and "itself" in result.stderr, result.stderr


def test_notes_once_as_paragraphs(full: Path) -> None:
    text = full.read_text(encoding="utf-8")
    assert text.count("Synthetic, plausible data for tests and benchmarks") == 1
