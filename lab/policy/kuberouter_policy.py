"""kube-router's per-policy chain and ipsets (policy.go: processIngressRules, processEgressRules; v2.5).

Each allow is a pair of rules, `MARK --set-xmark 0x10000/0x10000` then `RETURN` if marked, over:
  * ingress: `--match-set <peer set> src` (left out when the rule has no `from`) and
    `--match-set <target set or named-port set> dst`; egress is the mirror image;
  * a port: `-p <proto> -m <proto> --dport <port>` or `<port>:<endPort>`; a port entry without a
    number is `-p <proto>` alone; a rule without ports matches every protocol.
Named ports are resolved as kube-router does: ingress ones against the policy's target pods, egress
ones against the rule's peer pods (or, for a rule without `to`, every pod of the policy's namespace);
each (name, protocol, number) found gets its own KUBE-DST- set of the pods that declare it. A rule
whose ports are all unresolved named ports, with pod peers, ends up matching every port, as kube-router's does.

Rules are written in iptables-save's canonical form (reference §7.1): `-p` first, the implicit
protocol match as `-m tcp`, the comment quoted; iptables-restore stores them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.model.network_policy import IPBlock, NetworkPolicy, PolicyPort, Rule
from lab.policy import kuberouter_names as names
from lab.policy import selection
from lab.policy.rules import IpSet
from lab.topology.model import Pod, Topology

ALLOWED_MARK = "0x10000/0x10000"
SET_OPTIONS = "family inet hashsize 1024 maxelem 65536 timeout 0"   # `<type> timeout 0`, as ipset save prints it
HASH_IP, HASH_NET = "hash:ip", "hash:net"


@dataclass(frozen=True)
class Port:
    """A resolved port: protocol and `--dport` value ("" for protocol only); `ips` for a named port's pods."""

    protocol: str
    port: str = ""
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledPolicy:
    """One policy's chain, rules and sets, and the IPs of the pods it selects."""

    policy: NetworkPolicy
    chain: str
    rules: tuple[str, ...]
    ipsets: tuple[IpSet, ...]
    target_ips: frozenset[str]


@dataclass
class _Builder:
    """The rules and sets of one policy chain as they are written."""

    chain: str
    rules: list[str] = field(default_factory=list)
    sets: dict[str, IpSet] = field(default_factory=dict)

    def refresh_set(self, name: str, kind: str, members: list[str]) -> None:
        """RefreshSet: a set keeps the type it was first created with; its entries are replaced."""
        kind = self.sets[name].type if name in self.sets else kind
        self.sets[name] = IpSet(name=name, type=kind, members=tuple(dict.fromkeys(members)),
                                create_options=SET_OPTIONS)

    def allow(self, comment: str, src: str | None, dst: str | None, port: Port | None = None) -> None:
        """appendRuleToPolicyChain: the MARK and RETURN pair."""
        parts = [f"-A {self.chain}"]
        protocol = port.protocol.lower() if port else ""
        if protocol:
            parts.append(f"-p {protocol}")
        parts.append(f'-m comment --comment "{comment}"')
        if src:
            parts.append(f"-m set --match-set {src} src")
        if dst:
            parts.append(f"-m set --match-set {dst} dst")
        if port and port.port:
            parts.append(f"-m {protocol} --dport {port.port}")
        match = " ".join(parts)
        self.rules.append(f"{match} -j MARK --set-xmark {ALLOWED_MARK}")
        self.rules.append(f"{match} -m mark --mark {ALLOWED_MARK} -j RETURN")


