"""The Calico Felix enforcer's compiler (lab/policy/felix.py) against Felix's own tests, real dumps and the kernel.

Expected texts come from, and are quoted with, their source:
  * dataplane-fidelity.md §5.3, §6.4 and §7.2 (chain layout, marks, tunnel rules);
  * Felix v3.28.2's unit tests: felix/rules/endpoints_test.go, dispatch_test.go, policy_test.go,
    felix/iptables/rules_test.go and table_test.go, felix/hashutils/id_test.go,
    libcalico-go/lib/selector/parser/parser_test.go;
  * iptables dumps of real clusters posted in Calico issues (the `cali:<hash>` comments).
Hashed names are computed here with the algorithms those sources document, not with the module's code.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import subprocess

import pytest
import yaml

from lab.policy import felix, felix_names, felix_policy
from lab.policy.felix_policy import CalicoRule
from lab.policy.rules import NodeRules
from lab.topology.loader import load_text
from lab.topology.model import Topology
from lab.topology.policy_manifest import network_policy

TOPOLOGY = """
name: fx-rules
cluster: {cni: calico, networkPolicy: calico}
networks:
  - {name: lan, cidr: 192.168.10.0/24, gateway: 192.168.10.1}
nodes:
  - {name: k8s-node1, ip: 192.168.10.71}
  - {name: k8s-node2, ip: 192.168.10.72}
  - {name: k8s-node3, ip: 192.168.10.73}
namespaces:
  - {name: prod, labels: {team: blue, env: prod}}
  - {name: dev, labels: {team: red}}
pods:
  - {name: web-0, node: k8s-node1, labels: {app: web},
     containerPorts: [{name: http, containerPort: 80, protocol: TCP}, {name: dns, containerPort: 53, protocol: UDP}]}
  - {name: web-1, node: k8s-node2, labels: {app: web, tier: a},
     containerPorts: [{name: http, containerPort: 8080, protocol: TCP}]}
  - {name: db-0, node: k8s-node1, labels: {app: db}}
  - {name: api-0, namespace: prod, node: k8s-node2, labels: {app: api, tier: b}}
  - {name: api-1, namespace: prod, node: k8s-node3, labels: {app: api}}
  - {name: tool-0, namespace: dev, node: k8s-node3, labels: {app: tool}}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec: {cidr: 10.244.0.0/16, blockSize: 26, ipipMode: Never, vxlanMode: Never, natOutgoing: true}
"""

POLICIES = {
    "web-ingress": """
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchLabels: {app: api}}
    ports: [{port: 80}]
""",
    "web-expressions": """
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}, {key: gone, operator: DoesNotExist}]}
  ingress:
  - from:
    - podSelector:
        matchExpressions: [{key: tier, operator: NotIn, values: [b, a]}, {key: app, operator: Exists}]
""",
    "db-ipblock": """
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24, 10.244.2.0/24]}}]
""",
    "web-named-ports": """
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web, db]}]}
  policyTypes: [Ingress, Egress]
  ingress:
  - ports: [{port: http}]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: dns, protocol: UDP}, {port: 30000, endPort: 30010, protocol: TCP}]
""",
    "db-allow-all": """
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{}]
""",
    "db-deny-egress": """
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Egress]
""",
    "api-mixed-ports": """
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [red, blue]}]}}]
    ports: [{port: 9000, protocol: SCTP}, {port: 81}, {port: 80}, {port: 82}, {port: http}, {protocol: UDP}]
""",
}


def fail(path, msg, hint=None):
    return AssertionError(f"{path}: {msg}")


def policy(name: str, namespace: str = "default", text: str | None = None):
    spec = yaml.safe_load(text or POLICIES[name])
    manifest = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": namespace}, **spec}
    return network_policy(manifest, (), fail)


def topology(*names: str, encap: str = "") -> Topology:
    text = TOPOLOGY
    if encap == "ipip":
        text = text.replace("ipipMode: Never", "ipipMode: Always")
    if encap == "vxlan":
        text = text.replace("vxlanMode: Never", "vxlanMode: Always")
    return dataclasses.replace(load_text(text, "<felix-test>"), policies=tuple(policy(n) for n in names))


# -- independent implementations of the documented algorithms ----------------------------------------
def b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def limited(prefix: str, suffix: str) -> str:
    """felix/hashutils GetLengthLimitedID with iptables' 28 characters."""
    if len(prefix + suffix) > 28 or (len(prefix + suffix) == 28 and suffix.startswith("_")):
        return prefix + "_" + b64(hashlib.sha256(suffix.encode()).digest())[:28 - 1 - len(prefix)]
    return prefix + suffix


