"""Terway (issue 16): kernel state against reference §8, traffic, seed 000 on Terway and Flannel, bad input.

Expected values come from reference §8 (priorities 512 and 2048, table 1000 + the ENI's ifindex,
`default via <vSwitch gateway> dev <ENI> onlink`, the pod's `default via 169.254.1.1 dev eth0 onlink` and
PERMANENT neighbour carrying the host veth's MAC, rp_filter 0, `cali` + sha1("<ns>.<pod>")[:11]), from
§4.9 and Felix's endpoint_mgr.go for the sysctls Felix writes on each `cali` interface, and
from the topology YAML (node IPs, the vSwitch and its gateway, fixed pod IPs, ipsPerENI), read here
with PyYAML; nothing is taken from lab's code. What the kernel holds is read with `ip` (its text is
what §8 prints). Labs run under test-only names (`<prefix>-...`, LAB_TEST_PREFIX, default tt).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TOPOLOGIES, netns_list, run_lab
from test_policy_xyz import expect, probe, wait_converged

PREFIX = os.environ.get("LAB_TEST_PREFIX", "tt")
POLICIES = REPO / "examples" / "policies"
LINK_IP = "169.254.1.1"
# Felix's endpoint_mgr.go configureInterface on every `cali` interface (reference §4.9: route_localnet 1,
# proxy_delay 0, proxy_arp 1, forwarding 1, rp_filter = default.rp_filter, which Terway's CNI sets to 0,
# accept_ra 0), plus its IPv6 manager's proxy_ndp 1 and forwarding 1 (Terway's runCalico: FELIX_IPV6SUPPORT=true).
FELIX_INTERFACE_SYSCTLS = (("net/ipv4/conf/{}/route_localnet", "1"), ("net/ipv4/neigh/{}/proxy_delay", "0"),
                           ("net/ipv4/conf/{}/proxy_arp", "1"), ("net/ipv4/conf/{}/forwarding", "1"),
                           ("net/ipv4/conf/{}/rp_filter", "0"), ("net/ipv6/conf/{}/accept_ra", "0"),
                           ("net/ipv6/conf/{}/proxy_ndp", "1"), ("net/ipv6/conf/{}/forwarding", "1"))


def cali(namespace: str, pod: str) -> str:
    """§8 / §4.9: `cali` + the first 11 hex characters of sha1("<namespace>.<pod>")."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def ip(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=True).stdout


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def ifindex(netns: str, dev: str) -> int:
    return json.loads(ip(netns, "-j", "link", "show", "dev", dev))[0]["ifindex"]


def mac(netns: str, dev: str) -> str:
    return json.loads(ip(netns, "-j", "link", "show", "dev", dev))[0]["address"]


