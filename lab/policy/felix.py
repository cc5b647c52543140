"""The Calico enforcer: what Felix v3.28 (iptables dataplane, IPv4) programs on one node.

filter: cali-INPUT / cali-FORWARD / cali-OUTPUT at the top of INPUT / FORWARD / OUTPUT, and after the
cali-FORWARD jump the two FORWARD tail rules (accept what policy accepted, else set the accept mark);
cali-from-wl-dispatch / cali-to-wl-dispatch go to each local workload's cali-fw-<iface> (its egress
policy) and cali-tw-<iface> (its ingress policy); cali-wl-to-host runs cali-from-wl-dispatch for
workload-to-host traffic, then ACCEPTs (FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT, as calico.yaml sets).
An endpoint chain is felix/rules/endpoints.go endpointIptablesChain: conntrack, clear the marks, (fw)
drop VXLAN and IPIP from workloads, the tier "default" policies selecting the pod in that direction
(runs of policies with one selector share a cali-gi-/cali-go- group chain), "Drop if no policies
passed packet" when there were any, then the profiles kns.<ns> (allow) and ksa.<ns>.default (no rules),
"Drop if no profiles matched". As Felix's table layer does, only chains reachable from the hooks are
programmed. Every rule carries Felix's own `cali:<hash>` comment.

nat: cali-PREROUTING / cali-OUTPUT (floating IPs: empty) and cali-POSTROUTING (appended to
POSTROUTING): cali-nat-outgoing MASQUERADEs from cali40masq-ipam-pools to outside
cali40all-ipam-pools, and traffic leaving a tunnel from a host address takes the tunnel address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from lab.cni.calico import config as calico_config
from lab.cni.calico.devices import IPIP_DEVICE, VXLAN_DEVICE
from lab.cni.calico.workload import host_veth_name
from lab.model.network_policy import NetworkPolicy
from lab.policy import felix_names
from lab.policy.felix_iptables import (
    ACCEPT,
    ALL_MARKS,
    DENY_WORD,
    DROP,
    MARK_ACCEPT,
    MARK_PASS,
    MASQUERADE,
    RETURN,
    Chain,
    Rule,
    clear_mark,
    goto,
    hook_lines,
    jump,
    mark_clear,
    mark_not_clear,
    mark_set,
    match_set,
    set_mark,
)
from lab.policy.felix_policy import (
    SERVICE_ACCOUNT,
    IpSetData,
    calico_rules,
    endpoint_labels,
    policy_chain,
    policy_id,
    profile_chain,
    set_members,
)
from lab.policy.rules import IpSet, NodeRules, TableRules
from lab.topology.model import IPPool, Pod, Topology

ENFORCER = "calico"
FELIX_VERSION = "v3.28"
WORKLOAD_PREFIX = "cali"
VXLAN_PORT = 4789
RETURN_STRIDE = 5
IPSET_OPTIONS = "family inet maxelem 1048576"       # MaxIpsetSize default
ALL_POOLS, MASQ_POOLS = "cali40all-ipam-pools", "cali40masq-ipam-pools"
ALL_HOSTS, ALL_VXLAN = "cali40all-hosts-net", "cali40all-vxlan-net"
ENCAP_DROPS = (Rule(("-p 17", f"-m multiport --destination-ports {VXLAN_PORT}"), DROP,
                    (f"{DENY_WORD} VXLAN encapped packets originating in workloads",)),
               Rule(("-p 4",), DROP, (f"{DENY_WORD} IPinIP encapped packets originating in workloads",)))


@dataclass(frozen=True)
class _Endpoint:
    """A local workload: its interface, namespace and the policies selecting it, per direction."""

    iface: str
    namespace: str
    ingress: tuple[NetworkPolicy, ...]
    egress: tuple[NetworkPolicy, ...]


@dataclass(frozen=True)
class _Encap:
    """The encapsulation Felix enables from the pools, and this node's tunnel address."""

    ipip: bool
    vxlan: bool
    tunnel_ip: str | None