def hashes(chain: str, bodies: list[str]) -> list[str]:
    """felix/iptables Chain.RuleHashes."""
    digest, out = hashlib.sha224(chain.encode()).digest(), []
    for body in bodies:
        digest = hashlib.sha224(digest + f"-A {chain} HASH {body}".strip().encode()).digest()
        out.append(b64(digest)[:16])
    return out


def set_name(kind: str, content: str) -> str:
    """libcalico-go hash.MakeUniqueID, then felix/ipsets NameForMainIPSet (cali40 + ID, 31 characters)."""
    return ("cali40" + f"{kind}:" + b64(hashlib.sha224(f"{kind}:{content}".encode()).digest()))[:31]


def selector_id(selector: str) -> str:
    return "s:" + b64(hashlib.sha224(f"s:{selector}".encode()).digest())


def selector_set(selector: str) -> str:
    return set_name("s", selector)


def pi(name: str, namespace: str = "default") -> str:
    return limited("cali-pi-", f"{namespace}/knp.default.{name}")


def po(name: str, namespace: str = "default") -> str:
    return limited("cali-po-", f"{namespace}/knp.default.{name}")


def iface(topo: Topology, key: str) -> str:
    """libcalico-go VethNameForWorkload (reference §4.9)."""
    pod = topo.pod(key)
    return "cali" + hashlib.sha1(f"{pod.namespace}.{pod.name}".encode()).hexdigest()[:11]


def table(rules: NodeRules, name: str):
    return next(t for t in rules.tables if t.table == name)


def bodies(rules: NodeRules, name: str, table_name: str = "filter") -> list[str]:
    prefix = f"-A {name} -m comment --comment \"cali:"
    lines = [line for line in table(rules, table_name).rules if line.startswith(prefix)]
    return [line[len(prefix) + 16 + 1:].lstrip() for line in lines]


def hash_comments(rules: NodeRules, name: str, table_name: str = "filter") -> list[str]:
    prefix = f"-A {name} -m comment --comment \"cali:"
    return [line[len(prefix):len(prefix) + 16] for line in table(rules, table_name).rules if line.startswith(prefix)]


# -- names and hashes --------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix, suffix, length, expected", [
    # felix/hashutils/id_test.go
    ("felix", "1234", 10, "felix1234"),
    ("felix", "123456", 11, "felix123456"),
    ("felix", "_2345", 10, "felix_kMQI"),
    ("felix", "12345678910", 13, "felix_Y2QCZIS"),
])
def test_length_limited_ids(prefix, suffix, length, expected):
    assert felix_names.length_limited(prefix, suffix, length) == expected


@pytest.mark.parametrize("text, normal, uid", [
    # libcalico-go/lib/selector/parser/parser_test.go canonicalisationTests
    ("", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" (all() )", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")', "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}', None),
])
def test_selector_normal_form_and_ids(text, normal, uid):
    assert felix_names.normalise(text) == normal
    if uid:
        assert felix_names.selector_set_id(normal) == uid
        assert felix_names.ipset_name(uid) == ("cali40" + uid)[:31]


def test_hooks_carry_felixs_hashes():
    rules = felix.compile_node(topology(), "k8s-node1")
    hooks = table(rules, "filter").hooks
    # felix/iptables/rules_test.go: `-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD`;
    # the INPUT and OUTPUT hashes are those of the iptables-save dump in projectcalico/felix#1421.
    assert '-I FORWARD 1 -m comment --comment "cali:wUHhoiAYhphO9Mso" --jump cali-FORWARD' in hooks
    assert '-I INPUT 1 -m comment --comment "cali:Cz_u1IQiXIMmKD4c" --jump cali-INPUT' in hooks
    assert '-I OUTPUT 1 -m comment --comment "cali:tVnHkvAo15HuiPy0" --jump cali-OUTPUT' in hooks
    # §7.2: appended to FORWARD after it (StaticFilterForwardAppendRules), hashed as "FORWARD*appends*".
    appended = [line for line in hooks if line.startswith("-A FORWARD")]
    expected = ['-m comment --comment "Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 '
                "--jump ACCEPT", "--jump MARK --set-mark 0x10000/0x10000"]
    assert appended == [f'-A FORWARD -m comment --comment "cali:{h}" {b}'
                        for h, b in zip(hashes("FORWARD*appends*", expected), expected, strict=False)]
    # projectcalico/felix#1421: `-A cali-PREROUTING -m comment --comment "cali:r6XmIziWUJsdOK6Z" -j cali-fip-dnat`
    assert hash_comments(rules, "cali-PREROUTING", "nat") == ["r6XmIziWUJsdOK6Z"]


