"""environment.json: the machine, the lab's version, tool versions, and each mode's lab as it ran."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from lab.cni.bridge_plugin import BRIDGE
from lab.cni.calico import devices as calico_devices
from lab.cni.flannel import devices as flannel_devices
from lab.experiment.spec import Experiment
from lab.topology.model import CalicoConfig, FlannelConfig, Topology

VERSION_FLAGS = {"iperf3": ["--version"], "sockperf": ["--version"], "ping": ["-V"], "tcpdump": ["--version"],
                 "bird": ["--version"], "ip": ["-V"], "iptables": ["--version"], "ipset": ["--version"]}
# lab status's ipip_implementation -> the contract's short names
IPIP = {"kernel-ipip": "kernel", "userspace-tun": "userspace", "ebpf": "ebpf", "ebpf-ipip": "ebpf", None: None}


def utc(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None else time.time()))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory_mb = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            memory_mb = next(int(line.split()[1]) // 1024 for line in handle if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    return {"kernel": platform.release(), "machine": platform.machine(), "cpu_model": cpu,
            "cores": os.cpu_count(), "memory_mb": memory_mb, "python": platform.python_version()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def tool_version(tool: str, path: str) -> str:
    try:
        done = subprocess.run([path, *VERSION_FLAGS.get(tool, ["--version"])], capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    line = next((t for t in text if any(c.isdigit() for c in t)), text[0] if text else "unknown")
    return line.replace("sockperf: ", "").replace("\x1b[2;35m", "").replace("\x1b[0m", "").strip()[:120]


def lab_version() -> dict[str, str | None]:
    try:
        version = metadata.version("lab")
    except metadata.PackageNotFoundError:
        version = None
    root = Path(__file__).resolve().parents[2]
    commit = None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = done.stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += "-dirty"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"version": version, "commit": commit}


def initial(experiment: Experiment, results: Path) -> dict[str, Any]:
    tools = {tool: tool_version(tool, path) for tool, path in sorted(experiment.tools.items())}
    for extra in ("bird", "tcpdump", "iptables"):
        where = shutil.which(extra)
        if where and extra not in tools:
            tools[extra] = tool_version(extra, where)
    return {"experiment": experiment.name, "title": experiment.title, "notes": experiment.notes,
            "baseline": experiment.baseline, "file": experiment.file,
            "results": str(results), "quick": experiment.quick, "status": "running", "reason": None,
            "start": utc(), "end": None, "machine": machine(), "loadavg_start": loadavg(), "loadavg_end": None,
            "lab": lab_version(), "tools": tools, "modes": {}, "timing": {}}


def route_programming(topology: Topology) -> str:
    """Who writes the pod routes of the mode's nodes in the lab (the caption of every figure of the mode)."""
    cluster = topology.cluster
    config = cluster.config
    if isinstance(config, FlannelConfig):
        kind = config.backend.type + (" + DirectRouting" if config.backend.direct_routing else "")
        return f"static plan (flannel {kind}: the routes, ARP and FDB entries flanneld writes, applied by `lab up`)"
    if isinstance(config, CalicoConfig) and config.backend == "bird":
        return "BIRD -> table 201 -> lab route agent -> main"
    if isinstance(config, CalicoConfig):
        return "static plan (Calico VXLAN backend: the routes, ARP and FDB entries Felix writes, applied by `lab up`)"
    return f"static plan ({cluster.cni})"


IPIP_PATH = {"kernel": "kernel", "ebpf": "ebpf", "userspace": "userspace (the lab's route agent reads tunl0, a TUN)"}


def datapath(topology: Topology, ipip: str | None) -> str:
    """The kernel path pod-to-pod packets take across nodes (and on one node) in the mode."""
    cluster = topology.cluster
    config = cluster.config
    if isinstance(config, FlannelConfig):
        backend = config.backend
        device = flannel_devices.vxlan_device(backend.vni)
        if backend.type == "vxlan" and backend.direct_routing:
            cross = f"routing via eth0 (kernel) within a subnet, vxlan device {device} (kernel) across subnets"
        elif backend.type == "vxlan":
            cross = f"vxlan device {device} (kernel)"
        else:
            cross = "routing via eth0 (kernel)"
        return f"cross node: {cross}; same node: {BRIDGE} bridge (kernel)"
    if isinstance(config, CalicoConfig):
        parts = []
        for pool in config.pools:
            if pool.disabled:
                continue
            if pool.ipip_mode != "Never":
                where = " across subnets, routing via eth0 (kernel) within a subnet" if pool.ipip_mode == "CrossSubnet" else ""
                implementation = IPIP_PATH.get(ipip or "", ipip or "unknown")
                parts.append(f"{calico_devices.IPIP_DEVICE} IPIP: {implementation}{where}")
            elif pool.vxlan_mode != "Never":
                where = " across subnets, routing via eth0 (kernel) within a subnet" if pool.vxlan_mode == "CrossSubnet" else ""
                parts.append(f"vxlan device {calico_devices.VXLAN_DEVICE} (kernel){where}")
            else:
                parts.append("routing via eth0 (kernel)")
        cross = "; ".join(dict.fromkeys(parts)) or "routing via eth0 (kernel)"
        return f"cross node: {cross}; same node: cali veth routed by the node (kernel)"
    return f"{cluster.cni}: see `lab status`"


def mode_entry(mode: str, lab: str, topology_path: str, status: dict[str, Any],
               topology: Topology | None = None) -> dict[str, Any]:
    """What a mode ran as: from the lab's state (`lab status --json`) right after `lab up`, and (with the
    topology) who programs its routes and which kernel path its packets take."""
    raw_ipip = status.get("ipip_implementation")
    networks = status.get("underlay", {}).get("networks", [])
    return {"lab": lab, "topology": topology_path, "cni": status.get("cni"), "mode": status.get("mode"),
            "backend": status.get("backend"), "enforcer": status.get("enforcer"),
            "network_mtu": {n["name"]: n["mtu"] for n in networks},
            "pod_mtu": sorted({n["mtu"] for n in status.get("nodes", [])}),
            "capabilities": status.get("capabilities", []),
            "implementations": {"ipip": IPIP.get(raw_ipip, raw_ipip), "ipip_raw": raw_ipip},
            "nodes": [{"name": n["name"], "ip": n["ip"], "network": n["network"]} for n in status.get("nodes", [])],
            "pods": [{"key": p["key"], "node": p["node"], "ip": p["ip"]} for p in status.get("pods", [])],
            "pairs": {},
            "route_programming": route_programming(topology) if topology is not None else None,
            "datapath": datapath(topology, IPIP.get(raw_ipip, raw_ipip)) if topology is not None else None,
            "caveats": {}, "notes": []}