class Cluster:
    """What the compilation of every node shares: the policies in Felix's order, every endpoint's
    labels, and each selector set's members, computed once rather than once per node (a node's sets
    hold every selected pod of the cluster, so recomputing them per node costs nodes x pods)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.policies = sorted(topology.policies, key=policy_id)
        self.labels = {pod.key: endpoint_labels(topology, pod) for pod in topology.pods}
        self.endpoints = [(pod, self.labels[pod.key]) for pod in topology.pods]
        self._members: dict[str, tuple[str, ...]] = {}
        self._sets: dict[str, dict[str, IpSetData]] = {}

    def local(self, node: str) -> tuple[list[_Endpoint], list[NetworkPolicy]]:
        """The node's workloads, and the policies that select at least one of them (Felix's active ones)."""
        endpoints = [_endpoint(pod, self.labels[pod.key], self.policies) for pod in self.topology.pods_on(node)]
        active = [p for p in self.policies if any(p in e.ingress or p in e.egress for e in endpoints)]
        return endpoints, active

    def policy_sets(self, policy: NetworkPolicy) -> dict[str, IpSetData]:
        """The selector and named-port sets a policy's rules match on, by name."""
        key = policy_id(policy)
        if key not in self._sets:
            self._sets[key] = {data.name: data for ingress in (True, False)
                               for rule in calico_rules(policy, ingress) for data in rule.ipsets()}
        return self._sets[key]

    def members(self, data: IpSetData) -> tuple[str, ...]:
        if data.name not in self._members:
            self._members[data.name] = set_members(data, self.endpoints)
        return self._members[data.name]

    def wanted(self, active: list[NetworkPolicy]) -> dict[str, IpSetData]:
        return {name: data for policy in active for name, data in self.policy_sets(policy).items()}

    def set_entries(self, node: str) -> dict[str, tuple[int, NetworkPolicy]]:
        """The members of each policy set on `node` (and a policy that uses it), by set name, without
        building the sets."""
        return {name: (len(self.members(data)), policy) for policy in self.local(node)[1]
                for name, data in self.policy_sets(policy).items()}


def compile_node(topology: Topology, node: str, cluster: Cluster | None = None) -> NodeRules:
    """Everything Felix programs on `node` for the topology's NetworkPolicies."""
    cluster = cluster if cluster is not None else Cluster(topology)
    endpoints, active = cluster.local(node)
    encap = _encapsulation(topology, node)
    return NodeRules(enforcer=ENFORCER,
                     tables=(_filter_table(endpoints, active, encap), _nat_table(_pools(topology), encap)),
                     ipsets=_ipsets(topology, node, active, encap, cluster),
                     chain_prefixes=("cali-",), ipset_prefixes=("cali40",),
                     notes=(f"Felix {FELIX_VERSION} iptables dataplane, IPv4 filter and nat tables",))


def compile_nodes(topology: Topology) -> Iterator[tuple[str, NodeRules]]:
    """Every node's rules, one node at a time (so a caller can write each and let it go)."""
    cluster = Cluster(topology)
    for node in topology.nodes:
        yield node.name, compile_node(topology, node.name, cluster)


def _endpoint(pod: Pod, labels: dict[str, str], policies: list[NetworkPolicy]) -> _Endpoint:
    """A local pod's interface and the policies selecting it (matched as Felix matches: Calico labels)."""
    selecting = [p for p in policies if felix_names.matches(felix_names.policy_selector(p), labels)]
    return _Endpoint(host_veth_name(pod), pod.namespace, tuple(p for p in selecting if p.affects_ingress),
                     tuple(p for p in selecting if p.affects_egress))


def _pools(topology: Topology) -> tuple[IPPool, ...]:
    """The Calico IP pools (none outside a Calico cluster)."""
    calico = calico_config.find(topology)
    return calico.pools if calico else ()


