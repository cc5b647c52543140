#!/usr/bin/env python3
"""Benchmark NetworkPolicy enforcement: apply-to-enforced latency, probe matrix time, rules per node.

For each enforcer (kube-router over flannel vxlan, Calico Felix over Calico BGP) and each pod count
(9, 50, 200 pods over 3, 5 and 10 nodes; pods/3, /10 namespaces), one lab is brought up; then for
each policy count P (1, 10, 100, 1000):
  1. every policy is deleted and the watched case (ns-2/p0 -> ns-0/p0, TCP 80) is probed: allowed;
  2. a manifest of P policies is applied with `lab apply -f` (in-process: Lab.change). Policy i lives
     in namespace ns-(i mod k), selects pods `pod=p<(i div k) mod m>` and allows TCP 80 from the
     namespace ns-(i+1 mod k): so policy 0 isolates ns-0/p0 and admits only ns-1;
  3. apply-to-enforced: from the start of the apply until a probe of the watched case sees "denied"
     (probing every 5 ms);
  4. the full TCP/80 matrix (pods x pods) is probed and compared with the reference evaluator:
     time, probes, mismatches;
  5. iptables rules per node: `-A` lines of `iptables-save` in each node namespace (min/avg/max) and
     ipsets per node.
Then `lab down`, and leftovers (namespaces with the lab's prefix, /run/lab/<lab>).
First, the issue's speed target: the full netpol-xyz matrix (9 x 9 pods x 2 ports x 2 protocols = 324
probes) under each enforcer, open and with namespace x isolated (kube-router REJECTs, Calico DROPs,
so denied probes cost one timeout: 1 s); target at most 3 s wall.

Usage (as root): .venv/bin/python scripts/bench_policy.py [--pods 9,50,200] [--policies 1,10,100,1000]
                                                     [--enforcers kube-router,calico] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import live  # noqa: E402
from lab.experiment import policyload  # noqa: E402
from lab.lifecycle import Lab  # noqa: E402
from lab.netns import names, namespace  # noqa: E402
from lab.probe import matrix, reach  # noqa: E402

NODES_FOR = {9: 3, 50: 5, 200: 10}
WATCH_SRC, WATCH_DST = "ns-2/p0", "ns-0/p0"


@dataclass
class Row:
    enforcer: str
    nodes: int
    pods: int
    policies: int
    apply_s: float
    enforced_s: float
    matrix_s: float
    probes: int
    mismatches: int
    rules_min: int
    rules_avg: float
    rules_max: int
    ipsets_max: int


def topology_text(lab: str, enforcer: str, pods: int) -> str:
    """A generated lab: `pods` pods serving TCP/UDP 80, round-robin over nodes and namespaces."""
    nodes = NODES_FOR.get(pods, max(3, pods // 20))
    spaces = max(3, pods // 10 if pods > 9 else 3)
    lines = [f"name: {lab}", "cluster:",
             "  cni: flannel\n  networkPolicy: kube-router" if enforcer == "kube-router" else "  cni: calico",
             "networks: [{name: lan, cidr: 192.168.60.0/24}]", "nodes:"]
    lines += [f"  - {{name: n{i}, ip: 192.168.60.{10 + i}}}" for i in range(nodes)]
    lines.append("namespaces:")
    lines += [f"  - {{name: ns-{i}, labels: {{ns: ns-{i}}}}}" for i in range(spaces)]
    lines.append("pods:")
    for i in range(pods):
        lines.append(f"  - {{name: p{i // spaces}, namespace: ns-{i % spaces}, node: n{i % nodes}, "
                     f"labels: {{pod: p{i // spaces}}}, containerPorts: [{{name: serve-80-tcp, containerPort: 80}}]}}")
    if enforcer == "kube-router":
        lines += ["resources:", "  - {Network: 10.244.0.0/16, Backend: {Type: vxlan}}"]
    else:
        lines += ["resources:", "  - apiVersion: projectcalico.org/v3", "    kind: IPPool",
                  "    metadata: {name: default-ipv4-ippool}",
                  "    spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never}"]
    return "\n".join(lines) + "\n"


def watched(lab: Lab, name: str) -> bool | None:
    topology = lab.topology(name)
    case = matrix.Case(WATCH_SRC, WATCH_DST, 80, "TCP")
    return matrix.observe(topology, [case], timeout=0.5)[case].allowed


def measure(lab: Lab, name: str, enforcer: str, pods: int, count: int, workdir: str) -> Row:
    topology = lab.topology(name)
    spaces = len([n for n in topology.namespaces if n.name.startswith("ns-")])
    per_space = -(-pods // spaces)
    lab.change(name, lambda state, _old: {**state, "files": [], "deleted": []})
    deadline = time.monotonic() + 60         # Calico BGP labs learn their routes after `lab up` returns
    while watched(lab, name) is not True:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: the watched case is not allowed with no policy, 60 s after up")
    path = os.path.join(workdir, f"policies-{count}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(policyload.bench_policies(count, spaces, per_space))
    manifests = live.read_manifests(path)
    started = time.monotonic()
    lab.change(name, lambda state, _old: live.with_file(state, manifests))
    applied = time.monotonic() - started
    while watched(lab, name) is not False:
        if time.monotonic() - started > 60:
            raise SystemExit(f"{name}: the watched case still allowed 60 s after applying {count} policies")
        time.sleep(0.005)
    enforced = time.monotonic() - started
    report = reach.run(lab.topology(name), 80, "TCP", timeout=1.0, source_ports=lab.source_ports(name))
    rules, sets = policyload.count_rules(lab.topology(name))
    return Row(enforcer, len(topology.nodes), pods, count, round(applied, 3), round(enforced, 3),
               round(report.seconds, 3), len(report.results), len(report.mismatches), min(rules),
               round(sum(rules) / len(rules), 1), max(rules), max(sets))


def xyz_matrix(lab: Lab, topology: str, workdir: str) -> list[str]:
    """Seconds for the 324-probe netpol-xyz matrix, open and with x isolated."""
    from lab.topology import registry
    name = f"polbench-{topology.rsplit('-', 1)[-1]}"
    path = os.path.join(workdir, f"{name}.yaml")
    with open(registry.resolve(topology), encoding="utf-8") as source, open(path, "w", encoding="utf-8") as copy:
        copy.write(source.read().replace(f"name: {topology}\n", f"name: {name}\n", 1))
    lab.up(path)
    lines = []
    try:
        deadline = time.monotonic() + 60
        ports = lab.source_ports(name)
        while not all(r.observed for r in reach.run(lab.topology(name), timeout=0.3, source_ports=ports).results):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: pods cannot reach each other 60 s after up")
        for label in ("open", "x isolated"):
            if label == "x isolated":
                manifests = live.read_manifests(os.path.join(os.path.dirname(os.path.dirname(
                    os.path.abspath(__file__))), "examples", "policies", "xyz-deny-ingress-x.yaml"))
                lab.change(name, lambda state, _old, manifests=manifests: live.with_file(state, manifests))
            report = reach.run(lab.topology(name), timeout=1.0, source_ports=ports)
            denied = sum(1 for r in report.results if r.observed is False)
            lines.append(f"| {topology} | {label} | {len(report.results)} | {denied} | {len(report.mismatches)} | "
                         f"{report.seconds:.2f} |")
    finally:
        lab.down(name)
    return lines


def leftovers(name: str) -> str:
    found = [n for n in namespace.list_all() if names.is_lab_netns(n, name)]
    if os.path.exists(f"/run/lab/{name}"):
        found.append(f"/run/lab/{name}")
    return ", ".join(found) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", default="9,50,200")
    parser.add_argument("--policies", default="1,10,100,1000")
    parser.add_argument("--enforcers", default="kube-router,calico")
    parser.add_argument("--json")
    parser.add_argument("--no-xyz", action="store_true", help="skip the 324-probe netpol-xyz matrix timing")
    args = parser.parse_args()
    lab = Lab()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        xyz = []
        if not args.no_xyz:
            for topology in ("netpol-xyz-kuberouter", "netpol-xyz-calico"):
                xyz += xyz_matrix(lab, topology, workdir)
            print("| topology | policies | probes | denied | mismatches | matrix (s) |\n|---|---|---|---|---|---|")
            print("\n".join(xyz), flush=True)
        for enforcer in args.enforcers.split(","):
            for pods in [int(p) for p in args.pods.split(",")]:
                name = f"polbench-{'kr' if enforcer == 'kube-router' else 'cal'}-{pods}"
                path = os.path.join(workdir, f"{name}.yaml")
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(topology_text(name, enforcer, pods))
                started = time.monotonic()
                lab.up(path)
                up = time.monotonic() - started
                try:
                    for count in [int(c) for c in args.policies.split(",")]:
                        row = measure(lab, name, enforcer, pods, count, workdir)
                        rows.append(row)
                        print(json.dumps(asdict(row)), flush=True)
                finally:
                    started = time.monotonic()
                    lab.down(name)
                    notes.append(f"{name}: up {up:.2f} s, down {time.monotonic() - started:.2f} s, "
                                 f"leftovers: {leftovers(name)}")
    print()
    if xyz:
        print("| topology | policies | probes | denied | mismatches | matrix (s) |\n|---|---|---|---|---|---|")
        print("\n".join(xyz))
        print()
    print("| enforcer | nodes | pods | policies | apply (s) | apply-to-enforced (s) | probe matrix (s) | probes | "
          "mismatches | iptables rules/node min/avg/max | ipsets/node max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.enforcer} | {r.nodes} | {r.pods} | {r.policies} | {r.apply_s:.2f} | {r.enforced_s:.2f} | "
              f"{r.matrix_s:.2f} | {r.probes} | {r.mismatches} | {r.rules_min}/{r.rules_avg}/{r.rules_max} | "
              f"{r.ipsets_max} |")
    for note in notes:
        print(note)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(r) for r in rows], handle, indent=1)
    return 1 if any(r.mismatches for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
