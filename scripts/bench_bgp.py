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
  withdraw    `lab fault bird-stop` (the lab's supervisor SIGTERMs it and leaves it stopped) on one
              non-reflector node's bird until its block has left every other node's
              main table
  re-learn    `lab fault bird-start` on that node until its block is back everywhere
  down        `lab down`, then leftovers: namespaces with the lab's prefix, bird and route-agent
              processes of the lab, /run/lab/<lab>
It also checks each converged route's next hop (the owning node's address) and reports the route
agent's write errors. MB here are MiB. Targets: the 100-node full mesh converged within 30 s; at
most 5 MB RSS per bird.

A thin caller of the bgp-convergence measurement kind (lab/experiment/kinds/bgp_convergence.py):
each (variant, N) is one run of a one-mode experiment through lab.experiment.run, with the kind's
generated topology; the table is read back from its samples. `lab up` is timed in-process here.

Failover (issue 13; `--failover N`, a section of its own, below the table): on an N-node full mesh with
BIRD's default timers (Calico's bird.cfg sets none: hold time 240 s, keepalive 80 s = hold/3, BIRD 1.6's
graceful restart time 120 s; Calico's template turns `graceful restart` on and sets `connect retry time 5`,
`error wait time 5,30`), the last node fails `--failover-repeat` times each way:
  bird-stop   from `lab fault bird-stop` (in-process, SIGTERM to its BIRD) until no other node has a
              `proto bird` route via the victim; then bird-start until every one has one again
  link-down   from `lab fault link-down` (its switch port down: no Cease, the peers must notice) until
              the same withdrawal; then link-up until the routes are back
Targets: withdrawal <= 1 s after bird-stop (BIRD closes its sessions with a Cease at once) and <= hold
time + 1 s after link-down.

Usage (as root): .venv/bin/python scripts/bench_bgp.py [--nodes 3,10,50,100] [--variants mesh,rr]
                                                  [--large] [--interval 0.1] [--json out.json]
                                                  [--failover 3 [--failover-repeat 2] [--failover-only]]
                 .venv/bin/python scripts/bench_bgp.py --tor [--tor-repeat 3] [--tor-linkdown 1]

--tor runs only the ToR section instead (scripts/bench_bgp_tor.py: calico-tor with ExaBGP ToRs,
timed by `lab bgp monitor`: convergence after `lab up`, failover after bird-stop and link-down,
recovery, ExaBGP RSS per router).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

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


# -- failover (issue 13): `lab fault` on a full mesh with BIRD's default timers ----------------------------
BIRD_HOLD_S = 240.0              # BIRD's default `hold time` (proto/bgp/config.Y); Calico's bird.cfg sets none
BIRD_KEEPALIVE_S = 80.0          # default: a third of the hold time
TARGET_AFTER_BIRD_STOP_S = 1.0
FAILOVER_TIMEOUT_S = 600.0
FAILOVER_TOPOLOGY = """\
name: {name}
description: bench_bgp failover - a plain full mesh, no encapsulation
cluster: {{cni: calico}}
networks:
  - {{name: lan, cidr: 192.168.10.0/24, gateway: 192.168.10.1}}
nodes:
{nodes}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {{name: default-ipv4-ippool}}
    spec: {{cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never}}
"""


@dataclass
class Failover:
    """One failure and its recovery: seconds from the fault (and from its undo) until every peer saw it."""

    fault: str
    withdrawn_s: float | None
    recovered_s: float | None
    hold_s: int = 0              # the hold time the victim's sessions negotiated (BIRD `show protocols all`)
    keepalive_s: int = 0


def routes_via(netns: str, gateway: str) -> int:
    """How many `proto bird` routes of the namespace's main table go via `gateway`."""
    import subprocess
    out = subprocess.run(["ip", "-n", netns, "-j", "route", "show", "proto", "bird"], capture_output=True,
                         text=True, check=True).stdout
    return sum(1 for route in json.loads(out or "[]") if route.get("gateway") == gateway)