def _encapsulation(topology: Topology, node: str) -> _Encap:
    """IPIPEnabled / VXLANEnabled as Felix's encapsulation calculator derives them from the pools."""
    calico = calico_config.find(topology)
    pools = _pools(topology)
    tunnel = calico.ipam.tunnel_ips.get(node) if calico else None
    return _Encap(ipip=any(p.ipip_mode != "Never" for p in pools), vxlan=any(p.vxlan_mode != "Never" for p in pools),
                  tunnel_ip=str(tunnel) if tunnel else None)


# -- filter table ------------------------------------------------------------------------------------
def _filter_table(endpoints: list[_Endpoint], active: list[NetworkPolicy], encap: _Encap) -> TableRules:
    """Static chains, dispatch, endpoint, group, policy and profile chains, and the hooks."""
    chains = [*_static_filter_chains(encap), *dispatch_chains([e.iface for e in endpoints])]
    for endpoint in endpoints:
        chains += _endpoint_chains(endpoint)
    for policy in active:
        chains += [policy_chain("cali-pi-", policy, ingress=True), policy_chain("cali-po-", policy, ingress=False)]
    for namespace in sorted({e.namespace for e in endpoints}):
        chains += _profile_chains(namespace)
    inserted = {builtin: [Rule(action=jump(f"cali-{builtin}"))] for builtin in ("INPUT", "FORWARD", "OUTPUT")}
    appended = {"FORWARD": [Rule((mark_set(MARK_ACCEPT),), ACCEPT, ("Policy explicitly accepted packet.",)),
                            Rule(action=set_mark(MARK_ACCEPT))]}
    return _table("filter", chains, inserted, appended)


def _static_filter_chains(encap: _Encap) -> list[Chain]:
    """rules/static.go for IPv4, no host endpoints, kube-proxy in iptables mode."""
    forward = (Rule(action=clear_mark(ALL_MARKS & ~MARK_ACCEPT)),
               Rule((mark_clear(MARK_ACCEPT),), jump("cali-from-hep-forward")),
               Rule((f"--in-interface {WORKLOAD_PREFIX}+",), jump("cali-from-wl-dispatch")),
               Rule((f"--out-interface {WORKLOAD_PREFIX}+",), jump("cali-to-wl-dispatch")),
               Rule(action=jump("cali-to-hep-forward")),
               Rule(action=jump("cali-cidr-block")))
    to_host = (Rule(action=jump("cali-from-wl-dispatch")),
               Rule(action=ACCEPT, comments=("Configured DefaultEndpointToHostAction",)))
    empty = [Chain(name) for name in ("cali-from-hep-forward", "cali-to-hep-forward", "cali-cidr-block",
                                      "cali-from-host-endpoint", "cali-to-host-endpoint")]
    return [Chain("cali-FORWARD", forward), Chain("cali-INPUT", _input_rules(encap)),
            Chain("cali-wl-to-host", to_host), Chain("cali-OUTPUT", _output_rules(encap)), *empty]


def _input_rules(encap: _Encap) -> tuple[Rule, ...]:
    """filterInputChain: tunnel packets only from Calico hosts, workloads to cali-wl-to-host, host endpoints."""
    rules: list[Rule] = []
    if encap.ipip:
        rules += [Rule(("-p 4", match_set(ALL_HOSTS, "src"), "-m addrtype --dst-type LOCAL"), ACCEPT,
                       ("Allow IPIP packets from Calico hosts",)),
                  Rule(("-p 4",), DROP, (f"{DENY_WORD} IPIP packets from non-Calico hosts",))]
    if encap.vxlan:
        vxlan = ("-p 17", f"-m multiport --destination-ports {VXLAN_PORT}")
        rules += [Rule(vxlan + (match_set(ALL_VXLAN, "src"), "-m addrtype --dst-type LOCAL"), ACCEPT,
                       ("Allow IPv4 VXLAN packets from allowed hosts",)),
                  Rule(vxlan + ("-m addrtype --dst-type LOCAL",), DROP,
                       ("Drop IPv4 VXLAN packets from non-allowed hosts",))]
    return (*rules, Rule((f"--in-interface {WORKLOAD_PREFIX}+",), goto("cali-wl-to-host")),
            Rule((mark_set(MARK_ACCEPT),), ACCEPT), *_host_endpoint_tail("cali-from-host-endpoint", ()))


