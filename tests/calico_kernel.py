"""Kernel state and live-lab helpers for the Calico tests (pyroute2 and ordinary tools; no `lab` imports).

`CalicoSnapshot` extends kernel.Snapshot with route types (blackhole) and protocol numbers the
flannel snapshot does not name (12 = bird, 80 = Felix). The helpers below poll a condition with a
deadline, run the lab CLI, and read BIRD's pid file and `calicoctl node status`.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from conftest import run_lab
from expect_calico import Expected, Route
from kernel import RTNH_F_ONLINK, SCOPE, Snapshot
from pyroute2 import IPRoute

T = TypeVar("T")

PROTO_NAMES = {2: "kernel", 3: "boot", 4: "static", 12: "bird", 16: "dhcp", 186: "bgp"}
TYPE_NAMES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
IFF_UP, IFF_NOARP, IFF_POINTOPOINT = 0x1, 0x80, 0x10
LAB_FILES = Path("/run/lab")


def main_routes(netns: str, table: int = 254) -> set[Route]:
    """Every IPv4 route of one table of `netns`, as expect_calico.Route values."""
    with IPRoute(netns=netns) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        rows = set()
        for r in ipr.get_routes(family=socket.AF_INET, table=table):
            if (r.get_attr("RTA_TABLE") or r["table"]) != table:
                continue
            dst = r.get_attr("RTA_DST")
            oif = r.get_attr("RTA_OIF")
            rows.add(Route(dst=f"{dst}/{r['dst_len']}" if dst else "default", gateway=r.get_attr("RTA_GATEWAY"),
                           dev=names.get(oif, str(oif)) if oif else None,
                           proto=PROTO_NAMES.get(r["proto"], str(r["proto"])),
                           type=TYPE_NAMES.get(r["type"], str(r["type"])),
                           onlink=bool(r["flags"] & RTNH_F_ONLINK),
                           scope=SCOPE.get(r["scope"], str(r["scope"])), src=r.get_attr("RTA_PREFSRC")))
    return rows


class CalicoSnapshot(Snapshot):
    """kernel.Snapshot plus the main table as Route values and link flags."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns)
        self.route_set = main_routes(netns)

    def flags(self, name: str) -> int:
        return self.links[name]["flags"]


def wait_for(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 30.0, interval: float = 0.25) -> T:
    """Call `probe` until `ok(value)` or the deadline; returns the last value (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


def route_diff(actual: set[Route], expected: set[Route]) -> str:
    missing = "\n".join(f"  - {r}" for r in sorted(map(str, expected - actual)))
    extra = "\n".join(f"  + {r}" for r in sorted(map(str, actual - expected)))
    return f"missing:\n{missing or '  (none)'}\nunexpected:\n{extra or '  (none)'}"


def wait_routes(spec: Expected, timeout: float = 30.0) -> dict[str, set[Route]]:
    """Poll every node's main table until each equals its expectation (or the deadline)."""
    def probe():
        return {n.name: main_routes(spec.node_netns(n)) for n in spec.nodes}
    return wait_for(probe, lambda got: all(got[n.name] == spec.routes(n) for n in spec.nodes), timeout)


def assert_routes(spec: Expected, timeout: float = 30.0) -> None:
    got = wait_routes(spec, timeout)
    for node in spec.nodes:
        expected = spec.routes(node)
        assert got[node.name] == expected, f"{spec.lab} {node.name}:\n{route_diff(got[node.name], expected)}"


# -- calicoctl node status -----------------------------------------------------------------------------------
_ROW = re.compile(r"^\|\s*(\d+\.\d+\.\d+\.\d+)\s*\|\s*([^|]*?)\s*\|\s*(\S+)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|$")


def node_status(lab: str, node: str) -> str:
    return run_lab("calicoctl", "node", "status", node, "--lab", lab).stdout


