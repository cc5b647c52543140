"""`lab trace`: the path hop by hop from live kernel state, for every data plane, a denied pair and failures.

Expected values come from the topology files, the seed's walkthrough (§5.2 a-f), the reference
(dataplane-fidelity.md §1.10, §2, §4.10, §5.5, §6.6, §7) and the kernel itself (`ip route get fibmatch`,
`ip neigh`, `bridge fdb`, `iptables-save`, read by the test).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import pytest
from conftest import run_lab
from kernel import expected_ipip_implementation
from trace_labs import fibmatch, host_veth, lab, link_mac, listening, sh, start, steps, trace  # noqa: F401 (pytest fixtures, used by name)

pytestmark = pytest.mark.needs_root

SEED = "flannel-vxlan"


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
    assert ((encap["vni"], encap["port"], encap["outer_src"], encap["outer_dst"])
            == (1, 8472, node03["ip"], node01["ip"]))
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
    ("flannel-ipip", "web-0", "web-1", "flannel.ipip"),
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
    elif device in ("tunl0", "flannel.ipip"):   # §5.5, §3.2: outer destination = the route's gateway, the far node
        encap = steps(first, "encap")[0]["data"]
        assert encap["outer_dst"] == dst_node["ip"] and encap["outer_src"] == src_node["ip"]
        assert "onlink" in node_route["route"]
        assert ("proto bird" in node_route["route"]) == (device == "tunl0")
        implementation = {"kernel-ipip": "ipip", "ebpf": "ebpf", "userspace-tun": "tun"}
        assert encap["implementation"] == implementation[expected_ipip_implementation()]
    else:                      # VXLAN: flannel VNI 1/8472, Calico VNI 4096/4789 (reference §1, §6)
        encap = steps(first, "encap")[0]["data"]
        expected = (1, 8472) if device == "flannel.1" else (4096, 4789)
        assert (encap["vni"], encap["port"], encap["outer_dst"]) == (*expected, dst_node["ip"])
    last_node = [h for h in hops if h["where"] == f"node {dst_node['name']}"][-1]
    if device in ("tunl0", "flannel.ipip", "flannel.1", "vxlan.calico"):
        assert steps(last_node, "decap")[0]["data"]["device"] == device
    assert hops[-1]["where"] == f"pod default/{dst}" and steps(hops[-1], "deliver")
    _routes_match_kernel(result)


def test_hostgw_across_subnets_is_explained_by_the_kernel(lab):
    name, spec = lab("flannel-hostgw-crosssubnet")
    pods = {p["name"]: p for p in spec["pods"]}
    src, dst = "web-0", "web-2"                 # rack1 -> rack2
    src_node, dst_node = _node(spec, pods[src]["node"]), _node(spec, pods[dst]["node"])
    assert ipaddress.ip_address(dst_node["ip"]) not in ipaddress.ip_network(spec["networks"][0]["cidr"])
    code, result = trace(name, src, dst)
    assert code == 1 and result["outcome"] == "dropped"
    assert result["hops"][-1]["where"] == "router (underlay)"
    text = " ".join(result["explanation"])
    # what the kernel of the source node says, asked by the test itself: the far node is behind a gateway ...
    via = sh("ip", "-n", f"{name}.{src_node['name']}", "route", "get", dst_node["ip"]).split(" via ")[1].split()[0]
    assert f"via {via}" in text and dst_node["ip"] in text
    # ... so the kernel refuses flannel's route for the far node's subnet (tried by the trace, not read from notes)
    subnet = sh("ip", "-n", f"{name}.{dst_node['name']}", "-4", "route", "show", "dev", "cni0", "proto",
                "kernel").split()[0]                                   # the far node's pod subnet, on its cni0
    refused = subprocess.run(["ip", "-n", f"{name}.{src_node['name']}", "route", "add", subnet, "via",
                              dst_node["ip"], "dev", "eth0"], capture_output=True, text=True)
    assert refused.returncode != 0 and "ENETUNREACH" in text and "tried just now" in text
    assert f"{subnet} via {dst_node['ip']} dev eth0" in text
    assert subnet not in sh("ip", "-n", f"{name}.{src_node['name']}", "route")   # the trace left nothing
    _routes_match_kernel(result)


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
    import xml.etree.ElementTree as ET

    from conftest import run_lab
    out = tmp_path / "live.svg"
    run_lab("graph", name, "-o", str(out))
    root = ET.parse(out).getroot()
    ids = [g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g") if (g.get("id") or "").startswith("node-")]
    assert sorted(ids) == sorted(f"node-{n['name']}" for n in spec["nodes"])
    text = out.read_text()
    assert "Established" in text and "live" in text and "BIRD" in text and "kernel" in text


def test_node_source_and_ip_destination(lab):
    name, spec = lab(SEED)
    node03, node01 = _node(spec, "k8s-node03"), _node(spec, "k8s-node01")
    bs8 = next(p for p in spec["pods"] if p["name"] == "bs8")
    # a node as the source: the kernel picks flannel.1's address (the subnet's .0, flannel's VTEP address)
    code, result = trace(name, "k8s-node03", "default/bs8")
    assert code == 0 and result["hops"][0]["where"] == "node k8s-node03"
    chosen = steps(result["hops"][0], "source")[0]["data"]["src"]
    assert chosen == node03["podCIDR"].split("/")[0]
    assert chosen in sh("ip", "-n", f"{name}.k8s-node03", "-4", "addr", "show", "dev", "flannel.1")
    assert result["packet"]["src"] == chosen and result["hops"][-1]["where"] == "pod default/bs8"
    # a node as the destination, by its IP
    code, result = trace(name, "default/bs8", node03["ip"])
    assert code == 0 and result["dst"]["kind"] == "node" and result["hops"][-1]["where"] == "node k8s-node03"
    # an IP outside the lab: masqueraded on the node, dropped by the underlay router, which has no uplink
    code, result = trace(name, "default/bs8", "198.51.100.7")
    assert code == 1 and result["dst"]["kind"] == "ip" and result["hops"][-1]["where"] == "router (underlay)"
    assert "no uplink" in " ".join(result["explanation"])
    node_hop = next(h for h in result["hops"] if h["where"] == f"node {bs8['node']}")
    nat = steps(node_hop, "nat")
    assert nat and nat[0]["data"]["action"] == "MASQUERADE" and nat[0]["data"]["new_src"] == node01["ip"]
    assert nat[0]["data"]["rule"] in sh("ip", "netns", "exec", f"{name}.{bs8['node']}", "iptables-save", "-t", "nat")


def test_external_host_endpoints(lab):
    name, spec = lab("netpol-seed001")
    external = next(e for e in spec["externals"] if e["name"] == "cidr-in")
    port = external["containerPorts"][0]["containerPort"]
    code, result = trace(name, "nsa/redis", "cidr-in", "--port", str(port))
    assert code == 0 and result["hops"][-1]["where"] == "external cidr-in"
    deliver = steps(result["hops"][-1], "deliver")[0]
    assert deliver["data"]["listening"] is listening(f"{name}.cidr-in", port) is True
    # from the external host back to a pod: the router routes pod subnets to the nodes (host-gw)
    code, result = trace(name, "cidr-in", "nsa/redis", "--port", "80")
    assert code == 0 and result["hops"][0]["where"] == "external cidr-in"
    assert result["hops"][-1]["where"] == "pod nsa/redis"


def test_delivery_says_whether_a_socket_listens(lab):
    name, _ = lab(SEED)
    bs8 = f"{name}.default.bs8"
    port = 47123
    assert not listening(bs8, port)
    code, result = trace(name, "default/bs1", "default/bs8", "--port", str(port))
    deliver = steps(result["hops"][-1], "deliver")[0]
    assert code == 0 and deliver["data"]["listening"] is False and "RST" in deliver["text"]
    code, result = trace(name, "default/bs1", "default/bs8", "--port", str(port), "--protocol", "UDP")
    assert "port unreachable" in steps(result["hops"][-1], "deliver")[0]["text"]
    server = subprocess.Popen(["ip", "netns", "exec", bs8, sys.executable, "-c",
                               f"import socket, time; s = socket.create_server(('', {port})); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while not listening(bs8, port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening(bs8, port)
        code, result = trace(name, "default/bs1", "default/bs8", "--port", str(port))
        deliver = steps(result["hops"][-1], "deliver")[0]
        assert deliver["data"]["listening"] is True and f"listening on TCP port {port}" in deliver["text"]
    finally:
        server.kill()
        server.wait()


def test_down_bridge_port_is_named_with_its_fix(lab):
    name, spec = lab(SEED)
    bs8 = next(p for p in spec["pods"] if p["name"] == "bs8")
    node_ns = f"{name}.{bs8['node']}"
    veth = host_veth(f"{name}.default.bs8", node_ns)
    sh("ip", "-n", node_ns, "link", "set", veth, "down")
    try:
        code, result = trace(name, "default/bs1", "default/bs8")
        assert code == 1 and result["outcome"] == "dropped"
        link = [s for h in result["hops"] for s in steps(h, "link")][0]
        assert link["data"]["device"] == veth and "cni0" in link["text"] and "administratively down" in link["text"]
        assert "cni0 is up" not in " ".join(result["explanation"])
        fix = link["data"]["fix"]
        assert fix == f"lab exec {bs8['node']} --lab {name} -- ip link set {veth} up"
        run_lab(*fix.split()[1:])                                   # the printed fix, as a learner types it
    finally:
        sh("ip", "-n", node_ns, "link", "set", veth, "up")
    assert trace(name, "default/bs1", "default/bs8")[0] == 0
    # the pod's end down instead: the node's veth is up without carrier; the fix is in the pod
    sh("ip", "-n", f"{name}.default.bs8", "link", "set", "eth0", "down")
    try:
        code, result = trace(name, "default/bs1", "default/bs8")
        link = [s for h in result["hops"] for s in steps(h, "link")][0]
        assert code == 1 and link["data"]["device"] == veth
        assert "its peer eth0 in pod default/bs8 is down" in link["text"]
        assert link["data"]["fix"] == f"lab exec default/bs8 --lab {name} -- ip link set eth0 up"
    finally:
        sh("ip", "-n", f"{name}.default.bs8", "link", "set", "eth0", "up")
        gateway = str(ipaddress.ip_network(_node(spec, bs8["node"])["podCIDR"])[1])
        for route in (["10.244.0.0/16", "via", gateway], ["default", "via", gateway]):  # lost with the link
            subprocess.run(["ip", "-n", f"{name}.default.bs8", "route", "replace", *route, "dev", "eth0"], check=True)
    assert trace(name, "default/bs1", "default/bs8")[0] == 0


def test_missing_bgp_route_is_explained_from_bird(lab):
    name, spec = lab("calico-bgp-mesh")
    pods = {p["name"]: p for p in spec["pods"]}
    src, dst = _node(spec, pods["bs1"]["node"]), _node(spec, pods["bs8"]["node"])
    protocol = "Mesh_" + dst["ip"].replace(".", "_")          # Calico's name for the mesh session (bird.cfg)
    src_ns = f"{name}.{src['name']}"
    bs8_ip = sh("ip", "-n", f"{name}.default.bs8", "-4", "-o", "addr", "show", "dev", "eth0").split()[3].split("/")[0]

    def routed() -> bool:
        return "proto bird" in sh("ip", "-n", src_ns, "route", "get", bs8_ip) or \
            " via " + dst["ip"] in sh("ip", "-n", src_ns, "route", "get", bs8_ip)
    run_lab("birdc", src["name"], "disable", protocol, "--lab", name)
    try:
        deadline = time.monotonic() + 30
        while routed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not routed()
        code, result = trace(name, "default/bs1", "default/bs8")
        assert code == 1 and result["hops"][-1]["where"] == "router (underlay)"
        text = " ".join(result["explanation"])
        assert f"BIRD on {src['name']} has no BGP route for {bs8_ip}" in text
        assert f"not Established: {protocol}" in text
        assert f"lab calicoctl node status {src['name']} --lab {name}" in text
    finally:
        run_lab("birdc", src["name"], "enable", protocol, "--lab", name)
        deadline = time.monotonic() + 60
        while not routed() and time.monotonic() < deadline:
            time.sleep(0.5)
    assert routed()


def test_live_graph_tunnels_come_from_the_kernel(lab, tmp_path):
    name, spec = lab(SEED)
    import xml.etree.ElementTree as ET
    nodes = sorted(n["name"] for n in spec["nodes"])
    out = tmp_path / "live.svg"
    run_lab("graph", "--lab", name, "-o", str(out))
    ids = {g.get("id") for g in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}g")}
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    assert {f"edge-{a}-{b}-vxlan" for a, b in pairs} <= ids
    assert "kernel" in out.read_text() and "VNI 1 UDP 8472" in out.read_text()
    # one node forgets its FDB entry for another: the graph says only the other end holds the tunnel
    a, b = _node(spec, "k8s-node03"), _node(spec, "k8s-node01")
    entry = next(line for line in sh("bridge", "-n", f"{name}.{a['name']}", "fdb", "show", "dev", "flannel.1")
                 .splitlines() if f"dst {b['ip']} " in line)
    mac = entry.split()[0]
    sh("bridge", "-n", f"{name}.{a['name']}", "fdb", "del", mac, "dev", "flannel.1", "dst", b["ip"])
    try:
        run_lab("graph", "--lab", name, "-o", str(out))
        assert f"only {b['name']} holds it" in out.read_text()
    finally:
        sh("bridge", "-n", f"{name}.{a['name']}", "fdb", "append", mac, "dev", "flannel.1", "dst", b["ip"],
           "self", "permanent")
