"""Load iptables rules into namespaces with iptables-restore: atomic per table, all namespaces at once."""

from __future__ import annotations

import subprocess

from lab.errors import ApplyError
from lab.netns import namespace
from lab.netns.plan import IptablesRules, LabPlan, NamespacePlan


def restore_text(tables: tuple[IptablesRules, ...]) -> str:
    """iptables-restore input: one block per table, chains declared before the rules."""
    lines: list[str] = []
    for table in tables:
        lines.append(f"*{table.table}")
        lines += [f":{chain} - [0:0]" for chain in table.chains]
        lines += list(table.rules)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def restore_argv(netns: str) -> list[str]:
    return ["nsenter", f"--net={namespace.path(netns)}", "iptables-restore", "--noflush"]


def apply_all(plan: LabPlan) -> None:
    """Run one iptables-restore per namespace that has rules, concurrently; fail if any refuses."""
    targets: list[NamespacePlan] = [ns for ns in plan.namespaces if ns.iptables]
    running = []
    for ns in targets:
        proc = subprocess.Popen(restore_argv(ns.name), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        proc.stdin.write(restore_text(ns.iptables))
        proc.stdin.close()
        running.append((ns, proc))
    failures = []
    for ns, proc in running:
        error = proc.stderr.read()
        if proc.wait() != 0:
            failures.append(f"{ns.name}: {error.strip()}")
    if failures:
        raise ApplyError(f"iptables-restore refused the rules of {failures[0]}",
                         "the lab was rolled back; `lab up --dry-run` shows the rules it tried")
