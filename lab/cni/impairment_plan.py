"""The plan of a topology's link impairments: which root qdisc and loss rule each impaired interface gets.

Where the kernel has sch_netem, one netem qdisc does delay, jitter, loss and rate; without it, rate is a
tbf qdisc, loss an iptables DROP rule with `-m statistic` (lab/netns/impairments.py applies both), and
delay and jitter are refused, naming the missing module.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lab.errors import LabError
from lab.netns import names
from lab.netns.impairments import CHAIN, TABLE
from lab.netns.plan import IptablesRules, LabPlan, NamespacePlan, RootQdisc
from lab.topology.impair import Impairment, ImpairSpec
from lab.topology.model import Topology

TBF_LATENCY = "50ms"
NO_NETEM = ("this kernel has no netem (module sch_netem), which delay and jitter need",
            "load it (modprobe sch_netem) if your kernel ships it, or run the lab in the Vagrant VM "
            "(`vagrant up && vagrant ssh`), whose kernel has it; rate and loss work here without it")


def _burst(rate_bps: int) -> int:
    """tbf's bucket: 10 ms worth of the rate, and never less than ten full-size frames."""
    return max(rate_bps // 8 // 100, 15140)


def qdisc_for(dev: str, impairment: Impairment, netem: bool) -> RootQdisc | None:
    if netem:
        args: list[str] = []
        if impairment.delay_ms is not None:
            args += ["delay", f"{impairment.delay_ms:g}ms"]
            if impairment.jitter_ms:
                args.append(f"{impairment.jitter_ms:g}ms")
        if impairment.loss_pct is not None:
            args += ["loss", f"{impairment.loss_pct:g}%"]
        if impairment.rate_bps is not None:
            args += ["rate", f"{impairment.rate_bps}bit"]
        return RootQdisc(dev, "netem", tuple(args), note=impairment.text())
    if impairment.delay_ms is not None or impairment.jitter_ms is not None:
        raise LabError(f"delay/jitter on {dev}: {NO_NETEM[0]}", NO_NETEM[1])
    if impairment.rate_bps is None:
        return None
    return RootQdisc(dev, "tbf", ("rate", f"{impairment.rate_bps}bit", "burst", str(_burst(impairment.rate_bps)),
                              "latency", TBF_LATENCY), note=f"rate {impairment.text()}")


def loss_rule(dev: str, impairment: Impairment, netem: bool) -> str | None:
    """The iptables rule that drops `loss` percent of what leaves `dev` (only without netem)."""
    if netem or impairment.loss_pct is None:
        return None
    probability = f"{impairment.loss_pct / 100:.5f}".rstrip("0").rstrip(".") or "0"
    return (f"-A {CHAIN} -o {dev} -m statistic --mode random --probability {probability} "
            f"-m comment --comment \"lab impair loss {impairment.loss_pct:g}%\" -j DROP")


def targets(topology: Topology, spec: ImpairSpec) -> list[tuple[str, str]]:
    """(namespace, interface) pairs an impairment applies to."""
    if spec.kind == "node":
        return [(names.node_netns(topology.name, spec.name), spec.interface)]
    hosts = [n.name for n in topology.nodes if n.network == spec.name]
    hosts += [e.name for e in topology.externals if e.network == spec.name]
    return [(names.node_netns(topology.name, host), "eth0") for host in hosts]


def combine(under: Impairment, over: Impairment) -> Impairment:
    """Field by field: `over`'s value where it sets one, else `under`'s (a node's over its network's)."""
    return Impairment(**{f: getattr(over, f) if getattr(over, f) is not None else getattr(under, f)
                         for f in ("rate_bps", "delay_ms", "jitter_ms", "loss_pct")})


def merged(topology: Topology) -> dict[tuple[str, str], tuple[Impairment, list[ImpairSpec]]]:
    """Each impaired (namespace, interface) once: its network's impairment, then its node's over it, field by
    field (the node's value wins), with the specs that made it."""
    found: dict[tuple[str, str], tuple[Impairment, list[ImpairSpec]]] = {}
    for spec in sorted(topology.impairments, key=lambda s: s.kind != "network"):      # networks first
        for key in targets(topology, spec):
            before = found.get(key)
            impairment = spec.impairment if before is None else combine(before[0], spec.impairment)
            found[key] = (impairment, (before[1] if before else []) + [spec])
    return found


def with_impairments(plan: LabPlan, topology: Topology, netem: bool) -> LabPlan:
    """The plan with the topology's impairments: one root qdisc per impaired interface, and loss rules in the
    namespace's mangle table."""
    if not topology.impairments:
        return plan
    qdiscs: dict[str, list[RootQdisc]] = {}
    rules: dict[str, list[str]] = {}
    for (netns, dev), (impairment, specs) in merged(topology).items():
        ns = plan.namespace(netns)
        if not any(link.name == dev for link in ns.links):
            known = ", ".join(link.name for link in ns.links)
            raise LabError(f"{specs[-1].source}: node {specs[-1].name} has no interface {dev!r}",
                           f"its interfaces are: {known}")
        try:
            found = qdisc_for(dev, impairment, netem)
        except LabError as exc:
            raise LabError(f"{specs[-1].source}: {exc.args[0]}", NO_NETEM[1]) from None
        if found:
            qdiscs.setdefault(netns, []).append(found)
        rule = loss_rule(dev, impairment, netem)
        if rule:
            rules.setdefault(netns, []).append(rule)

    def impaired(ns: NamespacePlan) -> NamespacePlan:
        extra = ns.iptables
        if ns.name in rules:
            extra += (IptablesRules(TABLE, (CHAIN,), (f"-A POSTROUTING -j {CHAIN}", *rules[ns.name])),)
        return replace(ns, root_qdiscs=ns.root_qdiscs + tuple(qdiscs.get(ns.name, ())), iptables=extra)

    return replace(plan, namespaces=tuple(impaired(ns) for ns in plan.namespaces))


def describe(topology: Topology, netem: bool) -> list[dict[str, Any]]:
    """What `lab status` and the state record about each impaired interface (one row each, as merged)."""
    return [row(" + ".join(f"{spec.kind} {spec.name}" for spec in specs), netns, dev, impairment, netem)
            for (netns, dev), (impairment, specs) in merged(topology).items()]


def row(target: str, netns: str, dev: str, impairment: Impairment, netem: bool) -> dict[str, Any]:
    how: dict[str, str] = {}
    if netem:
        how = {f: "netem" for f, v in (("rate", impairment.rate_bps), ("delay", impairment.delay_ms),
                                        ("loss", impairment.loss_pct)) if v is not None}
    else:
        if impairment.rate_bps is not None:
            how["rate"] = "tbf qdisc"
        if impairment.loss_pct is not None:
            how["loss"] = f"iptables -t {TABLE} {CHAIN}: statistic --mode random DROP (no netem on this kernel)"
    return {"target": target, "netns": netns, "interface": dev, "impairment": impairment.text(),
            **impairment.as_dict(), "implementation": how}
