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

A thin caller of the bgp-convergence measurement kind (lab/experiment/kinds/bgp_convergence.py):
each (variant, N) is one run of a one-mode experiment through lab.experiment.run, with the kind's
generated topology; the table is read back from its samples. `lab up` is timed in-process here.

Usage (as root): .venv/bin/python scripts/bench_bgp.py [--nodes 3,10,50,100] [--variants mesh,rr]
                                                  [--large] [--interval 0.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import experiment  # noqa: E402
from lab.experiment.bgpwatch import VARIANTS  # noqa: E402
from lab.experiment.results import Results  # noqa: E402

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


# -- one scenario: one run of the bgp-convergence kind -----------------------------------------------
def experiment_text(variant: str, nodes: int, args: argparse.Namespace) -> str:
    return (f"name: bench-bgp\nrepetitions: 1\nwarmup: 0\nplacements: [same-node]\nmodes:\n"
            f"  - {{name: {variant}-{nodes}, generate: {{template: calico-bgp, nodes: {nodes}, variant: {variant}}}}}\n"
            f"measurements:\n  - {{kind: bgp-convergence, interval: {args.interval}, timeout: {args.timeout}}}\n")


def bench(variant: str, nodes: int, args: argparse.Namespace, workdir: Path) -> Result:
    """Run the kind on one generated lab (it brings the lab up and down itself); its samples as a Result."""
    path = workdir / f"{variant}-{nodes}.yaml"
    path.write_text(experiment_text(variant, nodes, args))
    results = experiment.run(str(path), out=str(workdir / "results"))
    result = result_of(variant, nodes, results)
    if results.status != "complete":
        result.notes.append(f"aborted: {results.environment.get('reason')}")
    return result


def result_of(variant: str, nodes: int, results: Results) -> Result:
    got = {s.metric: s.value for s in results.samples}

    def count(metric: str) -> int:
        return int(got.get(metric, 0))
    result = Result(variant=variant, nodes=nodes, sessions_established=count("sessions_total"),
                    sessions_configured=count("sessions_configured"),
                    sessions_per_node=(count("sessions_per_node_min"), count("sessions_per_node_max")),
                    up_s=got.get("up_s"), converged_s=got.get("converged_s"),
                    routes_per_node=(count("routes_per_node_min"), count("routes_per_node_max")),
                    bird_rss_mb=(got["bird_rss_avg"], got["bird_rss_max"]) if "bird_rss_avg" in got else None,
                    agent_rss_mb=got.get("agent_rss"), withdraw_s=got.get("withdraw_s"),
                    relearn_s=got.get("relearn_s"), down_s=got.get("down_s"),
                    leftovers={"left": count("leftovers")})
    if count("route_problems"):
        result.notes.append(f"{count('route_problems')} unexpected routes (see the run's output)")
    if count("agent_write_errors"):
        result.notes.append(f"route agent reports {count('agent_write_errors')} write errors")
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
                    result = bench(variant, nodes, args, Path(tmp))
                    results.append(result)
                    print("  " + " | ".join(row_cells(result)), file=sys.stderr, flush=True)
    except KeyboardInterrupt:     # the runner took its lab down
        print("bench_bgp: interrupted", file=sys.stderr)
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
