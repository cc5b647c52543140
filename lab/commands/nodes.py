"""Commands run inside a node or pod: exec, shell, ping, and Mininet's CLI over a lab."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


def add_exec(sub: Subparsers) -> None:
    execp = sub.add_parser("exec", help="run a command in a node or pod: lab exec k8s-node01 -- ip route")
    execp.add_argument("target", help="node name, namespace/pod, or pod name")
    execp.add_argument("cmd", nargs="*", help="the command, after --")
    execp.add_argument("--lab")
    execp.set_defaults(func=cmd_exec)


def add_shell(sub: Subparsers) -> None:
    shell = sub.add_parser("shell", help="an interactive shell in a node or pod")
    shell.add_argument("target")
    shell.add_argument("--lab")
    shell.set_defaults(func=cmd_shell)


def add_ping(sub: Subparsers) -> None:
    ping = sub.add_parser("ping", help="ping from one pod to another: lab ping default/bs1 default/bs8")
    ping.add_argument("src")
    ping.add_argument("dst")
    ping.add_argument("-c", "--count", type=int, default=3)
    ping.add_argument("--lab")
    ping.set_defaults(func=cmd_ping)


def add_mininet(sub: Subparsers) -> None:
    mininet = sub.add_parser("mininet", help="Mininet's CLI over a running lab: pingall, iperf a b, <node> ip route")
    mininet.add_argument("lab", nargs="?", help="a lab that is up (optional when one lab is up)")
    mininet.add_argument("--lab", dest="lab_option", metavar="LAB", help="the lab (as the other commands take it)")
    mininet.add_argument("--custom-path", action="store_true",
                         help="print the file for `lab-mn --custom <it> --topo lab,<topology>` and exit "
                              "(lab-mn: the lab environment's mn, linked by scripts/install-deps.sh; "
                              "Debian's /usr/bin/mn cannot import the lab)")
    mininet.set_defaults(func=cmd_mininet)


def _exec_in(lab: Lab, target: str, lab_name: str | None, command: list[str]) -> int:
    from lab.netns import capabilities
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


def cmd_mininet(lab: Lab, args: argparse.Namespace) -> int:
    """Mininet's CLI over the lab's namespaces; leaving it ends the node shells and leaves the lab up."""
    if args.custom_path:
        from pathlib import Path
        custom = Path(__file__).resolve().parents[1] / "mininet" / "custom.py"
        print(custom)
        print(f"run it with the lab's mn: lab-mn --custom {custom} --topo lab,<topology> "
              "(Debian's /usr/bin/mn cannot import the lab)", file=sys.stderr)
        return 0
    from lab.netns import capabilities
    capabilities.require_root()
    if args.lab and args.lab_option and args.lab != args.lab_option:
        raise LabError(f"two labs named: {args.lab} and --lab {args.lab_option}", "name one")
    name = args.lab or args.lab_option or lab.only_lab()
    if lab.store.load(name) is None:
        raise LabError(f"no lab named {name!r} is up", "`lab list` shows the labs that are up; "
                       "`lab up <topology>` brings one up")
    try:
        from mininet.log import setLogLevel

        from lab.mininet import LabNet
        from lab.mininet.cli import LabCLI
    except ImportError as exc:
        raise LabError(f"Mininet cannot be imported ({exc})",
                       "run scripts/install-deps.sh (PyPI's mininet into the lab's environment, "
                       "Debian's mininet for mnexec)") from None
    setLogLevel("info")
    net = LabNet(name, up=False, lab_ops=lab)
    try:
        net.start()
        LabCLI(net)
    finally:
        net.stop()
    print(f"lab {name} stays up: `lab mininet {name}` again, `lab down {name}` removes it")
    return 0
