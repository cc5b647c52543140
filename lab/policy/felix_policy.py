"""A Kubernetes NetworkPolicy as Felix v3.28 sees it, and the iptables rules of its policy chains.

Conversion (libcalico-go k8s/conversion K8sNetworkPolicyToCalico, updateprocessors): the policy
becomes `<ns>/knp.default.<name>` (order 1000, tier default); every rule yields one Calico rule per
protocol (sorted) and per peer, with the ports of that protocol merged and coalesced (SimplifyPorts);
ipBlock becomes nets and notNets (the excepts); selectors as in felix_names.

Rule scanning (felix/calc/rule_scanner.go): a peer selector becomes a `cali40s:` hash:net set of the
selected endpoints' IPs; a named port becomes a `cali40n:` hash:ip,port set of (IP, protocol, port) of
the endpoints the rule's destination selector selects (all() for ingress), and then replaces the
destination selector set when the rule has no numeric port.

Rendering (felix/rules/policy.go): a rule matches and sets the accept mark, then RETURNs; a port list
of more than one multiport or named set, several CIDRs, or CIDRs with negated ones are written as
"match blocks" over the scratch marks; trailing RETURNs of a chain are dropped and its first rule
carries "Policy <id> ingress|egress" (or "Profile ...").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lab.model.network_policy import NetworkPolicy, Peer, PolicyPort
from lab.model.network_policy import Rule as PolicyRule
from lab.policy import felix_names
from lab.policy.felix_iptables import (
    MARK_ACCEPT,
    MARK_SCRATCH0,
    MARK_SCRATCH1,
    RETURN,
    Chain,
    Rule,
    clear_mark,
    dest_ports,
    mark_clear,
    mark_set,
    match_set,
    set_mark,
    set_masked_mark,
)
from lab.topology.model import Pod, Topology

PortRange = tuple[int, int]
CalicoPort = tuple[int, int, str]          # (first, last, name): a named port has name and (0, 0)
MAX_MULTIPORT_SLOTS = 15
SERVICE_ACCOUNT = "default"


@dataclass(frozen=True)
class IpSetData:
    """An ipset a policy needs: a selector's endpoints, or their (IP, port) for a named port."""

    selector: str
    protocol: str = ""                     # tcp | udp | sctp for a named-port set
    port_name: str = ""

    @property
    def set_id(self) -> str:
        if self.port_name:
            return felix_names.named_port_set_id(self.selector, self.protocol, self.port_name)
        return felix_names.selector_set_id(self.selector)

    @property
    def name(self) -> str:
        return felix_names.ipset_name(self.set_id)

    @property
    def type(self) -> str:
        return "hash:ip,port" if self.port_name else "hash:net"


@dataclass(frozen=True)
class CalicoRule:
    """The proto.Rule fields a NetworkPolicy rule can produce (action is always allow)."""

    protocol: str | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    src_sets: tuple[IpSetData, ...] = ()
    dst_sets: tuple[IpSetData, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    dst_named_sets: tuple[IpSetData, ...] = ()

    def ipsets(self) -> tuple[IpSetData, ...]:
        """Every ipset the rule matches on."""
        return self.src_sets + self.dst_sets + self.dst_named_sets


def policy_id(policy: NetworkPolicy) -> str:
    """The name Felix knows a Kubernetes NetworkPolicy by."""
    return f"{policy.namespace}/knp.default.{policy.name}"


def calico_rules(policy: NetworkPolicy, ingress: bool) -> list[CalicoRule]:
    """The policy's ingress (or egress) rules as Felix receives them."""
    rules = policy.ingress if ingress else policy.egress
    return [converted for rule in rules for converted in _convert(rule, policy.namespace, ingress)]


def _convert(rule: PolicyRule, namespace: str, ingress: bool) -> list[CalicoRule]:
    """k8sRuleToCalico: one rule per protocol (sorted), then per peer."""
    by_protocol = _ports_by_protocol(rule.ports)
    peers: tuple[Peer | None, ...] = rule.peers or (None,)
    return [_scanned(protocol.lower() or None, _simplify(by_protocol[protocol]), peer, namespace, ingress)
            for protocol in sorted(by_protocol) for peer in peers]


def _ports_by_protocol(ports: tuple[PolicyPort, ...]) -> dict[str, list[CalicoPort] | None]:
    """Each protocol's ports; None means every port (and a rule without ports is {"": None})."""
    if not ports:
        return {"": None}
    result: dict[str, list[CalicoPort] | None] = {}
    for port in ports:
        if port.port is None:
            result[port.protocol] = None
        elif port.protocol not in result:
            result[port.protocol] = [_calico_port(port)]
        elif existing := result[port.protocol]:
            result[port.protocol] = [*existing, _calico_port(port)]
    return result


def _calico_port(port: PolicyPort) -> CalicoPort:
    """k8sPortToCalico: a number, a range (port:endPort) or a name."""
    if isinstance(port.port, str):
        return (0, 0, port.port)
    assert port.port is not None, "every port (None) has no Calico port: _ports_by_protocol keeps it None"
    return (port.port, port.end_port or port.port, "")


def _simplify(ports: list[CalicoPort] | None) -> tuple[CalicoPort, ...] | None:
    """SimplifyPorts: named ports first, then the numeric ports coalesced into sorted ranges."""
    if ports is None:
        return None
    numbers = sorted(n for first, last, name in ports if not name for n in range(first, last + 1))
    if len(ports) <= 1 or len(numbers) <= 1:
        return tuple(ports)
    ranges: list[CalicoPort] = []
    for number in numbers:
        if ranges and number <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number, "")
        else:
            ranges.append((number, number, ""))
    return tuple([p for p in ports if p[2]] + ranges)


