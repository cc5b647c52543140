"""What an enforcer compiles for one node: ipsets and iptables chains, and their restore texts.

Both enforcers (kube-router, Calico Felix) produce a NodeRules; lab/policy/enforce.py applies it
atomically: `ipset restore` builds every set under a temporary name and swaps it in, then one
`iptables-restore --noflush` per node replaces every chain the enforcer owns (declaring a chain in
restore input flushes it), deletes the owned chains no longer wanted, and inserts the hooks into
the built-in chains that are not there yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IpSet:
    """One ipset: `type` is hash:ip or hash:net; members may carry options (`10.0.1.0/24 nomatch`)."""

    name: str
    type: str
    members: tuple[str, ...] = ()
    create_options: str = "family inet hashsize 1024 maxelem 65536"


@dataclass(frozen=True)
class TableRules:
    """The enforcer's chains in one iptables table.

    `chains`: every chain the enforcer owns in this table (each is declared, so flushed, on a sync);
    `rules`: `-A <chain> ...` lines in order; `hooks`: rules in built-in chains, written as
    `-I <builtin> <pos> ...` or `-A <builtin> ...`, applied only when an identical rule is absent.
    """

    table: str
    chains: tuple[str, ...]
    rules: tuple[str, ...]
    hooks: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeRules:
    """Everything one node's policy enforcement consists of."""

    enforcer: str
    tables: tuple[TableRules, ...]
    ipsets: tuple[IpSet, ...] = ()
    chain_prefixes: tuple[str, ...] = ()     # chains starting with these are the enforcer's: stale ones go
    ipset_prefixes: tuple[str, ...] = ()     # likewise for ipsets
    notes: tuple[str, ...] = field(default=())

    def rule_count(self) -> int:
        return sum(len(t.rules) + len(t.hooks) for t in self.tables)
