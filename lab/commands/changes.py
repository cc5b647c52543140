"""Changes to a running lab: manifests applied and deleted, labels, link impairments."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lab.commands.output import warn
from lab.errors import LabError

if TYPE_CHECKING:
    from lab import live
    from lab.commands import Subparsers
    from lab.lifecycle import Lab
    from lab.topology.model import Topology


def add_apply(sub: Subparsers) -> None:
    applyp = sub.add_parser("apply", help="apply NetworkPolicy or Calico resources to a running lab: "
                            "lab apply -f policy.yaml")
    applyp.add_argument("-f", "--filename", required=True, help="a manifest file, or - for standard input")
    applyp.add_argument("--lab")
    applyp.set_defaults(func=cmd_apply)


def add_delete(sub: Subparsers) -> None:
    deletep = sub.add_parser("delete", help="delete the resources a manifest names from a running lab")
    deletep.add_argument("-f", "--filename", required=True)
    deletep.add_argument("--lab")
    deletep.set_defaults(func=cmd_delete)


def add_label(sub: Subparsers) -> None:
    label = sub.add_parser("label", help="label a node, pod or namespace: lab label pod x/a role=db (k- removes)")
    label.add_argument("kind", choices=["node", "pod", "namespace", "ns"])
    label.add_argument("target", help="a node, a pod as namespace/pod, or a namespace")
    label.add_argument("labels", nargs="+", help="key=value to set, key- to remove")
    label.add_argument("--lab")
    label.set_defaults(func=cmd_label)


def add_impair(sub: Subparsers) -> None:
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


def cmd_apply(lab: Lab, args: argparse.Namespace) -> int:
    from lab import live
    from lab.topology import policy_manifest
    manifests = live.read_manifests(args.filename)
    warn(w for document in manifests.documents for w in policy_manifest.warnings_of(document))
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


def _print_change(change: live.Change) -> None:
    for line in change.summary:
        print(f"  {line}")


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