def _scanned(protocol: str | None, ports: tuple[CalicoPort, ...] | None, peer: Peer | None,
             namespace: str, ingress: bool) -> CalicoRule:
    """ruleToParsedRule: selectors and named ports become ipsets."""
    selector = felix_names.peer_selector(peer, namespace)
    nets = (str(peer.ip_block.cidr),) if peer and peer.ip_block else ()
    excepts = tuple(str(net) for net in peer.ip_block.excepts) if peer and peer.ip_block else ()
    numeric = tuple((first, last) for first, last, name in ports or () if not name)
    named = [name for _, _, name in ports or () if name]
    named_protocol = protocol if protocol in ("udp", "sctp") else "tcp"
    dst_selector = "" if ingress else selector
    named_sets = tuple(IpSetData(dst_selector or felix_names.ALL_SELECTOR, named_protocol, name) for name in named)
    selector_sets = (IpSetData(selector),) if selector else ()
    if ingress:
        return CalicoRule(protocol, src_nets=nets, not_src_nets=excepts, src_sets=selector_sets,
                          dst_ports=numeric, dst_named_sets=named_sets)
    dst_sets = selector_sets if numeric or not named else ()
    return CalicoRule(protocol, dst_nets=nets, not_dst_nets=excepts, dst_sets=dst_sets,
                      dst_ports=numeric, dst_named_sets=named_sets)


# -- endpoints ---------------------------------------------------------------------------------------
def endpoint_labels(topology: Topology, pod: Pod) -> dict[str, str]:
    """The labels Felix matches selectors against: its profiles' (pcns./pcsa.), the pod's, Calico's."""
    labels = {f"pcns.{key}": value for key, value in topology.namespace(pod.namespace).labels.items()}
    labels["pcns.projectcalico.org/name"] = pod.namespace
    labels["pcsa.projectcalico.org/name"] = SERVICE_ACCOUNT
    labels.update(pod.labels)
    labels.update({"projectcalico.org/namespace": pod.namespace, "projectcalico.org/orchestrator": "k8s",
                   "projectcalico.org/serviceaccount": SERVICE_ACCOUNT})
    return labels


def set_members(data: IpSetData, endpoints: list[tuple[Pod, dict[str, str]]]) -> tuple[str, ...]:
    """The `a.b.c.d/32` (or `IP,proto:port`) entries of every endpoint the set's selector selects."""
    members = set()
    for pod, labels in endpoints:
        if pod.ip is None or not felix_names.matches(data.selector, labels):
            continue
        if not data.port_name:
            members.add(f"{pod.ip}/32")
        members |= {f"{pod.ip},{data.protocol}:{port.port}" for port in pod.container_ports
                    if data.port_name and port.name == data.port_name and port.protocol.lower() == data.protocol}
    return tuple(sorted(members))


# -- rendering ---------------------------------------------------------------------------------------
def policy_chain(prefix: str, policy: NetworkPolicy, ingress: bool) -> Chain:
    """cali-pi-<id> (prefix cali-pi-, ingress) or cali-po-<id> (cali-po-, egress)."""
    ident = policy_id(policy)
    direction = "ingress" if ingress else "egress"
    return Chain(felix_names.length_limited(prefix, ident),
                 chain_rules(calico_rules(policy, ingress), f"Policy {ident} {direction}"))


def profile_chain(prefix: str, profile: str, allow: bool, direction: str) -> Chain:
    """cali-pri-/cali-pro-<profile>: kns.<ns> allows everything, ksa.<ns>.<sa> has no rules."""
    rules = [CalicoRule()] if allow else []
    return Chain(felix_names.length_limited(prefix, profile), chain_rules(rules, f"Profile {profile} {direction}"))


def chain_rules(rules: list[CalicoRule], chain_comment: str) -> tuple[Rule, ...]:
    """ProtoRulesToIptablesRules: every rule, trailing RETURNs dropped, the chain comment on the first."""
    rendered = [line for rule in rules for line in iptables_rules(rule)]
    while rendered and rendered[-1].action == RETURN:
        rendered.pop()
    first = rendered[0] if rendered else Rule()
    return (dataclasses.replace(first, comments=first.comments + (chain_comment,)), *rendered[1:])


