#!/usr/bin/env python3
"""Benchmark Calico BGP (BIRD 1.6 + the lab's route agent) on generated labs of N nodes.

Two variants per N: `mesh` (the node-to-node full mesh) and `rr` (mesh off; the first two nodes
are route reflectors with cluster ID 244.0.0.1, every node peers with them through a BGPPeer).
Every lab has one underlay segment (a /24, or 192.168.0.0/16 above 200 nodes), the pool
10.244.0.0/16 with /26 blocks and no encapsulation, and one pod per node.

For each (variant, N) it measures, as a user would see them:
  up          `lab up` itself
  converged   from starting `lab up` until every node's main table holds every other node's block
              as a unicast `proto bird` route (one filtered netlink route dump per node namespace
              per poll; polling starts when `lab up` returns: BIRD only connects after it starts)
  sessions    BGP protocols Established, in total (of those configured) and per node (min-max),
              from each node's `show protocols` on its BIRD control socket
  routes      `proto bird` routes in each node's main table (the blocks plus its own blackhole)
  RSS         VmRSS of every bird (avg/max) and of the lab's route agent, after convergence
  withdraw    SIGTERM to one non-reflector node's bird until its block has left every other node's
              main table
  re-learn    restarting that bird (as `lab up` starts it) until its block is back everywhere
  down        `lab down`, then leftovers: namespaces with the lab's prefix, bird and route-agent
              processes of the lab, /run/lab/<lab>
It also checks each converged route's next hop (the owning node's address) and reports the route
agent's write errors. MB here are MiB. Targets: the 100-node full mesh converged within 30 s; at
most 5 MB RSS per bird.

Usage (as root): .venv/bin/python scripts/bench_bgp.py [--nodes 3,10,50,100] [--variants mesh,rr]
                                                  [--large] [--interval 0.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab.bgp.daemons import start_birds, stop_bird  # noqa: E402
from lab.experiment.bgpwatch import (VARIANTS, RouteWatcher, Scenario, agent_pid,  # noqa: E402
                                     agent_write_errors, bird_rss, has_blocks, lacks_blocks, leftovers,
                                     make_scenario, route_problems, routes_per_node, vm_rss_mb, wait_for,
                                     wait_sessions)

LAB = [sys.executable, "-m", "lab.cli"]
DEFAULT_NODES = "3,10,50,100"
LARGE_NODES = (150, 200)
TARGET_MESH_NODES = 100
TARGET_CONVERGED_S = 30.0
TARGET_BIRD_RSS_MB = 5.0
MEMORY_PER_NODE_MB = 24          # generous: a node namespace + bird + one pod namespace, for --large
MEMORY_RESERVE_MB = 2048


@dataclass
class Result:
    """Everything measured for one scenario; None where a step timed out or did not run."""

    variant: str
    nodes: int
    sessions_established: int = 0
    sessions_configured: int = 0
    sessions_per_node: tuple[int, int] = (0, 0)
    up_s: float | None = None
    converged_s: float | None = None
    routes_per_node: tuple[int, int] = (0, 0)
    bird_rss_mb: tuple[float, float] | None = None
    agent_rss_mb: float | None = None
    withdraw_s: float | None = None
    relearn_s: float | None = None
    down_s: float | None = None
    leftovers: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- the lab CLI -----------------------------------------------------------------------------------
def run_lab(args: list[str], timeout: float) -> float:
    """Run `lab <args>`; returns its seconds. On Ctrl-C the child (which got the SIGINT too) may roll back."""
    argv = LAB + args
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except BaseException:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({process.returncode}):\n{out}{err}")
    return elapsed


def lab_down(lab: str) -> float:
    return run_lab(["down", lab], timeout=300)


def ensure_down(lab: str) -> None:
    """Bring the lab down if anything of it remains; never raises (used in `finally`)."""
    if not any(leftovers(lab).values()):
        return
    try:
        lab_down(lab)
    except BaseException as exc:  # noqa: BLE001 - best effort; the caller is already unwinding
        print(f"bench_bgp: `lab down {lab}` failed: {exc}", file=sys.stderr)


# -- one scenario ------------------------------------------------------------------------------------
def measure_convergence(scenario: Scenario, watcher: RouteWatcher, origin: float, args: argparse.Namespace,
                        result: Result) -> None:
    """Converged time, then sessions, routes, RSS and route checks at steady state."""
    others = {node: [o for o in scenario.node_names if o != node] for node in scenario.node_names}
    result.converged_s = wait_for(watcher, list(scenario.node_names), has_blocks(scenario, others.__getitem__),
                                  origin, args.timeout, args.interval)
    if result.converged_s is None:
        result.notes.append(f"not converged within {args.timeout:.0f} s")
    established, configured = wait_sessions(scenario, timeout=30.0)
    result.sessions_established = sum(established.values())
    result.sessions_configured = configured
    result.sessions_per_node = (min(established.values()), max(established.values()))
    result.routes_per_node = routes_per_node(scenario, watcher)
    result.bird_rss_mb = bird_rss(scenario)
    pid = agent_pid(scenario.lab)
    result.agent_rss_mb = vm_rss_mb(pid) if pid else None
    problems = route_problems(scenario, watcher)
    if problems:
        result.notes.append(f"{len(problems)} unexpected routes, e.g. " + "; ".join(problems[:3]))
    errors = agent_write_errors(scenario.lab)
    if errors:
        result.notes.append(f"route agent reports {errors} write errors (see /run/lab/{scenario.lab}/routeagent.log)")


def measure_reconvergence(scenario: Scenario, watcher: RouteWatcher, args: argparse.Namespace,
                          result: Result) -> None:
    """Stop the victim's bird until its block is withdrawn everywhere; restart it until it is back."""
    victim = scenario.victim()
    paths = scenario.paths(victim)
    others = [node for node in scenario.node_names if node != victim]
    start = time.perf_counter()
    if stop_bird(paths) is None:
        raise RuntimeError(f"no running bird behind {paths.pid_file}")
    result.withdraw_s = wait_for(watcher, others, lacks_blocks(scenario, victim), start, args.timeout, args.interval)
    if result.withdraw_s is None:
        result.notes.append(f"{victim}'s block still present somewhere {args.timeout:.0f} s after SIGTERM")
    start = time.perf_counter()
    start_birds({victim: (scenario.netns(victim), paths)})
    result.relearn_s = wait_for(watcher, others, has_blocks(scenario, lambda _: [victim]), start, args.timeout,
                                args.interval)
    if result.relearn_s is None:
        result.notes.append(f"{victim}'s block not back everywhere {args.timeout:.0f} s after restarting bird")