def _output_rules(encap: _Encap) -> tuple[Rule, ...]:
    """filterOutputChain: host-to-workload is not policed; tunnel packets to Calico hosts allowed."""
    rules = [Rule((f"--out-interface {WORKLOAD_PREFIX}+",), RETURN)]
    if encap.ipip:
        rules.append(Rule(("-p 4", match_set(ALL_HOSTS, "dst"), "-m addrtype --src-type LOCAL"), ACCEPT,
                          ("Allow IPIP packets to other Calico hosts",)))
    if encap.vxlan:
        rules.append(Rule(("-p 17", f"-m multiport --destination-ports {VXLAN_PORT}", "-m addrtype --src-type LOCAL",
                           match_set(ALL_VXLAN, "dst")), ACCEPT, ("Allow IPv4 VXLAN packets to other allowed hosts",)))
    already = Rule((mark_set(MARK_ACCEPT),), ACCEPT)
    return (already, *rules, *_host_endpoint_tail("cali-to-host-endpoint", ("-m conntrack ! --ctstate DNAT",)))


def _host_endpoint_tail(dispatch: str, match: tuple[str, ...]) -> tuple[Rule, ...]:
    """The tail of cali-INPUT / cali-OUTPUT: host endpoint policy (no host endpoints here)."""
    return (Rule(action=clear_mark(ALL_MARKS)), Rule(match, jump(dispatch)),
            Rule((mark_set(MARK_ACCEPT),), ACCEPT, ("Host endpoint policy accepted packet.",)))


def dispatch_chains(ifaces: list[str]) -> list[Chain]:
    """WorkloadDispatchChains: per interface a goto, sub-chains per next character when names share it."""
    drop = Rule(action=DROP, comments=("Unknown interface",))
    return [*_dispatch("cali-from-wl-dispatch", ifaces, "--in-interface", "cali-fw-", drop),
            *_dispatch("cali-to-wl-dispatch", ifaces, "--out-interface", "cali-tw-", drop)]


def _dispatch(root: str, ifaces: list[str], flag: str, prefix: str, end: Rule) -> list[Chain]:
    """buildSingleDispatchChains over sortAndDivideEndpointNamesToPrefixTree."""
    names = sorted(set(ifaces))
    common = _common_prefix(names)
    children, root_rules = [], []
    for key, group in groupby(names, key=lambda name: name[:len(common) + 1]):
        members = list(group)
        rules = [Rule((f"{flag} {name}",), goto(felix_names.length_limited(prefix, name))) for name in members]
        if len(members) == 1:
            root_rules += rules
            continue
        child = f"{root}-{key[len(common):]}"
        children.append(Chain(child, (*rules, end)))
        root_rules.append(Rule((f"{flag} {key}+",), goto(child)))
    return [*children, Chain(root, (*root_rules, end))]


def _common_prefix(names: list[str]) -> str:
    """stringutils.CommonPrefix."""
    prefix = names[0] if names else ""
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _endpoint_chains(endpoint: _Endpoint) -> list[Chain]:
    """cali-tw-<iface>, cali-fw-<iface>, and the group chains they jump to."""
    profiles = (f"kns.{endpoint.namespace}", f"ksa.{endpoint.namespace}.{SERVICE_ACCOUNT}")
    chains = []
    for prefix, policies, from_workload in (("cali-tw-", endpoint.ingress, False), ("cali-fw-", endpoint.egress, True)):
        groups = _groups(policies, "outbound" if from_workload else "inbound")
        chains.append(Chain(felix_names.length_limited(prefix, endpoint.iface),
                            _endpoint_rules(groups, profiles, from_workload)))
        chains += [_group_chain(group) for group in groups if len(group.policies) > 1]
    return chains


