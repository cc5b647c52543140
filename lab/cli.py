"""The `lab` command: parse, call lab.lifecycle, print."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lab.errors import LabError
from lab.lifecycle import Lab
from lab.netns import capabilities
from lab.topology import registry


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:  # `lab exec <target> [--lab X] -- <command...>`: the command is never parsed
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    if command:
        args.cmd = command
    try:
        return args.func(Lab(), args) or 0
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Kubernetes CNI network lab in Linux network namespaces")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="bring a lab up from a topology name or file")
    up.add_argument("topology", help="a shipped topology name (see `lab topologies`) or a YAML file")
    up.add_argument("--dry-run", action="store_true", help="print the plan as ip/bridge/sysctl commands; touch nothing")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="remove a lab completely")
    down.add_argument("lab", nargs="?", help="lab name (optional when one lab is up)")
    down.set_defaults(func=cmd_down)

    sub.add_parser("list", help="labs that are up").set_defaults(func=cmd_list)

    status = sub.add_parser("status", help="nodes, pods, mode, MTU, subnet.env, daemons, capabilities")
    status.add_argument("lab", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    execp = sub.add_parser("exec", help="run a command in a node or pod: lab exec k8s-node01 -- ip route")
    execp.add_argument("target", help="node name, namespace/pod, or pod name")
    execp.add_argument("cmd", nargs="*", help="the command, after --")
    execp.add_argument("--lab")
    execp.set_defaults(func=cmd_exec)

    shell = sub.add_parser("shell", help="an interactive shell in a node or pod")
    shell.add_argument("target")
    shell.add_argument("--lab")
    shell.set_defaults(func=cmd_shell)

    ping = sub.add_parser("ping", help="ping from one pod to another: lab ping default/bs1 default/bs8")
    ping.add_argument("src")
    ping.add_argument("dst")
    ping.add_argument("-c", "--count", type=int, default=3)
    ping.add_argument("--lab")
    ping.set_defaults(func=cmd_ping)

    sub.add_parser("topologies", help="list shipped topologies").set_defaults(func=cmd_topologies)
    sub.add_parser("cleanup", help="remove what crashed or killed labs left behind").set_defaults(func=cmd_cleanup)
    return parser


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    if args.dry_run:
        sys.stdout.write(lab.dry_run(args.topology))
        return 0
    result = lab.up(args.topology)
    if not result.created:
        print(f"lab {result.lab} is already up ({result.namespaces} namespaces); nothing to do")
        return 0
    print(f"lab {result.lab} is up: {result.namespaces} network namespaces")
    for note in result.notes:
        print(f"  note: {note}")
    for ns in result.plan.namespaces:
        for note in ns.notes:
            print(f"  note ({ns.owner}): {note}")
    print(f"next: lab status {result.lab} | lab ping <pod> <pod> | lab exec <node> -- ip route | lab down {result.lab}")
    return 0


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
    _table(["LAB", "STATUS", "MODE", "NODES", "PODS", "TOPOLOGY"],
           [[r["lab"], r["status"], r["mode"], r["nodes"], r["pods"], r["topology"]] for r in rows])
    return 0


def cmd_status(lab: Lab, args: argparse.Namespace) -> int:
    status = lab.status(args.lab)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    if "nodes" not in status:
        print(f"lab {status['lab']} is {status['status']}: it never finished coming up; `lab cleanup` removes it")
        return 1
    print(f"lab {status['lab']} ({status['status']}) from {status['topology']}")
    port = f", VNI {status['vni']}, UDP port {status['port']}" if status.get("vni") else ""
    print(f"cni: {status['cni']} {status['mode']}, pod network {status['network']}, SubnetLen {status['subnet_len']}{port}")
    print(f"underlay namespace: {status['underlay']['netns']}")
    for net in status["underlay"]["networks"]:
        print(f"  network {net['name']}: {net['cidr']} gateway {net['gateway']} mtu {net['mtu']}")
    print()
    _table(["NODE", "IP", "NETWORK", "SUBNET", "MTU", "NETNS"],
           [[n["name"], n["ip"], n["network"], n["subnet"], n["mtu"], n["netns"]] for n in status["nodes"]])
    print()
    for node in status["nodes"]:
        env = " ".join(f"{k}={v}" for k, v in node["subnet_env"].items())
        print(f"{node['name']} /run/flannel/subnet.env: {env}")
        for note in node["notes"]:
            print(f"  note: {note}")
    print()
    if status["pods"]:
        _table(["POD", "NODE", "IP", "NETNS"], [[p["key"], p["node"], p["ip"], p["netns"]] for p in status["pods"]])
        print()
    print("daemons: " + (", ".join(f"{d['command']} (pid {d['pid']}, {d['netns']})" for d in status["daemons"])
                         or "none (the lab itself plays flanneld; nothing runs in the namespaces)"))
    for note in status["notes"]:
        print(f"note: {note}")
    for note in status["capabilities"]:
        print(f"capability: {note}")
    if status["missing_namespaces"]:
        print(f"WARNING: missing namespaces: {', '.join(status['missing_namespaces'])}")
    return 0


def _exec_in(lab: Lab, target: str, lab_name: str | None, command: list[str]) -> int:
    capabilities.require_root()
    netns = lab.resolve_target(target, lab_name)
    argv = ["ip", "netns", "exec", netns, *command]
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def cmd_exec(lab: Lab, args: argparse.Namespace) -> int:
    command = args.cmd
    if not command:
        raise LabError("no command given", "write it after --, e.g. `lab exec k8s-node01 -- ip route`")
    return _exec_in(lab, args.target, args.lab, command)


def cmd_shell(lab: Lab, args: argparse.Namespace) -> int:
    shell = os.environ.get("SHELL", "/bin/bash")
    os.environ["PS1"] = f"[lab {args.target}] \\w# "
    return _exec_in(lab, args.target, args.lab, [shell, "--norc"] if shell.endswith("bash") else [shell])


def cmd_ping(lab: Lab, args: argparse.Namespace) -> int:
    dst_ip = lab.pod_ip(args.dst, args.lab)
    return _exec_in(lab, args.src, args.lab, ["ping", "-c", str(args.count), "-W", "2", dst_ip])


def cmd_topologies(lab: Lab, args: argparse.Namespace) -> int:
    rows = registry.shipped()
    _table(["NAME", "DESCRIPTION"], [[r["name"], r["description"].splitlines()[0] if r["description"] else ""]
                                      for r in rows])
    return 0


def cmd_cleanup(lab: Lab, args: argparse.Namespace) -> int:
    removed = lab.cleanup()
    if not removed:
        print("nothing to clean up")
    for name, removal in removed.items():
        print(f"{name}: removed {removal.namespaces} namespaces, stopped {removal.processes} processes")
    return 0


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