def test_profile_chains_match_a_real_cluster():
    # projectcalico/calico#8243 (`iptables -L -v`): chain cali-pri-_JMjdn69jDC9MG2pgc3, one rule
    # /* cali:XHNI7-NzNwmps8Ee */ /* Profile ksa.flux-system.source-controller ingress */, and
    # /* cali:PwIuYbgXX3Iat-LI */ /* Profile kns.cloudability-agents ingress */ MARK or 0x10000 as the
    # first rule of that namespace's profile (the RETURN after it is dropped from v3.28 on).
    ksa = felix_policy.profile_chain("cali-pri-", "ksa.flux-system.source-controller", False, "ingress")
    assert ksa.name == "cali-pri-_JMjdn69jDC9MG2pgc3"
    assert ksa.lines() == ['-A cali-pri-_JMjdn69jDC9MG2pgc3 -m comment --comment "cali:XHNI7-NzNwmps8Ee" '
                           '-m comment --comment "Profile ksa.flux-system.source-controller ingress"']
    kns = felix_policy.profile_chain("cali-pri-", "kns.cloudability-agents", True, "ingress")
    assert kns.lines() == [f'-A {kns.name} -m comment --comment "cali:PwIuYbgXX3Iat-LI" -m comment --comment '
                           '"Profile kns.cloudability-agents ingress" --jump MARK --set-mark 0x10000/0x10000']


def test_tunnel_input_rules_match_real_clusters():
    rules = felix.compile_node(topology(encap="ipip"), "k8s-node1")
    # §5.3, and the hashes of projectcalico/calico#4456 and #4297 (`iptables -L`): /* cali:PajejrV4aFdkZojI */
    # /* Allow IPIP packets from Calico hosts */ ... and /* cali:_wjq-Yrma8Ly1Svo */ /* Drop IPIP packets from
    # non-Calico hosts */ (the comment says "Drop": DropAction's String(), not the "DROP" of §5.3).
    assert hash_comments(rules, "cali-INPUT")[:2] == ["PajejrV4aFdkZojI", "_wjq-Yrma8Ly1Svo"]
    assert bodies(rules, "cali-INPUT")[:2] == [
        '-m comment --comment "Allow IPIP packets from Calico hosts" -p 4 -m set --match-set cali40all-hosts-net src '
        "-m addrtype --dst-type LOCAL --jump ACCEPT",
        '-m comment --comment "Drop IPIP packets from non-Calico hosts" -p 4 --jump DROP']
    sets = {s.name: s for s in rules.ipsets}
    assert sets["cali40all-hosts-net"].members == ("192.168.10.71", "192.168.10.72", "192.168.10.73")
    tunnel = '--out-interface tunl0 -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL'
    assert f"{tunnel} --jump MASQUERADE --random-fully" in bodies(rules, "cali-POSTROUTING", "nat")


def test_vxlan_rules():
    topo = topology(encap="vxlan")
    rules = felix.compile_node(topo, "k8s-node2")
    # §6.4 (felix/rules/static.go filterInputChain); only the other nodes may send VXLAN.
    vxlan = "-p 17 -m multiport --destination-ports 4789"
    assert bodies(rules, "cali-INPUT")[:2] == [
        f'-m comment --comment "Allow IPv4 VXLAN packets from allowed hosts" {vxlan} '
        "-m set --match-set cali40all-vxlan-net src -m addrtype --dst-type LOCAL --jump ACCEPT",
        f'-m comment --comment "Drop IPv4 VXLAN packets from non-allowed hosts" {vxlan} '
        "-m addrtype --dst-type LOCAL --jump DROP"]
    assert {s.name: s.members for s in rules.ipsets}["cali40all-vxlan-net"] == ("192.168.10.71", "192.168.10.73")
    assert not any("cali40all-hosts-net" in line for line in table(rules, "filter").rules)


def test_conntrack_rules_match_a_real_cluster():
    # projectcalico/calico#9290 (`iptables -L cali-tw-cali11239f98883`): rule 1 /* cali:63AiEhcKlL4J9x0W */
    # ctstate RELATED,ESTABLISHED ACCEPT, rule 2 /* cali:U_uF6VQoKAohXmTC */ ctstate INVALID DROP.
    topo = topology()
    rules = felix.compile_node(topo, "k8s-node1")
    first_two = bodies(rules, f"cali-tw-{iface(topo, 'default/web-0')}")[:2]
    assert hashes("cali-tw-cali11239f98883", first_two) == ["63AiEhcKlL4J9x0W", "U_uF6VQoKAohXmTC"]


