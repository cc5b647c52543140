"""`lab trace`: the path hop by hop from live kernel state, for every data plane, a denied pair and failures.

Expected values come from the topology files, the seed's walkthrough (§5.2 a-f), the reference
(dataplane-fidelity.md §1.10, §2, §4.10, §5.5, §6.6, §7) and the kernel itself (`ip route get fibmatch`,
`ip neigh`, `bridge fdb`, `iptables-save`, read by the test).
"""

from __future__ import annotations

import ipaddress

import pytest

from trace_labs import fibmatch, link_mac, sh, start, steps, trace

pytestmark = pytest.mark.needs_root

SEED = "flannel-vxlan"


@pytest.fixture(scope="module")
def lab(labs, tmp_path_factory):
    started: dict[str, tuple[str, dict]] = {}

    def get(topology: str, policies: tuple[str, ...] = ()) -> tuple[str, dict]:
        if topology not in started:
            started[topology] = start(labs, tmp_path_factory, topology, policies)
        return started[topology]
    return get


def _node(spec: dict, name: str) -> dict:
    return next(n for n in spec["nodes"] if n["name"] == name)


def _routes_match_kernel(result: dict) -> None:
    for hop in result["hops"]:
        for step in steps(hop, "route"):
            if step["data"].get("route"):
                assert step["data"]["route"] == fibmatch(hop["netns"], step["command"]), (hop["where"], step)


def test_seed_vxlan_bs1_to_bs8_hop_for_hop(lab):
    name, spec = lab(SEED)
    code, result = trace(name, "default/bs1", "default/bs8")
    assert code == 0 and result["outcome"] == "delivered"
    node03, node01 = _node(spec, "k8s-node03"), _node(spec, "k8s-node01")
    hops = result["hops"]
    assert [h["where"] for h in hops] == ["pod default/bs1", "node k8s-node03", "switch lan (underlay)",
                                          "node k8s-node01", "pod default/bs8"]
    # a. the pod's route (the seed's `ip route` in bs1: 10.244.0.0/16 via 10.244.3.1 dev eth0)
    assert steps(hops[0], "route")[0]["data"]["route"] == "10.244.0.0/16 via 10.244.3.1 dev eth0"
    # b. into cni0, then the node's route to flannel.1 (seed: 10.244.5.0/24 via 10.244.5.0 dev flannel.1 onlink)
    assert "cni0" in hops[1]["crossed"] and hops[1]["crossed"][0].startswith("veth")
    assert steps(hops[1], "route")[0]["data"]["route"] == \
        f"{node01['podCIDR']} via {node01['podCIDR'].split('/')[0]} dev flannel.1 onlink"
    # c. the ARP entry for the remote VTEP: PERMANENT, the far flannel.1's own MAC
    vtep_mac = link_mac(f"{name}.k8s-node01", "flannel.1")
    neigh = steps(hops[1], "neighbour")[0]
    assert neigh["data"]["mac"] == vtep_mac and "PERMANENT" in neigh["text"]
    assert f"{node01['podCIDR'].split('/')[0]} dev flannel.1 lladdr {vtep_mac} PERMANENT" in \
        " ".join(sh("ip", "-n", f"{name}.k8s-node03", "neigh", "show", "dev", "flannel.1").split()).replace(
            f"{node01['podCIDR'].split('/')[0]} lladdr", f"{node01['podCIDR'].split('/')[0]} dev flannel.1 lladdr")
    # e. the FDB entry giving the remote node's IP, as `bridge fdb show dev flannel.1` prints it
    fdb = steps(hops[1], "fdb")[0]
    assert fdb["data"]["dst"] == node01["ip"]
    assert f"{vtep_mac} dst {node01['ip']} self permanent" in sh("bridge", "-n", f"{name}.k8s-node03", "fdb", "show",
                                                                  "dev", "flannel.1")
    # d/e. VXLAN: VNI 1, UDP 8472 (flannel's defaults), outer node03 -> node01, out of eth0; MTUs 1450 / 1500
    encap = steps(hops[1], "encap")[0]["data"]
    assert (encap["vni"], encap["port"], encap["outer_src"], encap["outer_dst"]) == (1, 8472, node03["ip"], node01["ip"])
    assert (encap["inner_mtu"], encap["outer_mtu"]) == (1450, 1500)
    assert hops[1]["oif"] == "eth0" and hops[2]["iif"] == "k8s-node03" and hops[2]["oif"] == "k8s-node01"
    # f. the far node: UDP 8472 to flannel.1, decapsulated, to cni0 and the pod
    assert steps(hops[3], "decap")[0]["data"]["device"] == "flannel.1"
    assert any(s["data"].get("route", "").startswith(f"{node01['podCIDR']} dev cni0") for s in steps(hops[3], "route"))
    assert steps(hops[4], "deliver")
    _routes_match_kernel(result)
    # every fact comes with the command that shows it
    assert all(s["command"].startswith("lab exec ") for h in hops for s in h["steps"] if s["kind"] != "deliver")


