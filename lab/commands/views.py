"""Looking at a lab: its picture, packet captures, the path of a packet."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.commands import Subparsers
    from lab.lifecycle import Lab


def add_graph(sub: Subparsers) -> None:
    graph = sub.add_parser("graph", help="a picture of a running lab or a topology file: lab graph [lab] -o lab.svg")
    graph.add_argument("topology", nargs="?", metavar="lab",
                       help="a lab that is up, or a topology name or file (default: the lab up)")
    graph.add_argument("--lab", help="a lab that is up (the same as naming it first)")
    graph.add_argument("-o", "--output", help="the figure, .svg or .png (default <lab>.svg)")
    graph.set_defaults(func=cmd_graph)


def add_capture(sub: Subparsers) -> None:
    capture = sub.add_parser("capture", help="tcpdump in a node or pod: lab capture k8s-node01:flannel.1 -w x.pcap")
    capture.add_argument("target", help="<node|namespace/pod>[:interface] (default interface eth0; `any` for all)")
    capture.add_argument("-w", "--write", help="write a pcap file instead of printing")
    capture.add_argument("--filter", help="a pcap-filter expression, e.g. 'udp port 8472'")
    capture.add_argument("--count", type=int, help="stop after N packets")
    capture.add_argument("--lab")
    capture.set_defaults(func=cmd_capture)


def add_trace(sub: Subparsers) -> None:
    tracep = sub.add_parser("trace", help="the path of a packet, hop by hop, from live kernel state: "
                            "lab trace default/bs1 default/bs8")
    tracep.add_argument("src", help="a pod (namespace/pod), node or external host")
    tracep.add_argument("dst", help="a pod, node, external host or IP address")
    tracep.add_argument("--port", type=int, default=None, help="destination port (TCP/UDP; default 80)")
    tracep.add_argument("--protocol", type=str.upper, choices=["TCP", "UDP", "ICMP"], default=None,
                        help="default ICMP, or TCP when --port is given")
    tracep.add_argument("--json", action="store_true")
    tracep.add_argument("--capture", action="store_true",
                        help="send one real packet and capture it on every interface of the path")
    tracep.add_argument("-w", "--write", help="with --capture: the merged capture, pcapng with one named interface "
                        "per netns:iface (Wireshark shows where each frame was seen)")
    tracep.add_argument("--lab")
    tracep.set_defaults(func=cmd_trace)


def cmd_graph(lab: Lab, args: argparse.Namespace) -> int:
    from lab.graph import draw, model
    if args.lab and args.topology and args.lab != args.topology:
        raise LabError(f"two labs named: {args.topology} and --lab {args.lab}", "give one of them")
    name = args.lab or args.topology or lab.only_lab()
    if name in lab.store.labs() and lab.store.load(name) is not None:
        picture = _live_graph(lab, name)
        source = "live: " + "; ".join(picture.sources)
    else:
        topology = lab.load(name)
        picture = model.build(topology)
        source = f"from {topology.source}: the lab is not running"
    output = draw.render(picture, args.output or f"{picture.name}.svg")
    nodes = sum(1 for b in picture.nodes if not b.external)
    print(f"wrote {output}: {nodes} nodes, {len(picture.segments)} segments, {len(picture.edges)} edges ({source})")
    return 0


def _live_graph(lab: Lab, name: str) -> Any:
    """A running lab's picture: tunnels and routes from the kernel, BGP states from BIRD."""
    from lab.graph import live as graph_live
    from lab.graph import model
    from lab.netns import capabilities
    capabilities.require_root()
    topology = lab.topology(name)
    state = lab.store.load(name)
    assert state is not None
    sessions = None
    from lab.cni.calico import config as calico_config
    calico = calico_config.find(topology)
    if calico is not None and calico.backend == "bird":
        sessions = graph_live.sessions(topology, lambda node: lab.bird_socket(node, name))
    return model.build(topology, sessions, kernel=graph_live.kernel_edges(state.summary))


def cmd_capture(lab: Lab, args: argparse.Namespace) -> int:
    from lab.netns import capabilities, interfaces
    from lab.trace import capture
    target, iface = capture.split_target(args.target)
    iface = iface or "eth0"
    argv = capture.tcpdump_argv("-", iface, args.write, args.filter, args.count)   # argument checks first
    capabilities.require_root()
    netns = lab.resolve_target(target, args.lab)
    interfaces.require(netns, iface, target, allow_any=True)
    if args.filter:
        capture.check_filter(args.filter)
    argv[3] = netns
    print(f"lab capture: {' '.join(argv)}", file=sys.stderr)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def cmd_trace(lab: Lab, args: argparse.Namespace) -> int:
    from lab.netns import capabilities
    from lab.trace import capture
    from lab.trace import run as trace_run
    if args.port is not None and not 0 < args.port < 65536:
        raise LabError(f"--port {args.port}: not a port number", "give 1-65535")
    if args.write and not args.capture:
        raise LabError("-w needs --capture", "add --capture to send and capture a real packet")
    if args.write:
        capture.check_output(args.write)
    capabilities.require_root()
    result = trace_run.run(lab, args.src, args.dst, args.port, args.protocol, args.lab, args.capture, args.write)
    if args.json:
        print(json.dumps(result.trace.as_dict(), indent=1))
    else:
        sys.stdout.write(result.text)
    return 0 if result.trace.outcome == "delivered" else 1
