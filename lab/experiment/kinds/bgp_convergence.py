"""bgp-convergence: how long Calico's BGP (BIRD on every node) takes to converge, and to heal.

For Calico topologies with BIRD (e.g. generated `calico-bgp` meshes and route-reflector labs of N
nodes). The kind brings the lab up itself in every repetition (`lab up`, which returns without
waiting for BGP, like `lab up --no-wait`) and measures, per repetition:
  up_s              `lab up` itself
  converged_s       from the start of `lab up` until every node's main table holds every other
                    node's block as a `proto bird` route (one netlink dump per node per poll)
  sessions_total    BGP sessions Established over all nodes, and per node (min, max)
  bird_rss_avg/max  VmRSS of the nodes' BIRDs (MB)
  routes_per_node_min/max, agent_rss (MB), agent_write_errors, route_problems (converged routes whose
                    next hop is not the owning node, or an own block that is not a blackhole)
  withdraw_s        `lab fault bird-stop` (SIGTERM, not restarted) on the last node until its block has
                    left every other node
  relearn_s         `lab fault bird-start` until its block is back everywhere
  down_s, leftovers `lab down`, then namespaces, BIRD and route-agent processes and state it left
with param nodes=N, and timelines: routes per node and sessions Established per node over time
from `lab up` (series `routes:<node>`, `sessions_established:<node>`).
A step that does not converge within `timeout` is a failure of the run (nothing is made up).
"""

from __future__ import annotations

import os
import time
from typing import Any

from lab.bgp import birdc
from lab.bgp.daemons import BirdPaths
from lab.cni.calico import config as calico_config
from lab.errors import LabError
from lab.experiment import bgpwatch
from lab.experiment.kinds import Kind, LabContext, Value


