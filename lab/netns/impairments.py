"""Link impairments in the kernel: root qdiscs (tbf, or netem where the kernel has it) and loss rules.

This is the substrate's half: detect netem, apply planned root qdiscs, set and clear them live. Which
qdisc and rule each impaired interface gets is planned from the topology in lab/cni/impairment_plan.py.

Where the kernel has sch_netem, one netem qdisc does delay, jitter, loss and rate. Without it (this
kernel has no netem and no fq): rate is a tbf qdisc; loss is an iptables rule in the namespace's mangle
POSTROUTING (`-m statistic --mode random --probability p -j DROP`, chain LAB-IMPAIR), which really drops
that share of the packets leaving the interface, and is recorded as such; delay and jitter are refused,
naming the missing module and the Vagrant VM. Netem is detected by trying it in a scratch namespace.
Everything lives in the lab's own namespaces, so `lab down` removes it with them.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from lab.errors import ApplyError
from lab.netns import namespace
from lab.netns.plan import LabPlan, NamespacePlan, RootQdisc

CHAIN = "LAB-IMPAIR"
TABLE = "mangle"


def netem_available(scratch: str) -> bool:
    """Try a netem qdisc on the loopback of a throw-away namespace (never the host's)."""
    namespace.remove(scratch)
    namespace.create_many([scratch])
    try:
        result = subprocess.run(["tc", "-n", scratch, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                                capture_output=True, text=True, check=False)
        return result.returncode == 0
    finally:
        namespace.remove(scratch)


def netem_assumed() -> bool:
    """A guess without privilege (for --dry-run)."""
    return os.path.isdir("/sys/module/sch_netem")


def qdisc_argv(netns: str, qdisc: RootQdisc) -> list[str]:
    return ["tc", "-n", netns, "qdisc", "replace", "dev", qdisc.dev, "root", qdisc.kind, *qdisc.args]


def commands(ns: NamespacePlan) -> list[str]:
    """The namespace's qdiscs as `tc` commands (for --dry-run)."""
    return [shlex.join(qdisc_argv(ns.name, q)) for q in ns.root_qdiscs]


def apply(plan: LabPlan) -> None:
    for ns in plan.namespaces:
        for q in ns.root_qdiscs:
            _run(qdisc_argv(ns.name, q), f"the {q.kind} qdisc on {ns.name} {q.dev}")


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ApplyError(f"the kernel refused {what}: {result.stderr.strip()}",
                         f"the command was: {shlex.join(argv)}")
    return result.stdout


# -- live changes (`lab impair`) ---------------------------------------------------------------------
def _iptables(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", netns, "iptables", "-w", "-t", TABLE, *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ApplyError(f"iptables refused {' '.join(args)} in {netns}: {result.stderr.strip()}",
                         "the impairment was not changed")
    return result


def _drop_loss_rules(netns: str, dev: str | None) -> None:
    listing = _iptables(netns, "-S", CHAIN, check=False)
    if listing.returncode != 0:
        return
    for line in listing.stdout.splitlines():
        if line.startswith(f"-A {CHAIN} ") and (dev is None or f" -o {dev} " in line):
            _iptables(netns, "-D", *shlex.split(line)[1:])
    left = [] if dev is None else _iptables(netns, "-S", CHAIN).stdout.splitlines()     # another device's rules
    if dev is None or not any(rule.startswith(f"-A {CHAIN} ") for rule in left):
        _iptables(netns, "-D", "POSTROUTING", "-j", CHAIN, check=False)
        _iptables(netns, "-X", CHAIN, check=False)


def live_set(netns: str, dev: str, qdisc: RootQdisc | None, loss_rule: str | None) -> None:
    """Replace the interface's impairment on a running lab by `qdisc` and the `loss_rule` (both planned, so
    validated, before this is called)."""
    live_clear(netns, dev)
    if qdisc:
        _run(qdisc_argv(netns, qdisc), f"the {qdisc.kind} qdisc on {netns} {dev}")
    if loss_rule:
        if _iptables(netns, "-S", CHAIN, check=False).returncode != 0:
            _iptables(netns, "-N", CHAIN)
            _iptables(netns, "-A", "POSTROUTING", "-j", CHAIN)
        _iptables(netns, *shlex.split(loss_rule))


def live_clear(netns: str, dev: str | None) -> None:
    """Remove the impairment of one interface (every interface when `dev` is None): root qdisc and loss rules."""
    devices = [dev] if dev else [line.split()[4] for line in _qdiscs(netns) if " root " in line]
    for device in devices:
        if any(f" dev {device} root " in f" {line} " for line in _qdiscs(netns)):
            subprocess.run(["tc", "-n", netns, "qdisc", "del", "dev", device, "root"], capture_output=True,
                           check=False)
    _drop_loss_rules(netns, dev)


def _qdiscs(netns: str) -> list[str]:
    """`tc qdisc show` lines of qdiscs the lab set (tbf/netem at root)."""
    result = subprocess.run(["tc", "-n", netns, "qdisc", "show"], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if line.split()[1:2] in (["tbf"], ["netem"])
            and " root " in line]