# -- chain layout ------------------------------------------------------------------------------------
def test_static_chains_follow_the_reference():
    rules = felix.compile_node(topology(), "k8s-node1")
    # §7.2: cali-FORWARD clears the marks but accept, from-hep-forward unless accepted, the workload
    # dispatch chains by interface prefix, to-hep-forward, cali-cidr-block.
    assert bodies(rules, "cali-FORWARD") == [
        "--jump MARK --set-mark 0/0xe0000", "-m mark --mark 0/0x10000 --jump cali-from-hep-forward",
        "--in-interface cali+ --jump cali-from-wl-dispatch", "--out-interface cali+ --jump cali-to-wl-dispatch",
        "--jump cali-to-hep-forward", "--jump cali-cidr-block"]
    # §7.2: workload -> host runs the egress dispatch, then DefaultEndpointToHostAction (ACCEPT in calico.yaml).
    assert bodies(rules, "cali-wl-to-host") == [
        "--jump cali-from-wl-dispatch",
        '-m comment --comment "Configured DefaultEndpointToHostAction" --jump ACCEPT']
    assert "--in-interface cali+ --goto cali-wl-to-host" in bodies(rules, "cali-INPUT")
    assert "--out-interface cali+ --jump RETURN" in bodies(rules, "cali-OUTPUT")
    assert rules.chain_prefixes == ("cali-",) and rules.ipset_prefixes == ("cali40",)


def test_dispatch_prefix_tree():
    # felix/rules/dispatch_test.go, "interfaces sharing prefix" (kube-proxy not in IPVS mode).
    chains = {c.name: [r.body() for r in c.rules] for c in felix.dispatch_chains(["cali1234", "cali2333", "cali2444"])}
    drop = '-m comment --comment "Unknown interface" --jump DROP'
    assert chains == {
        "cali-from-wl-dispatch-2": ["--in-interface cali2333 --goto cali-fw-cali2333",
                                    "--in-interface cali2444 --goto cali-fw-cali2444", drop],
        "cali-from-wl-dispatch": ["--in-interface cali1234 --goto cali-fw-cali1234",
                                  "--in-interface cali2+ --goto cali-from-wl-dispatch-2", drop],
        "cali-to-wl-dispatch-2": ["--out-interface cali2333 --goto cali-tw-cali2333",
                                  "--out-interface cali2444 --goto cali-tw-cali2444", drop],
        "cali-to-wl-dispatch": ["--out-interface cali1234 --goto cali-tw-cali1234",
                                "--out-interface cali2+ --goto cali-to-wl-dispatch-2", drop]}
    assert [[r.body() for r in c.rules] for c in felix.dispatch_chains([])] == [[drop], [drop]]


def test_workload_chains_as_endpoints_test_renders_them():
    # felix/rules/endpoints_test.go "should render a fully-loaded workload endpoint", with v3.28's marks
    # (accept 0x10000, pass 0x20000: Clear 0x18 there is 0x30000 here) and the pod's profiles.
    topo = topology("web-ingress", "web-expressions", "web-named-ports")
    rules = felix.compile_node(topo, "k8s-node1")
    web = iface(topo, "default/web-0")
    accepted = '-m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 --jump RETURN'
    profile_ok = '-m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 --jump RETURN'
    head = ["-m conntrack --ctstate RELATED,ESTABLISHED --jump ACCEPT", "-m conntrack --ctstate INVALID --jump DROP",
            "--jump MARK --set-mark 0/0x30000"]
    # Policies in name order (all have order 1000); each has its own selector, so none is grouped.
    ingress = [pi("web-expressions"), pi("web-ingress"), pi("web-named-ports")]
    assert bodies(rules, f"cali-tw-{web}") == head + [
        line for target in ingress for line in (f"-m mark --mark 0/0x20000 --jump {target}", accepted)] + [
        '-m comment --comment "Drop if no policies passed packet" -m mark --mark 0/0x20000 --jump DROP',
        "--jump cali-pri-kns.default", profile_ok, "--jump cali-pri-ksa.default.default", profile_ok,
        '-m comment --comment "Drop if no profiles matched" --jump DROP']
    # The fw chain also drops encapsulated packets from the workload (§7.2, endpoints_test dropVXLANRule/dropIPIPRule).
    assert bodies(rules, f"cali-fw-{web}") == head + [
        '-m comment --comment "Drop VXLAN encapped packets originating in workloads" -p 17 '
        "-m multiport --destination-ports 4789 --jump DROP",
        '-m comment --comment "Drop IPinIP encapped packets originating in workloads" -p 4 --jump DROP',
        f"-m mark --mark 0/0x20000 --jump {po('web-named-ports')}", accepted,
        '-m comment --comment "Drop if no policies passed packet" -m mark --mark 0/0x20000 --jump DROP',
        "--jump cali-pro-kns.default", profile_ok, "--jump cali-pro-ksa.default.default", profile_ok,
        '-m comment --comment "Drop if no profiles matched" --jump DROP']