@dataclass(frozen=True)
class _Group:
    """A run of policies with one selector (endpoint_mgr groupPolicies)."""

    direction: str
    selector: str
    policies: tuple[NetworkPolicy, ...]

    @property
    def policy_prefix(self) -> str:
        return "cali-pi-" if self.direction == "inbound" else "cali-po-"

    def policy_chains(self) -> list[str]:
        return [felix_names.length_limited(self.policy_prefix, policy_id(p)) for p in self.policies]

    @property
    def chain(self) -> str:
        uid = felix_names.policy_group_uid("default", self.selector, self.direction,
                                           tuple(policy_id(p) for p in self.policies))
        return ("cali-gi-" if self.direction == "inbound" else "cali-go-") + uid


def _groups(policies: Iterable[NetworkPolicy], direction: str) -> list[_Group]:
    """groupPolicies: consecutive policies with the same (normalised) selector."""
    runs = groupby(policies, key=felix_names.policy_selector)
    return [_Group(direction, selector, tuple(run)) for selector, run in runs]


def _group_chain(group: _Group) -> Chain:
    """PolicyGroupToIptablesChains: a RETURN on verdict every five policies."""
    rules: list[Rule] = []
    for index, chain in enumerate(group.policy_chains()):
        if index and index % RETURN_STRIDE == 0:
            rules.append(Rule((mark_not_clear(MARK_PASS | MARK_ACCEPT),), RETURN, ("Return on verdict",)))
        match = () if index % RETURN_STRIDE == 0 else (mark_clear(MARK_PASS | MARK_ACCEPT),)
        rules.append(Rule(match, jump(chain)))
    return Chain(group.chain, tuple(rules))


def _endpoint_rules(groups: list[_Group], profiles: tuple[str, ...], from_workload: bool) -> tuple[Rule, ...]:
    """endpointIptablesChain for a workload (chainTypeNormal, admin up)."""
    rules = [Rule(("-m conntrack --ctstate RELATED,ESTABLISHED",), ACCEPT),
             Rule(("-m conntrack --ctstate INVALID",), DROP),
             Rule(action=clear_mark(MARK_ACCEPT | MARK_PASS))]
    if from_workload:
        rules += ENCAP_DROPS
    targets = [chain for g in groups for chain in (g.policy_chains() if len(g.policies) == 1 else [g.chain])]
    for target in targets:
        rules += [Rule((mark_clear(MARK_PASS),), jump(target)),
                  Rule((mark_set(MARK_ACCEPT),), RETURN, ("Return if policy accepted",))]
    if targets:
        rules.append(Rule((mark_clear(MARK_PASS),), DROP, (f"{DENY_WORD} if no policies passed packet",)))
    profile_prefix = "cali-pro-" if from_workload else "cali-pri-"
    for profile in profiles:
        rules += [Rule(action=jump(felix_names.length_limited(profile_prefix, profile))),
                  Rule((mark_set(MARK_ACCEPT),), RETURN, ("Return if profile accepted",))]
    rules.append(Rule(action=DROP, comments=(f"{DENY_WORD} if no profiles matched",)))
    return tuple(rules)


def _profile_chains(namespace: str) -> list[Chain]:
    """The namespace profile (allow both ways) and the default service account's (no rules)."""
    chains = []
    for profile, allow in ((f"kns.{namespace}", True), (f"ksa.{namespace}.{SERVICE_ACCOUNT}", False)):
        chains += [profile_chain("cali-pri-", profile, allow, "ingress"),
                   profile_chain("cali-pro-", profile, allow, "egress")]
    return chains


