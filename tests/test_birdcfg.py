"""BIRD configuration as confd renders it (lab.cni.calico.birdcfg); pure, no root, parsed by the real BIRD.

Literal expectations are copied from the reference (dataplane-fidelity.md §4.2-§4.6), which uses the lab
of §0.1: k8s-node1..3 on 192.168.10.71..73/24 with blocks 10.244.36.64/26, 10.244.169.128/26 and
10.244.107.192/26 of pool 10.244.0.0/16.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.cni.calico.birdcfg import render, render_all
from lab.topology.model import (
    BGPConfiguration,
    BGPPeer,
    CalicoConfig,
    CalicoIpam,
    CalicoNode,
    Cluster,
    IPPool,
    Network,
    Node,
    Topology,
    frozen_labels,
)

BLOCKS = {"k8s-node1": "10.244.36.64/26", "k8s-node2": "10.244.169.128/26", "k8s-node3": "10.244.107.192/26"}
RR_PEER = BGPPeer(name="peer-with-route-reflectors", node_selector="all()", peer_selector="route-reflector == 'true'")

# §4.3, literal mesh section on k8s-node1. The reference abbreviates the second block (it leaves out the
# two trailing comments the template also writes there), so it is checked separately, without comments.
MESH_NODE1 = """\
# ------------- Node-to-node mesh -------------
# For peer /bgp/v1/host/k8s-node1/ip_addr_v4
# Skipping ourselves (192.168.10.71)

# For peer /bgp/v1/host/k8s-node2/ip_addr_v4
protocol bgp Mesh_192_168_10_72 from bgp_template {
  neighbor 192.168.10.72 as 64512;
  source address 192.168.10.71;  # The local address we use for the TCP connection
  import all;        # Import all routes, since we don't know what the upstream
                     # topology is and therefore have to trust the ToR/RR.
  export filter {
    calico_export_to_bgp_peers(true);
    reject;
  };  # Only want to export routes for workloads.
  passive on; # Mesh is unidirectional, peer will connect to us.
}

# For peer /bgp/v1/host/k8s-node3/ip_addr_v4
"""
MESH_NODE1_SECOND_BLOCK = """\
protocol bgp Mesh_192_168_10_73 from bgp_template {
  neighbor 192.168.10.73 as 64512;
  source address 192.168.10.71;  # The local address we use for the TCP connection
  import all;
  export filter {
    calico_export_to_bgp_peers(true);
    reject;
  };
  passive on; # Mesh is unidirectional, peer will connect to us.
}
"""

# §4.4, node1 is a route reflector with cluster ID 244.0.0.1.
RR_MESH_NODE1 = """\
# ------------- Node-to-node mesh -------------
# This node (k8s-node1) is configured as a route reflector with cluster ID 244.0.0.1;
# ignore node-to-node mesh setting.
"""
RR_PEER_NODE1 = """\
# For peer /bgp/v1/host/k8s-node1/peer_v4/192.168.10.72
protocol bgp Node_192_168_10_72 from bgp_template {
  ttl security off;
  multihop;
  neighbor 192.168.10.72 as 64512;
  source address 192.168.10.71;  # The local address we use for the TCP connection
  import filter {
    accept; # Prior to introduction of BGP Filters we used "import all" so use default accept behaviour on import
  };
  export filter {
    calico_export_to_bgp_peers(true);
    reject;
  };  # Only want to export routes for workloads.
  rr client;
  rr cluster id 244.0.0.1;
}
"""

# §4.2, bird.cfg anatomy (the reference compresses whitespace and leaves out comments).
ANATOMY_NODE1 = """\
include "bird_aggr.cfg";
include "bird_ipam.cfg";
router id 192.168.10.71;

protocol kernel {
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds
  import all;
  export filter calico_kernel_programming; # Default is export none
  graceful restart;
  merge paths on;    # Allow export multipath routes (ECMP)
}
protocol device { debug { states }; scan time 2; }
protocol direct {
  debug { states };
  interface -"cali*", -"kube-ipvs*", "*";
}
template bgp bgp_template {
  debug { states };
  description "Connection to BGP peer";
  local as 64512;
  gateway recursive;
  add paths on;
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}
"""

# §4.5, bird_aggr.cfg of k8s-node1.
AGGR_NODE1 = """\
protocol static {
   # IP blocks for this host.
   route 10.244.36.64/26 blackhole;
}

