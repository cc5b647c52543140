"""Helpers for the trace, capture and impairment tests: renamed shipped labs, the CLI's JSON, kernel reads.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from calico_labs import renamed_copy
from conftest import run_lab

PREFIX = "tt2"


def start(labs, tmp_path_factory, topology: str, policies: tuple[str, ...] = ()) -> tuple[str, dict]:
    """Bring up a renamed copy of a shipped topology (and apply `policies`); (lab name, the YAML as data)."""
    name = f"{PREFIX}-{topology}"[:40]
    path = renamed_copy(topology, name, tmp_path_factory.mktemp(topology))
    labs(str(path), name)
    for manifest in policies:
        run_lab("apply", "-f", str(Path(__file__).resolve().parents[1] / "examples" / "policies" / manifest),
                "--lab", name)
    return name, yaml.safe_load(path.read_text())


def trace(lab: str, *args: str) -> tuple[int, dict]:
    result = run_lab("trace", *args, "--json", "--lab", lab, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def steps(hop: dict, kind: str) -> list[dict]:
    return [s for s in hop["steps"] if s["kind"] == kind]


def sh(*argv: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result.stdout


def fibmatch(netns: str, command: str) -> str:
    """Run a step's `ip route get fibmatch ...` (as printed for `lab exec`) with `ip -n <netns>` ourselves."""
    words = command.split(" -- ", 1)[1].split()
    assert words[:4] == ["ip", "route", "get", "fibmatch"], command
    return " ".join(sh("ip", "-n", netns, *words[1:]).split())


def link_mac(netns: str, dev: str) -> str:
    return json.loads(sh("ip", "-j", "-n", netns, "link", "show", dev))[0]["address"]


def lab_tcpdumps(lab: str) -> list[int]:
    """tcpdump processes living in one of the lab's namespaces."""
    inodes = set()
    for name in os.listdir("/run/netns"):
        if name.startswith(f"{lab}."):
            inodes.add(os.stat(f"/run/netns/{name}").st_ino)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as handle:
                if handle.read().strip() != "tcpdump":
                    continue
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                found.append(int(pid))
        except OSError:
            continue
    return found


def host_veth(pod_netns: str, node_netns: str) -> str:
    """The node-side end of a pod's eth0, found from the kernel: the node's link whose index is eth0's peer."""
    peer = json.loads(sh("ip", "-j", "-n", pod_netns, "link", "show", "eth0"))[0]["link_index"]
    return next(link["ifname"] for link in json.loads(sh("ip", "-j", "-n", node_netns, "link", "show"))
                if link["ifindex"] == peer)


def listening(netns: str, port: int) -> bool:
    """Whether `ss` in the namespace shows a TCP socket listening on `port` (the test's own check)."""
    return f":{port} " in sh("ip", "netns", "exec", netns, "ss", "-Hltn") + " "


@pytest.fixture(scope="module")
def lab(labs, tmp_path_factory):
    """`lab(topology, policies)` -> (lab name, its status) for a renamed copy, once per module."""
    started: dict[str, tuple[str, dict]] = {}

    def get(topology: str, policies: tuple[str, ...] = ()) -> tuple[str, dict]:
        if topology not in started:
            started[topology] = start(labs, tmp_path_factory, topology, policies)
        return started[topology]
    return get
