"""NetworkPolicy: the probe truth table and the policies a lab holds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from lab.commands.output import table
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


def add_probe(sub: Subparsers) -> None:
    probe = sub.add_parser("probe", help="every pod to every pod with real traffic, against the policy evaluator")
    probe.add_argument("--port", help="a port number or a container port name (default: every declared port)")
    probe.add_argument("--protocol", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    probe.add_argument("--timeout", type=float, default=1.0, help="seconds a silent probe waits (default 1)")
    probe.add_argument("--json", action="store_true")
    probe.add_argument("--lab")
    probe.set_defaults(func=cmd_probe)


def add_policy(sub: Subparsers) -> None:
    policy = sub.add_parser("policy", help="NetworkPolicy: lab policy list [-n NAMESPACE]")
    policy.add_argument("action", choices=["list"])
    policy.add_argument("-n", "--namespace")
    policy.add_argument("--lab")
    policy.set_defaults(func=cmd_policy)


def cmd_probe(lab: Lab, args: argparse.Namespace) -> int:
    from lab.netns import capabilities
    from lab.probe import reach
    capabilities.require_root()
    port = int(args.port) if args.port and args.port.isdigit() else args.port
    topology = lab.topology(args.lab)
    report = reach.run(topology, port, args.protocol, args.timeout, lab.source_ports(topology.name))
    if not report.results:
        raise LabError("no pod declares such a port", "pods serve their containerPorts; `lab status` lists the pods")
    if args.json:
        print(json.dumps(reach.as_json(report), indent=1))
    else:
        sys.stdout.write(reach.render(report))
    return report.exit_code()


def cmd_policy(lab: Lab, args: argparse.Namespace) -> int:
    status = lab.status(args.lab)
    rows = [p for p in status.get("policies", []) if args.namespace in (None, p["namespace"])]
    enforcer = status.get("enforcer", "none")
    if enforcer == "none":
        print(f"NOTE: cni {status['cni']} with networkPolicy: none does not enforce these policies")
    if not rows:
        print("No resources found" + (f" in {args.namespace} namespace." if args.namespace else "."))
        return 0
    table(["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES", "IPBLOCKS", "ENFORCED-BY", "SOURCE"],
           [[p["namespace"], p["name"], p["podSelector"], ",".join(p["policyTypes"]),
             "; ".join(p.get("ipBlocks", [])) or "<none>", enforcer, p["source"]] for p in rows])
    return 0