def compile_policy(topology: Topology, policy: NetworkPolicy, version: str) -> CompiledPolicy:
    """The policy's chain content and ipsets, with its targets' IPs."""
    targets = _actionable(selection.policy_targets(topology, policy))
    target_ips = _ips(targets)
    builder = _Builder(names.policy_chain(policy.namespace, policy.name, version))
    if policy.affects_ingress:
        target_set = names.target_ingress_set(policy.namespace, policy.name)
        builder.refresh_set(target_set, HASH_IP, _timed(target_ips))
        for index, rule in enumerate(policy.ingress):
            _ingress_rule(topology, policy, index, rule, targets, target_set, builder)
    if policy.affects_egress:
        target_set = names.target_egress_set(policy.namespace, policy.name)
        builder.refresh_set(target_set, HASH_IP, _timed(target_ips))
        for index, rule in enumerate(policy.egress):
            _egress_rule(topology, policy, index, rule, target_set, builder)
    return CompiledPolicy(policy, builder.chain, tuple(builder.rules), tuple(builder.sets.values()),
                          frozenset(target_ips))


def _ingress_rule(topology: Topology, policy: NetworkPolicy, index: int, rule: Rule, targets: list[Pod],
                  target_set: str, builder: _Builder) -> None:
    """processIngressRules for one `from` rule."""
    ns, name = policy.namespace, policy.name
    peers, blocks = _peers(topology, policy, rule)
    numeric, named = _ports(rule.ports, targets)
    from_pods = f"rule to ACCEPT traffic from source pods to dest pods selected by policy name {name} namespace {ns}"
    from_all = f"rule to ACCEPT traffic from all sources to dest pods selected by policy name: {name} namespace {ns}"
    from_blocks = ("rule to ACCEPT traffic from specified ipBlocks to dest pods selected by policy name: "
                   f"{name} namespace {ns}")

    def named_port_set(endpoint: int, port: Port, kind: str) -> str:
        set_name = names.ingress_named_port_set(ns, name, index, endpoint)
        builder.refresh_set(set_name, kind, _timed(port.ips))
        return set_name

    if peers:
        source = names.ingress_pod_set(ns, name, index)
        builder.refresh_set(source, HASH_IP, _timed(_ips(peers)))
        for port in numeric:
            builder.allow(from_pods, source, target_set, port)
        for endpoint, port in enumerate(named):
            builder.allow(from_pods, source, named_port_set(endpoint, port, HASH_IP), port)
        if not numeric and not named:
            builder.allow(from_pods, source, target_set)
    if not rule.peers:
        for port in numeric:
            builder.allow(from_all, None, target_set, port)
        for endpoint, port in enumerate(named):
            builder.allow(from_all, None, named_port_set(endpoint, port, HASH_IP), port)
        if not rule.ports:
            builder.allow(from_all, None, target_set)
    if blocks:
        source = names.ingress_block_set(ns, name, index)
        builder.refresh_set(source, HASH_NET, blocks)
        for port in numeric:
            builder.allow(from_blocks, source, target_set, port)
        for endpoint, port in enumerate(named):
            builder.allow(from_blocks, source, named_port_set(endpoint, port, HASH_NET), port)
        if not rule.ports:
            builder.allow(from_blocks, source, target_set)


def _egress_rule(topology: Topology, policy: NetworkPolicy, index: int, rule: Rule, target_set: str,
                 builder: _Builder) -> None:
    """processEgressRules for one `to` rule."""
    ns, name = policy.namespace, policy.name
    peers, blocks = _peers(topology, policy, rule)
    port_owners = peers if rule.peers else _actionable(selection.pods_in(topology, ns, None))
    numeric, named = _ports(rule.ports, port_owners)
    to_pods = f"rule to ACCEPT traffic from source pods to dest pods selected by policy name {name} namespace {ns}"
    to_all = ("rule to ACCEPT traffic from source pods to all destinations selected by policy name: "
              f"{name} namespace {ns}")
    to_blocks = ("rule to ACCEPT traffic from source pods to specified ipBlocks selected by policy name: "
                 f"{name} namespace {ns}")
    if peers:
        destination = names.egress_pod_set(ns, name, index)
        builder.refresh_set(destination, HASH_IP, _timed(_ips(peers)))
        for port in numeric:
            builder.allow(to_pods, target_set, destination, port)
        for endpoint, port in enumerate(named):
            named_set = names.egress_named_port_set(ns, name, index, endpoint)
            builder.refresh_set(named_set, HASH_IP, _timed(port.ips))
            builder.allow(to_pods, target_set, named_set, port)
        if not numeric and not named:
            builder.allow(to_pods, target_set, destination)
    if not rule.peers:
        for port in (*numeric, *named):
            builder.allow(to_all, target_set, None, port)
        if not rule.ports:
            builder.allow(to_all, target_set, None)
    if blocks:
        destination = names.egress_block_set(ns, name, index)
        builder.refresh_set(destination, HASH_NET, blocks)
        for port in numeric:                       # kube-router ignores named ports towards ipBlocks
            builder.allow(to_blocks, target_set, destination, port)
        if not rule.ports:
            builder.allow(to_blocks, target_set, destination)


