"""`lab experiment run` end to end over two small topologies, through the real CLI, and an interrupted run.

Expected values come from the topologies and the results contract (docs/experiments.md), never from
the runner: the pairs must be pods the lab really had (its own `lab status` record, kept in
environment.json), placed as the placement says; nothing of the run's labs may be left afterwards.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root

HEADER = ["experiment", "mode", "measurement", "pair", "placement", "repetition", "metric", "value", "unit",
          "param", "param_value"]
UNITS = {"ms", "us", "Gbit/s", "bytes", "conn/s", "cpu_s_per_Gbit", "cpu_s", "kB", "s", "count", "MB", "%"}
GROUP_KEYS = {"mode", "measurement", "placement", "metric", "param", "param_value", "unit", "n", "mean", "ci95",
              "median", "p5", "p95", "min", "max", "stdev", "ratio_to_baseline"}

EXPERIMENT = """\
name: e2e
title: two small topologies
baseline: hostgw
repetitions: 2
warmup: 1
modes:
  - {name: hostgw, topology: flannel-hostgw}
  - {name: calico-vxlan, topology: calico-vxlan}
measurements:
  - {kind: latency, protocols: [icmp, tcp, udp], duration: 3}
  - {kind: throughput, tests: [tcp_1, udp], duration: 3}
  - {kind: mtu, tests: [path_mtu, overhead, mss], mss: [536, 1460]}
  - {kind: connrate, duration: 2}
quick:
  repetitions: 2
  warmup: 0
  measurements:
    latency: {protocols: [icmp, tcp], duration: 1, count: 10}
    throughput: {tests: [tcp_1], duration: 1}
    mtu: {tests: [path_mtu, overhead], mss: [1460]}
    connrate: {duration: 0.5}