def bench(scenario: Scenario, args: argparse.Namespace) -> Result:
    """Up, converge, measure, reconverge, down; the lab is brought down whatever happens."""
    result = Result(variant=scenario.variant, nodes=scenario.nodes)
    ensure_down(scenario.lab)  # a previous, interrupted run
    watcher: RouteWatcher | None = None
    try:
        origin = time.perf_counter()
        result.up_s = run_lab(["up", "--no-wait", str(scenario.path)], timeout=600)
        watcher = RouteWatcher({node: scenario.netns(node) for node in scenario.node_names})
        measure_convergence(scenario, watcher, origin, args, result)
        measure_reconvergence(scenario, watcher, args, result)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        result.notes.append(f"aborted: {exc}")
    finally:
        if watcher is not None:
            watcher.close()  # before `lab down`: an open socket keeps its namespace alive
        try:
            result.down_s = lab_down(scenario.lab)
        except RuntimeError as exc:
            result.notes.append(f"lab down failed: {exc}")
        finally:
            result.leftovers = leftovers(scenario.lab)
            ensure_down(scenario.lab)
    return result


# -- output ----------------------------------------------------------------------------------------
COLUMNS = ["nodes", "variant", "sessions total", "sessions/node min–max", "up (s)", "converged (s)", "routes/node",
           "bird RSS avg/max (MB)", "agent RSS (MB)", "withdraw (s)", "re-learn (s)", "down (s)", "leftovers"]


def seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f}"


