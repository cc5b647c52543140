"""Which daemons a lab's supervisor (lab/netns/supervisor.py) restarts, and what `lab status` says of them.

`PROVIDERS` is the registry: each provider turns a running lab's topology and runtime record into the
DaemonSpecs of the daemons it started. A new kind of daemon (ExaBGP routers, ...) registers by adding
one provider to the tuple. Names are stable and are what `lab status` shows: `bird/<node>`,
`route-agent`, `probe-servers`, `exabgp/<router>`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lab.netns import names, pyproc
from lab.netns import supervisor as sv
from lab.netns.state import StateStore
from lab.topology.model import Topology

Provider = Callable[[Topology, StateStore, dict[str, Any]], list[sv.DaemonSpec]]

ROUTE_AGENT, PROBE_SERVERS = "route-agent", "probe-servers"
HEALTHY = (sv.RUNNING, sv.STOPPED)


def bird_name(node: str) -> str:
    return f"bird/{node}"


def bird_daemons(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[sv.DaemonSpec]:
    """BIRD on every node of a Calico BGP lab, as calico/node's runit service runs it."""
    from lab.bgp import daemons
    from lab.cni.calico import layout
    if not runtime.get("bird"):
        return []
    specs = []
    for node in topology.nodes:
        paths = layout.node_paths(os.path.join(store.files_dir(topology.name), node.name))
        specs.append(sv.DaemonSpec(
            name=bird_name(node.name), netns=names.node_netns(topology.name, node.name),
            argv=tuple(daemons.bird_argv(paths)), log=paths.log, ready=("socket", paths.socket),
            cwd=paths.config_dir, clean=(paths.socket, paths.pid_file), pid_file=paths.pid_file, node=node.name,
            pid=daemons.bird_pid(paths)))
    return specs


def route_agent_daemons(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[sv.DaemonSpec]:
    """The lab's route agent (Calico BGP; IPIP without the kernel module), in the underlay namespace."""
    from lab.bgp.daemons import AGENT_MODULE
    agent = runtime.get("route_agent")
    if not agent:
        return []
    state_dir = store.lab_dir(topology.name)
    ready = os.path.join(state_dir, "routeagent.ready")
    return [sv.DaemonSpec(
        name=ROUTE_AGENT, netns=names.underlay_netns(topology.name),
        argv=tuple(pyproc.python_argv(AGENT_MODULE, agent["spec"])),
        log=os.path.join(state_dir, "routeagent.log"), ready=("file", ready), env=pyproc.python_env(),
        clean=(ready,), pid=int(agent["pid"]))]


def probe_server_daemons(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[sv.DaemonSpec]:
    """The probe servers answering on every pod's containerPorts."""
    from lab.probe import servers
    record = runtime.get("probe_servers")
    if not record or not record.get("pid"):
        return []
    state_dir = store.lab_dir(topology.name)
    return [sv.DaemonSpec(
        name=PROBE_SERVERS, netns=names.underlay_netns(topology.name),
        argv=tuple(pyproc.python_argv("lab.probe.servers", os.path.join(state_dir, servers.SPEC_FILE))),
        log=record["log"], ready=("file", record["ready"]), env=pyproc.python_env(), clean=(record["ready"],),
        pid=int(record["pid"]))]


def router_name(router: str) -> str:
    return f"exabgp/{router}"


def exabgp_daemons(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[sv.DaemonSpec]:
    """ExaBGP (and through its `process` API, the lab's helper) of every external router (`routers:`)."""
    from lab.bgp import exabgp
    records = {r["router"]: r for r in runtime.get("routers") or []}
    program = exabgp.binary()
    if not records or program is None:
        return []
    specs = []
    for router in topology.routers:
        record = records.get(router.name)
        if record is None:
            continue
        directory = exabgp.router_dir(store.files_dir(topology.name), router.name)
        ready = os.path.join(directory, "api.ready")
        specs.append(sv.DaemonSpec(
            name=router_name(router.name), netns=names.node_netns(topology.name, router.name),
            argv=tuple(exabgp.argv(program, record["conf"])), log=os.path.join(directory, "exabgp.out"),
            ready=("file", ready), cwd=directory, env=exabgp.settings(os.path.join(directory, "exabgp.log")),
            clean=(ready,), pid=int(record["pid"])))
    return specs


PROVIDERS: tuple[Provider, ...] = (bird_daemons, route_agent_daemons, probe_server_daemons, exabgp_daemons)


def specs(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[sv.DaemonSpec]:
    return [spec for provider in PROVIDERS for spec in provider(topology, store, runtime)]


def start(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> dict[str, Any] | None:
    """Start the lab's supervisor over every daemon `lab up` started; its runtime record (None: nothing runs)."""
    daemons = specs(topology, store, runtime)
    if not daemons:
        return None
    state_dir = store.lab_dir(topology.name)
    pid = sv.start(names.underlay_netns(topology.name), state_dir, daemons)
    return {"pid": pid, "daemons": [d.name for d in daemons], **sv.paths(state_dir)}


def stop(store: StateStore, lab: str, runtime: dict[str, Any] | None) -> None:
    """Stop the lab's supervisor (before anything else goes, so nothing is restarted during teardown)."""
    from lab.netns import apply
    record = (runtime or {}).get("supervisor")
    pid = record.get("pid") if record else None
    status = sv.read_status(store.lab_dir(lab)) if os.path.isdir(store.lab_dir(lab)) else None
    candidates = {p for p in (pid, (status or {}).get("pid")) if p}
    alive = [p for p in candidates if sv.is_supervisor(int(p))]
    if alive:
        apply.stop_processes([int(p) for p in alive], grace=5.0)


def request(store: StateStore, lab: str, op: str, daemons: list[str]) -> dict[str, Any]:
    return sv.request(store.lab_dir(lab), op, daemons)


def health(store: StateStore, lab: str, runtime: dict[str, Any]) -> dict[str, Any] | None:
    """The supervisor and its daemons as `lab status` shows them; None for a lab with nothing to supervise."""
    record = runtime.get("supervisor")
    if not record:
        return None
    status = sv.read_status(store.lab_dir(lab)) or {}
    pid = status.get("pid") or record["pid"]
    alive = sv.is_supervisor(int(pid))
    rows = status.get("daemons", [])
    if not alive:   # nobody restarts anything: say which of the daemons last seen running are gone
        rows = [row | {"state": "dead"} if row["state"] == sv.RUNNING and not _alive(int(row["pid"] or 0)) else row
                for row in rows]
    return {"pid": pid, "alive": alive, "log": record.get("log"), "daemons": rows}


def current_pids(store: StateStore, lab: str) -> dict[str, int]:
    """Each supervised daemon's pid now (a restarted daemon has a new one)."""
    status = sv.read_status(store.lab_dir(lab)) or {}
    return {row["name"]: row["pid"] for row in status.get("daemons", []) if row.get("pid")}


def with_current_pids(runtime: dict[str, Any], pids: dict[str, int]) -> dict[str, Any]:
    """The runtime record with the route agent's and probe servers' pids as they are now."""
    fresh = dict(runtime)
    for key, name in (("route_agent", ROUTE_AGENT), ("probe_servers", PROBE_SERVERS)):
        if fresh.get(key) and name in pids:
            fresh[key] = dict(fresh[key]) | {"pid": pids[name]}
    return fresh


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
