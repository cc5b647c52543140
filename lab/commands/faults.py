"""`lab fault`: inject a failure into a running lab, or undo it (lab/fault.py)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab

ACTIONS = ["bird-stop", "bird-start", "link-down", "link-up", "node-down", "node-up", "partition", "heal"]


def add_fault(sub: Subparsers) -> None:
    fault = sub.add_parser("fault", help="inject or undo a failure: lab fault bird-stop|bird-start|link-down|link-up|"
                                         "node-down|node-up <node>, partition|heal <network>")
    fault.add_argument("action", choices=ACTIONS)
    fault.add_argument("target", help="a node (a network for partition and heal)")
    fault.add_argument("--lab")
    fault.add_argument("--json", action="store_true")
    fault.set_defaults(func=cmd_fault)


def cmd_fault(lab: Lab, args: argparse.Namespace) -> int:
    outcome = lab.fault(args.lab, args.action, args.target)
    if args.json:
        print(json.dumps({"lab": outcome.lab, "action": outcome.action, "target": outcome.target,
                          "changed": outcome.changed, "message": outcome.message, "faults": outcome.faults}))
        return 0
    print(outcome.message)
    for active in outcome.faults:
        print(f"  in force: {active['fault']} {active['target']} (undo: lab fault {active['undo']} {active['target']})")
    return 0
