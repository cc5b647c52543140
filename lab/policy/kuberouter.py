"""The kube-router NetworkPolicy enforcer: the filter table kube-router's firewall leaves on a node.

Models kube-router v2.5 (`--run-firewall=true`, iptables + ipset, IPv4 only), defaults
`--service-cluster-ip-range=10.96.0.0/12` and node ports 30000:32767, as the reference describes it
(dataplane-fidelity.md §7.1; cloudnativelabs/kube-router v2.5.0 pkg/controllers/netpol):
  * KUBE-ROUTER-INPUT/FORWARD/OUTPUT, hooked at position 1 of INPUT/FORWARD/OUTPUT, hold the
    cluster-IP and node-port RETURNs (INPUT only), the jumps to each local pod's chain, and a final
    ACCEPT of traffic marked 0x20000 ("complies with network policies");
  * KUBE-NWPLCY-DEFAULT accepts some ICMP and marks 0x10000 ("allowed") for pods no policy selects
    in a direction;
  * one KUBE-NWPLCY-<hash> chain per policy in the cluster (kuberouter_policy.py);
  * one KUBE-POD-FW-<hash> chain per local pod: conntrack, the local-node accept, jumps to its
    policies or the default chain, then NFLOG + REJECT unless marked 0x10000, and the 0x20000 mark.
Rules are in iptables-save's canonical form, which is the reference's text (`-p` before the matches,
`-m tcp --dport`, `--set-xmark 0x0/0x10000`, `10/min`): iptables-restore stores them unchanged, and
iptables-save 1.8.9 prints them back identically, except for a backslash it puts before the ' of "pod's".
Pod and policy chain names include `sync_version`. kube-router walks pods and policies in informer
(map) order; the lab uses the topology's order, and keeps kube-router's reversal of the policy jumps.
"""

from __future__ import annotations

from collections.abc import Iterator

from lab.model.network_policy import NetworkPolicy
from lab.policy import kuberouter_names as names
from lab.policy.kuberouter_policy import CompiledPolicy, compile_policy
from lab.policy.rules import NodeRules, TableRules
from lab.topology.model import Pod, Topology

ENFORCER = "kube-router"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
NODE_PORT_RANGE = "30000:32767"
ALLOWED_MARK = "0x10000/0x10000"
COMPLIES_MARK = "0x20000/0x20000"
ICMP_TYPES = ((8, "allow icmp echo requests"), (3, "allow icmp destination unreachable messages"),
              (11, "allow icmp time exceeded messages"))


def compile_cluster(topology: Topology, sync_version: str) -> dict[str, NodeRules]:
    """Every node's rules for one sync; the policy chains and sets, the same on every node, are built once."""
    return dict(compile_nodes(topology, sync_version))


def compile_nodes(topology: Topology, sync_version: str) -> Iterator[tuple[str, NodeRules]]:
    """Every node's rules, one node at a time (the policy chains and sets are built once and shared)."""
    policies = [compile_policy(topology, policy, sync_version) for policy in topology.policies]
    for node in topology.nodes:
        yield node.name, compile_node(topology, node.name, sync_version, policies)


def set_entries(topology: Topology) -> dict[str, tuple[int, NetworkPolicy]]:
    """The members of each policy set one node holds (and its policy), by set name: kube-router
    programs every policy's sets on every node, whether or not a local pod is selected."""
    return {s.name: (len(s.members), policy) for policy in topology.policies
            for s in compile_policy(topology, policy, "0").ipsets}


