"""Apply an enforcer's NodeRules to the lab's node namespaces, atomically per node.

One sync, per node (all nodes at once):
  1. read the enforcer's current chains and ipsets (`iptables-save -t <table>`, `ipset list -n`)
     and save the current sets (`ipset save`) to restore them if the next steps fail;
  2. `ipset restore`: every wanted set is built under a temporary name and swapped in, so a set
     never appears half-filled to the rules already in force;
  3. `iptables-restore --noflush`: one transaction per table that declares (so flushes) every wanted
     chain, fills it, flushes and deletes the enforcer's chains no longer wanted, and (on the first
     sync) inserts the hooks into the built-in chains;
  4. destroy the sets nothing refers to any more.
If step 2 or 3 fails on a node, that node's sets are put back and the rules in force are the old ones;
the caller re-syncs the previous model on the nodes that had already changed.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lab.errors import ApplyError, LabError, TopologyError
from lab.model.network_policy import NetworkPolicy
from lab.netns import names, namespace
from lab.netns.render import TextSink
from lab.policy.rules import IpSet, NodeRules, TableRules
from lab.topology.model import Topology

BRIDGE_NF_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


@dataclass(frozen=True)
class Enforcer:
    """A NetworkPolicy implementation: how it compiles every node's rules for one sync (one node at a
    time), how many policy-set entries each node holds, and what it models."""

    name: str
    nodes: Callable[[Topology, str], Iterator[tuple[str, NodeRules]]]
    set_entries: Callable[[Topology], Iterator[tuple[str, dict[str, tuple[int, NetworkPolicy]]]]]
    models: str


def _kube_router(topology: Topology, sync_version: str) -> Iterator[tuple[str, NodeRules]]:
    from lab.policy import kuberouter
    return kuberouter.compile_nodes(topology, sync_version)


def _kube_router_entries(topology: Topology) -> Iterator[tuple[str, dict[str, tuple[int, NetworkPolicy]]]]:
    from lab.policy import kuberouter
    sizes = kuberouter.set_entries(topology)       # the same sets on every node
    return ((node.name, sizes) for node in topology.nodes)


def _felix(topology: Topology, sync_version: str) -> Iterator[tuple[str, NodeRules]]:
    from lab.policy import felix
    return felix.compile_nodes(topology)


def _felix_entries(topology: Topology) -> Iterator[tuple[str, dict[str, tuple[int, NetworkPolicy]]]]:
    from lab.policy import felix
    cluster = felix.Cluster(topology)
    return ((node.name, cluster.set_entries(node.name)) for node in topology.nodes)


ENFORCERS = {
    "kube-router": Enforcer("kube-router", _kube_router, _kube_router_entries,
                            "kube-router v2.5 --run-firewall: iptables and ipset"),
    "calico": Enforcer("calico", _felix, _felix_entries, "Calico Felix v3.28 iptables dataplane: cali-* chains"),
}
# Policy-set entries (ipset members) a lab may hold over all its nodes. Each node holds every pod a
# policy's peer selectors select (kube-router: every policy's sets; Felix: the sets of the policies
# selecting a local pod), as the real enforcers do, so the count grows as nodes x selected pods. The
# dry run prints one line per entry and `lab up` loads them with `ipset restore`, about 2 us each
# (docs/topology.md, "Size"): 2,000,000 entries are a few seconds and about 100 MB of dry-run text.
MAX_SET_ENTRIES = 2_000_000


def enforcer(topology: Topology) -> Enforcer | None:
    """The topology's enforcer, or None when nothing enforces policy (plain flannel)."""
    return ENFORCERS.get(topology.cluster.enforcer)


def node_rules(topology: Topology, sync_version: str | None = None) -> Iterator[tuple[str, NodeRules]]:
    """Every node's rules under the topology's enforcer, one node at a time (none without an enforcer)."""
    chosen = enforcer(topology)
    if chosen is None:
        return iter(())
    return chosen.nodes(topology, sync_version or str(time.time_ns()))


def compile_lab(topology: Topology, sync_version: str | None = None) -> dict[str, NodeRules]:
    """Every node's rules under the topology's enforcer ({} when there is none)."""
    return dict(node_rules(topology, sync_version))


@dataclass(frozen=True)
class SetSize:
    """How many policy-set entries a lab's nodes hold: the total, and the biggest set with its policy."""

    total: int
    nodes: int
    biggest: str = ""
    biggest_members: int = 0
    policy: NetworkPolicy | None = None