# Aggregation of routes on this host; export the block, nothing beneath it.
function calico_aggr ()
{
      # Block 10.244.36.64/26 is confirmed
      if ( net = 10.244.36.64/26 ) then { accept; }
      if ( net ~ 10.244.36.64/26 ) then { reject; }
}
"""

VXLAN_COMMENT = "# Don't program VXLAN routes into the kernel - these are handled by Felix."  # §4.6


def lab(pool: IPPool | None = None, mesh: bool = True, peers: tuple[BGPPeer, ...] = (), rr: str | None = None,
        log_severity: str = "Info", node3_ip: str = "192.168.10.73/24") -> Topology:
    """The reference lab (§0.1); `rr` makes k8s-node1 a route reflector with that cluster ID."""
    pool = pool or IPPool(name="default-ipv4-ippool", cidr=ipaddress.IPv4Network("10.244.0.0/16"), ipip_mode="Always")
    interfaces = {"k8s-node1": "192.168.10.71/24", "k8s-node2": "192.168.10.72/24", "k8s-node3": node3_ip}
    networks, nodes, calico_nodes = {}, [], []
    for name, address in interfaces.items():
        iface = ipaddress.IPv4Interface(address)
        net_name = f"net-{iface.network.network_address}".replace(".", "-")
        networks[net_name] = Network(name=net_name, cidr=iface.network, gateway=iface.network.network_address + 1)
        labels = {"route-reflector": "true"} if rr and name == "k8s-node1" else {}
        nodes.append(Node(name=name, network=net_name, ip=iface.ip, labels=frozen_labels(labels)))
        calico_nodes.append(CalicoNode(name=name, ipv4_address=iface,
                                       rr_cluster_id=rr if name == "k8s-node1" else None))
    blocks = {name: (ipaddress.IPv4Network(block),) for name, block in BLOCKS.items()}
    calico = CalicoConfig(pools=(pool,), peers=peers, nodes=tuple(calico_nodes),
                          bgp=BGPConfiguration(node_to_node_mesh=mesh, log_severity=log_severity),
                          ipam=CalicoIpam(blocks=frozen_labels(blocks), tunnel_ips=frozen_labels({})))
    return Topology(name="calico-test", source="<test>", cluster=Cluster(cni="calico", config=calico),
                    networks=tuple(networks.values()), nodes=tuple(nodes), namespaces=(), pods=())


def pool(ipip: str = "Never", vxlan: str = "Never") -> IPPool:
    return IPPool(name="default-ipv4-ippool", cidr=ipaddress.IPv4Network("10.244.0.0/16"), ipip_mode=ipip,
                  vxlan_mode=vxlan)


def bird_cfg(topology: Topology, node: str) -> str:
    return render(topology, node, "/run/lab/test/bird")["bird.cfg"]


def ipam_cfg(topology: Topology, node: str) -> str:
    return render(topology, node, "/run/lab/test/bird")["bird_ipam.cfg"]


def without_comments(text: str) -> list[str]:
    """Non-empty lines with `# ...` comments removed and trailing blanks stripped."""
    lines = (re.sub(r"\s*#.*$", "", line).rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip()]


def statements(text: str) -> list[str]:
    """The config's tokens between `;`, `{` and `}`, comments and whitespace runs dropped."""
    flat = " ".join(re.sub(r"#.*$", "", line) for line in text.splitlines())
    return [" ".join(part.split()) for part in re.split(r"([;{}])", flat) if part.strip()]


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(item == candidate for candidate in it) for item in needle)


def block_of(text: str, name: str) -> str:
    """The `protocol bgp <name>` block, through its closing brace."""
    match = re.search(rf"^protocol bgp {name} from bgp_template {{\n.*?^}}\n", text, re.S | re.M)
    assert match, f"no protocol bgp {name}"
    return match.group(0)


# ---------------------------------------------------------------- bird.cfg


def test_mesh_section_of_node1_is_the_reference_text():
    text = bird_cfg(lab(), "k8s-node1")
    assert MESH_NODE1 in text
    assert without_comments(block_of(text, "Mesh_192_168_10_73")) == without_comments(MESH_NODE1_SECOND_BLOCK)
    assert text.count("protocol bgp ") == 2


def test_mesh_passive_only_towards_higher_ip_strings():
    # §4.3: on k8s-node3 the two blocks have no `passive on`; node2 waits for node3 only.
    node3 = bird_cfg(lab(), "k8s-node3")
    assert "passive on" not in block_of(node3, "Mesh_192_168_10_71")
    assert "passive on" not in block_of(node3, "Mesh_192_168_10_72")
    node2 = bird_cfg(lab(), "k8s-node2")
    assert "passive on" not in block_of(node2, "Mesh_192_168_10_71")
    assert "  passive on; # Mesh is unidirectional, peer will connect to us.\n" in block_of(node2, "Mesh_192_168_10_73")
    assert "# For peer /bgp/v1/host/k8s-node3/ip_addr_v4\n# Skipping ourselves (192.168.10.73)\n" in node3