def watch(condition, started: float, timeout: float, interval: float) -> float | None:
    """Seconds from `started` (perf_counter) until `condition()` holds, polled every `interval`; None on timeout
    or when the lab went away under the benchmark (`ip -n` fails)."""
    import subprocess
    import time
    while time.perf_counter() - started < timeout:
        try:
            if condition():
                return time.perf_counter() - started
        except subprocess.CalledProcessError:
            return None
        time.sleep(interval)
    return None


def failover_once(lab, name: str, fault: str, victim: str, victim_ip: str, peers: list[str],
                  interval: float) -> Failover:
    """Apply `fault` to the victim while a thread watches the peers' tables, then undo it the same way."""
    import threading
    import time
    undo = {"bird-stop": "bird-start", "link-down": "link-up"}[fault]
    timings: dict[str, float | None] = {}

    def run(action: str, wanted) -> None:
        started = time.perf_counter()
        watcher = threading.Thread(target=lambda: timings.__setitem__(
            action, watch(wanted, started, FAILOVER_TIMEOUT_S, interval)))
        watcher.start()
        lab.fault(name, action, victim)
        watcher.join()
    run(fault, lambda: all(routes_via(f"{name}.{p}", victim_ip) == 0 for p in peers))
    run(undo, lambda: all(routes_via(f"{name}.{p}", victim_ip) > 0 for p in peers))
    return Failover(fault, timings[fault], timings[undo])


def bench_failover(nodes: int, repeat: int, interval: float, workdir: Path) -> list[Failover]:
    """Bring up an N-node mesh, fail its last node `repeat` times by bird-stop and by link-down, take it down."""
    from lab.lifecycle import Lab
    name = f"failover-{secrets.token_hex(3)}"
    ips = [f"192.168.10.{10 + i}" for i in range(nodes)]
    listed = "\n".join(f"  - {{name: node{i}, network: lan, ip: {ip}}}" for i, ip in enumerate(ips))
    path = workdir / f"{name}.yaml"
    path.write_text(FAILOVER_TOPOLOGY.format(name=name, nodes=listed))
    lab = Lab()
    results: list[Failover] = []
    try:
        lab.up(str(path))
        lab.wait(name, 120.0)
        victim, peers = f"node{nodes - 1}", [f"node{i}" for i in range(nodes - 1)]
        import bench_bgp_tor
        for fault in ("bird-stop", "link-down"):
            for _ in range(repeat):
                lab.wait(name, 120.0)
                # BIRD-BIRD: both offer 240 s; read what the session took rather than assume it
                hold, keepalive = bench_bgp_tor.negotiated_timers(name, peers[0], ips[-1])
                result = failover_once(lab, name, fault, victim, ips[-1], peers, interval)
                result.hold_s, result.keepalive_s = hold, keepalive
                print(f"  failover {fault}: withdrawn {seconds(result.withdrawn_s)}, "
                      f"recovered {seconds(result.recovered_s)}", file=sys.stderr, flush=True)
                results.append(result)
    finally:
        lab.down(name)
    return results


def failover_table(nodes: int, results: list[Failover]) -> str:
    """One row per fault: withdrawal and recovery as min / median / max over the repetitions."""
    import statistics

    def summary(values: list[float | None]) -> str:
        done = [v for v in values if v is not None]
        missing = len(values) - len(done)
        if not done:
            return "timeout"
        text = f"{min(done):.2f} / {statistics.median(done):.2f} / {max(done):.2f} s"
        return text + (f" ({missing} timed out)" if missing else "")
    holds = "/".join(str(h) for h in sorted({r.hold_s for r in results}))
    keepalives = "/".join(str(k) for k in sorted({r.keepalive_s for r in results}))
    lines = [f"Failover on a {nodes}-node full mesh, BIRD's default timers (hold {BIRD_HOLD_S:.0f} s, keepalive "
             f"{BIRD_KEEPALIVE_S:.0f} s; graceful restart on, as in Calico's bird.cfg); negotiated (BIRD `show "
             f"protocols all`): hold {holds} s, keepalive {keepalives} s", "",
             "| fault | runs | withdrawn at every peer (min / median / max) | back after the undo | target |",
             "|---|---|---|---|---|"]
    for fault, target in (("bird-stop", f"<= {TARGET_AFTER_BIRD_STOP_S:.0f} s"),
                          ("link-down", f"<= negotiated hold + 1 = {_hold_limit(results):.0f} s")):
        rows = [r for r in results if r.fault == fault]
        if rows:
            lines.append(f"| {fault} | {len(rows)} | {summary([r.withdrawn_s for r in rows])} | "
                         f"{summary([r.recovered_s for r in rows])} | {target} |")
    return "\n".join(lines)


