"""The `lab` command: parse, call lab.lifecycle, print.

Each command imports what it needs inside its function, so a command pays only for its own modules
(`lab trace` does not load matplotlib, jsonschema's manifests, BIRD or the data planes' builders):
starting Python and parsing the arguments stay well under the 1 s a trace may take.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab import live
    from lab.lifecycle import Lab
    from lab.topology.model import Topology


WAIT_TIMEOUT = 120.0


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
        from lab.lifecycle import Lab
        return args.func(Lab(), args) or 0
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:   # Ctrl-C, or a signal a capture turned into an exception
        return 128 + getattr(exc, "signum", 2)
    except BrokenPipeError:  # `lab status | head`
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Kubernetes CNI network lab in Linux network namespaces")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="bring a lab up from a topology name or file")
    up.add_argument("topology", help="a shipped topology name (see `lab topologies`) or a YAML file")
    up.add_argument("--dry-run", action="store_true", help="print the plan as ip/bridge/sysctl commands; touch nothing")
    up.add_argument("--no-wait", action="store_true",
                    help="return once the plan is applied and the daemons started, without waiting for BGP")
    up.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT,
                    help=f"seconds to wait until the lab is ready (default {WAIT_TIMEOUT:g})")
    up.set_defaults(func=cmd_up)

    waitp = sub.add_parser("wait", help="wait until a lab is ready: BGP sessions Established, routes, probe servers")
    waitp.add_argument("lab", nargs="?")
    waitp.add_argument("--lab", dest="lab_option", metavar="LAB", help="the lab (as the other commands take it)")
    waitp.add_argument("--timeout", type=_seconds, default=WAIT_TIMEOUT, help=f"seconds (default {WAIT_TIMEOUT:g})")
    waitp.set_defaults(func=cmd_wait)

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

    applyp = sub.add_parser("apply", help="apply NetworkPolicy or Calico resources to a running lab: lab apply -f policy.yaml")
    applyp.add_argument("-f", "--filename", required=True, help="a manifest file, or - for standard input")
    applyp.add_argument("--lab")
    applyp.set_defaults(func=cmd_apply)

    deletep = sub.add_parser("delete", help="delete the resources a manifest names from a running lab")
    deletep.add_argument("-f", "--filename", required=True)
    deletep.add_argument("--lab")
    deletep.set_defaults(func=cmd_delete)

    label = sub.add_parser("label", help="label a node, pod or namespace: lab label pod x/a role=db (k- removes)")
    label.add_argument("kind", choices=["node", "pod", "namespace", "ns"])
    label.add_argument("target", help="a node, a pod as namespace/pod, or a namespace")
    label.add_argument("labels", nargs="+", help="key=value to set, key- to remove")
    label.add_argument("--lab")
    label.set_defaults(func=cmd_label)

    probe = sub.add_parser("probe", help="every pod to every pod with real traffic, against the policy evaluator")
    probe.add_argument("--port", help="a port number or a container port name (default: every declared port)")
    probe.add_argument("--protocol", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    probe.add_argument("--timeout", type=float, default=1.0, help="seconds a silent probe waits (default 1)")
    probe.add_argument("--json", action="store_true")
    probe.add_argument("--lab")
    probe.set_defaults(func=cmd_probe)

    policy = sub.add_parser("policy", help="NetworkPolicy: lab policy list [-n NAMESPACE]")
    policy.add_argument("action", choices=["list"])
    policy.add_argument("-n", "--namespace")
    policy.add_argument("--lab")
    policy.set_defaults(func=cmd_policy)

    bird = sub.add_parser("birdc", help="BIRD's own CLI on a node: lab birdc k8s-node01 show protocols")
    bird.add_argument("node")
    bird.add_argument("cmd", nargs=argparse.REMAINDER, help="a birdc command; none for birdc's prompt")
    bird.add_argument("--lab")
    bird.set_defaults(func=cmd_birdc)

    calicoctl = sub.add_parser("calicoctl", help="calicoctl's views: node status <node>, get ippool|nodes|bgppeer")
    calicoctl.add_argument("words", nargs="+", help="node status <node> | get ippool [-o wide] | get nodes | "
                           "get bgppeer | get bgpconfig")
    calicoctl.add_argument("--lab")
    calicoctl.add_argument("-o", "--output", default="")
    calicoctl.set_defaults(func=cmd_calicoctl)

    graph = sub.add_parser("graph", help="a picture of a running lab or a topology file: lab graph [lab] -o lab.svg")
    graph.add_argument("topology", nargs="?", metavar="lab",
                       help="a lab that is up, or a topology name or file (default: the lab up)")
    graph.add_argument("--lab", help="a lab that is up (the same as naming it first)")
    graph.add_argument("-o", "--output", help="the figure, .svg or .png (default <lab>.svg)")
    graph.set_defaults(func=cmd_graph)

    capture = sub.add_parser("capture", help="tcpdump in a node or pod: lab capture k8s-node01:flannel.1 -w x.pcap")
    capture.add_argument("target", help="<node|namespace/pod>[:interface] (default interface eth0; `any` for all)")
    capture.add_argument("-w", "--write", help="write a pcap file instead of printing")
    capture.add_argument("--filter", help="a pcap-filter expression, e.g. 'udp port 8472'")
    capture.add_argument("--count", type=int, help="stop after N packets")
    capture.add_argument("--lab")
    capture.set_defaults(func=cmd_capture)

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

    impairp = sub.add_parser("impair", help="impair a link of a running lab: lab impair k8s-node01 --rate 50mbit "
                             "--loss 1%%; lab impair --clear")
    impairp.add_argument("target", nargs="?", help="<node|namespace/pod>[:interface] (default interface eth0)")
    impairp.add_argument("--rate", help="e.g. 100mbit, 500kbit, 10mbps (bytes/s)")
    impairp.add_argument("--delay", help="e.g. 20ms (needs netem)")
    impairp.add_argument("--jitter", help="e.g. 5ms (needs netem, and a delay)")
    impairp.add_argument("--loss", help="e.g. 1%%")
    impairp.add_argument("--clear", action="store_true", help="remove the impairment (of the target, or every one)")
    impairp.add_argument("--lab")
    impairp.set_defaults(func=cmd_impair)

    report = sub.add_parser("report", help="plot a results directory: figures, one self-contained HTML, Markdown")
    report.add_argument("results", help="results/<experiment>/<timestamp> (or results/<experiment>: its newest run)")
    report.add_argument("--compare", metavar="DIR", help="a second results directory to put side by side")
    report.add_argument("-o", "--output", metavar="FILE", help="the HTML file (default: report.html in the results "
                        "directory)")
    report.set_defaults(func=cmd_report)

    mininet = sub.add_parser("mininet", help="Mininet's CLI over a running lab: pingall, iperf a b, <node> ip route")
    mininet.add_argument("lab", nargs="?", help="a lab that is up (optional when one lab is up)")
    mininet.add_argument("--lab", dest="lab_option", metavar="LAB", help="the lab (as the other commands take it)")
    mininet.add_argument("--custom-path", action="store_true",
                         help="print the file for `lab-mn --custom <it> --topo lab,<topology>` and exit "
                              "(lab-mn: the lab environment's mn, linked by scripts/install-deps.sh; "
                              "Debian's /usr/bin/mn cannot import the lab)")
    mininet.set_defaults(func=cmd_mininet)

    sub.add_parser("topologies", help="list shipped topologies").set_defaults(func=cmd_topologies)
    _experiment_parser(sub)
    sub.add_parser("cleanup", help="remove what crashed or killed labs left behind").set_defaults(func=cmd_cleanup)
    return parser


def cmd_report(lab: Lab, args: argparse.Namespace) -> int:
    from lab import report  # matplotlib loads only for this command

    html = report.render(args.results, compare=args.compare, output=args.output)
    print(f"report: {html}")
    print(f"        {html.with_suffix('.md')} and {html.parent / 'figures'}/ (PNG and SVG)")
    return 0


def _warn(warnings) -> None:
    """Warnings as kubectl prints the API server's: on stderr, each after `Warning: `."""
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    if args.dry_run:
        topology = lab.load(args.topology)
        _warn(topology.warnings)
        lab.dry_run(topology, sys.stdout)
        return 0
    result = lab.up(args.topology)
    _warn(result.warnings)
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
    _table(["LAB", "STATUS", "MODE", "NODES", "PODS", "TOPOLOGY"],
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
    _table(["NODE", "IP", "NETWORK", "SUBNET", "MTU", "NETNS"],
           [[n["name"], n["ip"], n["network"], n["subnet"], n["mtu"], n["netns"]] for n in status["nodes"]])
    print()
    for node in status["nodes"]:
        if "subnet_env" in node:
            env = " ".join(f"{k}={v}" for k, v in node["subnet_env"].items())
            print(f"{node['name']} /run/flannel/subnet.env: {env}")
        else:
            env = " ".join(f"{k}={v}" for k, v in node["calico"].items() if v not in (None, []))
            print(f"{node['name']} calico: {env}")
        for note in node["notes"]:
            print(f"  note: {note}")
    print()
    if status["pods"]:
        _table(["POD", "NODE", "IP", "NETNS"], [[p["key"], p["node"], p["ip"], p["netns"]] for p in status["pods"]])
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
    agent = status.get("route_agent")
    if agent and agent["alive"]:
        print(f"route agent: pid {agent['pid']}, running; it {agent['role']}")
    elif agent:
        print(f"WARNING: the route agent (pid {agent['pid']}) is not running: it {agent['role']}; "
              f"`lab down {status['lab']}` and `lab up` again")
    if status["missing_namespaces"]:
        print(f"WARNING: missing namespaces: {', '.join(status['missing_namespaces'])}")
    return healthy


def _print_cni(status: dict[str, Any]) -> None:
    if status["cni"] == "flannel":
        port = f", VNI {status['vni']}, UDP port {status['port']}" if status.get("vni") else ""
        ipip_impl = f", IPIP implementation: {status['ipip_implementation']}" if status.get("ipip_implementation") else ""
        print(f"cni: flannel {status['mode']}, pod network {status['network']}, SubnetLen {status['subnet_len']}{port}"
              f"{ipip_impl}")
        return
    print(f"cni: calico {status['mode']} (calico_backend {status['backend']})"
          + (f", IPIP implementation: {status['ipip_implementation']}" if status.get("ipip_implementation") else ""))
    for pool in status["pools"]:
        print(f"  IPPool {pool['name']}: {pool['cidr']} blockSize {pool['blockSize']} ipipMode {pool['ipipMode']} "
              f"vxlanMode {pool['vxlanMode']} natOutgoing {str(pool['natOutgoing']).lower()}")
    if status.get("bgp"):
        bgp = status["bgp"]
        print(f"  BGPConfiguration default: nodeToNodeMeshEnabled {str(bgp['nodeToNodeMeshEnabled']).lower()}, "
              f"asNumber {bgp['asNumber']}")
    for peer in status.get("bgp_peers", []):
        print(f"  BGPPeer {peer['name']}: " + ", ".join(f"{k} {v}" for k, v in peer.items() if k != "name" and v))


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


def cmd_apply(lab: Lab, args: argparse.Namespace) -> int:
    from lab import live
    from lab.topology import policy_manifest
    manifests = live.read_manifests(args.filename)
    _warn(w for document in manifests.documents for w in policy_manifest.warnings_of(document))
    change = lab.change(args.lab, lambda state, old: live.with_file(state, manifests))
    assert change.old is not None and change.new is not None
    for line in live.applied(change.old, change.new, manifests.documents):
        print(line)
    _print_change(change)
    return 0


def cmd_delete(lab: Lab, args: argparse.Namespace) -> int:
    from lab import live
    documents = live.read_manifests(args.filename).documents

    def edit(state: dict[str, Any], old: Topology) -> dict[str, Any]:
        live.check_deletable(old, documents)
        return live.without(state, documents)
    change = lab.change(args.lab, edit)
    for document in documents:
        print(f"{live.kubectl_name(document.data)} deleted")
    _print_change(change)
    return 0


def cmd_label(lab: Lab, args: argparse.Namespace) -> int:
    from lab import live
    kind = "namespace" if args.kind == "ns" else args.kind
    target = {"node": lambda: lab.node_name(args.target, args.lab), "pod": lambda: lab.pod_key(args.target, args.lab),
              "namespace": lambda: lab.namespace_name(args.target, args.lab)}[kind]()
    change = lab.change(args.lab, lambda state, old: live.with_labels(state, target, args.labels, kind))
    print(f"{kind}/{target.rsplit('/', 1)[-1]} labeled")
    _print_change(change)
    return 0


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
    _table(["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES", "IPBLOCKS", "ENFORCED-BY", "SOURCE"],
           [[p["namespace"], p["name"], p["podSelector"], ",".join(p["policyTypes"]),
             "; ".join(p.get("ipBlocks", [])) or "<none>", enforcer, p["source"]] for p in rows])
    return 0


def _print_change(change: live.Change) -> None:
    for line in change.summary:
        print(f"  {line}")


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
    from lab.bgp import calico_views
    from lab.netns import capabilities
    words = args.words
    if words[:2] == ["node", "status"] and len(words) == 3:
        capabilities.require_root()
        sys.stdout.write(lab.calico_node_status(words[2], args.lab))
        return 0
    if words[0] == "get" and len(words) == 2:
        sys.stdout.write(calico_views.get(lab.status(args.lab), words[1], args.output))
        return 0
    raise LabError(f"unsupported calicoctl command: {' '.join(words)}",
                   "try `lab calicoctl node status <node>` or `lab calicoctl get ippool -o wide`")


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
    from lab.graph import live as graph_live, model
    from lab.netns import capabilities
    capabilities.require_root()
    topology = lab.topology(name)
    state = lab.store.load(name)
    assert state is not None
    sessions = None
    if topology.cluster.calico is not None and topology.cluster.calico.backend == "bird":
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
    from lab.trace import capture, run as trace_run
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


def cmd_impair(lab: Lab, args: argparse.Namespace) -> int:
    from lab.topology import impair
    from lab.trace.capture import split_target
    values = {"rate": args.rate, "delay": args.delay, "jitter": args.jitter, "loss": args.loss}
    given = {k: v for k, v in values.items() if v is not None}
    if args.clear and given:
        raise LabError("--clear takes no --rate/--delay/--jitter/--loss", "clear first, then set the new values")
    if not args.clear and not given:
        raise LabError("nothing to do", "give --rate, --delay, --jitter or --loss, or --clear")
    if not args.clear and args.target is None:
        raise LabError("no target", "name a node or pod, e.g. `lab impair k8s-node01:eth0 --rate 50mbit`")
    try:
        impairment = None if args.clear else impair.parse(given)
    except impair.ImpairValueError as exc:
        raise LabError(f"--{exc.field}: {exc}", exc.hint) from None
    target, iface = split_target(args.target) if args.target else (None, None)
    rows = lab.impair(args.lab, target, iface, impairment)
    if args.clear:
        print(f"cleared {'every impairment' if target is None else args.target}")
    for row in rows:
        print(f"{row['target']}: {row['netns']} {row['interface']}: {row['impairment']} "
              f"({'; '.join(f'{k} by {v}' for k, v in row['implementation'].items())})")
    return 0


def cmd_mininet(lab: Lab, args: argparse.Namespace) -> int:
    """Mininet's CLI over the lab's namespaces; leaving it ends the node shells and leaves the lab up."""
    if args.custom_path:
        from pathlib import Path
        custom = Path(__file__).resolve().parent / "mininet" / "custom.py"
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


def cmd_topologies(lab: Lab, args: argparse.Namespace) -> int:
    from lab.topology import registry
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


# -- lab experiment run (lab/experiment) ------------------------------------------------------------
def _experiment_parser(sub: Any) -> None:
    experiment = sub.add_parser("experiment", help="run an experiment: lab experiment run experiments/<name>.yaml")
    actions = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="bring each mode's lab up, measure, take it down; results/<name>/<time>/")
    run.add_argument("file", help="an experiment file (experiments/*.yaml), or the name of a shipped one")
    run.add_argument("--repeat", type=int, help="repetitions (overrides the file)")
    run.add_argument("--out", default="results", help="results root (default: results)")
    run.add_argument("--only", nargs="+", metavar="MODE", help="run only these modes")
    run.add_argument("--quick", action="store_true", help="the file's short `quick:` profile")
    run.set_defaults(func=cmd_experiment_run)


def cmd_experiment_run(lab: Lab, args: argparse.Namespace) -> int:
    from lab import experiment
    from lab.experiment import shipped
    outcome = experiment.run(shipped.resolve(args.file), repeat=args.repeat, out=args.out, only=args.only,
                             quick=args.quick)
    print(f"results: {outcome.path} ({outcome.status}, {len(outcome.samples)} samples)")
    print(f"next: lab report {outcome.path}")
    if outcome.status != "complete":
        print(f"incomplete: {outcome.environment.get('reason')}", file=sys.stderr)
        return 130 if outcome.environment.get("reason") == "interrupted" else 1
    return 0


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
