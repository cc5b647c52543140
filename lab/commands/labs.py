"""Bring labs up and down, wait for them, list them and show their status."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from lab.commands.output import table, warn
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


WAIT_TIMEOUT = 120.0


def add_up(sub: Subparsers) -> None:
    up = sub.add_parser("up", help="bring a lab up from a topology name or file")
    up.add_argument("topology", help="a shipped topology name (see `lab topologies`) or a YAML file")
    up.add_argument("--dry-run", action="store_true", help="print the plan as ip/bridge/sysctl commands; touch nothing")
    up.add_argument("--no-wait", action="store_true",
                    help="return once the plan is applied and the daemons started, without waiting for BGP")
    up.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT,
                    help=f"seconds to wait until the lab is ready (default {WAIT_TIMEOUT:g})")
    up.set_defaults(func=cmd_up)


def add_wait(sub: Subparsers) -> None:
    waitp = sub.add_parser("wait", help="wait until a lab is ready: BGP sessions Established, routes, probe servers")
    waitp.add_argument("lab", nargs="?")
    waitp.add_argument("--lab", dest="lab_option", metavar="LAB", help="the lab (as the other commands take it)")
    waitp.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT, help=f"seconds (default {WAIT_TIMEOUT:g})")
    waitp.set_defaults(func=cmd_wait)


def add_down(sub: Subparsers) -> None:
    down = sub.add_parser("down", help="remove a lab completely")
    down.add_argument("lab", nargs="?", help="lab name (optional when one lab is up)")
    down.set_defaults(func=cmd_down)


def add_list(sub: Subparsers) -> None:
    sub.add_parser("list", help="labs that are up").set_defaults(func=cmd_list)


def add_status(sub: Subparsers) -> None:
    status = sub.add_parser("status", help="nodes, pods, mode, MTU, subnet.env, daemons, capabilities")
    status.add_argument("lab", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def add_topologies(sub: Subparsers) -> None:
    sub.add_parser("topologies", help="list shipped topologies").set_defaults(func=cmd_topologies)


def add_cleanup(sub: Subparsers) -> None:
    sub.add_parser("cleanup", help="remove what crashed or killed labs left behind").set_defaults(func=cmd_cleanup)


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    if args.dry_run:
        topology = lab.load(args.topology)
        warn(topology.warnings)
        lab.dry_run(topology, sys.stdout)
        return 0
    result = lab.up(args.topology)
    warn(result.warnings)
    if not result.created:
        print(f"lab {result.lab} is already up ({result.namespaces} namespaces); nothing to do")
        return 0 if args.no_wait else _wait(lab, result.lab, args.timeout)
    print(f"lab {result.lab} is up: {result.namespaces} network namespaces")
    for note in result.notes:
        print(f"  note: {note}")
    for ns in result.plan.namespaces if result.plan else ():
        for note in ns.notes:
            print(f"  note ({ns.owner}): {note}")
    if not args.no_wait:
        code = _wait(lab, result.lab, args.timeout)
        if code:
            return code
    print(f"next: lab status {result.lab} | lab ping <pod> <pod> | lab exec <node> -- ip route | lab down {result.lab}")
    return 0


def cmd_wait(lab: Lab, args: argparse.Namespace) -> int:
    if args.lab and args.lab_option and args.lab != args.lab_option:
        raise LabError(f"two labs named: {args.lab} and --lab {args.lab_option}", "name one")
    return _wait(lab, args.lab or args.lab_option or lab.only_lab(), args.timeout)


def _seconds(text: str) -> float:
    """A --timeout: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _wait(lab: Lab, name: str, timeout: float) -> int:
    """Wait for the lab with a spinner; say how long it took, or what is still not ready (exit 1)."""
    from lab import progress
    with progress.spinner(f"lab {name}: waiting until it is ready") as show:
        result = lab.wait(name, timeout,
                          lambda checks: show(f"lab {name}: waiting for " + ", ".join(c.progress() for c in checks)))
    done = ", ".join(c.progress() for c in result.checks) or "nothing to wait for"
    if result.ready:
        print(f"lab {name} is ready after {result.seconds:.1f} s ({done})")
        return 0
    print(f"lab: lab {name} is not ready after {result.seconds:.0f} s; it stays up for inspection:", file=sys.stderr)
    for check in result.pending():
        print(f"  {check.explain()}", file=sys.stderr)
    print(f"  hint: `lab calicoctl node status <node>` and `lab exec <node> -- ip route` show where it stands; "
          f"`lab wait {name} --timeout S` waits longer; `lab down {name}` removes it", file=sys.stderr)
    return 1


def cmd_down(lab: Lab, args: argparse.Namespace) -> int:
    if not args.lab and not lab.list():
        print("no lab is up; nothing to remove")
        return 0
    name = args.lab or lab.only_lab()
    removal = lab.down(name)
    if removal.namespaces == 0:
        print(f"lab {name} is not up; nothing to remove")
    else:
        print(f"lab {name} is down: removed {removal.namespaces} namespaces, stopped {removal.processes} processes")
    return 0


def cmd_list(lab: Lab, args: argparse.Namespace) -> int:
    rows = lab.list()
    if not rows:
        print("no lab is up")
        return 0
    table(["LAB", "STATUS", "MODE", "NODES", "PODS", "TOPOLOGY"],
           [[r["lab"], r["status"], r["mode"], r["nodes"], r["pods"], r["topology"]] for r in rows])
    return 0