def set_size(topology: Topology) -> SetSize:
    """Count the policy-set entries of every node without building the sets."""
    chosen = enforcer(topology)
    if chosen is None:
        return SetSize(0, 0)
    total, nodes, biggest, most, policy = 0, 0, "", 0, None
    for _, sizes in chosen.set_entries(topology):
        nodes += 1
        for name, (count, user) in sizes.items():
            total += count
            if count > most:
                biggest, most, policy = name, count, user
    return SetSize(total, nodes, biggest, most, policy)


def check_size(topology: Topology, limit: int | None = None) -> SetSize:
    """Refuse, before anything is compiled or rendered, a lab whose nodes would hold more than `limit`
    (MAX_SET_ENTRIES) policy-set entries in all; the error names the policy with the biggest set."""
    limit = MAX_SET_ENTRIES if limit is None else limit
    size = set_size(topology)
    if size.total <= limit:
        return size
    chosen = enforcer(topology)
    file, _, line = (size.policy.source if size.policy else "").rpartition(":")
    where = (file, int(line)) if line.isdigit() else (topology.source, None)
    name = f"NetworkPolicy {size.policy.key}: " if size.policy else ""
    raise TopologyError(where[0], "spec", f"{name}lab {topology.name}'s NetworkPolicies need {size.total:,} ipset "
                        f"entries over its {size.nodes} nodes, more than the lab's limit of {limit:,}: "
                        f"{chosen.name if chosen else 'the enforcer'} holds every pod a policy's peers select in "
                        f"each node's sets, and this policy's set {size.biggest} has {size.biggest_members:,}",
                        where[1], "select fewer pods in the policies' from/to peers (a narrower podSelector or "
                        "namespaceSelector, or an ipBlock), or run the pods on fewer nodes; see docs/topology.md, "
                        "'Size'")


# -- restore texts -----------------------------------------------------------------------------------
def ipset_restore_text(sets: tuple[IpSet, ...]) -> str:
    """`ipset restore` input: build each set as a temporary and swap it in."""
    lines: list[str] = []
    for index, ipset in enumerate(sets):
        temporary = f"TMP-LAB-{index:06d}"
        lines.append(f"create {ipset.name} {ipset.type} {ipset.create_options} -exist")
        lines.append(f"create {temporary} {ipset.type} {ipset.create_options} -exist")
        lines.append(f"flush {temporary}")
        lines += [f"add {temporary} {member} -exist" for member in ipset.members]
        lines.append(f"swap {temporary} {ipset.name}")
        lines.append(f"destroy {temporary}")
    return "\n".join(lines) + "\n"


def iptables_restore_text(table: TableRules, stale: list[str], hooks: bool) -> str:
    """One table's transaction: declare (flush) wanted and stale chains, fill, drop stale, hook."""
    lines = [f"*{table.table}"]
    lines += [f":{chain} - [0:0]" for chain in (*table.chains, *stale)]
    lines += list(table.rules)
    lines += [f"-X {chain}" for chain in stale]
    if hooks:
        lines += list(table.hooks)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def write_script(topology: Topology, out: TextSink) -> None:
    """The enforcer's first sync as shell commands, for `lab up --dry-run`, written to `out` one node
    at a time (memory stays that of one node's rules)."""
    chosen = enforcer(topology)
    if chosen is None:
        return
    out.write(f"# NetworkPolicy: {chosen.models}\n")
    for node, node_rules_ in node_rules(topology, sync_version="0"):
        netns = names.node_netns(topology.name, node)
        out.write(f"ip netns exec {netns} sysctl -qw net.bridge.bridge-nf-call-iptables=1\n")
        if node_rules_.ipsets:
            out.write(f"ip netns exec {netns} ipset restore <<'EOF'\n{ipset_restore_text(node_rules_.ipsets)}EOF\n")
        for table in node_rules_.tables:
            out.write(f"ip netns exec {netns} iptables-restore --noflush <<'EOF'\n"
                      f"{iptables_restore_text(table, [], hooks=True)}EOF\n")


def script(topology: Topology) -> str:
    """The enforcer's first sync as shell commands (write_script's text)."""
    out = io.StringIO()
    write_script(topology, out)
    return out.getvalue()


