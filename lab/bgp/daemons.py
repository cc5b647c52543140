"""The routing daemons a lab runs: BIRD in node namespaces, and one route agent per lab.

A BIRD's files are wherever its data plane puts them (`BirdPaths`; Calico's layout is lab/cni/calico/layout.py).
The route agent runs inside the lab's underlay namespace, so `lab down` finds and stops it with
every other process of the lab; it serves all nodes through sockets opened in their namespaces.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.netns import apply, daemon, namespace, pyproc
from lab.netns.unixsock import answers

AGENT_READY_TIMEOUT = 30.0
AGENT_MODULE = "lab.cni.routeagent"   # `python -m` of the route agent: how its process is started and found


@dataclass(frozen=True)
class BirdPaths:
    """Where one BIRD keeps its configuration, control socket, pid file and log (the data plane's layout:
    Calico's is lab/cni/calico/layout.py)."""

    config_dir: str
    socket: str
    pid_file: str
    log: str

    @property
    def config(self) -> str:
        return os.path.join(self.config_dir, "bird.cfg")


def start_bird(netns: str, paths: BirdPaths) -> subprocess.Popen[bytes]:
    """Start BIRD in `netns` as calico/node runs it: `bird -R -s <ctl> -d -c <cfg>`, in the foreground,
    logging to the node's bird.log (with no log target BIRD writes to syslog, here the console)."""
    os.makedirs(os.path.dirname(paths.socket), exist_ok=True)
    os.makedirs(os.path.dirname(paths.log), exist_ok=True)
    argv = ["nsenter", f"--net={namespace.path(netns)}", *bird_argv(paths)]
    with open(paths.log, "ab") as log:
        return subprocess.Popen(argv, cwd=paths.config_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)


def bird_argv(paths: BirdPaths) -> list[str]:
    """BIRD's command line (run from the node's config dir, in the node's namespace)."""
    return ["bird", "-R", "-s", paths.socket, "-d", "-c", paths.config, "-P", paths.pid_file]


def start_birds(nodes: dict[str, tuple[str, BirdPaths]], timeout: float = 30.0) -> None:
    """Start every node's BIRD at once and wait until each answers on its control socket."""
    for _, paths in nodes.values():
        for stale in (paths.socket, paths.pid_file):
            if os.path.exists(stale):
                os.unlink(stale)
    launched = {node: (start_bird(netns, paths), paths) for node, (netns, paths) in nodes.items()}
    deadline = time.monotonic() + timeout
    waiting = dict(launched)
    problems = []
    while waiting and time.monotonic() < deadline:
        for node, (process, paths) in list(waiting.items()):
            if process.poll() is not None:
                problems.append(f"{node}: {pyproc.tail(paths.log, 2) or f'bird exited with {process.returncode}'}")
                del waiting[node]
            elif answers(paths.socket):
                del waiting[node]
        if waiting:
            time.sleep(0.01)
    problems += [f"{node}: no control socket after {timeout:.0f} s" for node in waiting]
    if problems:
        raise LabError("BIRD did not start: " + "; ".join(problems[:3]),
                       "the rendered configuration is under " + ", ".join(sorted(
                           {os.path.dirname(paths.config) for _, paths in launched.values()}))[:200])


def bird_pid(paths: BirdPaths) -> int | None:
    """The running BIRD's pid, or None when it is not running."""
    try:
        with open(paths.pid_file, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_bird(paths: BirdPaths, timeout: float = 5.0) -> int | None:
    """Stop a node's BIRD (SIGTERM, as when calico/node stops); returns the pid that ran, or None."""
    pid = bird_pid(paths)
    if pid is not None:
        apply.stop_processes([pid], grace=timeout)
    return pid


# -- the route agent ---------------------------------------------------------------------------------
def agent_spec(lab: str, table: int | None, state_dir: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"lab": lab, "table": table, "log": os.path.join(state_dir, "routeagent.log"),
            "stats": os.path.join(state_dir, "routeagent-stats.json"),
            "ready": os.path.join(state_dir, "routeagent.ready"), "nodes": nodes}


def start_agent(underlay_netns: str, spec: dict[str, Any], spec_path: str) -> int:
    """Write the spec, start the agent in the underlay namespace, wait for it to be ready; returns its pid."""
    return daemon.start(underlay_netns, AGENT_MODULE, spec, spec_path, "the route agent",
                        AGENT_READY_TIMEOUT).pid


def reload_agent(pid: int, spec: dict[str, Any], spec_path: str) -> None:
    """Give the running agent a new spec (SIGHUP makes it re-read and reconcile)."""
    daemon.write_spec(spec, spec_path)
    os.kill(pid, 1)