def test_unselected_workload_has_profiles_only():
    topo = topology("web-ingress")
    rules = felix.compile_node(topo, "k8s-node1")
    db = bodies(rules, f"cali-tw-{iface(topo, 'default/db-0')}")
    assert not any("cali-pi-" in line or "no policies" in line for line in db)
    assert db[-1] == '-m comment --comment "Drop if no profiles matched" --jump DROP'
    # The profiles: kns.<ns> allows (its RETURN dropped), ksa.<ns>.default has no rules.
    assert bodies(rules, "cali-pri-kns.default") == [
        '-m comment --comment "Profile kns.default ingress" --jump MARK --set-mark 0x10000/0x10000']
    assert bodies(rules, "cali-pro-ksa.default.default") == [
        '-m comment --comment "Profile ksa.default.default egress"']


def test_only_chains_reachable_from_the_hooks_are_programmed():
    topo = topology("web-ingress", "db-deny-egress")
    node1 = felix.compile_node(topo, "k8s-node1")
    chains = table(node1, "filter").chains
    assert pi("web-ingress") in chains and po("web-ingress") not in chains       # Ingress-only policy
    assert po("db-deny-egress") in chains and pi("db-deny-egress") not in chains
    node3 = felix.compile_node(topo, "k8s-node3")            # no web or db pod there: nothing of either policy
    assert not any(c.startswith(("cali-pi-", "cali-po-")) for c in table(node3, "filter").chains)
    assert not any(s.name.startswith("cali40s:") for s in node3.ipsets)
    for name in ("cali-failsafe-in", "cali-failsafe-out", "cali-sm-"):
        assert not any(c.startswith(name) for c in chains)


def test_policies_with_one_selector_share_a_group_chain():
    text = "spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: %d}]}]}"
    policies = tuple(policy(f"p{i}", text=text % (8000 + i)) for i in range(6))
    topo = dataclasses.replace(topology(), policies=policies)
    rules = felix.compile_node(topo, "k8s-node1")
    # endpoints.go PolicyGroup.UniqueID: sha3-224 of tier, selector, direction, count and names, each + "\n".
    selector = '((projectcalico.org/orchestrator == "k8s" && app == "web") && projectcalico.org/namespace == "default")'
    names = [f"default/knp.default.p{i}" for i in range(6)]
    digest = hashlib.sha3_224("".join(f"{part}\n" for part in ["default", selector, "inbound", "6", *names]).encode())
    group = "cali-gi-" + b64(digest.digest())[:20]
    assert f"-m mark --mark 0/0x20000 --jump {group}" in bodies(rules, f"cali-tw-{iface(topo, 'default/web-0')}")
    # endpoints_test.go polGroupEntry: the first jump unconditional, the next ones only while no verdict
    # (Clear 0x18 there: accept|pass), and a "Return on verdict" before every fifth.
    verdict = '-m comment --comment "Return on verdict" -m mark ! --mark 0/0x30000 --jump RETURN'
    assert bodies(rules, group) == [f"--jump {pi('p0')}"] + [
        f"-m mark --mark 0/0x30000 --jump {pi(f'p{i}')}" for i in range(1, 5)] + [verdict, f"--jump {pi('p5')}"]


def test_endpoints_share_group_chains():
    text = "spec: {podSelector: {}, ingress: [{ports: [{port: %d}]}]}"
    topo = dataclasses.replace(topology(), policies=(policy("a", text=text % 1), policy("b", text=text % 2)))
    rules = felix.compile_node(topo, "k8s-node1")           # web-0 and db-0 both jump to the one group chain
    groups = [c for c in table(rules, "filter").chains if c.startswith("cali-gi-")]
    assert len(groups) == 1
    assert bodies(rules, groups[0]) == [f"--jump {pi('a')}", f"-m mark --mark 0/0x30000 --jump {pi('b')}"]
    for key in ("default/web-0", "default/db-0"):
        assert f"-m mark --mark 0/0x20000 --jump {groups[0]}" in bodies(rules, f"cali-tw-{iface(topo, key)}")


# -- policy rules ------------------------------------------------------------------------------------
MARKS = {"0x80": "0x10000", "0x200": "0x40000", "0x400": "0x80000", "0x600": "0xc0000"}