# -- nat table ---------------------------------------------------------------------------------------
def _nat_table(pools: tuple[IPPool, ...], encap: _Encap) -> TableRules:
    """StaticNATTableChains and the masquerade manager's cali-nat-outgoing."""
    postrouting = [Rule(action=jump("cali-fip-snat")), Rule(action=jump("cali-nat-outgoing"))]
    tunnels = [IPIP_DEVICE] if encap.ipip and encap.tunnel_ip else []
    tunnels += [VXLAN_DEVICE] if encap.vxlan and encap.tunnel_ip else []
    postrouting += [Rule((f"--out-interface {tunnel}", "-m addrtype ! --src-type LOCAL --limit-iface-out",
                          "-m addrtype --src-type LOCAL"), MASQUERADE) for tunnel in tunnels]
    outgoing = [Rule((match_set(MASQ_POOLS, "src"), match_set(ALL_POOLS, "dst", negated=True)), MASQUERADE)]
    chains = [Chain("cali-PREROUTING", (Rule(action=jump("cali-fip-dnat")),)),
              Chain("cali-POSTROUTING", tuple(postrouting)),
              Chain("cali-OUTPUT", (Rule(action=jump("cali-fip-dnat")),)),
              Chain("cali-fip-dnat"), Chain("cali-fip-snat"),
              Chain("cali-nat-outgoing", tuple(outgoing) if any(p.nat_outgoing for p in pools) else ())]
    inserted = {"PREROUTING": [Rule(action=jump("cali-PREROUTING"))], "OUTPUT": [Rule(action=jump("cali-OUTPUT"))]}
    return _table("nat", chains, inserted, {"POSTROUTING": [Rule(action=jump("cali-POSTROUTING"))]})


def _table(name: str, chains: list[Chain], inserted: dict[str, list[Rule]],
           appended: dict[str, list[Rule]]) -> TableRules:
    """The chains reachable from the hooks (Felix programs no others), rendered with their hashes."""
    by_name: dict[str, Chain] = {}
    for chain in chains:                       # a group chain is rendered once per endpoint using it
        assert by_name.setdefault(chain.name, chain) == chain, f"two different chains named {chain.name}"
    wanted = _reachable(by_name, [r.target for rules in (*inserted.values(), *appended.values()) for r in rules])
    kept = [chain for chain in by_name.values() if chain.name in wanted]
    hooks = [line for builtin in (*inserted, *(b for b in appended if b not in inserted))
             for line in hook_lines(builtin, inserted.get(builtin, []), appended.get(builtin, []))]
    return TableRules(table=name, chains=tuple(c.name for c in kept),
                      rules=tuple(line for chain in kept for line in chain.lines()), hooks=tuple(hooks))


def _reachable(chains: dict[str, Chain], roots: list[str | None]) -> set[str]:
    """The chains reachable from the roots by jumps and gotos."""
    seen: set[str] = set()
    pending = [root for root in roots if root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in chains:
            raise AssertionError(f"Felix chain {name} is referenced but not rendered")
        seen.add(name)
        pending += [rule.target for rule in chains[name].rules if rule.target]
    return seen


# -- ipsets ------------------------------------------------------------------------------------------
def _ipsets(topology: Topology, node: str, active: list[NetworkPolicy], encap: _Encap,
            cluster: Cluster) -> tuple[IpSet, ...]:
    """The active policies' selector and named-port sets, then the pool and host sets."""
    wanted = cluster.wanted(active)
    sets = [IpSet(name, data.type, cluster.members(data), IPSET_OPTIONS) for name, data in sorted(wanted.items())]
    pools = _pools(topology)
    sets += [IpSet(ALL_POOLS, "hash:net", tuple(sorted(str(p.cidr) for p in pools)), IPSET_OPTIONS),
             IpSet(MASQ_POOLS, "hash:net", tuple(sorted(str(p.cidr) for p in pools if p.nat_outgoing)), IPSET_OPTIONS)]
    if encap.ipip:
        sets.append(IpSet(ALL_HOSTS, "hash:net", tuple(sorted(str(n.ip) for n in topology.nodes)), IPSET_OPTIONS))
    if encap.vxlan:
        remote = sorted(str(n.ip) for n in topology.nodes if n.name != node)
        sets.append(IpSet(ALL_VXLAN, "hash:net", tuple(remote), IPSET_OPTIONS))
    return tuple(sets)