def test_route_reflector_sections_are_the_reference_text():
    topology = lab(mesh=False, peers=(RR_PEER,), rr="244.0.0.1")
    node1 = bird_cfg(topology, "k8s-node1")
    assert RR_MESH_NODE1 in node1
    assert RR_PEER_NODE1 in node1
    assert block_of(node1, "Node_192_168_10_73") == (
        block_of(node1, "Node_192_168_10_72").replace("192_168_10_72", "192_168_10_73")
        .replace("192.168.10.72", "192.168.10.73"))
    assert re.findall(r"^protocol bgp (\S+)", node1, re.M) == ["Node_192_168_10_72", "Node_192_168_10_73"]
    assert node1.index("# ------------- Node-to-node mesh") < node1.index("# ------------- Global peers") \
        < node1.index("# ------------- Node-specific peers")
    for client in ("k8s-node2", "k8s-node3"):
        text = bird_cfg(topology, client)
        assert re.findall(r"^protocol bgp (\S+)", text, re.M) == ["Node_192_168_10_71"]
        assert "rr client" not in text and "rr cluster id" not in text
        assert "# Node-to-node mesh disabled\n" in text


def test_anatomy_matches_reference():
    text = bird_cfg(lab(), "k8s-node1")
    assert is_subsequence(statements(ANATOMY_NODE1), statements(text))
    assert "# Generated by confd\n" in text
    assert "# No global peers configured.\n" in text
    assert "# No node-specific peers configured.\n" in text


def test_kernel_protocol_deviation_is_commented():
    text = bird_cfg(lab(), "k8s-node1")
    kernel = text[text.index("protocol kernel {"):]
    kernel = kernel[:kernel.index("\n}\n")]
    assert "  kernel table 201;" in kernel
    assert "table 201 and the lab's route agent mirrors it into main" in kernel
    assert "`dev tunl0 onlink` where Calico's fork would set krt_tunnel" in kernel


@pytest.mark.parametrize("severity, line, count", [("Debug", "  debug all;", 3), ("Info", "  debug { states };", 3),
                                                   ("Warning", "  debug", 0), ("Fatal", "  debug", 0)])
def test_log_severity(severity, line, count):
    # confd: debug and info are kept, every other severity becomes none (no debug line at all).
    text = bird_cfg(lab(log_severity=severity), "k8s-node1")
    assert sum(1 for row in text.splitlines() if row.startswith(line)) == count


def test_global_and_node_specific_peers():
    tor = BGPPeer(name="tor", peer_ip=ipaddress.IPv4Address("192.168.10.1"), as_number=64513)
    to_node2 = BGPPeer(name="to-node2", peer_ip=ipaddress.IPv4Address("192.168.10.72"), as_number=64512,
                       node="k8s-node1")
    text = bird_cfg(lab(mesh=False, peers=(tor, to_node2)), "k8s-node1")
    tor_block = block_of(text, "Global_192_168_10_1")
    assert "  neighbor 192.168.10.1 as 64513;\n" in tor_block
    assert "    calico_export_to_bgp_peers(false);\n" in tor_block       # eBGP peer
    assert "# For peer /bgp/v1/global/peer_v4/192.168.10.1\n" in text
    node_block = block_of(text, "Node_192_168_10_72")
    assert "    calico_export_to_bgp_peers(true);\n" in node_block
    assert "# For peer /bgp/v1/host/k8s-node1/peer_v4/192.168.10.72\n" in text
    reverse = bird_cfg(lab(mesh=False, peers=(tor, to_node2)), "k8s-node2")
    assert re.findall(r"^protocol bgp (\S+)", reverse, re.M) == ["Global_192_168_10_1", "Node_192_168_10_71"]


# ---------------------------------------------------------------- bird_aggr.cfg and bird_ipam.cfg


def test_aggr_is_the_reference_text():
    files = render(lab(), "k8s-node1", "/run/lab/test/bird")
    assert files["bird_aggr.cfg"].startswith("# Generated by confd\n")
    assert AGGR_NODE1 in files["bird_aggr.cfg"]
    assert "10.244.169.128" not in files["bird_aggr.cfg"]


def test_export_filter_accepts_the_pool():
    text = ipam_cfg(lab(), "k8s-node1")
    export = text[text.index("function calico_export_to_bgp_peers(bool internal_peer) {"):]
    assert "  calico_aggr();\n\n  if ( net ~ 10.244.0.0/16 ) then {\n    accept;\n  }\n}\n" in export


def test_ipip_always_tunnels_every_other_node():
    text = ipam_cfg(lab(pool("Always")), "k8s-node1")
    assert ('  if ( net ~ 10.244.0.0/16 ) then {\n'
            '    # krt_tunnel = "tunl0";  (projectcalico/bird only: see calico_tunnel_next_hops)\n'
            '    accept;\n  }\n') in text
    assert re.findall(r'^  route (\S+) via "tunl0";$', text, re.M) == ["192.168.10.72/32", "192.168.10.73/32"]
    assert "protocol static calico_tunnel_next_hops {" in text