def translated(line: str) -> str:
    """A policy_test.go expectation with v3.28's default marks (accept 0x80 -> 0x10000, scratch0/1)."""
    return re.sub(r"0x[0-9a-f]+", lambda m: MARKS.get(m.group(), m.group()), line)


@pytest.mark.parametrize("src, not_src, dst, not_dst, expected", [
    # felix/rules/policy_test.go "CIDR split tests"
    (2, 0, 0, 0, ["--jump MARK --set-mark 0x0/0x600", "--source 10.0.0.0/24 --jump MARK --set-mark 0x200/0x200",
                  "--source 10.0.1.0/24 --jump MARK --set-mark 0x200/0x200",
                  "-m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80"]),
    (1, 1, 0, 0, ["--jump MARK --set-mark 0x200/0x600", "--source 11.0.0.0/24 --jump MARK --set-mark 0/0x200",
                  "--source 10.0.0.0/24 -m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80"]),
    (0, 0, 1, 1, ["--jump MARK --set-mark 0x200/0x600", "--destination 13.0.0.0/24 --jump MARK --set-mark 0/0x200",
                  "--destination 12.0.0.0/24 -m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80"]),
    (2, 2, 2, 2, ["--jump MARK --set-mark 0x0/0x600",
                  "--source 10.0.0.0/24 --jump MARK --set-mark 0x200/0x200",
                  "--source 10.0.1.0/24 --jump MARK --set-mark 0x200/0x200",
                  "--destination 12.0.0.0/24 --jump MARK --set-mark 0x400/0x400",
                  "--destination 12.0.1.0/24 --jump MARK --set-mark 0x400/0x400",
                  "-m mark --mark 0/0x400 --jump MARK --set-mark 0/0x200",
                  "--source 11.0.0.0/24 --jump MARK --set-mark 0/0x200",
                  "--source 11.0.1.0/24 --jump MARK --set-mark 0/0x200",
                  "--destination 13.0.0.0/24 --jump MARK --set-mark 0/0x200",
                  "--destination 13.0.1.0/24 --jump MARK --set-mark 0/0x200",
                  "-m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80"]),
])
def test_cidr_match_blocks(src, not_src, dst, not_dst, expected):
    rule = CalicoRule(src_nets=("10.0.0.0/24", "10.0.1.0/24")[:src],
                      not_src_nets=("11.0.0.0/24", "11.0.1.0/24")[:not_src],
                      dst_nets=("12.0.0.0/24", "12.0.1.0/24")[:dst],
                      not_dst_nets=("13.0.0.0/24", "13.0.1.0/24")[:not_dst])
    returned = "-m mark --mark 0x10000/0x10000 --jump RETURN"
    assert [r.body() for r in felix_policy.iptables_rules(rule)] == [translated(e) for e in expected] + [returned]


def test_named_and_numeric_ports_need_a_block():
    # felix/rules/policy_test.go "Named + numeric ports need a block" (destination).
    named = felix_policy.IpSetData("all()", "tcp", "http")
    rule = CalicoRule(protocol="tcp", dst_ports=((1, 2),), dst_named_sets=(named,))
    assert [r.body() for r in felix_policy.iptables_rules(rule)][:-1] == [translated(e) for e in [
        "--jump MARK --set-mark 0x0/0x600",
        "-p tcp -m multiport --destination-ports 1:2 --jump MARK --set-mark 0x200/0x200",
        f"-m set --match-set {named.name} dst,dst --jump MARK --set-mark 0x200/0x200",
        "-p tcp -m mark --mark 0x200/0x200 --jump MARK --set-mark 0x80/0x80"]]


def test_namespace_and_pod_selector_in_one_peer():
    topo = topology("web-ingress")
    rules = felix.compile_node(topo, "k8s-node1")
    # conversion: k8sSelectorToCalico + getEndpointSelector: "(pcns.team == 'blue') &&
    # (projectcalico.org/orchestrator == 'k8s' && app == 'api')", in the parser's normal form.
    source = selector_set('(pcns.team == "blue" && (projectcalico.org/orchestrator == "k8s" && app == "api"))')
    assert bodies(rules, pi("web-ingress")) == [
        '-m comment --comment "Policy default/knp.default.web-ingress ingress" -p tcp '
        f"-m set --match-set {source} src -m multiport --destination-ports 80 --jump MARK --set-mark 0x10000/0x10000"]
    sets = {s.name: s for s in rules.ipsets}
    assert sets[source].type == "hash:net"
    assert sets[source].members == tuple(sorted(f"{topo.pod(k).ip}/32" for k in ("prod/api-0", "prod/api-1")))