def iptables_rules(rule: CalicoRule) -> list[Rule]:
    """ProtoRuleToIptablesRules for an allow rule: match blocks, the match setting accept, RETURN."""
    blocks = _MatchBlocks()
    dst_ports, named = rule.dst_ports, rule.dst_named_sets
    splits = split_ports(dst_ports)
    if len(splits) + len(named) > 1:
        blocks.ports(rule.protocol, splits, named)
        dst_ports, named = (), ()
    src_nets, dst_nets = rule.src_nets, rule.dst_nets
    if len(src_nets) > 1:
        blocks.cidrs(src_nets, "--source")
        src_nets = ()
    if len(dst_nets) > 1:
        blocks.cidrs(dst_nets, "--destination")
        dst_nets = ()
    not_src, not_dst = rule.not_src_nets, rule.not_dst_nets
    if len(src_nets) + len(not_src) > 1:
        blocks.negated(not_src, "--source")
        not_src = ()
    if len(dst_nets) + len(not_dst) > 1:
        blocks.negated(not_dst, "--destination")
        not_dst = ()
    match = _match(rule, src_nets, dst_nets, dst_ports, named, not_src, not_dst)
    if blocks.used:
        match += (mark_set(MARK_SCRATCH0),)
    return [*blocks.rules, Rule(match, set_mark(MARK_ACCEPT)), Rule((mark_set(MARK_ACCEPT),), RETURN)]


def _match(rule: CalicoRule, src_nets: tuple[str, ...], dst_nets: tuple[str, ...], dst_ports: tuple[PortRange, ...],
           named: tuple[IpSetData, ...], not_src: tuple[str, ...], not_dst: tuple[str, ...]) -> tuple[str, ...]:
    """CalculateRuleMatch, in its order: protocol, source, destination, then the negations."""
    match = [f"-p {rule.protocol}"] if rule.protocol else []
    match += [f"--source {net}" for net in src_nets]
    match += [match_set(s.name, "src") for s in rule.src_sets]
    match += [f"--destination {net}" for net in dst_nets]
    match += [match_set(s.name, "dst") for s in rule.dst_sets]
    match += [dest_ports(dst_ports)] if dst_ports else []
    match += [match_set(s.name, "dst,dst") for s in named]
    match += [f"! --source {net}" for net in not_src]
    match += [f"! --destination {net}" for net in not_dst]
    return tuple(match)


def split_ports(ranges: tuple[PortRange, ...]) -> list[tuple[PortRange, ...]]:
    """SplitPortList: groups of at most 15 multiport slots (a range takes two)."""
    splits: list[tuple[PortRange, ...]] = []
    current: list[PortRange] = []
    free = MAX_MULTIPORT_SLOTS
    for first, last in ranges:
        needed = 1 if first == last else 2
        if free < needed:
            splits.append(tuple(current))
            current, free = [], MAX_MULTIPORT_SLOTS
        current.append((first, last))
        free -= needed
    return splits + [tuple(current)] if current else splits


class _MatchBlocks:
    """matchBlockBuilder: OR within a block, AND across blocks, the result in the scratch0 mark."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.used = False
        self._positive_done = False

    def ports(self, protocol: str | None, splits: list[tuple[PortRange, ...]], named: tuple[IpSetData, ...]) -> None:
        self._start(0)
        mark = self._positive_mark()
        proto = (f"-p {protocol}",) if protocol else ()
        self.rules += [Rule(proto + (dest_ports(split),), set_mark(mark)) for split in splits]
        self.rules += [Rule((match_set(s.name, "dst,dst"),), set_mark(mark)) for s in named]
        self._finish_positive()

    def cidrs(self, cidrs: tuple[str, ...], flag: str) -> None:
        self._start(0)
        mark = self._positive_mark()
        self.rules += [Rule((f"{flag} {cidr}",), set_mark(mark)) for cidr in cidrs]
        self._finish_positive()

    def negated(self, cidrs: tuple[str, ...], flag: str) -> None:
        self._start(MARK_SCRATCH0)
        self.rules += [Rule((f"{flag} {cidr}",), clear_mark(MARK_SCRATCH0)) for cidr in cidrs]

    def _start(self, initial: int) -> None:
        if not self.used:
            self.rules.append(Rule(action=set_masked_mark(initial, MARK_SCRATCH0 | MARK_SCRATCH1)))
            self.used = True

    def _positive_mark(self) -> int:
        return MARK_SCRATCH1 if self._positive_done else MARK_SCRATCH0

    def _finish_positive(self) -> None:
        if self._positive_done:
            self.rules.append(Rule((mark_clear(MARK_SCRATCH1),), clear_mark(MARK_SCRATCH0)))
        self._positive_done = True