def _peers(topology: Topology, policy: NetworkPolicy, rule: Rule) -> tuple[list[Pod], list[str]]:
    """The rule's peer pods (actionable, in peer order, repeats kept) and its ipBlock set entries."""
    pods: list[Pod] = []
    blocks: list[str] = []
    for peer in rule.peers:
        pods += _actionable(selection.peer_pods(topology, policy.namespace, peer))
        if peer.ip_block is not None and peer.pod_selector is None and peer.namespace_selector is None:
            blocks += _block_entries(peer.ip_block)
    return pods, blocks


def _block_entries(block: IPBlock) -> list[str]:
    """evalIPBlockPeer: the cidr, then each `except` as nomatch; a /0 is split in two /1 (hash:net has no /0)."""
    entries = [f"{cidr} timeout 0" for cidr in _halves(str(block.cidr))]
    for excepted in block.excepts:
        entries += [f"{cidr} timeout 0 nomatch" for cidr in _halves(str(excepted))]
    return entries


def _halves(cidr: str) -> tuple[str, ...]:
    return ("0.0.0.0/1", "128.0.0.0/1") if cidr.endswith("/0") else (cidr,)


def _ports(ports: tuple[PolicyPort, ...], owners: list[Pod]) -> tuple[list[Port], list[Port]]:
    """processNetworkPolicyPorts: numeric ports, and named ports resolved against `owners`' containerPorts."""
    numeric: list[Port] = []
    named: list[Port] = []
    for entry in ports:
        if entry.port is None:
            numeric.append(Port(entry.protocol))
        elif isinstance(entry.port, int):
            span = f"{entry.port}:{entry.end_port}" if entry.end_port and entry.end_port >= entry.port else ""
            numeric.append(Port(entry.protocol, span or str(entry.port)))
        else:
            named += _named_endpoints(entry.port, entry.protocol, owners)
    return numeric, named


def _named_endpoints(name: str, protocol: str, owners: list[Pod]) -> list[Port]:
    """grabNamedPortFromPod: one endpoint per container port number declaring `name` with `protocol`."""
    by_number: dict[int, list[str]] = {}
    for pod in owners:
        for declared in pod.container_ports:
            if declared.name == name and declared.protocol == protocol:
                by_number.setdefault(declared.port, []).append(str(pod.ip))
    return [Port(protocol, str(number), tuple(ips)) for number, ips in sorted(by_number.items())]


def _actionable(pods: tuple[Pod, ...] | list[Pod]) -> list[Pod]:
    """isNetPolActionable: pods with an IP (the lab has no hostNetwork or finished pods)."""
    return [pod for pod in pods if pod.ip is not None]


def _ips(pods: list[Pod]) -> list[str]:
    """The pods' IPs."""
    return [str(pod.ip) for pod in pods]


def _timed(ips: list[str] | tuple[str, ...]) -> list[str]:
    """Set entries as kube-router adds them: `<ip> timeout 0`."""
    return [f"{ip} timeout 0" for ip in ips]