def status_rows(text: str) -> list[tuple[str, str, str, str, str]]:
    """(peer address, peer type, state, since, info) of the IPv4 table of `calicoctl node status`."""
    ipv4 = text.split("IPv6 BGP status")[0]
    return [m.groups() for line in ipv4.splitlines() if (m := _ROW.match(line.strip()))]


def established(lab: str, node: str) -> set[tuple[str, str]]:
    """Established peers as `lab calicoctl node status` shows them: (peer address, peer type)."""
    return {(ip, kind) for ip, kind, state, _, info in status_rows(node_status(lab, node))
            if state == "up" and info.startswith("Established")}


PEER_TYPES = {"Mesh": "node-to-node mesh", "Node": "node specific", "Global": "global"}


def bird_established(lab: str, node: str) -> set[tuple[str, str]]:
    """The same, read straight from BIRD (`birdc show protocols`: fast enough to poll)."""
    sock = node_files(lab, node) / "var/run/calico/bird.ctl"
    out = subprocess.run(["birdc", "-s", str(sock), "show", "protocols"], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        cols = line.split()
        m = re.match(r"^(Mesh|Node|Global)_(\d+_\d+_\d+_\d+)$", cols[0]) if cols else None
        if m and len(cols) >= 6 and cols[1] == "BGP" and cols[3] == "up" and cols[5] == "Established":
            found.add((m.group(2).replace("_", "."), PEER_TYPES[m.group(1)]))
    return found


def wait_sessions(spec: Expected, timeout: float = 60.0) -> dict[str, set[tuple[str, str]]]:
    """Poll BIRD until every node's Established peers are exactly the expected ones; returns the last view.

    60 s: node-specific (route reflector) peerings are active on both sides, so BIRD resolves connection
    collisions and backs off (`error wait time 5,30`); 3-17 s was measured, once about 40 s."""
    def probe():
        return {n.name: bird_established(spec.lab, n.name) for n in spec.nodes}
    return wait_for(probe, lambda got: all(got[n.name] == spec.sessions(n) for n in spec.nodes), timeout, 0.2)


# -- BIRD processes -------------------------------------------------------------------------------------------
def node_files(lab: str, node: str) -> Path:
    return LAB_FILES / lab / "files" / node


def running(pid: int) -> bool:
    """Whether `pid` runs. A zombie does not: `kill(pid, 0)` succeeds on one, and a BIRD that `lab up` started
    is reparented and stays a zombie (state Z in /proc/<pid>/stat) until its new parent reaps it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def bird_pid(lab: str, node: str) -> int | None:
    """The pid of the node's running BIRD (from calico/node's pid file), None when it is not running."""
    try:
        pid = int((node_files(lab, node) / "var/run/calico/bird.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if running(pid) else None


def stop_bird(lab: str, node: str) -> int:
    """`lab fault bird-stop`: the lab's supervisor SIGTERMs the node's BIRD and, the stop being deliberate, does
    not restart it (a BIRD killed any other way comes back, as kubelet restarts calico-node); returns its pid."""
    pid = bird_pid(lab, node)
    assert pid is not None, f"no BIRD running on {node}"
    run_lab("fault", "bird-stop", node, "--lab", lab)
    assert bird_pid(lab, node) is None, f"BIRD {pid} on {node} still runs after `lab fault bird-stop`"
    return pid


def start_bird(lab: str, node: str) -> None:
    """`lab fault bird-start`: the supervisor starts BIRD again as calico/node runs it (`bird -R -s <ctl> -d -c
    <cfg> -P <pid file>` in the node's namespace, from its config dir) and answers once its control socket does."""
    run_lab("fault", "bird-start", node, "--lab", lab)
    assert bird_pid(lab, node) is not None, f"BIRD on {node} is not running after `lab fault bird-start`"


def netns_exec(netns: str, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=check,
                          timeout=timeout)


def fresh_netns_links() -> set[str]:
    """The devices a brand-new network namespace has on this kernel (lo, plus fallback tunnels of loaded modules)."""
    out = subprocess.run(["unshare", "--net", "ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}