def _hold_limit(results: list[Failover]) -> float:
    """The link-down target: the largest hold time the victim's sessions negotiated, plus 1 s."""
    return max((r.hold_s for r in results if r.fault == "link-down"), default=0) + 1.0


def failover_targets(results: list[Failover]) -> list[str]:
    out = []
    for fault, limit in (("bird-stop", TARGET_AFTER_BIRD_STOP_S), ("link-down", _hold_limit(results))):
        rows = [r for r in results if r.fault == fault]
        values = [r.withdrawn_s for r in rows]
        if values:
            worst = max((v for v in values if v is not None), default=None)
            within = all(r.withdrawn_s is not None and (r.withdrawn_s <= TARGET_AFTER_BIRD_STOP_S
                                                        if fault == "bird-stop" else r.withdrawn_s <= r.hold_s + 1)
                         for r in rows)
            ok = worst is not None and within
            out.append(f"  failover after {fault} <= {limit:.0f} s: {'MET' if ok else 'MISSED'} "
                       f"(worst {seconds(worst)})")
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default=DEFAULT_NODES, help=f"comma-separated node counts (default {DEFAULT_NODES})")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: mesh, rr (default both)")
    parser.add_argument("--large", action="store_true", help=f"also run {', '.join(map(str, LARGE_NODES))} nodes "
                        "(each only if memory allows)")
    parser.add_argument("--interval", type=float, default=0.1, help="route poll interval in seconds (default 0.1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each convergence")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--failover", type=int, metavar="N", help="also measure failover on an N-node mesh (issue 13)")
    parser.add_argument("--failover-repeat", type=int, default=2, help="repetitions of each fault (default 2)")
    parser.add_argument("--failover-only", action="store_true", help="only the failover section")
    # -- the ToR section (issue 13): scripts/bench_bgp_tor.py --
    parser.add_argument("--tor", action="store_true", help="run only the ToR section (calico-tor, ExaBGP ToRs)")
    parser.add_argument("--tor-repeat", type=int, default=3, help="ToR runs (bird-stop/start in each; default 3)")
    parser.add_argument("--tor-linkdown", type=int, default=1,
                        help="ToR runs that also take node-a1's link down (each waits out a hold timer; default 1)")
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
    if args.tor:                  # the ToR section (issue 13)
        import bench_bgp_tor
        return bench_bgp_tor.run(args.tor_repeat, args.tor_linkdown, args.timeout)
    results: list[Result] = []
    failovers: list[Failover] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bgp-") as tmp:
            if args.failover:
                failovers = bench_failover(args.failover, args.failover_repeat, args.interval, Path(tmp))
            for nodes in ([] if args.failover_only else args.nodes):
                if nodes in LARGE_NODES and not memory_allows(nodes):
                    print(f"bench_bgp: skipping {nodes} nodes: not enough memory available", file=sys.stderr)
                    continue
                for variant in args.variants:
                    result = bench(variant, nodes, args, Path(tmp))
                    results.append(result)
                    print("  " + " | ".join(row_cells(result)), file=sys.stderr, flush=True)
    except KeyboardInterrupt:     # the runner took its lab down
        print("bench_bgp: interrupted", file=sys.stderr)
    if results:
        print(markdown_table(results))
        print()
        print("Targets:")
        print("\n".join(targets(results)))
    if failovers:
        print()
        print(failover_table(args.failover, failovers))
        print()
        print("Failover targets:")
        print("\n".join(failover_targets(failovers)))
    found = list(notes(results))
    if found:
        print()
        print("Notes:")
        print("\n".join(found))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
        if failovers:
            data = json.loads(Path(args.json).read_text())
            Path(args.json).write_text(json.dumps({"bgp": data, "failover": [asdict(f) for f in failovers]}, indent=2))
    return 0 if (results or failovers) and not found else 1


if __name__ == "__main__":
    sys.exit(main())
