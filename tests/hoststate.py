"""A snapshot of the host's root network namespace: links, addresses, routes, rules, iptables, sysctls."""

from __future__ import annotations

import re
import shutil
import subprocess

COMMANDS = {
    "links": ["ip", "-d", "link", "show"],
    "addresses": ["ip", "addr", "show"],
    "routes4": ["ip", "route", "show", "table", "all"],
    "routes6": ["ip", "-6", "route", "show", "table", "all"],
    "rules4": ["ip", "rule", "show"],
    "rules6": ["ip", "-6", "rule", "show"],
    "iptables": ["iptables-save"],
    "ip6tables": ["ip6tables-save"],
    "sysctl": ["sysctl", "-a", "-r", r"^net\."],
}
VOLATILE_SYSCTLS = re.compile(r"nf_conntrack_count|_early_demux_|^net\.netfilter\.nf_conntrack_buckets")


def _clean(name: str, text: str) -> str:
    lines = text.splitlines()
    if name in ("iptables", "ip6tables"):
        lines = [re.sub(r"\[\d+:\d+\]", "", row) for row in lines if not row.startswith("#")]
    if name == "addresses":
        lines = [row for row in lines if "valid_lft" not in row]
    if name == "sysctl":
        lines = [row for row in lines if not VOLATILE_SYSCTLS.search(row)]
    return "\n".join(lines)


def snapshot() -> dict[str, str]:
    """Every view in COMMANDS; a missing tool or a failing command fails the test instead of comparing nothing."""
    state = {}
    for name, argv in COMMANDS.items():
        assert shutil.which(argv[0]), f"{argv[0]} is not installed (scripts/install-deps.sh installs it)"
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(argv)} failed: {result.stderr}"
        state[name] = _clean(name, result.stdout)
    return state
