"""environment.json: the machine, the lab's version, tool versions, and each mode's lab as it ran."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.experiment.spec import Experiment
from lab.topology import dataplanes
from lab.topology.model import Topology

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


def _caption(topology: Topology) -> ModuleType | None:
    """The data plane's caption module (its folder's caption.py), or None when it has none."""
    record = dataplanes.get(topology.cluster.cni)
    return record.module(record.caption) if record.caption else None


def route_programming(topology: Topology) -> str:
    """Who writes the pod routes of the mode's nodes in the lab (the caption of every figure of the mode)."""
    caption = _caption(topology)
    return str(caption.route_programming(topology)) if caption else f"static plan ({topology.cluster.cni})"


def datapath(topology: Topology, ipip: str | None) -> str:
    """The kernel path pod-to-pod packets take across nodes (and on one node) in the mode; `ipip` is the IPIP
    implementation that ran (kernel, ebpf, userspace) or None."""
    caption = _caption(topology)
    return str(caption.datapath(topology, ipip)) if caption else f"{topology.cluster.cni}: see `lab status`"


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