def compile_node(topology: Topology, node: str, sync_version: str,
                 compiled: list[CompiledPolicy] | None = None) -> NodeRules:
    """The filter-table chains, hooks and ipsets kube-router's firewall holds on `node`."""
    policies = compiled if compiled is not None else [compile_policy(topology, policy, sync_version)
                                                      for policy in topology.policies]
    pods = [pod for pod in topology.pods_on(node) if pod.ip is not None]
    pod_chains = [names.pod_chain(pod.namespace, pod.name, sync_version) for pod in pods]
    jumps = _pod_jumps(pods, pod_chains)
    rules = [*_input_rules(), *jumps[names.INPUT_CHAIN], _explicit_accept(names.INPUT_CHAIN),
             *jumps[names.FORWARD_CHAIN], _explicit_accept(names.FORWARD_CHAIN),
             *jumps[names.OUTPUT_CHAIN], _explicit_accept(names.OUTPUT_CHAIN),
             *_default_chain_rules()]
    for policy in policies:
        rules += policy.rules
    for pod, chain in zip(pods, pod_chains, strict=False):
        rules += _pod_chain_rules(pod, chain, policies)
    chains = (*names.TOP_LEVEL_CHAINS.values(), names.DEFAULT_CHAIN, *(c.chain for c in policies), *pod_chains)
    ipsets = sorted((s for compiled in policies for s in compiled.ipsets), key=lambda s: s.name)
    return NodeRules(enforcer=ENFORCER, tables=(TableRules("filter", chains, tuple(rules), _hooks()),),
                     ipsets=tuple(ipsets),
                     chain_prefixes=(names.POD_CHAIN_PREFIX, names.POLICY_CHAIN_PREFIX),
                     ipset_prefixes=(names.SOURCE_SET_PREFIX, names.DESTINATION_SET_PREFIX))


def _hooks() -> tuple[str, ...]:
    """The jumps from the built-in chains, inserted at position 1 (ensureTopLevelChains)."""
    lines = []
    for builtin, chain in names.TOP_LEVEL_CHAINS.items():
        comment = names.commented(builtin, ["-m", "comment", "--comment", "kube-router netpol", "-j", chain])
        lines.append(f'-I {builtin} 1 -m comment --comment "{comment}" -j {chain}')
    return tuple(lines)


def _input_rules() -> list[str]:
    """KUBE-ROUTER-INPUT's head: RETURN for the service range and for LOCAL node ports (TCP, UDP)."""
    chain = names.INPUT_CHAIN
    service = ["-m", "comment", "--comment", "allow traffic to primary/secondary cluster IP range",
               "-d", SERVICE_CLUSTER_IP_RANGE, "-j", "RETURN"]
    lines = [f'-A {chain} -d {SERVICE_CLUSTER_IP_RANGE} -m comment --comment "{names.commented(chain, service)}"'
             " -j RETURN"]
    for protocol in ("tcp", "udp"):
        args = ["-p", protocol, "-m", "comment", "--comment", f"allow LOCAL {protocol.upper()} traffic to node ports",
                "-m", "addrtype", "--dst-type", "LOCAL", "-m", "multiport", "--dports", NODE_PORT_RANGE,
                "-j", "RETURN"]
        lines.append(f'-A {chain} -p {protocol} -m comment --comment "{names.commented(chain, args)}"'
                     f" -m addrtype --dst-type LOCAL -m multiport --dports {NODE_PORT_RANGE} -j RETURN")
    return lines


def _explicit_accept(chain: str) -> str:
    """ensureExplicitAccept: the last rule of each top-level chain."""
    return (f'-A {chain} -m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies"'
            f" -m mark --mark {COMPLIES_MARK} -j ACCEPT")


def _default_chain_rules() -> list[str]:
    """ensureDefaultNetworkPolicyChain (v2.5): common ICMP accepted, everything else marked allowed."""
    chain = names.DEFAULT_CHAIN
    lines = [f'-A {chain} -p icmp -m comment --comment "{comment}" -m icmp --icmp-type {icmp_type} -j ACCEPT'
             for icmp_type, comment in ICMP_TYPES]
    lines.append(f'-A {chain} -m comment --comment "rule to mark traffic matching a network policy"'
                 f" -j MARK --set-xmark {ALLOWED_MARK}")
    return lines