def span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def row_cells(r: Result) -> list[str]:
    left = ", ".join(f"{k}={v}" for k, v in r.leftovers.items() if v) or "none"
    rss = f"{r.bird_rss_mb[0]:.2f} / {r.bird_rss_mb[1]:.2f}" if r.bird_rss_mb else "–"
    return [str(r.nodes), r.variant, f"{r.sessions_established}/{r.sessions_configured}",
            span(*r.sessions_per_node), seconds(r.up_s), seconds(r.converged_s), span(*r.routes_per_node), rss,
            f"{r.agent_rss_mb:.1f}" if r.agent_rss_mb is not None else "–", seconds(r.withdraw_s),
            seconds(r.relearn_s), seconds(r.down_s), left]


def markdown_table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def targets(results: list[Result]) -> list[str]:
    """The targets, each with its value and whether it was met."""
    lines = []
    mesh = [r for r in results if r.variant == "mesh" and r.nodes == TARGET_MESH_NODES]
    if mesh:
        converged = mesh[0].converged_s
        met = converged is not None and converged <= TARGET_CONVERGED_S
        lines.append(f"- {TARGET_MESH_NODES}-node full mesh converged within {TARGET_CONVERGED_S:.0f} s: "
                     f"{seconds(converged)} s: {'met' if met else 'MISSED'}")
    else:
        lines.append(f"- {TARGET_MESH_NODES}-node full mesh converged within {TARGET_CONVERGED_S:.0f} s: not run")
    rss = [(r.bird_rss_mb[1], r) for r in results if r.bird_rss_mb]
    if rss:
        worst, where = max(rss, key=lambda item: item[0])
        lines.append(f"- at most {TARGET_BIRD_RSS_MB:.0f} MB RSS per node (bird): max {worst:.2f} MB "
                     f"({where.variant}, {where.nodes} nodes): {'met' if worst <= TARGET_BIRD_RSS_MB else 'MISSED'}")
    return lines


def notes(results: list[Result]) -> Iterator[str]:
    for r in results:
        for note in r.notes:
            yield f"- {r.variant} {r.nodes}: {note}"


# -- main --------------------------------------------------------------------------------------------
def node_counts(text: str, large: bool) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if any(n < 3 for n in counts):
        raise SystemExit("bench_bgp: every N must be at least 3 (the rr variant needs a client besides 2 reflectors)")
    return counts + [n for n in LARGE_NODES if large and n not in counts]


def memory_allows(nodes: int) -> bool:
    """Whether MemAvailable covers a lab of `nodes` nodes with a reserve to spare."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        available = next(int(line.split()[1]) for line in handle if line.startswith("MemAvailable:")) / 1024
    return available >= MEMORY_RESERVE_MB + nodes * MEMORY_PER_NODE_MB


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default=DEFAULT_NODES, help=f"comma-separated node counts (default {DEFAULT_NODES})")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: mesh, rr (default both)")
    parser.add_argument("--large", action="store_true", help=f"also run {', '.join(map(str, LARGE_NODES))} nodes "
                        "(each only if memory allows)")
    parser.add_argument("--interval", type=float, default=0.1, help="route poll interval in seconds (default 0.1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each convergence")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    args.nodes = node_counts(args.nodes, args.large)
    return args


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_bgp: run as root (a root shell, or sudo); it builds labs in network namespaces")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: labs come down
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bgp-") as tmp:
            for nodes in args.nodes:
                if nodes in LARGE_NODES and not memory_allows(nodes):
                    print(f"bench_bgp: skipping {nodes} nodes: not enough memory available", file=sys.stderr)
                    continue
                for variant in args.variants:
                    result = bench(make_scenario(variant, nodes, Path(tmp)), args)
                    results.append(result)
                    print("  " + " | ".join(row_cells(result)), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench_bgp: interrupted; labs were brought down", file=sys.stderr)
    print(markdown_table(results))
    print()
    print("Targets:")
    print("\n".join(targets(results)))
    found = list(notes(results))
    if found:
        print()
        print("Notes:")
        print("\n".join(found))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if results and not found else 1


if __name__ == "__main__":
    sys.exit(main())