@pytest.mark.parametrize("topology,src,dst,device", [
    ("flannel-hostgw", "bs1", "bs8", "eth0"),
    ("flannel-directrouting", "web-0", "web-1", "eth0"),      # same rack: a host-gw route
    ("flannel-directrouting", "web-0", "web-3", "flannel.1"),  # across racks: VXLAN
    ("calico-bgp-mesh", "bs1", "bs8", "eth0"),
    ("calico-ipip", "bs1", "bs8", "tunl0"),
    ("calico-vxlan", "web-0", "web-1", "vxlan.calico"),
])
def test_each_dataplane(lab, topology, src, dst, device):
    name, spec = lab(topology)
    pods = {p["name"]: p for p in spec["pods"]}
    src_node, dst_node = _node(spec, pods[src]["node"]), _node(spec, pods[dst]["node"])
    code, result = trace(name, src, dst)
    assert code == 0, result.get("explanation")
    hops = result["hops"]
    first = next(h for h in hops if h["where"] == f"node {src_node['name']}")
    node_route = steps(first, "route")[0]["data"]
    assert node_route["oif"] == device
    if device == "eth0":       # plain routing: via the destination node's IP (reference §2, §4.10)
        assert node_route["gateway"] == dst_node["ip"]
        assert not steps(first, "encap")
        if topology.startswith("calico"):
            assert "proto bird" in node_route["route"]
    elif device == "tunl0":    # reference §5.5: outer destination = the route's gateway, the far node
        encap = steps(first, "encap")[0]["data"]
        assert encap["outer_dst"] == dst_node["ip"] and encap["outer_src"] == src_node["ip"]
        assert "onlink" in node_route["route"] and "proto bird" in node_route["route"]
    else:                      # VXLAN: flannel VNI 1/8472, Calico VNI 4096/4789 (reference §1, §6)
        encap = steps(first, "encap")[0]["data"]
        expected = (1, 8472) if device == "flannel.1" else (4096, 4789)
        assert (encap["vni"], encap["port"], encap["outer_dst"]) == (*expected, dst_node["ip"])
    last_node = [h for h in hops if h["where"] == f"node {dst_node['name']}"][-1]
    if device in ("tunl0", "flannel.1", "vxlan.calico"):
        assert steps(last_node, "decap")[0]["data"]["device"] == device
    assert hops[-1]["where"] == f"pod default/{dst}" and steps(hops[-1], "deliver")
    _routes_match_kernel(result)


def test_hostgw_across_subnets_is_explained(lab):
    name, spec = lab("flannel-hostgw-crosssubnet")
    pods = {p["name"]: p for p in spec["pods"]}
    src, dst = "web-0", "web-2"                 # rack1 -> rack2
    dst_node = _node(spec, pods[dst]["node"])
    assert ipaddress.ip_address(dst_node["ip"]) not in ipaddress.ip_network(spec["networks"][0]["cidr"])
    code, result = trace(name, src, dst)
    assert code == 1 and result["outcome"] == "dropped"
    assert result["hops"][-1]["where"] == "router (underlay)"
    text = " ".join(result["explanation"])
    assert "NOT installed" in text and "ENETUNREACH" in text and dst_node["ip"] in text
    _routes_match_kernel(result)
    human = sh("ip", "netns", "exec", f"{name}.k8s-master01", "true")  # the node exists
    assert human == ""


