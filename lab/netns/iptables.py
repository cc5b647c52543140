"""Load iptables rules into namespaces with iptables-restore: atomic per table, one process per namespace."""

from __future__ import annotations

import subprocess

from lab.netns.plan import IptablesRules, NamespacePlan


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
WHAT = "iptables rules"   # what a refusal names (netlink.Failure.what)


def restore_here(ns: NamespacePlan) -> str | None:
    """Load `ns`'s rules with one iptables-restore started by the calling thread, which must be inside `ns`
    (a child process is born in the network namespace of the thread that forks it). Returns
    iptables-restore's complaint when it refused them, None when it loaded them."""
    try:
        done = subprocess.run(RESTORE, input=restore_text(ns.iptables), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=False)
    except FileNotFoundError:
        return "iptables-restore is not installed (run `sudo scripts/install-deps.sh`)"
    except OSError as exc:
        return f"cannot run iptables-restore: {exc.strerror}"
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")