def test_match_expressions():
    topo = topology("web-expressions")
    rules = felix.compile_node(topo, "k8s-node2")
    # conversion writes "tier not in { 'b', 'a' }" and "has(app)"; the parser sorts set members.
    source = selector_set('(projectcalico.org/namespace == "default" && (projectcalico.org/orchestrator == "k8s"'
                          ' && tier not in {"a", "b"} && has(app)))')
    assert bodies(rules, pi("web-expressions")) == [
        '-m comment --comment "Policy default/knp.default.web-expressions ingress" '
        f"-m set --match-set {source} src --jump MARK --set-mark 0x10000/0x10000"]
    members = {s.name: s.members for s in rules.ipsets}[source]
    assert members == tuple(sorted(f"{topo.pod(k).ip}/32" for k in ("default/db-0", "default/web-0")))
    tw = bodies(rules, f"cali-tw-{iface(topo, 'default/web-1')}")
    assert f"-m mark --mark 0/0x20000 --jump {pi('web-expressions')}" in tw


def test_ipblock_with_except():
    rules = felix.compile_node(topology("db-ipblock"), "k8s-node1")
    # policy.go: one positive CIDR with negated ones overflows into a negated block.
    assert bodies(rules, pi("db-ipblock")) == [
        '-m comment --comment "Policy default/knp.default.db-ipblock ingress" --jump MARK --set-mark 0x40000/0xc0000',
        "--source 10.244.1.0/24 --jump MARK --set-mark 0/0x40000",
        "--source 10.244.2.0/24 --jump MARK --set-mark 0/0x40000",
        "--source 10.244.0.0/16 -m mark --mark 0x40000/0x40000 --jump MARK --set-mark 0x10000/0x10000"]


def test_named_ports_and_end_port():
    topo = topology("web-named-ports")
    rules = felix.compile_node(topo, "k8s-node1")
    # rule_scanner.go: a named port is an ipset of (IP, proto:port) of the endpoints the destination
    # selector selects: all() for ingress, the peer's for egress (whose own selector set is then dropped).
    http = set_name("n", f"{selector_id('all()')},tcp,http")
    assert bodies(rules, pi("web-named-ports")) == [
        '-m comment --comment "Policy default/knp.default.web-named-ports ingress" -p tcp '
        f"-m set --match-set {http} dst,dst --jump MARK --set-mark 0x10000/0x10000"]
    anywhere = '(has(projectcalico.org/namespace) && projectcalico.org/orchestrator == "k8s")'
    dns = set_name("n", f"{selector_id(anywhere)},udp,dns")
    egress = bodies(rules, po("web-named-ports"))
    # protocols sorted (TCP, UDP): one rule each; the TCP one keeps the peer's selector set and the range.
    assert egress == [
        '-m comment --comment "Policy default/knp.default.web-named-ports egress" -p tcp '
        f"-m set --match-set {selector_set(anywhere)} dst -m multiport --destination-ports 30000:30010 "
        "--jump MARK --set-mark 0x10000/0x10000",
        "-m mark --mark 0x10000/0x10000 --jump RETURN",
        f"-p udp -m set --match-set {dns} dst,dst --jump MARK --set-mark 0x10000/0x10000"]
    sets = {s.name: s for s in rules.ipsets}
    assert sets[http].type == "hash:ip,port"
    assert sets[http].members == tuple(sorted([f"{topo.pod('default/web-0').ip},tcp:80",
                                               f"{topo.pod('default/web-1').ip},tcp:8080"]))
    assert sets[dns].members == (f"{topo.pod('default/web-0').ip},udp:53",)


def test_ports_are_merged_per_protocol():
    topo = dataclasses.replace(topology(), policies=(policy("api-mixed-ports", "prod"),))
    rules = felix.compile_node(topo, "k8s-node2")
    # k8sRuleToCalico: one rule per protocol in sorted order (SCTP, TCP, UDP); SimplifyPorts coalesces
    # 80, 81, 82 (policy.go's port block ORs the multiport before the named-port set); a port without a
    # number means every port of its protocol.
    source = selector_set('(pcns.team in {"blue", "red"} && projectcalico.org/orchestrator == "k8s")')
    http = set_name("n", f"{selector_id('all()')},tcp,http")
    allow = "--jump MARK --set-mark 0x10000/0x10000"
    assert bodies(rules, pi("api-mixed-ports", "prod")) == [
        '-m comment --comment "Policy prod/knp.default.api-mixed-ports ingress" -p sctp '
        f"-m set --match-set {source} src -m multiport --destination-ports 9000 {allow}",
        "-m mark --mark 0x10000/0x10000 --jump RETURN",
        "--jump MARK --set-mark 0x0/0xc0000",
        "-p tcp -m multiport --destination-ports 80:82 --jump MARK --set-mark 0x40000/0x40000",
        f"-m set --match-set {http} dst,dst --jump MARK --set-mark 0x40000/0x40000",
        f"-p tcp -m set --match-set {source} src -m mark --mark 0x40000/0x40000 {allow}",
        "-m mark --mark 0x10000/0x10000 --jump RETURN",
        f"-p udp -m set --match-set {source} src {allow}"]