"""
# what each mode's topology says (topologies/*.yaml): the pod MTU and the bytes its encapsulation adds
EXPECTED = {"hostgw": {"path_mtu": 1500, "encap_overhead": 0}, "calico-vxlan": {"path_mtu": 1450, "encap_overhead": 50}}
TOPOLOGY = {"hostgw": "flannel-hostgw", "calico-vxlan": "calico-vxlan"}
ICMP_COUNT = 10          # the quick profile's latency count: one raw round trip per echo
RAW_CAP = 1000           # docs/experiments.md: at most 1000 raw round trips per protocol and repetition


def lab_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def only_directory(root: Path) -> Path:
    runs = [p for p in (root / "e2e").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def leftovers(labs: list[str]) -> list[str]:
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    found = [n for n in names if any(n.startswith(f"{lab}.") for lab in labs)]
    found += [f"/run/lab/{lab}" for lab in labs if os.path.exists(f"/run/lab/{lab}")]
    return found


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    path = root / "e2e.yaml"
    path.write_text(EXPERIMENT)
    process = lab_cli("experiment", "run", str(path), "--quick", "--out", str(root / "results"))
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    return only_directory(root / "results"), out


def read_samples(directory: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(directory / "samples.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [dict(zip(header, row, strict=False)) for row in reader]


def test_results_directory_has_the_contract_files(quick_run):
    directory, out = quick_run
    assert str(directory) in out
    for name in ("experiment.yaml", "resolved.json", "samples.csv", "summary.json", "environment.json"):
        assert (directory / name).is_file(), name
    assert directory.name[:8].isdigit() and directory.name.endswith("Z")


def test_samples_csv_schema(quick_run):
    directory, _ = quick_run
    header, rows = read_samples(directory)
    assert header == HEADER
    assert rows
    for row in rows:
        assert row["experiment"] == "e2e"
        assert row["mode"] in ("hostgw", "calico-vxlan")
        assert row["measurement"] in ("latency", "throughput", "mtu", "connrate")
        assert not row["metric"].endswith("_raw") or row["measurement"] == "latency", row
        assert row["placement"] in ("same-node", "cross-node")
        assert int(row["repetition"]) in (0, 1)          # warm-up runs are not written
        assert math.isfinite(float(row["value"]))
        assert row["unit"] in UNITS, row
        assert (row["param"] == "") == (row["param_value"] == "")
    # each (mode, measurement, placement, metric) has exactly the two repetitions
    seen: dict[tuple, list[int]] = {}
    for row in rows:
        if not row["metric"].endswith("_raw"):
            seen.setdefault((row["mode"], row["measurement"], row["placement"], row["metric"], row["param_value"]),
                            []).append(int(row["repetition"]))
    assert all(sorted(reps) == [0, 1] for reps in seen.values()), seen
    metrics = {row["metric"] for row in rows}
    assert {"rtt_icmp", "rtt_tcp_rr", "throughput_tcp_1", "path_mtu", "conn_rate"} <= metrics


def test_raw_round_trips_are_written_per_repetition(quick_run):
    directory, _ = quick_run
    _, rows = read_samples(directory)
    for mode in ("hostgw", "calico-vxlan"):
        for placement in ("same-node", "cross-node"):
            for repetition in ("0", "1"):
                mine = [r for r in rows
                        if (r["mode"], r["placement"], r["repetition"]) == (mode, placement, repetition)]
                icmp = [float(r["value"]) for r in mine if r["metric"] == "rtt_icmp_raw"]
                units = [r["unit"] for r in mine if r["metric"] == "rtt_icmp_raw"]
                assert len(icmp) == ICMP_COUNT and all(v > 0 and r_unit == "us"
                                                       for v, r_unit in zip(icmp, units, strict=True))
                tcp = sorted(float(r["value"]) for r in mine if r["metric"] == "rtt_tcp_rr_raw")
                assert 0 < len(tcp) <= RAW_CAP, (mode, placement, len(tcp))
                # the raw round trips are the same distribution the tool summarised as its median
                median = next(float(r["value"]) for r in mine if r["metric"] == "rtt_tcp_rr")
                assert 0.5 * median <= tcp[len(tcp) // 2] <= 2 * median, (median, tcp[len(tcp) // 2])
                icmp_median = next(float(r["value"]) for r in mine if r["metric"] == "rtt_icmp")
                assert min(icmp) <= icmp_median <= max(icmp)


def test_connrate_rows_per_repetition(quick_run):
    directory, _ = quick_run
    _, rows = read_samples(directory)
    for mode in ("hostgw", "calico-vxlan"):
        rates = [float(r["value"]) for r in rows if r["mode"] == mode and r["metric"] == "conn_rate"]
        assert len(rates) == 2 * 2 and all(rate > 0 for rate in rates), rates    # 2 placements x 2 repetitions


def test_environment_captions_every_mode_from_its_topology(quick_run):
    from expect_experiment import datapath_words, route_programming_words
    directory, _ = quick_run
    environment = json.loads((directory / "environment.json").read_text())
    for name, topology in TOPOLOGY.items():
        mode = environment["modes"][name]
        for word in route_programming_words(topology):
            assert word in mode["route_programming"], (name, mode["route_programming"])
        for word in datapath_words(topology, mode["implementations"]["ipip"]):
            assert word in mode["datapath"], (name, mode["datapath"])


def test_summary_json_schema(quick_run):
    directory, _ = quick_run
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["experiment"] == "e2e"
    assert summary["status"] == "complete"
    assert summary["baseline"] == "hostgw"
    assert isinstance(summary["warnings"], list)
    assert summary["groups"]
    for group in summary["groups"]:
        assert GROUP_KEYS <= set(group), set(group) ^ GROUP_KEYS
        assert not group["metric"].endswith("_raw")      # per-packet rows are not statistics over repetitions
        assert group["n"] == 2
        assert group["min"] <= group["median"] <= group["max"]


def test_every_sample_names_a_mode_and_pair_the_lab_had(quick_run):
    directory, _ = quick_run
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["status"] == "complete"
    _, rows = read_samples(directory)
    for row in rows:
        mode = environment["modes"][row["mode"]]
        pods = {p["key"]: p for p in mode["pods"]}
        nodes = {n["name"]: n for n in mode["nodes"]}
        src, dst = row["pair"].split("->")
        assert src in pods and dst in pods, row
        same_node = pods[src]["node"] == pods[dst]["node"]
        same_network = nodes[pods[src]["node"]]["network"] == nodes[pods[dst]["node"]]["network"]
        assert same_node == (row["placement"] == "same-node"), row
        assert same_network, row
        assert mode["pairs"][row["placement"]] == row["pair"]


def test_figures_match_the_topologies(quick_run):
    directory, _ = quick_run
    _, rows = read_samples(directory)
    for row in rows:
        if row["metric"] in ("path_mtu", "encap_overhead") and row["placement"] == "cross-node":
            assert float(row["value"]) == EXPECTED[row["mode"]][row["metric"]], row
    overheads = [r for r in rows if r["metric"] == "encap_overhead"]
    assert overheads and all(r["placement"] == "cross-node" for r in overheads)


def test_environment_records_tools_and_implementations(quick_run):
    directory, _ = quick_run
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["machine"]["kernel"] == os.uname().release
    assert "iperf3" in environment["tools"] and "ping" in environment["tools"]
    for _name, mode in environment["modes"].items():
        implementations = mode["implementations"]
        assert "ipip" in implementations and implementations["ipip"] is None   # neither mode uses IPIP
        assert implementations["latency_tool"] in ("sockperf", "builtin")
        assert implementations["latency_tool"] == ("sockperf" if "sockperf" in environment["tools"] else "builtin")
    assert environment["modes"]["calico-vxlan"]["cni"] == "calico"
    assert environment["modes"]["hostgw"]["mode"] == "host-gw"


def test_no_lab_is_left(quick_run):
    directory, _ = quick_run
    environment = json.loads((directory / "environment.json").read_text())
    labs = [mode["lab"] for mode in environment["modes"].values()]
    assert len(labs) == 2
    assert leftovers(labs) == []


def test_the_python_api_loads_the_same_results(quick_run):
    from lab.experiment.results import Results
    directory, _ = quick_run
    results = Results.load(directory)
    _, rows = read_samples(directory)
    assert len(results.samples) == len(rows)
    assert results.status == "complete"
    assert results.summary["experiment"] == "e2e"


def test_sigint_mid_run_keeps_partial_results_and_takes_labs_down(tmp_path):
    path = tmp_path / "e2e.yaml"
    path.write_text(EXPERIMENT)     # the full profile: long enough to interrupt in the middle
    process = lab_cli("experiment", "run", str(path), "--out", str(tmp_path / "results"))
    samples = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        runs = list((tmp_path / "results" / "e2e").glob("*/samples.csv")) if (tmp_path / "results").exists() else []
        if runs and len(runs[0].read_text().splitlines()) > 1:
            samples = runs[0]
            break
        time.sleep(0.2)
    assert samples is not None, "no sample was written"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    directory = samples.parent
    environment = json.loads((directory / "environment.json").read_text())
    summary = json.loads((directory / "summary.json").read_text())
    assert environment["status"] == "incomplete" and environment["reason"] == "interrupted"
    assert summary["status"] == "incomplete"
    _, rows = read_samples(directory)
    assert rows, "the samples measured before the interrupt are kept"
    labs = [mode["lab"] for mode in environment["modes"].values()]
    assert labs
    run_id = labs[0].split("-", 1)[0]
    assert leftovers([f"{run_id}-hostgw", f"{run_id}-calico-vxlan"]) == []


FAILING = """\
name: e2e
ready_timeout: 5
repetitions: 1
warmup: 0
modes:
  - {name: hostgw, topology: flannel-hostgw, placements: [cross-node]}
  # topologies/flannel-hostgw-crosssubnet.yaml: host-gw cannot route across racks, so the cross-subnet
  # pair never answers and the run must stop there
  - {name: hostgw-racks, topology: flannel-hostgw-crosssubnet, placements: [cross-subnet]}
measurements:
  - {kind: latency, protocols: [icmp], count: 5}
"""


def test_a_failing_mode_stops_the_run_with_partial_results_and_no_lab(tmp_path):
    path = tmp_path / "e2e.yaml"
    path.write_text(FAILING)
    process = lab_cli("experiment", "run", str(path), "--out", str(tmp_path / "results"))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, out + err
    directory = only_directory(tmp_path / "results")
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["status"] == "incomplete"
    assert environment["reason"].startswith("failed: ") and "cannot reach default/xp-d" in environment["reason"]
    assert json.loads((directory / "summary.json").read_text())["status"] == "incomplete"
    _, rows = read_samples(directory)
    assert rows and {r["mode"] for r in rows} == {"hostgw"}        # the first mode's samples are kept
    labs = [mode["lab"] for mode in environment["modes"].values()]
    assert len(labs) == 2 and leftovers(labs) == []
