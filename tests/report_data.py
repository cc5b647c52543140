"""Synthetic results directories for the report tests and scripts/bench_report.py.

Plausible numbers only (orders of magnitude from anchors.md and this machine's veth labs): they exercise
every figure, table and verdict; they are not measurements. Written through lab.experiment.results and
summarised with lab.experiment.stats exactly as a run would be.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lab.experiment import stats
from lab.experiment.results import (
    ENVIRONMENT_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    TIMELINES_FILE,
    Sample,
    TimelinePoint,
    write_json,
    write_samples,
    write_timelines,
)

DATAPLANE_MODES = {
    # mode: (class, rtt cross-node us, tcp Gbit/s cross-node, ipip implementation, pod MTU)
    "flannel-host-gw": ("native", 38.0, 21.0, None, 1500),
    "calico-bgp": ("native", 40.0, 20.0, None, 1500),
    "calico-ipip": ("ipip", 46.0, 14.0, "userspace", 1480),
    "flannel-vxlan": ("vxlan", 52.0, 12.5, None, 1450),
    "calico-vxlan": ("vxlan", 54.0, 12.0, None, 1450),
}
DATAPATHS = {   # environment.json per-mode `datapath` and `route_programming`, as the runner records them
    "calico-bgp": ("veth → node routing table → underlay, no encapsulation",
                   "BIRD → table 201 → lab route agent → main"),
    "calico-ipip": ("veth → tunl0 → IPIP in the lab's userspace tunnel → underlay",
                    "BIRD → table 201 → lab route agent → main"),
    "flannel-vxlan": ("veth → cni0 → flannel.1 (kernel VXLAN) → underlay", "lab flanneld: routes, ARP and FDB"),
}
ALL_KINDS = ("latency", "throughput", "mtu", "cpu", "connrate", "policy-scale", "bgp-convergence", "rr-migration")
MSS_VALUES = list(range(96, 1461, 64))


def make_results(directory: Path, *, experiment: str = "modes-latency-throughput", kinds: tuple[str, ...] = ALL_KINDS,
                 reps: int = 5, rtt_samples: int = 60, total_samples: int | None = None, seed: int = 1,
                 speed: float = 1.0, status: str = "complete", ipip: str = "userspace",
                 baseline: str | None = "flannel-host-gw", timelines: bool = True) -> Path:
    """Write a results directory (samples, timelines, summary, environment, experiment.yaml); return it.

    `speed` scales every rate up and every time down (a "faster machine" for --compare); `ipip` is the
    IPIP implementation recorded for calico-ipip (its userspace path is ~20x slower, as on this kernel);
    `total_samples` pads the raw latency samples so that samples.csv has exactly that many rows.
    """
    rnd = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    points: list[TimelinePoint] = []
    modes = dict(DATAPLANE_MODES)
    slow = 20.0 if ipip == "userspace" else 1.0

    def add(mode: str, measurement: str, placement: str, rep: int, metric: str, value: float, unit: str,
            param: str = "", param_value: object = "") -> None:
        pair = {"same-node": "default/a1->default/a2", "cross-node": "default/a1->default/b1"}.get(placement, "")
        samples.append(Sample(experiment, mode, measurement, pair, placement, rep, metric, value, unit, param,
                              param_value))  # type: ignore[arg-type]

    def factor(mode: str) -> float:
        return slow if mode == "calico-ipip" else 1.0

    def noisy(value: float, cv: float = 0.04) -> float:
        return max(value * rnd.gauss(1.0, cv), value * 0.05)

    if "throughput" in kinds:
        for mode, (_c, _rtt, gbit, _i, _mtu) in modes.items():
            for placement, boost in (("same-node", 1.6), ("cross-node", 1.0)):
                for rep in range(reps):
                    g = gbit * boost * speed / (factor(mode) if placement == "cross-node" else 1.0)
                    add(mode, "throughput", placement, rep, "throughput_tcp_1", noisy(g), "Gbit/s")
                    add(mode, "throughput", placement, rep, "throughput_tcp_n", noisy(g * 1.5), "Gbit/s")
                    add(mode, "throughput", placement, rep, "throughput_udp", noisy(g * 0.35, 0.08), "Gbit/s")
                    add(mode, "throughput", placement, rep, "retransmits", float(rnd.randint(0, 40)), "count")
    if "mtu" in kinds:
        for mode, (_c, _rtt, gbit, _i, mtu) in modes.items():
            for rep in range(reps):
                add(mode, "mtu", "cross-node", rep, "path_mtu", float(mtu), "bytes")
                add(mode, "mtu", "cross-node", rep, "encap_overhead", float(1500 - mtu), "bytes")
                for mss in MSS_VALUES:
                    g = gbit * speed / factor(mode) * (mss / 1460) ** 0.85
                    add(mode, "mtu", "cross-node", rep, "throughput_at_mss", noisy(g, 0.05), "Gbit/s", "mss", mss)
    if "cpu" in kinds:
        for mode, (cls, *_r) in modes.items():
            base = {"native": 0.9, "ipip": 1.2, "vxlan": 1.4}[cls] * (6 if factor(mode) > 1 else 1) / speed
            for rep in range(reps):
                add(mode, "cpu", "cross-node", rep, "cpu_per_gbit", noisy(base, 0.06), "cpu_s_per_Gbit")
    if "connrate" in kinds:
        for mode, (_c, rtt, *_r) in modes.items():
            for placement in ("same-node", "cross-node"):
                for rep in range(reps):
                    rate = 1e6 / (rtt * 4 * (factor(mode) if placement == "cross-node" else 1)) * speed
                    add(mode, "connrate", placement, rep, "tcp_crr", noisy(rate, 0.05), "conn/s")
    if "policy-scale" in kinds:
        for enforcer, apply_s, rules in (("kube-router", 0.25, 9.0), ("calico", 0.4, 6.0)):
            for policies in (0, 10, 100, 1000):
                for rep in range(reps):
                    add(enforcer, "policy-scale", "cross-node", rep, "apply_to_enforced",
                        noisy(apply_s + policies * 0.002, 0.1) / speed, "s", "policies", policies)
                    add(enforcer, "policy-scale", "cross-node", rep, "iptables_rules",
                        float(40 + rules * policies), "count", "policies", policies)
                    add(enforcer, "policy-scale", "cross-node", rep, "rtt_tcp_rr",
                        noisy(40 + policies * 0.004, 0.05) / speed, "us", "policies", policies)
    if "bgp-convergence" in kinds:
        for topo in ("calico-mesh", "calico-rr"):
            for nodes in (3, 10, 50):
                sessions = nodes - 1 if topo == "calico-mesh" else 2
                for rep in range(reps):
                    add(topo, "bgp-convergence", "", rep, "time_to_routes",
                        noisy(2.5 + nodes * (0.08 if topo == "calico-mesh" else 0.03), 0.08) / speed, "s",
                        "nodes", nodes)
                    add(topo, "bgp-convergence", "", rep, "sessions_per_node", float(sessions), "count",
                        "nodes", nodes)
                    add(topo, "bgp-convergence", "", rep, "bird_memory", noisy(2.1 + sessions * 0.032, 0.02),
                        "MB", "nodes", nodes)
            if timelines:
                nodes = 10
                for rep in range(min(reps, 2)):
                    for n in range(nodes):
                        start = 2.0 + 0.1 * n + rnd.random() * 0.5
                        peers = nodes - 1 if topo == "calico-mesh" else (2 if n >= 2 else nodes - 1)
                        for step in range(0, 81):
                            t = step * 0.1
                            up = min(peers, max(0, int((t - start) * 6))) if t >= start else 0
                            routes = min(nodes - 1, int(up * (nodes - 1) / peers)) if peers else 0
                            points.append(TimelinePoint(experiment, topo, "bgp-convergence", rep,
                                                        f"sessions_established:k8s-node{n + 1:02d}", t, up, "count"))
                            points.append(TimelinePoint(experiment, topo, "bgp-convergence", rep,
                                                        f"routes:k8s-node{n + 1:02d}", t, routes, "count"))
    if "rr-migration" in kinds:
        # as the runner writes it: one mode, a measurement per order (named in the experiment file) with
        # param order=seed|safe, step:<name> times and probe_lost:<order> per 100 ms from the first step
        steps = {"seed": ("mesh-off", "label", "rr-node", "bgppeer"),
                 "safe": ("label", "rr-node", "bgppeer", "mesh-off")}
        for order, outage in (("seed", 4.2), ("safe", 0.0)):
            for rep in range(reps):
                out = noisy(outage, 0.1) if outage else 0.0
                for metric, value, unit in (("outage_s", out, "s"), ("lost_probes", round(out * 100), "count"),
                                            ("lost_pct", out * 100 / 20.0, "%"), ("routes_back_s", noisy(1.2), "s"),
                                            ("sessions_after", 4.0, "count")):
                    add("calico-bgp-mesh", f"{order}-order", "cross-node", rep, metric, float(value), unit,
                        "order", order)
                if timelines:
                    for s_i, name in enumerate(steps[order]):
                        points.append(TimelinePoint(experiment, "calico-bgp-mesh", f"{order}-order", rep,
                                                    f"step:{name}", float(s_i), 1.0, "count"))
                    for bucket in range(-10, 90):
                        t = round(bucket * 0.1, 3)
                        lost = 10.0 if outage and 0.0 <= t < out else 0.0
                        points.append(TimelinePoint(experiment, "calico-bgp-mesh", f"{order}-order", rep,
                                                    f"probe_lost:{order}", t, lost, "count"))
    if "latency" in kinds:
        groups = [(mode, placement, metric, rep) for mode in modes for placement in ("same-node", "cross-node")
                  for metric in ("rtt_icmp", "rtt_tcp_rr", "rtt_udp_rr") for rep in range(reps)]
        per_group = [rtt_samples] * len(groups)
        if total_samples is not None:
            room = max(0, total_samples - len(samples))
            per_group = [room // len(groups) + (1 if i < room % len(groups) else 0) for i in range(len(groups))]
        for (mode, placement, metric, rep), n in zip(groups, per_group, strict=False):
            base = modes[mode][1] if placement == "cross-node" else 22.0
            base *= {"rtt_icmp": 0.8, "rtt_tcp_rr": 1.0, "rtt_udp_rr": 0.93}[metric]
            if placement == "cross-node":
                base *= factor(mode)
            base /= speed
            # as the runner writes it: the repetition's p50 as the bare metric, p90/p99/mean beside it,
            # and every round trip as <metric>_raw
            raw = sorted(base * rnd.lognormvariate(0, 0.18) for _ in range(max(n, 1)))
            for what, q in (("", 50), ("_p90", 90), ("_p99", 99)):
                add(mode, "latency", placement, rep, metric + what, stats.percentile(raw, q, presorted=True), "us")
            add(mode, "latency", placement, rep, metric + "_mean", stats.mean(raw), "us")
            for value in raw[:n]:
                add(mode, "latency", placement, rep, metric + "_raw", value, "us")
    if total_samples is not None:
        samples = samples[:total_samples]

    write_samples(directory / SAMPLES_FILE, samples)
    if points:
        write_timelines(directory / TIMELINES_FILE, points)
    mode_names = sorted({s.mode for s in samples}, key=[s.mode for s in samples].index)
    write_json(directory / SUMMARY_FILE, stats.summarize(
        samples, baseline=baseline if baseline in mode_names else None, experiment=experiment, status=status))
    env_modes = {}
    for mode in mode_names:
        info = {"topology": mode, "cni": mode.split("-")[0], "backend": "-".join(mode.split("-")[1:]),
                "capabilities": ["netns", "veth", "vxlan", "bridge"],
                "implementations": {"latency_tool": "sockperf", "throughput_tool": "iperf3"}}
        if mode in modes:
            info["mtu"] = modes[mode][4]
            info["implementations"]["ipip"] = ipip if mode == "calico-ipip" else None
        if mode in DATAPATHS:
            info["datapath"], info["route_programming"] = DATAPATHS[mode]
        if mode == "calico-bgp-mesh":   # what the rr-migration kind records: not a data path
            info["implementations"]["rr_migration_steps"] = "label,rr-node,bgppeer,mesh-off"
            info["implementations"]["bgp"] = "BIRD mesh"
        env_modes[mode] = info
    environment = {
        "experiment": experiment, "kernel": "6.18.0-lab", "cpu_model": "Synthetic CPU @ 2.0GHz", "cores": 2,
        "memory_mb": 24105, "lab_version": "0.1.0", "git_commit": "0123abc", "start": "2026-11-30T12:00:00Z",
        "end": "2026-11-30T12:30:00Z", "status": status, "baseline": baseline,
        "tools": {"iperf3": "3.12", "sockperf": "3.10", "ping": "iputils 20221126", "bird": "2.0.12"},
        "modes": env_modes,
    }
    if status != "complete":
        environment["reason"] = "interrupted (SIGINT) during calico-vxlan"
    write_json(directory / ENVIRONMENT_FILE, environment)
    (directory / "experiment.yaml").write_text(
        f"name: {experiment}\ntitle: Synthetic data-plane comparison\nnotes: |\n  Synthetic, plausible data for "
        f"tests and benchmarks; not a measurement.\nmodes: {json.dumps(mode_names)}\n", encoding="utf-8")
    return directory


RUNNER_MODES = {
    # mode: (cni, mode, backend, cross-node rtt us, ipip implementation (raw), pod MTU)
    "flannel-hostgw": ("flannel", "host-gw", None, 36.0, None, 1500),
    "flannel-vxlan": ("flannel", "vxlan", None, 50.0, None, 1450),
    "calico-bgp": ("calico", "bgp", "bird", 38.0, None, 1500),
    "calico-ipip": ("calico", "ipip", "bird", 900.0, "userspace-tun", 1480),
    "calico-ipip-crosssubnet": ("calico", "ipip-crosssubnet", "bird", 39.0, "userspace-tun", 1480),
    "calico-vxlan": ("calico", "vxlan", "vxlan", 53.0, None, 1450),
}


def make_runner_style_results(directory: Path, *, reps: int = 3, seed: int = 3, experiment: str = "modes") -> Path:
    """A results directory shaped like `lab experiment run`'s (as of this writing): per-repetition
    percentiles (rtt_tcp_rr is the median, rtt_tcp_rr_p90/_p99/_mean beside it), sender-side rates,
    a NaN CPU figure, param values given as text, and environment.json with nested machine/lab
    objects and implementations such as {"ipip": "userspace", "ipip_raw": "userspace-tun"}."""
    rnd = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []

    def add(mode: str, measurement: str, placement: str, rep: int, metric: str, value: float, unit: str,
            param: str = "", param_value: str = "") -> None:
        samples.append(Sample(experiment, mode, measurement, f"default/a1->default/{placement[0]}1", placement, rep,
                              metric, value, unit, param, param_value))  # type: ignore[arg-type]

    for mode, (_cni, _m, _b, rtt, _raw, _mtu) in RUNNER_MODES.items():
        for placement in ("same-node", "cross-node"):
            base = rtt if placement == "cross-node" else 21.0
            for rep in range(reps):
                for proto, factor in (("icmp", 0.8), ("tcp_rr", 1.0), ("udp_rr", 0.95)):
                    metric = f"rtt_{proto}"
                    p50 = base * factor * rnd.gauss(1, 0.03)
                    add(mode, "latency", placement, rep, metric, p50, "us")
                    add(mode, "latency", placement, rep, f"{metric}_p90", p50 * 1.3, "us")
                    add(mode, "latency", placement, rep, f"{metric}_p99", p50 * 2.1, "us")
                    add(mode, "latency", placement, rep, f"{metric}_mean", p50 * 1.1, "us")
                gbit = 40.0 / base * rnd.gauss(1, 0.04) * 20
                add(mode, "throughput", placement, rep, "throughput_tcp_1", gbit, "Gbit/s")
                add(mode, "throughput", placement, rep, "throughput_tcp_1_sender", gbit * 1.01, "Gbit/s")
                add(mode, "throughput", placement, rep, "retransmits_tcp_1", float(rnd.randint(0, 9)), "count")
                add(mode, "cpu", placement, rep, "cpu_kernel_s_per_Gbit",
                    float("nan") if (mode, rep) == ("calico-ipip", 0) else 0.4 * base / 36, "cpu_s_per_Gbit")
                if placement == "cross-node":
                    for mss in (536, 1460):
                        add(mode, "mtu", placement, rep, "throughput_at_mss", gbit * mss / 1460 * rnd.gauss(1, 0.03),
                            "Gbit/s", "mss", str(mss))
    write_samples(directory / SAMPLES_FILE, samples)
    summary = stats.summarize(samples, baseline="flannel-hostgw")
    summary.update(experiment=experiment, status="complete")
    write_json(directory / SUMMARY_FILE, summary)
    modes = {}
    for mode, (cni, m, backend, _rtt, raw, mtu) in RUNNER_MODES.items():
        modes[mode] = {"lab": f"x{mode}", "topology": f"topologies/{mode}.yaml", "cni": cni, "mode": m,
                       "backend": backend, "enforcer": "none", "network_mtu": {"net0": 1500}, "pod_mtu": [mtu],
                       "capabilities": ["netns", "veth", "vxlan"],
                       "implementations": {"ipip": "userspace" if raw else None, "ipip_raw": raw,
                                           "latency_tool": "sockperf", "throughput_tool": "iperf3",
                                           "cpu_source": "/proc/stat (host-wide)"},
                       "nodes": [{"name": f"k8s-node0{i}", "ip": f"10.0.0.{i}", "network": "net0"} for i in (1, 2)],
                       "pods": [], "pairs": {"same-node": "default/a1->default/a2",
                                             "cross-node": "default/a1->default/b1"}}
    write_json(directory / ENVIRONMENT_FILE, {
        "experiment": experiment, "title": "Runner-shaped synthetic run", "file": "experiments/modes.yaml",
        "results": str(directory), "quick": True, "status": "complete", "reason": None,
        "start": "2026-11-30T12:00:00Z", "end": "2026-11-30T12:05:00Z",
        "machine": {"kernel": "6.18.0-lab", "machine": "x86_64", "cpu_model": "Synthetic CPU", "cores": 2,
                    "memory_mb": 24105, "python": "3.11.7"},
        "loadavg_start": [0.5, 0.4, 0.3], "loadavg_end": [0.9, 0.5, 0.3],
        "lab": {"version": "0.1.0", "commit": "0123abc"},
        "tools": {"iperf3": "iperf 3.12", "sockperf": "3.10", "ping": "ping from iputils 20221126"},
        "modes": modes, "timing": {"up_s": 30.0, "measure_s": 200.0}})
    return directory
