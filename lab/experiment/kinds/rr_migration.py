"""rr-migration: the seed's route-reflector migration (002 section 6.6) on a live full-mesh lab, with
traffic loss measured by a UDP probe every 10 ms, in the seed's order or in the safe order.

The steps are the seed's own manifests (examples/calico/) applied to the running lab as `lab apply`
and `lab label` do:
  mesh-off  BGPConfiguration default with nodeToNodeMeshEnabled: false   (bgpconfig-nomesh.yaml)
  label     kubectl label node <reflector> route-reflector=true
  rr-node   Node <reflector> with routeReflectorClusterID 244.0.0.1        (rr-node.yaml)
  bgppeer   BGPPeer peer-with-route-reflectors                             (bgppeer.yaml)
order `seed`: mesh-off, label, rr-node, bgppeer (as the article runs them: the mesh goes first, so
every session drops before the reflector exists); order `safe`: label, rr-node, bgppeer, mesh-off.

Each repetition brings a fresh lab up (the migration changes it), waits until every node has every
block, starts the probe (default/xp-a -> default/xp-c, cross-node, echoed back), runs the steps
`step_gap` seconds apart, waits until every node has every block again, and records:
  outage_s       the longest run of lost probes (x interval)
  lost_probes    probes without an echo; lost_pct their share
  routes_back_s  from the last step until every node has every block again
  sessions_after BGP sessions Established over all nodes at the end
  peers_wait_s   (safe order) how long the operator waited, before mesh-off, for every node's new
                 BGPPeer/reflector sessions to be Established (BIRD polled every 0.1 s, at most
                 `peer_timeout` s); peers_ready is 1 when they all came up within it, else 0
every value with param=order, param_value=seed|safe; and the timelines probe_lost:<order> (lost probes
per 100 ms) and step:<name> (when each step ran, value 1; step:peers-established when the wait
ended), with t_s counted from the first step. The order is never an entry of environment.json's
`implementations` (both orders run on the same mode).

Caveat (recorded as a note in environment.json): in the lab BIRD programs table 201 and the lab's
route agent mirrors it into the main table, so route times include the agent's reaction.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from lab import live
from lab.bgp import birdc
from lab.cni.calico import config as calico_config
from lab.errors import LabError
from lab.experiment import bgpwatch, proc
from lab.experiment.kinds import Kind, LabContext, Value
from lab.experiment.kinds.bgp_convergence import scenario_of
from lab.lifecycle import Lab

PORT = 11130
MANIFESTS = Path(__file__).resolve().parents[3] / "examples" / "calico"
ORDERS = {"seed": ("mesh-off", "label", "rr-node", "bgppeer"), "safe": ("label", "rr-node", "bgppeer", "mesh-off")}
FILES = {"mesh-off": "bgpconfig-nomesh.yaml", "rr-node": "rr-node.yaml", "bgppeer": "bgppeer.yaml"}
BUCKET = 0.1


class RrMigration(Kind):
    id = "rr-migration"
    owns_lab = True
    SCHEMA = {
        "order": {"enum": ["seed", "safe"], "default": "seed",
                  "description": "seed: mesh off first (as the article); safe: mesh off last"},
        "reflector": {"type": "string", "default": "k8s-node01", "description": "the node that becomes the reflector"},
        "step_gap": {"type": "number", "minimum": 0, "maximum": 120, "default": 2.0,
                     "description": "seconds between two steps (a person typing the next command)"},
        "settle": {"type": "number", "minimum": 1, "maximum": 600, "default": 30.0,
                   "description": "seconds to wait after the last step for every route to be back"},
        "interval": {"type": "number", "minimum": 0.001, "maximum": 1, "default": 0.01,
                     "description": "seconds between UDP probes"},
        "peer_timeout": {"type": "number", "minimum": 1, "maximum": 600, "default": 30.0,
                         "description": "safe order: at most this many seconds waiting for the new "
                                        "BGPPeer sessions to be Established before mesh-off"},
    }
    caveat = ("BIRD programs table 201 and the lab's route agent mirrors it into the main table: "
              "outage and route times include the agent's reaction (a real node's BIRD writes the main "
              "table itself)")

    def check_topology(self, topology: Any, params: dict[str, Any]) -> str | None:
        calico = calico_config.find(topology)
        if calico is None or calico.backend != "bird" or not calico.bgp.node_to_node_mesh:
            return f"topology {topology.name} is not a Calico BGP full mesh (the migration starts from one)"
        if params["reflector"] not in [n.name for n in topology.nodes]:
            return f"topology {topology.name} has no node {params['reflector']!r} to make the reflector"
        return None

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["bird", "ss"]

    def estimate(self, params: dict[str, Any]) -> float:
        # the safe order waits for the BGPPeer sessions (5-17 s measured here); the seed order for routes back
        step_gap: float = params["step_gap"]
        return 8.0 + 4 * step_gap + 10.0

    def measure(self, ctx: LabContext, params: dict[str, Any]) -> list[Value]:
        if ctx.endpoints is None:
            raise LabError("rr-migration needs the experiment's pods")
        src, dst = ctx.endpoints("cross-node")
        ctx.pair, ctx.placement = f"{src.pod.key}->{dst.pod.key}", "cross-node"
        scenario = scenario_of(ctx)
        everyone = {node: [o for o in scenario.node_names if o != node] for node in scenario.node_names}
        ctx.up()
        watcher = bgpwatch.RouteWatcher({node: scenario.netns(node) for node in scenario.node_names})
        try:
            check = bgpwatch.has_blocks(scenario, everyone.__getitem__)
            if bgpwatch.wait_for(watcher, list(scenario.node_names), check, time.perf_counter(), 120, 0.1) is None:
                raise LabError(f"lab {ctx.lab}: BGP not converged 120 s after `lab up`")
            server = proc.python_module("lab.experiment.pingpong", "server", "--proto", "udp", "--port", str(PORT))
            with proc.Server(dst.netns, server, PORT, udp=True):
                result, steps, back, waited = self._migrate(ctx, params, src.netns, dst.ip, watcher, scenario,
                                                            check)
            established, _ = bgpwatch.established_counts(scenario)
        finally:
            watcher.close()
            ctx.down()
        values = self._values(ctx, params["order"], result, steps, back, sum(established.values()))
        if waited is not None:
            seconds, ready = waited
            values += [Value("peers_wait_s", seconds, "s"), Value("peers_ready", float(ready), "count")]
        return [Value(v.metric, v.value, v.unit, "order", params["order"]) for v in values]

    def _migrate(self, ctx: LabContext, params: dict[str, Any], src_netns: str, dst_ip: str,
                 watcher: bgpwatch.RouteWatcher, scenario: bgpwatch.Scenario, check: Any
                 ) -> tuple[dict[str, Any], list[tuple[str, float]], float | None, tuple[float, bool] | None]:
        lab = Lab()
        total = 1.0 + 4 * params["step_gap"] + params["settle"] + 2.0
        argv = proc.python_module("lab.experiment.udpprobe", "--host", dst_ip, "--port", str(PORT),
                                  "--interval", str(params["interval"]), "--duration", str(total))
        probe = subprocess.Popen(proc.in_netns(src_netns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
        steps: list[tuple[str, float]] = []
        waited: tuple[float, bool] | None = None
        try:
            time.sleep(1.0)                      # a second of probes before the first step
            for index, step in enumerate(ORDERS[params["order"]]):
                if index:
                    time.sleep(params["step_gap"])
                if step == "mesh-off" and index:  # the safe order: the new sessions first, as an operator checks
                    waited = wait_peers(scenario, params["peer_timeout"])
                    steps.append(("peers-established", time.monotonic()))
                    if not waited[1]:
                        ctx.note(f"the BGPPeer sessions were not all Established {params['peer_timeout']:.0f} s "
                                 "after the BGPPeer step; turning the mesh off anyway")
                steps.append((step, time.monotonic()))
                self._step(lab, ctx.lab, step, params["reflector"])
            last = time.perf_counter()
            back = bgpwatch.wait_for(watcher, list(scenario.node_names), check, last, params["settle"], 0.05)
            time.sleep(1.0)                      # a second of probes after the routes are back
        finally:
            if probe.poll() is None:
                probe.send_signal(signal.SIGTERM)
            out, err = probe.communicate(timeout=30)
        if probe.returncode != 0:
            raise LabError(f"the UDP probe exited {probe.returncode}: {err.strip()[-300:]}")
        return json.loads(out), steps, back, waited

    @staticmethod
    def _step(lab: Lab, name: str, step: str, reflector: str) -> None:
        if step == "label":
            lab.change(name, lambda state, _old: live.with_labels(state, reflector, ["route-reflector=true"], "node"))
            return
        manifests = live.read_manifests(str(MANIFESTS / FILES[step]))
        lab.change(name, lambda state, _old: live.with_file(state, manifests))

    @staticmethod
    def _values(ctx: LabContext, order: str, result: dict[str, Any], steps: list[tuple[str, float]],
                back: float | None, sessions: int) -> list[Value]:
        sent, echoed, interval = result["sent"], set(result["echoed"]), result["interval"]
        lost = [i for i in range(len(sent)) if i not in echoed]
        longest = run = 0
        previous = -2
        for i in lost:
            run = run + 1 if i == previous + 1 else 1
            longest = max(longest, run)
            previous = i
        origin = steps[0][1] if steps else (sent[0] if sent else 0.0)
        for name, at in steps:
            ctx.timeline(f"step:{name}", at - origin, 1.0, "count")
        buckets: dict[int, int] = {}
        for i, at in enumerate(sent):
            key = int((at - origin) // BUCKET)
            buckets[key] = buckets.get(key, 0) + (i not in echoed)
        for key in sorted(buckets):
            ctx.timeline(f"probe_lost:{order}", round(key * BUCKET, 3), float(buckets[key]), "count")
        if back is None:
            ctx.note("routes were not all back within `settle` seconds after the last step")
        values = [Value("outage_s", longest * interval, "s"), Value("lost_probes", float(len(lost)), "count"),
                  Value("lost_pct", 100.0 * len(lost) / len(sent) if sent else 0.0, "%"),
                  Value("sessions_after", float(sessions), "count")]
        if back is not None:
            values.append(Value("routes_back_s", back, "s"))
        return values


def peer_sessions_up(states: dict[str, str]) -> bool:
    """A node's BIRD has at least one non-mesh BGP session (BGPPeer: Node_*/Global_*) and all its BGP
    sessions are Established."""
    peers = [state for name, state in states.items() if not name.startswith("Mesh_")]
    return bool(peers) and all(state == "Established" for state in states.values())


def wait_peers(scenario: bgpwatch.Scenario, timeout: float, every: float = 0.1) -> tuple[float, bool]:
    """Poll every node's BIRD until its BGPPeer sessions are Established: (seconds waited, all up)."""
    started = time.perf_counter()
    pending = set(scenario.node_names)
    while True:
        for node in sorted(pending):
            try:
                states = birdc.established(scenario.paths(node).socket)
            except (OSError, birdc.BirdError):
                continue
            if peer_sessions_up(states):
                pending.discard(node)
        waited = time.perf_counter() - started
        if not pending or waited >= timeout:
            return waited, not pending
        time.sleep(every)


KIND = RrMigration()