KUBE_ROUTER = ("netpol-xyz-kuberouter", ("xyz-deny-ingress-x.yaml", "xyz-allow-y-to-xa-80.yaml"))
CALICO = ("netpol-xyz-calico", ("xyz-deny-ingress-x.yaml", "xyz-allow-y-to-xa-80.yaml"))


def _filter(name: str, node: str) -> list[str]:
    return sh("ip", "netns", "exec", f"{name}.{node}", "iptables-save", "-t", "filter").splitlines()


@pytest.mark.parametrize("enforcer", ["kube-router", "calico"])
def test_denied_and_allowed_pairs(lab, enforcer):
    topology, policies = KUBE_ROUTER if enforcer == "kube-router" else CALICO
    name, spec = lab(topology, policies)
    pods = {f"{p['namespace']}/{p['name']}": p for p in spec["pods"]}
    node = pods["x/a"]["node"]
    # x admits nothing (deny-ingress), except TCP 80 from namespace y (y-to-a-80): the policies' own text
    code, denied = trace(name, "y/b", "x/a", "--port", "81")
    assert code == 1 and denied["outcome"] == "dropped"
    assert not denied["verdict"]["allowed"] and denied["verdict"]["ingress"].startswith("denied")
    policy = [s for h in denied["hops"] for s in steps(h, "policy") if s["data"]["direction"] == "Ingress"][0]
    rules = _filter(name, node)
    xa_ip = sh("ip", "-n", f"{name}.x.a", "-4", "-o", "addr", "show", "dev", "eth0").split()[3].split("/")[0]
    if enforcer == "kube-router":
        jump = next(r for r in rules if r.startswith("-A KUBE-ROUTER-FORWARD") and f"-d {xa_ip}/32" in r)
        assert policy["data"]["chain"] == jump.split()[-1] and policy["data"]["chain"].startswith("KUBE-POD-FW-")
        assert policy["data"]["rule"] in rules and "-j REJECT" in policy["data"]["rule"]
    else:
        iface = sh("ip", "-n", f"{name}.{node}", "route", "get", xa_ip).split(" dev ")[1].split()[0]
        assert policy["data"]["chain"] == f"cali-tw-{iface}"
        assert policy["data"]["rule"] in rules and "Drop if no policies passed packet" in policy["data"]["rule"]
    assert any("isolated for ingress" in line for line in denied["explanation"])
    code, allowed = trace(name, "y/b", "x/a", "--port", "80")
    assert code == 0 and allowed["verdict"]["ingress"] == "allowed by x/y-to-a-80"
    policy = [s for h in allowed["hops"] for s in steps(h, "policy") if s["data"]["direction"] == "Ingress"][0]
    chain = policy["data"]["policy_chain"]
    body = [r for r in rules if r.startswith(f"-A {chain} ")]
    if enforcer == "kube-router":
        assert chain.startswith("KUBE-NWPLCY-") and any("policy name y-to-a-80 namespace x" in r for r in body)
    else:
        assert chain.startswith("cali-pi-") and any("Policy x/knp.default.y-to-a-80 ingress" in r for r in body)


def test_bad_endpoints_are_argument_errors(lab):
    name, _ = lab(SEED)
    from conftest import run_lab
    for args, words in ((["nosuchpod", "default/bs8"], "no pod, node or external host"),
                        (["default/bs1", "default/bs8", "--port", "80", "--protocol", "ICMP"], "--port"),
                        (["default/bs1", "default/bs8", "-w", "/tmp/x.pcap"], "--capture")):
        result = run_lab("trace", *args, "--lab", name, check=False)
        assert result.returncode == 2 and words in result.stderr, result.stderr


def test_live_graph_of_a_running_calico_lab(lab, tmp_path):
    name, spec = lab("calico-bgp-mesh")
    from conftest import run_lab
    import xml.etree.ElementTree as ET
    out = tmp_path / "live.svg"
    run_lab("graph", name, "-o", str(out))
    root = ET.parse(out).getroot()
    ids = [g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g") if (g.get("id") or "").startswith("node-")]
    assert sorted(ids) == sorted(f"node-{n['name']}" for n in spec["nodes"])
    text = out.read_text()
    assert "Established" in text and "(live)" in text
