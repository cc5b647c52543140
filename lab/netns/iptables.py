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


RESTORE = ["iptables-restore", "-w", "--noflush"]   # -w: wait for the xtables lock (legacy iptables shares it)


def restore_argv(netns: str) -> list[str]:
    """The command that loads rules into `netns` from a process outside it."""
    return ["nsenter", f"--net={namespace.path(netns)}", *RESTORE]


def apply_all(plan: LabPlan) -> None:
    """Run one iptables-restore per namespace that has rules, concurrently; fail if any refuses.

    Each is started by a helper thread from inside its namespace (a child process is born in the
    network namespace of the thread that forks it), so no `nsenter` runs in front of each."""
    targets = {ns.name: ns for ns in plan.namespaces if ns.iptables}
    running: list[tuple[NamespacePlan, subprocess.Popen[str]]] = []

    def start(name: str) -> None:
        running.append((targets[name], subprocess.Popen(RESTORE, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.PIPE, text=True)))
    try:
        namespace.run_in_each(list(targets), start)
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