def cmd_status(lab: Lab, args: argparse.Namespace) -> int:
    status = lab.status(args.lab)
    healthy = 0 if status["status"] != "degraded" else 1       # a degraded lab is worth a non-zero exit
    if args.json:
        print(json.dumps(status, indent=2))
        return healthy
    if "nodes" not in status:
        print(f"lab {status['lab']} is {status['status']}: it never finished coming up; `lab cleanup` removes it")
        return 1
    print(f"lab {status['lab']} ({status['status']}) from {status['topology']}")
    _print_cni(status)
    _print_policy(status)
    print(f"underlay namespace: {status['underlay']['netns']}")
    for net in status["underlay"]["networks"]:
        print(f"  network {net['name']}: {net['cidr']} gateway {net['gateway']} mtu {net['mtu']}")
    print()
    table(["NODE", "IP", "NETWORK", "SUBNET", "MTU", "NETNS"],
           [[n["name"], n["ip"], n["network"], n["subnet"], n["mtu"], n["netns"]] for n in status["nodes"]])
    print()
    from lab import cni
    for node in status["nodes"]:
        for line in cni.node_status_lines(status, node):
            print(line)
        for note in node["notes"]:
            print(f"  note: {note}")
    print()
    if status["pods"]:
        table(["POD", "NODE", "IP", "NETNS"], [[p["key"], p["node"], p["ip"], p["netns"]] for p in status["pods"]])
        print()
    if status.get("routers"):
        table(["ROUTER", "IP", "NETWORK", "AS", "ANNOUNCES", "PEERS", "NETNS"],
              [[r["name"], r["ip"], r["network"], r["as_number"], ",".join(r["announce"]) or "-",
                ",".join(r["peers"]), r["netns"]] for r in status["routers"]])
        print()
    print("daemons: " + (", ".join(f"{d['command']} (pid {d['pid']}, {d['netns']})" for d in status["daemons"])
                         or "none (the lab itself programs the data plane; nothing runs in the namespaces)"))
    for row in status.get("impairments", []):
        print(f"impairment ({row['target']}): {row['netns']} {row['interface']}: {row['impairment']} - "
              + "; ".join(f"{k} by {v}" for k, v in row["implementation"].items()))
    for note in status["notes"]:
        print(f"note: {note}")
    for note in status["capabilities"]:
        print(f"capability: {note}")
    _print_supervised(status)
    agent = status.get("route_agent")
    if agent and agent["alive"]:
        print(f"route agent: pid {agent['pid']}, running; it {agent['role']}")
    elif agent:
        print(f"WARNING: the route agent (pid {agent['pid']}) is not running: it {agent['role']}; "
              f"`lab down {status['lab']}` and `lab up` again")
    if status["missing_namespaces"]:
        print(f"WARNING: missing namespaces: {', '.join(status['missing_namespaces'])}")
    for active in status.get("faults", []):
        since = time.strftime("%H:%M:%S", time.localtime(active["since"]))
        print(f"FAULT: {active['fault']} {active['target']} since {since} "
              f"(undo: lab fault {active['undo']} {active['target']})")
    for reason in status.get("degraded", []):
        if reason["kind"] == "failure":
            print(f"DEGRADED: {reason['what']}")
    return healthy


def _print_supervised(status: dict[str, Any]) -> None:
    """The supervised daemons: state (running, starting, restarting, crash-loop, stopped-by-fault) and restarts."""
    supervised = status.get("supervisor")
    if not supervised:
        return
    state = "running" if supervised["alive"] else "NOT RUNNING"
    print(f"supervisor: pid {supervised['pid']}, {state} (restarts daemons as kubelet does: at once, then after "
          "10 s, 20 s, ... 300 s)")
    rows = []
    for row in supervised["daemons"]:
        wait = f" (next try in {row['next_restart_in']:.0f} s)" if row.get("next_restart_in") is not None else ""
        rows.append([row["name"], row["state"] + wait, row["pid"] or "-", row["restarts"], row["netns"],
                     row["last_exit"] or "-"])
    table(["DAEMON", "STATE", "PID", "RESTARTS", "NETNS", "LAST EXIT"], rows)
    print()


def _print_cni(status: dict[str, Any]) -> None:
    from lab import cni
    for line in cni.status_lines(status):
        print(line)


def _print_policy(status: dict[str, Any]) -> None:
    policy = status.get("runtime", {}).get("policy", {})
    count = len(status.get("policies", []))
    if status.get("enforcer", "none") == "none":
        print(f"networkPolicy: none - {count} policies stored, NOT enforced (nothing programs them)")
        return
    rules = policy.get("rules_per_node", {})
    spread = f", {min(rules.values())}-{max(rules.values())} iptables rules per node" if rules else ""
    print(f"networkPolicy: {status['enforcer']} - {policy.get('models', '')}; {count} policies{spread}")
    servers = status.get("runtime", {}).get("probe_servers")
    if servers:
        print(f"probe servers: {servers['served']} sockets" + (f", unsupported: {', '.join(servers['unsupported'])}"
                                                              if servers.get("unsupported") else ""))


def cmd_topologies(lab: Lab, args: argparse.Namespace) -> int:
    from lab.topology import registry
    rows = registry.shipped()
    table(["NAME", "DESCRIPTION"], [[r["name"], r["description"].splitlines()[0] if r["description"] else ""]
                                      for r in rows])
    return 0


def cmd_cleanup(lab: Lab, args: argparse.Namespace) -> int:
    removed = lab.cleanup()
    if not removed:
        print("nothing to clean up")
    for name, removal in removed.items():
        print(f"{name}: removed {removal.namespaces} namespaces, stopped {removal.processes} processes")
    return 0