class BgpConvergence(Kind):
    id = "bgp-convergence"
    pair_based = False
    owns_lab = True
    caveat = ("BIRD programs table 201 and the lab's route agent mirrors it into the main table: the "
              "times to routes present/withdrawn include the agent's reaction (a real node's BIRD writes the "
              "main table itself)")
    SCHEMA = {
        "interval": {"type": "number", "minimum": 0.02, "maximum": 5, "default": 0.1,
                     "description": "seconds between route polls"},
        "timeout": {"type": "number", "minimum": 5, "maximum": 3600, "default": 120,
                    "description": "seconds to wait for each convergence before the run fails"},
        "reconverge": {"type": "boolean", "default": True,
                       "description": "also stop and restart one node's BIRD (withdraw_s, relearn_s)"},
    }

    def check_topology(self, topology: Any, params: dict[str, Any]) -> str | None:
        if (calico := calico_config.find(topology)) is None or calico.backend != "bird":
            return (f"topology {topology.name} runs no BIRD; use a Calico BGP topology "
                    "(or `generate: {template: calico-bgp, nodes: N}`)")
        return None

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["bird"]

    def estimate(self, params: dict[str, Any]) -> float:
        return 10.0

    def measure(self, ctx: LabContext, params: dict[str, Any]) -> list[Value]:
        problem = self.check_topology(ctx.topology, params)
        calico = calico_config.find(ctx.topology)
        if problem or calico is None:
            raise LabError(f"bgp-convergence: {problem}")
        scenario = scenario_of(ctx)
        nodes = list(scenario.node_names)
        param = ("nodes", str(len(nodes)))
        ctx.implementations["bgp"] = "BIRD " + ("mesh" if calico.bgp.node_to_node_mesh else "route reflectors")
        origin = time.perf_counter()
        up_s = ctx.up()
        watcher = bgpwatch.RouteWatcher({node: scenario.netns(node) for node in nodes})
        try:
            others = {node: [o for o in nodes if o != node] for node in nodes}
            converged = self._converge(ctx, scenario, watcher, origin, params, others)
            established, configured = bgpwatch.wait_sessions(scenario, timeout=30.0)
            rss = bgpwatch.bird_rss(scenario)
            values = [Value("up_s", up_s, "s", *param), Value("converged_s", converged, "s", *param),
                      Value("sessions_total", float(sum(established.values())), "count", *param),
                      Value("sessions_configured", float(configured), "count", *param),
                      Value("sessions_per_node_min", float(min(established.values())), "count", *param),
                      Value("sessions_per_node_max", float(max(established.values())), "count", *param)]
            if rss:
                values += [Value("bird_rss_avg", rss[0], "MB", *param), Value("bird_rss_max", rss[1], "MB", *param)]
            values += self._steady_state(ctx, scenario, watcher, param)
            if params["reconverge"]:
                values += self._reconverge(scenario, watcher, params, param)
        finally:
            watcher.close()      # before `lab down`: an open socket keeps its namespace alive
            down_s = ctx.down()
        left = bgpwatch.leftovers(ctx.lab)
        if any(left.values()):
            ctx.note(f"`lab down {ctx.lab}` left " + ", ".join(f"{k}={v}" for k, v in left.items() if v))
        return values + [Value("down_s", down_s, "s", *param),
                         Value("leftovers", float(sum(left.values())), "count", *param)]

    @staticmethod
    def _steady_state(ctx: LabContext, scenario: bgpwatch.Scenario, watcher: bgpwatch.RouteWatcher,
                      param: tuple[str, str]) -> list[Value]:
        """After convergence: routes per node, the route agent's memory and write errors, and every
        route checked against what Calico programs (next hop = the owning node, own block blackholed)."""
        low, high = bgpwatch.routes_per_node(scenario, watcher)
        values = [Value("routes_per_node_min", float(low), "count", *param),
                  Value("routes_per_node_max", float(high), "count", *param)]
        pid = bgpwatch.agent_pid(ctx.lab)
        rss = bgpwatch.vm_rss_mb(pid) if pid else None
        if rss is not None:
            values.append(Value("agent_rss", rss, "MB", *param))
        problems = bgpwatch.route_problems(scenario, watcher)
        if problems:
            ctx.note(f"{len(problems)} unexpected routes, e.g. " + "; ".join(problems[:3]))
        values.append(Value("route_problems", float(len(problems)), "count", *param))
        errors = bgpwatch.agent_write_errors(ctx.lab)
        if errors is not None:
            values.append(Value("agent_write_errors", float(errors), "count", *param))
        return values

    def _converge(self, ctx: LabContext, scenario: bgpwatch.Scenario, watcher: bgpwatch.RouteWatcher,
                  origin: float, params: dict[str, Any], others: dict[str, list[str]]) -> float:
        """Poll every node each round, recording the timelines, until every node has every block."""
        check = bgpwatch.has_blocks(scenario, others.__getitem__)
        while True:
            polled = time.perf_counter()
            t = polled - origin
            done = True
            for node in scenario.node_names:
                routes = watcher.routes(node)
                ctx.timeline(f"routes:{node}", t, float(len(routes)), "count")
                ctx.timeline(f"sessions_established:{node}", t, float(_established(scenario.paths(node))), "count")
                done = check(node, routes) and done
            if done:
                return time.perf_counter() - origin
            if t > params["timeout"]:
                raise LabError(f"lab {ctx.lab}: BGP not converged {params['timeout']:.0f} s after `lab up`",
                               f"inspect it with `lab birdc <node> show protocols --lab {ctx.lab}` on a re-run")
            time.sleep(max(0.0, params["interval"] - (time.perf_counter() - polled)))

    def _reconverge(self, scenario: bgpwatch.Scenario, watcher: bgpwatch.RouteWatcher, params: dict[str, Any],
                    param: tuple[str, str]) -> list[Value]:
        victim = scenario.victim()
        paths = scenario.paths(victim)
        others = [node for node in scenario.node_names if node != victim]
        from lab.lifecycle import Lab
        if not os.path.exists(paths.pid_file):
            raise LabError(f"no running bird behind {paths.pid_file}")
        start = time.perf_counter()
        Lab().fault(scenario.lab, "bird-stop", victim)   # as a SIGTERM, but the lab's supervisor leaves it stopped
        withdraw = bgpwatch.wait_for(watcher, others, bgpwatch.lacks_blocks(scenario, victim), start,
                                     params["timeout"], params["interval"])
        if withdraw is None:
            raise LabError(f"{victim}'s block still present {params['timeout']:.0f} s after stopping its BIRD")
        start = time.perf_counter()
        Lab().fault(scenario.lab, "bird-start", victim)
        relearn = bgpwatch.wait_for(watcher, others, bgpwatch.has_blocks(scenario, lambda _: [victim]), start,
                                    params["timeout"], params["interval"])
        if relearn is None:
            raise LabError(f"{victim}'s block not back {params['timeout']:.0f} s after restarting its BIRD")
        return [Value("withdraw_s", withdraw, "s", *param), Value("relearn_s", relearn, "s", *param)]


def _established(paths: BirdPaths) -> int:
    try:
        return sum(1 for state in birdc.established(paths.socket).values() if state == "Established")
    except (OSError, birdc.BirdError):
        return 0


def scenario_of(ctx: LabContext) -> bgpwatch.Scenario:
    """The lab as bgpwatch sees it: node names, addresses and blocks from the model."""
    return bgpwatch.scenario_from(ctx.topology, ctx.lab, "", None)


KIND = BgpConvergence()