def test_ipip_cross_subnet_tunnels_only_other_subnets():
    same = ipam_cfg(lab(pool("CrossSubnet")), "k8s-node1")
    assert "# if defined(bgp_next_hop) && ( bgp_next_hop ~ 192.168.10.0/24 ) then" in same
    assert "calico_tunnel_next_hops" not in same.split("filter calico_kernel_programming")[1].split("accept;\n}")[-1]
    assert "protocol static calico_tunnel_next_hops" not in same
    split = lab(pool("CrossSubnet"), node3_ip="192.168.20.73/24")
    assert re.findall(r'^  route (\S+) via "tunl0";$', ipam_cfg(split, "k8s-node1"), re.M) == ["192.168.20.73/32"]
    assert re.findall(r'^  route (\S+) via "tunl0";$', ipam_cfg(split, "k8s-node3"), re.M) == [
        "192.168.10.71/32", "192.168.10.72/32"]


def test_no_encap_and_vxlan_have_no_tunnel_next_hops():
    never = ipam_cfg(lab(pool("Never")), "k8s-node1")
    assert '    # krt_tunnel = "";' in never
    assert "protocol static calico_tunnel_next_hops" not in never
    vxlan = ipam_cfg(lab(pool("Never", "Always")), "k8s-node1")
    assert f"  if ( net ~ 10.244.0.0/16 ) then {{\n    {VXLAN_COMMENT}\n    reject;\n  }}\n" in vxlan
    assert "krt_tunnel" not in vxlan.split("filter calico_kernel_programming")[1]
    assert "protocol static calico_tunnel_next_hops" not in vxlan


def test_rendering_is_deterministic():
    topology = lab(mesh=False, peers=(RR_PEER,), rr="244.0.0.1")
    assert render_all(topology) == render_all(topology)
    assert render_all(topology)["k8s-node2"] == render(topology, "k8s-node2", "/elsewhere")


# ---------------------------------------------------------------- the real BIRD parses every file set

SCENARIOS = {
    "mesh-ipip-always": lambda: lab(pool("Always")),
    "mesh-ipip-cross-subnet": lambda: lab(pool("CrossSubnet"), node3_ip="192.168.20.73/24"),
    "mesh-no-encap": lambda: lab(pool("Never")),
    "mesh-vxlan": lambda: lab(pool("Never", "CrossSubnet")),
    "route-reflector": lambda: lab(mesh=False, peers=(RR_PEER,), rr="244.0.0.1"),
    "rr-with-mesh-and-global": lambda: lab(peers=(RR_PEER, BGPPeer(name="tor", as_number=64513,
                                                                   peer_ip=ipaddress.IPv4Address("192.168.10.1"))),
                                           rr="244.0.0.1", log_severity="Debug"),
    "global-calico-node": lambda: lab(mesh=False, log_severity="Error",
                                      peers=(BGPPeer(name="to-node2", as_number=64512,
                                                     peer_ip=ipaddress.IPv4Address("192.168.10.72")),)),
}

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD 1.6 (apt-get install bird)")


def bird_parse(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bird", "-p", "-c", str(config)], cwd=cwd, capture_output=True, text=True, timeout=30)


@needs_bird
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_bird_parses(scenario, tmp_path):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    for node, files in render_all(SCENARIOS[scenario]()).items():
        directory = tmp_path / node
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
        result = bird_parse(directory / "bird.cfg", elsewhere)
        assert result.returncode == 0, f"{scenario}/{node}: {result.stderr}"


@needs_bird
def test_bird_resolves_includes_next_to_bird_cfg(tmp_path):
    # BIRD 1.6 resolves a relative include against the including file's directory, not the CWD:
    # parsing from another directory works, and it fails once an included file is missing or broken.
    directory = tmp_path / "k8s-node1"
    directory.mkdir()
    for name, text in render(lab(), "k8s-node1", str(directory)).items():
        (directory / name).write_text(text)
    assert bird_parse(directory / "bird.cfg", tmp_path).returncode == 0
    (directory / "bird_ipam.cfg").write_text("this is not BIRD\n")
    broken = bird_parse(directory / "bird.cfg", tmp_path)
    assert broken.returncode != 0 and "bird_ipam.cfg" in broken.stderr
    (directory / "bird_aggr.cfg").unlink()
    missing = bird_parse(directory / "bird.cfg", tmp_path)
    assert missing.returncode != 0 and str(directory / "bird_aggr.cfg") in missing.stderr
