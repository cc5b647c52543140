"""BGP views: BIRD's own CLI, calicoctl's views, and `lab bgp` (the routers' API and the monitor)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


def add_birdc(sub: Subparsers) -> None:
    bird = sub.add_parser("birdc", help="BIRD's own CLI on a node: lab birdc k8s-node01 show protocols")
    bird.add_argument("node")
    bird.add_argument("cmd", nargs=argparse.REMAINDER, help="a birdc command; none for birdc's prompt")
    bird.add_argument("--lab")
    bird.set_defaults(func=cmd_birdc)


def add_calicoctl(sub: Subparsers) -> None:
    calicoctl = sub.add_parser("calicoctl", help="calicoctl's views: node status <node>, get ippool|nodes|bgppeer")
    calicoctl.add_argument("words", nargs="+", help="node status <node> | get ippool [-o wide] | get nodes | "
                           "get bgppeer | get bgpconfig")
    calicoctl.add_argument("--lab")
    calicoctl.add_argument("-o", "--output", default="")
    calicoctl.set_defaults(func=cmd_calicoctl)


def cmd_birdc(lab: Lab, args: argparse.Namespace) -> int:
    from lab.netns import capabilities
    capabilities.require_root()
    words = list(args.cmd)
    if "--lab" in words:  # `lab birdc node show protocols --lab X`
        at = words.index("--lab")
        args.lab, words = words[at + 1] if at + 1 < len(words) else None, words[:at] + words[at + 2:]
    argv = ["birdc", "-s", lab.bird_socket(args.node, args.lab), *words]
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def cmd_calicoctl(lab: Lab, args: argparse.Namespace) -> int:
    from lab.cni.calico import status as calico_status
    from lab.cni.calico import views as calico_views
    from lab.netns import capabilities
    words = args.words
    if words[:2] == ["node", "status"] and len(words) == 3:
        capabilities.require_root()
        sys.stdout.write(calico_status.node_status(lab, words[2], args.lab))
        return 0
    if words[0] == "get" and len(words) == 2:
        sys.stdout.write(calico_views.get(lab.status(args.lab), words[1], args.output))
        return 0
    raise LabError(f"unsupported calicoctl command: {' '.join(words)}",
                   "try `lab calicoctl node status <node>` or `lab calicoctl get ippool -o wide`")


# -- lab bgp: the routers' API and the monitor (lab/bgp/exabgp.py, lab/bgp/monitor.py) ---------------
def add_bgp(sub: Subparsers) -> None:
    bgp = sub.add_parser("bgp", help="BGP beyond the cluster: lab bgp monitor | announce | withdraw | routes")
    actions = bgp.add_subparsers(dest="action", required=True, metavar="ACTION")
    monitor = actions.add_parser("monitor", help="watch every BGP UPDATE and WITHDRAW, as a passive peer")
    monitor.add_argument("--lab")
    monitor.add_argument("--json", action="store_true", help="one JSON object per line")
    monitor.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    monitor.add_argument("--peer", action="append", help="peer only with this router or node (repeatable)")
    monitor.set_defaults(func=cmd_bgp_monitor)
    for verb in ("announce", "withdraw"):
        change = actions.add_parser(verb, help=f"{verb} a prefix from a router, live: lab bgp {verb} tor-a "
                                    "198.51.100.0/24")
        change.add_argument("router")
        change.add_argument("prefix")
        change.add_argument("--lab")
        change.set_defaults(func=cmd_bgp_announce, verb=verb)
    routes = actions.add_parser("routes", help="a router's sessions, learned routes and kernel routes (JSON)")
    routes.add_argument("router")
    routes.add_argument("--lab")
    routes.set_defaults(func=cmd_bgp_routes)


def cmd_bgp_monitor(lab: Lab, args: argparse.Namespace) -> int:
    from lab.bgp import monitor
    from lab.netns import capabilities
    capabilities.require_root()
    name = args.lab or lab.only_lab()
    watcher = monitor.Monitor(lab.topology(name), lab.store.lab_dir(name), lab.bird_paths_of(name), args.peer)
    watcher.start()
    try:
        for event in watcher.follow(args.duration):
            print(json.dumps(event) if args.json else monitor.line(event), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
    return 0


def cmd_bgp_announce(lab: Lab, args: argparse.Namespace) -> int:
    from lab.netns import capabilities
    capabilities.require_root()
    print(lab.router_announce(args.router, args.prefix, args.verb == "announce", args.lab))
    return 0


def cmd_bgp_routes(lab: Lab, args: argparse.Namespace) -> int:
    print(json.dumps(lab.router_ribs(args.router, args.lab), indent=1))
    return 0