# -- applying ----------------------------------------------------------------------------------------
def sync(topology: Topology, rules: dict[str, NodeRules], first: bool = False) -> dict[str, int]:
    """Apply every node's rules (concurrently); returns the rule count per node."""
    netns = {node: names.node_netns(topology.name, node) for node in rules}
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(rules)))) as pool:
        results = dict(zip(rules, pool.map(lambda n: _sync_node(netns[n], rules[n], first), rules), strict=False))
    failures = [f"{node}: {error}" for node, error in results.items() if error]
    if failures:
        raise ApplyError(f"the policy rules were refused on {failures[0]}",
                         "the rules in force before this change are still in force on that node")
    return {node: node_rules.rule_count() for node, node_rules in rules.items()}


def _sync_node(netns: str, rules: NodeRules, first: bool) -> str | None:
    """One node's sync; returns an error text (after putting the old sets back), or None."""
    if first:
        _enable_bridge_netfilter(netns)
    current_sets = _run(netns, ["ipset", "list", "-n"]).split()
    owned_sets = [s for s in current_sets if s.startswith(rules.ipset_prefixes)] if rules.ipset_prefixes else []
    backup = _run(netns, ["ipset", "save"]) if owned_sets else ""
    error = _restore(netns, ["ipset", "restore"], ipset_restore_text(rules.ipsets)) if rules.ipsets else None
    if error is None:
        for table in rules.tables:
            stale = _stale_chains(netns, table, rules.chain_prefixes)
            error = _restore(netns, ["iptables-restore", "-w", "--noflush"],
                             iptables_restore_text(table, stale, first))
            if error:
                break
    if error:
        if backup.strip():
            _restore(netns, ["ipset", "restore", "-exist"], _as_swaps(backup, rules.ipset_prefixes))
        for ipset in rules.ipsets:
            if ipset.name not in current_sets:
                _run(netns, ["ipset", "destroy", ipset.name], check=False)
        return error
    wanted = {s.name for s in rules.ipsets}
    for name in owned_sets:
        if name not in wanted:
            _run(netns, ["ipset", "destroy", name], check=False)   # still referenced: kept, harmless
    return None


def _as_swaps(saved: str, prefixes: tuple[str, ...]) -> str:
    """`ipset save` output rewritten to rebuild the enforcer's sets under temporary names and swap them back."""
    sets: dict[str, tuple[str, list[str]]] = {}
    for line in saved.splitlines():
        words = line.split()
        if words[:1] == ["create"] and words[1].startswith(prefixes):
            sets[words[1]] = (" ".join(words[2:]), [])
        elif words[:1] == ["add"] and words[1] in sets:
            sets[words[1]][1].append(" ".join(words[2:]))
    restored = [IpSet(name=name, type=spec.split()[0], members=tuple(members),
                      create_options=" ".join(spec.split()[1:]))
                for name, (spec, members) in sets.items()]
    return ipset_restore_text(tuple(restored))


def _stale_chains(netns: str, table: TableRules, prefixes: tuple[str, ...]) -> list[str]:
    if not prefixes:
        return []
    saved = _run(netns, ["iptables-save", "-t", table.table])
    existing = [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")]
    wanted = set(table.chains)
    return [chain for chain in existing if chain.startswith(prefixes) and chain not in wanted]


def _enable_bridge_netfilter(netns: str) -> None:
    """Bridged pod-to-pod traffic must cross iptables (kube-router sets this too); per namespace."""
    def write() -> None:
        try:
            with open(BRIDGE_NF_SYSCTL, "w", encoding="ascii") as handle:
                handle.write("1\n")
        except OSError as exc:
            raise LabError(f"cannot enable bridge netfilter in {netns}: {exc.strerror}",
                           "the kernel needs br_netfilter for policy between pods on one bridge") from None
    namespace.run_in(netns, write)


def _argv(netns: str, command: list[str]) -> list[str]:
    return ["nsenter", f"--net={namespace.path(netns)}", *command]


def _run(netns: str, command: list[str], check: bool = True) -> str:
    result = subprocess.run(_argv(netns, command), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ApplyError(f"{' '.join(command)} failed in {netns}: {result.stderr.strip()}",
                         "run `sudo scripts/install-deps.sh` if the tool is missing")
    return result.stdout


def _restore(netns: str, command: list[str], text: str) -> str | None:
    result = subprocess.run(_argv(netns, command), input=text, capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or f"{command[0]} exited {result.returncode}")