def proc_sysctl(netns: str, key: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "cat", f"/proc/sys/{key}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def renamed(topology: str, name: str, directory: Path) -> Path:
    text = (TOPOLOGIES / f"{topology}.yaml").read_text()
    path = directory / f"{name}.yaml"
    path.write_text(text.replace(f"name: {topology}\n", f"name: {name}\n", 1))
    return path


@pytest.fixture(scope="module")
def terway(tmp_path_factory):
    """`terway(topology)` -> (lab name, the topology as YAML data); each brought up once, all down at the end."""
    started: dict[str, tuple[str, dict]] = {}

    def start(topology: str) -> tuple[str, dict]:
        if topology not in started:
            name = f"{PREFIX}-{topology.replace('netpol-', '').replace('terway-', 'tw-')}"
            path = renamed(topology, name, tmp_path_factory.mktemp(name))
            started[topology] = (name, yaml.safe_load(path.read_text()))
            run_lab("up", str(path))
            wait_converged(name)
        return started[topology]

    yield start
    for name, _ in started.values():
        run_lab("down", name, check=False)


def status(lab: str) -> dict:
    return json.loads(run_lab("status", lab, "--json").stdout)


def pod_ips(lab: str) -> dict[str, str]:
    return {p["key"]: p["ip"] for p in status(lab)["pods"]}


# -- ENIIP: kernel state -----------------------------------------------------------------------------
pytestmark = pytest.mark.needs_root


def test_eniip_node_and_pod_state_is_section_8(terway):
    lab, topo = terway("terway-eniip")
    vswitch = next(n for n in topo["networks"] if n["name"] == "vsw")
    cidr, gateway = ipaddress.ip_network(vswitch["cidr"]), vswitch["gateway"]
    per_eni = topo["cluster"]["terway"]["ipsPerENI"] - 1      # the ENI's primary IP is not a pod's
    ips = pod_ips(lab)
    assert ips["default/web-0"] == "192.168.10.101", "the topology fixes web-0's address"
    assert len(set(ips.values())) == len(ips) and all(ipaddress.ip_address(a) in cidr for a in ips.values())
    for node in topo["nodes"]:
        netns = f"{lab}.{node['name']}"
        pods = [p for p in topo["pods"] if p["node"] == node["name"]]
        enis = [f"eth{1 + i // per_eni}" for i in range(len(pods))] or ["eth1"]
        rules = ["0:\tfrom all lookup local"]
        rules += [f"512:\tfrom all to {ips['default/' + p['name']]} lookup main" for p in pods]
        rules += [f"2048:\tfrom {ips['default/' + p['name']]} lookup {1000 + ifindex(netns, eni)}"
                  for p, eni in zip(pods, enis, strict=True)]
        rules += ["32766:\tfrom all lookup main", "32767:\tfrom all lookup default"]
        assert sorted(lines(ip(netns, "rule"))) == sorted(rules)
        for eni in sorted(set(enis)):
            table = 1000 + ifindex(netns, eni)
            assert lines(ip(netns, "route", "show", "table", str(table))) == [f"default via {gateway} dev {eni} onlink"]
            assert lines(ip(netns, "-4", "-o", "addr", "show", "dev", eni))[0].split()[3] == f"{node['ip']}/32"
        main = lines(ip(netns, "route"))
        for p in pods:
            assert f"{ips['default/' + p['name']]} dev {cali('default', p['name'])} scope link" in main
        devices = ["all", "default", "lo", "eth0", *sorted(set(enis)), *(cali("default", p["name"]) for p in pods)]
        for device in devices:
            assert proc_sysctl(netns, f"net/ipv4/conf/{device}/rp_filter") == "0", device
            assert proc_sysctl(netns, f"net/ipv4/conf/{device}/forwarding") == "1", device
        for p in pods:
            for key, value in FELIX_INTERFACE_SYSCTLS:
                assert proc_sysctl(netns, key.format(cali("default", p["name"]))) == value, key
        for p in pods:
            pod_ns = f"{lab}.default.{p['name']}"
            assert lines(ip(pod_ns, "route")) == [f"default via {LINK_IP} dev eth0 onlink"]
            host_mac = mac(netns, cali("default", p["name"]))
            assert lines(ip(pod_ns, "neigh", "show", "dev", "eth0", "nud", "permanent")) == \
                [f"{LINK_IP} lladdr {host_mac} PERMANENT"]
            assert lines(ip(pod_ns, "-4", "-o", "addr", "show", "dev", "eth0"))[0].split()[3] == \
                f"{ips['default/' + p['name']]}/32"


def test_eniip_second_eni_when_the_first_is_full(terway):
    """ipsPerENI 3 (2 secondary IPs): k8s-node1's third pod is on eth2. Each pod's `from` rule names its ENI's
    table, 1000 + the ifindex the kernel gave that ENI, and each table routes out of its own ENI."""
    lab, topo = terway("terway-eniip")
    netns = f"{lab}.k8s-node1"
    gateway = next(n for n in topo["networks"] if n["name"] == "vsw")["gateway"]
    per_eni = topo["cluster"]["terway"]["ipsPerENI"] - 1
    pods = [p["name"] for p in topo["pods"] if p["node"] == "k8s-node1"]
    assert len(pods) > per_eni, "the topology must fill eth1"
    ips = pod_ips(lab)
    tables = {eni: 1000 + ifindex(netns, eni) for eni in ("eth1", "eth2")}   # the kernel's ifindexes
    rules = lines(ip(netns, "rule"))
    for i, pod in enumerate(pods):
        eni = f"eth{1 + i // per_eni}"
        assert f"2048:\tfrom {ips['default/' + pod]} lookup {tables[eni]}" in rules, (pod, eni)
    from_tables = {rule.split()[-1] for rule in rules if rule.startswith("2048:")}
    assert from_tables == {str(t) for t in tables.values()}, "one table per ENI, no other"
    for eni, table in tables.items():
        assert lines(ip(netns, "route", "show", "table", str(table))) == [f"default via {gateway} dev {eni} onlink"]


def test_status_names_each_eni_and_its_table(terway):
    lab, topo = terway("terway-eniip")
    netns = f"{lab}.k8s-node1"
    text = run_lab("status", lab).stdout
    assert "cni: terway eniip, datapath veth + policy routing" in text
    for eni in ("eth1", "eth2"):
        line = next(row for row in text.splitlines() if row.strip().startswith(f"k8s-node1 {eni} "))
        assert f"({mac(netns, eni)}," in line and f"table {1000 + ifindex(netns, eni)}," in line


def test_eniip_vpc_delivers_secondary_ips_to_their_eni(terway):
    """The vSwitch knows each secondary IP's ENI: the router's entry for a pod IP carries the MAC of the ENI
    that holds it, and a node asking for another node's pod IP on eth0 gets that ENI's MAC as the answer."""
    lab, _ = terway("terway-eniip")
    ips = pod_ips(lab)
    eni_mac = mac(f"{lab}.k8s-node2", "eth1")
    assert f"{ips['default/web-1']} lladdr {eni_mac} PERMANENT" in lines(ip(f"{lab}._underlay", "neigh", "show",
                                                                          "dev", "vsw"))
    node1 = f"{lab}.k8s-node1"
    subprocess.run(["ip", "netns", "exec", node1, "ping", "-c", "1", "-W", "2", ips["default/web-1"]], check=True,
                   capture_output=True)
    answer = lines(ip(node1, "neigh", "show", ips["default/web-1"], "dev", "eth0"))
    assert answer and answer[0].split()[2] == eni_mac, answer


# -- traffic ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("topology", ["terway-eniip", "terway-vpc"])
@pytest.mark.parametrize("src,dst", [("web-0", "web-3"), ("web-0", "web-1"), ("web-2", "web-0"), ("web-1", "idc"),
                                     ("idc", "web-2")])
def test_traffic(terway, topology, src, dst):
    """Pod to pod on one node (web-0, web-3), across nodes, and to and from a host outside the VPC."""
    lab, topo = terway(topology)
    if "idc" not in (src, dst):
        result = run_lab("ping", src, dst, "-c", "2", "--lab", lab, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return
    external = next(e for e in topo["externals"] if e["name"] == "idc")
    ips = pod_ips(lab) | {"idc": external["ip"]}
    netns = {"idc": f"{lab}.idc"}
    source = netns.get(src, f"{lab}.default.{src}")
    target = ips.get(dst, ips.get(f"default/{dst}"))
    result = subprocess.run(["ip", "netns", "exec", source, "ping", "-c", "2", "-W", "2", str(target)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tcp_probe_matrix_all_open(terway):
    lab, _ = terway("terway-eniip")
    code, seen = probe(lab, "--protocol", "TCP")
    assert code == 0 and seen and all(seen.values())


# -- VPC mode: kernel state --------------------------------------------------------------------------
def test_vpc_route_table_and_pods(terway):
    lab, topo = terway("terway-vpc")
    settings = topo["cluster"]["terway"]
    pod_cidr, mask = ipaddress.ip_network(settings["podCIDR"]), settings["nodeCIDRMask"]
    nodes = status(lab)["nodes"]
    subnets = {n["name"]: ipaddress.ip_network(n["subnet"]) for n in nodes}
    assert subnets["k8s-node3"] == ipaddress.ip_network("172.20.9.0/24"), "the topology fixes node3's podCIDR"
    assert all(s.subnet_of(pod_cidr) and s.prefixlen == mask for s in subnets.values())
    router = lines(ip(f"{lab}._underlay", "route"))
    for node in topo["nodes"]:
        assert f"{subnets[node['name']]} via {node['ip']} dev vsw" in router
        netns = f"{lab}.{node['name']}"
        assert lines(ip(netns, "rule")) == ["0:\tfrom all lookup local", "32766:\tfrom all lookup main",
                                            "32767:\tfrom all lookup default"], "VPC mode has no policy routing"
        assert proc_sysctl(netns, "net/ipv4/conf/all/rp_filter") == "0"
    ips = pod_ips(lab)
    assert ips["default/web-2"] == "172.20.9.20"
    for pod in topo["pods"]:
        netns, pod_ns = f"{lab}.{pod['node']}", f"{lab}.default.{pod['name']}"
        assert ipaddress.ip_address(ips["default/" + pod["name"]]) in subnets[pod["node"]]
        route = f"{ips['default/' + pod['name']]} dev {cali('default', pod['name'])} scope link"
        assert route in lines(ip(netns, "route"))
        assert lines(ip(pod_ns, "route")) == [f"default via {LINK_IP} dev eth0 onlink"]
        host_mac = mac(netns, cali("default", pod["name"]))
        permanent = lines(ip(pod_ns, "neigh", "show", "dev", "eth0", "nud", "permanent"))
        assert permanent == [f"{LINK_IP} lladdr {host_mac} PERMANENT"]


# -- seed 000: Terway isolates, Flannel does not -----------------------------------------------------
SEED000_EXPECTED = {("office", "data/centerevent", 8080, "TCP"): True,
                    ("branch", "data/centerevent", 8080, "TCP"): False,
                    ("apps/client", "data/centerevent", 8080, "TCP"): True,
                    ("other/client", "data/centerevent", 8080, "TCP"): False,
                    ("data/apps", "data/centerevent", 8080, "TCP"): True,
                    ("data/batch", "data/centerevent", 8080, "TCP"): False,
                    ("data/centerevent", "redis", 6379, "TCP"): True, ("data/centerevent", "cache", 6379, "TCP"): False}


def test_seed000_isolation_on_terway_and_not_on_flannel(terway):
    """Seed 000: "只有Terway 集群支持NetworkPolicy" - the same policy, the same cluster, two plug-ins."""
    on_terway, _ = terway("netpol-seed000-terway")
    on_flannel, _ = terway("netpol-seed000-flannel")
    policy = str(POLICIES / "seed000-test-network-policy.yaml")
    run_lab("apply", "-f", policy, "--lab", on_terway)
    out = run_lab("apply", "-f", policy, "--lab", on_flannel).stdout
    try:
        code, seen = probe(on_terway)
        assert code == 0, f"probes disagree with the reference evaluator: {seen.mismatches}"
        expect(seen, SEED000_EXPECTED)
        assert "NOT ENFORCED" in out
        code, seen = probe(on_flannel)
        denied = {pair for pair, allowed in SEED000_EXPECTED.items() if not allowed}
        assert all(seen[pair] for pair in denied), "flannel has no policy data plane: what is denied gets through"
        assert code == 1, "the evaluator expects isolation, so lab probe reports flannel's mismatches"
        saved = subprocess.run(["ip", "netns", "exec", f"{on_terway}.node1", "iptables-save"], capture_output=True,
                               text=True, check=True).stdout
        assert f"cali-tw-{cali('data', 'centerevent')}" in saved, "Felix's chain on Terway's host veth"
    finally:
        run_lab("delete", "-f", policy, "--lab", on_terway)
        run_lab("delete", "-f", policy, "--lab", on_flannel)


# -- bad input ----------------------------------------------------------------------------------------
HEAD = """\
name: {name}
cluster:
  cni: terway
"""


def _refused(tmp_path: Path, text: str, line: int, field: str, message: str) -> None:
    name = f"{PREFIX}-bad"
    path = tmp_path / "topo.yaml"
    path.write_text(text.format(name=name))
    assert not any(n.startswith(f"{name}.") for n in netns_list())
    result = run_lab("up", str(path), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"lab: error: {path}:{line}: {field}: "), first
    assert message in first, first
    assert not any(n.startswith(f"{name}.") for n in netns_list()), "nothing is created"
    assert not Path(f"/run/lab/{name}").exists()


def test_vswitch_exhausted(tmp_path):
    # a /28 has 16 addresses: the VPC keeps the network address and the last three (.13, the gateway, .14,
    # .15), the node has .1: 11 are left, for n1's ENI primary IP and 10 pods; the 11th pod gets none
    pods = "".join(f"  - {{{{name: p{i}, node: n1}}}}\n" for i in range(11))
    text = HEAD + """\
  terway: {{maxENIs: 1, ipsPerENI: 20}}
networks:
  - {{name: vsw, cidr: 192.168.9.0/28, gateway: 192.168.9.13}}
nodes:
  - {{name: n1, ip: 192.168.9.1}}
pods:
""" + pods
    _refused(tmp_path, text, 20, "pods[10].node", "vSwitch vsw (192.168.9.0/28) has no free address left for pod "
                                                    "default/p10")


def test_eni_quota_exhausted(tmp_path):
    text = HEAD + """\
  terway: {{maxENIs: 1, ipsPerENI: 3}}
networks:
  - {{name: vsw, cidr: 192.168.9.0/24, gateway: 192.168.9.253}}
nodes:
  - {{name: n1, ip: 192.168.9.1}}
pods:
  - {{name: p0, node: n1}}
  - {{name: p1, node: n1}}
  - {{name: p2, node: n1}}
"""
    _refused(tmp_path, text, 12, "pods[2].node", "whose ENIs hold at most 2 pod IPs")


def test_pod_ip_outside_the_vswitch(tmp_path):
    text = HEAD + """\
networks:
  - {{name: vsw, cidr: 192.168.9.0/24, gateway: 192.168.9.253}}
nodes:
  - {{name: n1, ip: 192.168.9.1}}
pods:
  - {{name: p0, node: n1, ip: 10.244.0.5}}
"""
    _refused(tmp_path, text, 9, "pods[0].ip", "10.244.0.5 is outside the vSwitch of node n1")


def test_policy_enforcer_must_be_calico(tmp_path):
    text = HEAD + """\
  networkPolicy: none
networks:
  - {{name: vsw, cidr: 192.168.9.0/24, gateway: 192.168.9.253}}
nodes:
  - {{name: n1, ip: 192.168.9.1}}
"""
    _refused(tmp_path, text, 4, "cluster.networkPolicy", "networkPolicy 'none' cannot run with cni terway")


def _kernel_has_ipvlan() -> bool:
    name = f"{PREFIX}-ipvlan-probe"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], check=True)
        return subprocess.run(["ip", "-n", name, "link", "add", "iv0", "link", "p0", "type", "ipvlan", "mode", "l2"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_ipvlan_without_the_module(tmp_path):
    if _kernel_has_ipvlan():
        pytest.skip("this kernel has ipvlan: the refusal for a missing module cannot be shown here")
    text = HEAD + """\
  terway:
    datapath: ipvlan
networks:
  - {{name: vsw, cidr: 192.168.9.0/24, gateway: 192.168.9.253}}
nodes:
  - {{name: n1, ip: 192.168.9.1}}
"""
    _refused(tmp_path, text, 5, "cluster.terway.datapath", "ipvlan needs the kernel's ipvlan module")
