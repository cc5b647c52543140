"""Every shipped experiment's --quick profile runs to completion, and its figures agree with what the
topologies and the reference say (not with what the runner computes):

- mtu-overhead: VXLAN adds 50 bytes on the wire, routed modes 0; a 9000-byte underlay gives VXLAN pods
  a path MTU of 8950, a 1500-byte one 1450 (flannel: MTU minus the 50-byte VXLAN overhead);
- bgp-mesh-vs-rr: a full mesh of N nodes has N(N-1) Established sessions counted from both ends; with
  R = 2 reflectors, (N-R)*R + R*(N-1);
- policy-scale: loading policies adds iptables rules and ipsets, and the new verdict is enforced;
- rr-migration: after the migration, every client peers with the one reflector only (4 nodes: 3 + 3
  sessions); the seed's order (mesh off first) loses traffic for longer than the safe order; every
  sample carries its own order, the step times are in timelines.csv in the order the seed (002 6.6)
  and the safe procedure run them, and the results say the times include the route agent;
- modes-latency-throughput: environment.json names the IPIP implementation the lab reports, and
  captions each mode (route programming, datapath) as its topology says (tests/expect_experiment.py);
  latency writes raw round trips, connrate and cpu (with the tools' peak RSS) rows per repetition.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root

REPO = Path(__file__).resolve().parents[1]


def run_quick(name: str, out: Path) -> tuple[Path, list[dict[str, str]], dict]:
    done = subprocess.run([sys.executable, "-m", "lab.cli", "experiment", "run", name, "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    directory = next((out / name).iterdir())
    with open(directory / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    environment = json.loads((directory / "environment.json").read_text())
    assert environment["status"] == "complete"
    labs = [m["lab"] for m in environment["modes"].values()]
    assert not [n for n in os.listdir("/run/netns") if any(n.startswith(f"{lab}.") for lab in labs)]
    return directory, rows, environment


def values(rows: list[dict[str, str]], **match: str) -> list[float]:
    return [float(r["value"]) for r in rows if all(r[k] == v for k, v in match.items())]


def test_every_shipped_experiment_loads():
    from lab.experiment import spec
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        for quick in (False, True):
            experiment = spec.load(str(path), quick=quick)
            assert experiment.modes and experiment.measurements, path


def test_mtu_overhead_quick(tmp_path):
    _, rows, _ = run_quick("mtu-overhead", tmp_path)
    # the MSS sweep runs on the same node and across nodes (as perf-tests), the capture only across nodes
    assert {r["placement"] for r in rows if r["metric"] == "throughput_at_mss"} == {"same-node", "cross-node"}
    assert {r["placement"] for r in rows if r["metric"] == "encap_overhead"} == {"cross-node"}
    assert set(values(rows, mode="flannel-vxlan", metric="encap_overhead")) == {50.0}
    assert set(values(rows, mode="flannel-hostgw", metric="encap_overhead")) == {0.0}
    assert set(values(rows, mode="flannel-vxlan", metric="path_mtu")) == {1450.0}
    assert set(values(rows, mode="flannel-vxlan-9000", metric="path_mtu")) == {8950.0}
    assert values(rows, metric="throughput_at_mss", param_value="1460")


def test_bgp_mesh_vs_rr_quick(tmp_path):
    directory, rows, _ = run_quick("bgp-mesh-vs-rr", tmp_path)
    nodes, reflectors = 3, 2
    assert set(values(rows, mode="mesh-3", metric="sessions_total")) == {float(nodes * (nodes - 1))}
    assert set(values(rows, mode="rr-3", metric="sessions_total")) == {
        float((nodes - reflectors) * reflectors + reflectors * (nodes - 1))}
    assert all(v > 0 for v in values(rows, metric="converged_s"))
    assert {r["param_value"] for r in rows} == {"3"}
    assert (directory / "timelines.csv").exists()


def test_policy_scale_quick(tmp_path):
    _, rows, environment = run_quick("policy-scale", tmp_path)
    for mode in ("kube-router", "calico"):
        assert environment["modes"][mode]["implementations"]["enforcer"] == mode
        none = values(rows, mode=mode, metric="iptables_rules_per_node_max", param_value="0")
        many = values(rows, mode=mode, metric="iptables_rules_per_node_max", param_value="100")
        assert many[0] > none[0]
        assert values(rows, mode=mode, metric="ipsets_per_node_max", param_value="100")[0] >= 100
        assert values(rows, mode=mode, metric="enforced_s", param_value="10")
        assert values(rows, mode=mode, metric="throughput_tcp_1", param_value="100")[0] > 0


# the seed's 6.6 order, and the safe one (the operator checks the new sessions before mesh-off)
STEPS = {"seed": ["mesh-off", "label", "rr-node", "bgppeer"],
         "safe": ["label", "rr-node", "bgppeer", "peers-established", "mesh-off"]}


def test_rr_migration_quick(tmp_path):
    directory, rows, environment = run_quick("rr-migration", tmp_path)
    from expect_experiment import route_programming_words
    safe_rows = [r for r in rows if r["measurement"] == "safe-order"]
    assert set(values(safe_rows, metric="sessions_after")) == {6.0}
    seed = values(rows, measurement="seed-order", metric="outage_s")
    safe = values(rows, measurement="safe-order", metric="outage_s")
    assert len(seed) == len(safe) == 3          # the quick profile's repetitions
    assert min(seed) > 0 and sorted(seed)[1] > sorted(safe)[1]
    for measurement, order in (("seed-order", "seed"), ("safe-order", "safe")):
        mine = [r for r in rows if r["measurement"] == measurement]
        assert {(r["param"], r["param_value"]) for r in mine} == {("order", order)}
    assert values(rows, measurement="safe-order", metric="peers_wait_s")
    assert not values(rows, measurement="seed-order", metric="peers_wait_s")
    with open(directory / "timelines.csv", newline="") as handle:
        points = list(csv.DictReader(handle))
    for measurement, order in (("seed-order", "seed"), ("safe-order", "safe")):
        for repetition in ("0", "1", "2"):
            steps = sorted((float(p["t_s"]), p["series"][len("step:"):]) for p in points
                           if (p["measurement"], p["repetition"]) == (measurement, repetition)
                           and p["series"].startswith("step:"))
            assert [name for _, name in steps] == STEPS[order], steps
            assert any(p["series"] == f"probe_lost:{order}" for p in points if p["measurement"] == measurement)
    mode = environment["modes"]["calico-bgp-mesh"]
    assert not any("rr_migration" in key for key in mode["implementations"])
    assert set(mode["caveats"]) == {"seed-order", "safe-order"}
    assert all("route agent" in text for text in mode["caveats"].values())
    assert all(word in mode["route_programming"] for word in route_programming_words("calico-bgp-mesh"))


def test_modes_latency_throughput_quick(tmp_path, scratch_netns):
    _, rows, environment = run_quick("modes-latency-throughput", tmp_path)
    modes = environment["modes"]
    assert set(modes) == {"flannel-hostgw", "flannel-vxlan", "calico-bgp", "calico-ipip", "calico-vxlan"}
    kernel_ipip = subprocess.run(["ip", "-n", scratch_netns, "link", "add", "t0", "type", "ipip", "local", "10.0.0.1"],
                                 capture_output=True).returncode == 0
    expected = {"kernel"} if kernel_ipip else {"userspace", "ebpf"}
    assert modes["calico-ipip"]["implementations"]["ipip"] in expected
    for mode in ("flannel-hostgw", "flannel-vxlan", "calico-bgp", "calico-vxlan"):
        assert modes[mode]["implementations"]["ipip"] is None
    assert {r["placement"] for r in rows} == {"cross-node"}          # the quick profile's placements
    assert {r["mode"] for r in rows} == set(modes)
    from expect_experiment import datapath_words, route_programming_words
    topologies = {"flannel-hostgw": "flannel-hostgw", "flannel-vxlan": "flannel-vxlan", "calico-bgp": "calico-bgp-mesh",
                  "calico-ipip": "calico-ipip", "calico-vxlan": "calico-vxlan"}
    for mode, topology in topologies.items():
        entry = modes[mode]
        assert all(word in entry["route_programming"] for word in route_programming_words(topology)), entry
        assert all(word in entry["datapath"] for word in datapath_words(topology, entry["implementations"]["ipip"]))
        for metric in ("conn_rate", "cpu_kernel_s_per_Gbit", "cpu_client_s", "rss_client_peak_kb",
                       "rss_server_peak_kb", "rtt_icmp", "rtt_icmp_raw", "rtt_tcp_rr_raw"):
            assert values(rows, mode=mode, metric=metric), (mode, metric)
        assert len(values(rows, mode=mode, metric="conn_rate")) == 3          # 3 repetitions, warm-up not written
        assert {r["repetition"] for r in rows if r["mode"] == mode} == {"0", "1", "2"}
        # ping sends `count` echoes per repetition: one raw row each
        assert len(values(rows, mode=mode, metric="rtt_icmp_raw")) == 3 * 40
        assert all(v > 1000 for v in values(rows, mode=mode, metric="rss_client_peak_kb"))   # iperf3 > 1 MB