def _pod_jumps(pods: list[Pod], chains: list[str]) -> dict[str, list[str]]:
    """interceptPodInboundTraffic and interceptPodOutboundTraffic, per top-level chain, pod by pod."""
    forward, output, input_ = names.FORWARD_CHAIN, names.OUTPUT_CHAIN, names.INPUT_CHAIN
    jumps: dict[str, list[str]] = {input_: [], forward: [], output: []}
    for pod, chain in zip(pods, chains, strict=False):
        jumps[forward] += [_jump(forward, "-d", pod, chain), _jump(forward, "-d", pod, chain, bridged=True),
                           _jump(forward, "-s", pod, chain), _jump(forward, "-s", pod, chain, bridged=True)]
        jumps[output] += [_jump(output, "-d", pod, chain), _jump(output, "-s", pod, chain)]
        jumps[input_].append(_jump(input_, "-s", pod, chain))
    return jumps


def _jump(top: str, flag: str, pod: Pod, chain: str, bridged: bool = False) -> str:
    """A top-level chain's jump to a pod chain for traffic to (-d) or from (-s) the pod."""
    what = "destined to" if flag == "-d" else "from"
    physdev = " -m physdev --physdev-is-bridged" if bridged else ""
    return (f"-A {top} {flag} {pod.ip}/32{physdev} -m comment --comment "
            f'"rule to jump traffic {what} {_who(pod)} to chain {chain}" -j {chain}')


def _pod_chain_rules(pod: Pod, chain: str, policies: list[CompiledPolicy]) -> list[str]:
    """One local pod's chain in its final order (setupPodNetpolRules inserts at 1, so in reverse)."""
    ip = f"{pod.ip}/32"
    selecting = [c for c in policies if str(pod.ip) in c.target_ips]
    ingress = any(c.policy.affects_ingress for c in selecting)
    egress = any(c.policy.affects_egress for c in selecting)
    lines = [f'-A {chain} -m comment --comment "rule for stateful firewall for pod"'
             " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
             f'-A {chain} -m comment --comment "rule to drop invalid state for pod"'
             " -m conntrack --ctstate INVALID -j DROP",
             f"-A {chain} -d {ip} -m comment --comment \"rule to permit the traffic traffic to pods when source is the "
             "pod's local node\" -m addrtype --src-type LOCAL -j ACCEPT"]
    if not egress:
        lines.append(f'-A {chain} -s {ip} -m comment --comment "run through default egress network policy chain"'
                     f" -j {names.DEFAULT_CHAIN}")
    if not ingress:
        lines.append(f'-A {chain} -d {ip} -m comment --comment "run through default ingress network policy chain"'
                     f" -j {names.DEFAULT_CHAIN}")
    for compiled in reversed(selecting):
        lines.append(f"-A {chain} {_direction(compiled, ip)}-m comment --comment "
                     f'"run through nw policy {compiled.policy.name}" -j {compiled.chain}')
    return lines + _pod_chain_tail(pod, chain)


def _direction(compiled: CompiledPolicy, ip: str) -> str:
    """The jump's address match: none for an Ingress+Egress policy, else -d (ingress) or -s (egress)."""
    policy = compiled.policy
    if policy.affects_ingress and policy.affects_egress:
        return ""
    return f"-d {ip} " if policy.affects_ingress else f"-s {ip} "


def _pod_chain_tail(pod: Pod, chain: str) -> list[str]:
    """dropUnmarkedTrafficRules and the complies mark."""
    unmarked = f"-m mark ! --mark {ALLOWED_MARK}"
    return [f'-A {chain} -m comment --comment "rule to log dropped traffic {_who(pod)}" {unmarked}'
            " -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100",
            f'-A {chain} -m comment --comment "rule to REJECT traffic destined for {_who(pod)}" {unmarked}'
            " -j REJECT --reject-with icmp-port-unreachable",
            f"-A {chain} -j MARK --set-xmark 0x0/0x10000",
            f'-A {chain} -m comment --comment "set mark to ACCEPT traffic that comply to network policies"'
            f" -j MARK --set-xmark {COMPLIES_MARK}"]


def _who(pod: Pod) -> str:
    """How kube-router's comments name a pod."""
    return f"POD name:{pod.name} namespace: {pod.namespace}"