def test_empty_ingress_rule_and_deny_all():
    rules = felix.compile_node(topology("db-allow-all", "db-deny-egress"), "k8s-node1")
    assert bodies(rules, pi("db-allow-all")) == [
        '-m comment --comment "Policy default/knp.default.db-allow-all ingress" --jump MARK --set-mark 0x10000/0x10000']
    # No rules at all: the chain keeps its comment, so the endpoint's "Drop if no policies passed packet" drops.
    assert bodies(rules, po("db-deny-egress")) == [
        '-m comment --comment "Policy default/knp.default.db-deny-egress egress"']


def test_nat_outgoing():
    rules = felix.compile_node(topology(), "k8s-node1")
    # §5.3: cali-nat-outgoing, with the pool sets; POSTROUTING is appended to (int_dataplane.go).
    assert bodies(rules, "cali-nat-outgoing", "nat") == [
        "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst "
        "--jump MASQUERADE --random-fully"]
    sets = {s.name: s.members for s in rules.ipsets}
    assert sets["cali40masq-ipam-pools"] == sets["cali40all-ipam-pools"] == ("10.244.0.0/16",)
    assert [h.split()[:2] for h in table(rules, "nat").hooks] == [["-I", "PREROUTING"], ["-I", "OUTPUT"],
                                                                  ["-A", "POSTROUTING"]]


# -- the kernel --------------------------------------------------------------------------------------
def run(netns: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
                          timeout=60)


def load(netns: str, rules: NodeRules) -> str:
    """`ipset restore` the sets, `iptables-restore --noflush` each table; returns iptables-save."""
    sets = "".join(f"create {s.name} {s.type} {s.create_options}\n" + "".join(f"add {s.name} {m}\n" for m in s.members)
                   for s in rules.ipsets)
    result = run(netns, "ipset", "restore", stdin=sets)
    assert result.returncode == 0, result.stderr
    for t in rules.tables:
        text = "\n".join([f"*{t.table}", *(f":{c} - [0:0]" for c in t.chains), *t.rules, *t.hooks, "COMMIT"]) + "\n"
        result = run(netns, "iptables-restore", "--noflush", stdin=text)
        assert result.returncode == 0, f"{t.table}: {result.stderr}"
    saved = run(netns, "iptables-save")
    assert saved.returncode == 0, saved.stderr
    return saved.stdout


@pytest.mark.needs_root
@pytest.mark.parametrize("encap", ["", "ipip", "vxlan"])
@pytest.mark.parametrize("node", ["k8s-node1", "k8s-node2"])
def test_kernel_accepts_every_rule(scratch_netns, encap, node):
    rules = felix.compile_node(topology(*POLICIES, encap=encap), node)
    saved = load(scratch_netns, rules)
    declared = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")}
    for t in rules.tables:
        assert set(t.chains) <= declared
    assert sum(line.startswith("-A cali-") for line in saved.splitlines()) == sum(len(t.rules) for t in rules.tables)
    # iptables-save's form of the hook (felix/iptables/rules_test.go) and of the FORWARD tail (§7.2).
    assert '-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD' in saved
    assert '"Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT' in saved
    listed = run(scratch_netns, "ipset", "list", "-n").stdout.split()
    assert sorted(listed) == sorted(s.name for s in rules.ipsets)


@pytest.mark.needs_root
def test_kernel_prints_the_reference_tunnel_rules(scratch_netns):
    saved = load(scratch_netns, felix.compile_node(topology(encap="ipip"), "k8s-node1")).splitlines()
    # §5.3 (iptables-save prints `-p 4` as ipencap; comments where they were written).
    assert ('-A cali-INPUT -p ipencap -m comment --comment "cali:PajejrV4aFdkZojI" -m comment --comment '
            '"Allow IPIP packets from Calico hosts" -m set --match-set cali40all-hosts-net src '
            "-m addrtype --dst-type LOCAL -j ACCEPT") in saved
    drop_ipip = '"Drop IPinIP encapped packets originating in workloads" -j DROP'
    assert any(line.startswith("-A cali-fw-") and drop_ipip in line for line in saved)
    assert any(line.startswith("-A cali-nat-outgoing") and "-m set --match-set cali40masq-ipam-pools src "
               "-m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully" in line for line in saved)
