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
    """`-w`: wait for the xtables lock, which legacy iptables shares between namespaces."""
    return ["nsenter", f"--net={namespace.path(netns)}", "iptables-restore", "-w", "--noflush"]


def apply_all(plan: LabPlan) -> None:
    """Run one iptables-restore per namespace that has rules, concurrently; fail if any refuses."""
    targets: list[NamespacePlan] = [ns for ns in plan.namespaces if ns.iptables]
    running = []
    try:
        for ns in targets:
            running.append((ns, subprocess.Popen(restore_argv(ns.name), stdin=subprocess.PIPE,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    except OSError as exc:
        for _, proc in running:
            proc.kill()
            proc.wait()
        raise ApplyError(f"cannot run iptables-restore: {exc.strerror}", "run `sudo scripts/install-deps.sh`") from None
    failures = []
    for ns, proc in running:
        try:
            _, error = proc.communicate(restore_text(ns.iptables))
        except BrokenPipeError:
            error = "iptables-restore exited before reading its input"
            proc.wait()
        if proc.returncode != 0:
            failures.append(f"{ns.name}: {error.strip()}")
    if failures:
        raise ApplyError(f"iptables-restore refused the rules of {failures[0]}",
                         "the lab was rolled back; `lab up --dry-run` shows the rules it tried")
