"""Which BGP sessions confd gives each node (lab.cni.calico.peers); pure, no root.

Expected values come from the reference (dataplane-fidelity.md §4.3, §4.4) and from the topologies
built here, never from the code under test.
"""

from __future__ import annotations

import ipaddress
from itertools import combinations

from lab.cni.calico.peers import peerings
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

POOL = IPPool(name="default-ipv4-ippool", cidr=ipaddress.IPv4Network("10.244.0.0/16"), ipip_mode="Always")
RR_LABEL = {"route-reflector": "true"}
TO_REFLECTORS = BGPPeer(name="peer-with-route-reflectors", node_selector="all()",
                        peer_selector="route-reflector == 'true'")


def lab(nodes: list[tuple], mesh: bool = True, peers: tuple[BGPPeer, ...] = (), as_number: int = 64512) -> Topology:
    """A Calico topology on 192.168.10.0/24: nodes are (name, last octet, labels, rr cluster id, AS)."""
    network = Network(name="underlay", cidr=ipaddress.IPv4Network("192.168.10.0/24"),
                      gateway=ipaddress.IPv4Address("192.168.10.1"))
    topo_nodes, calico_nodes = [], []
    for name, octet, labels, cluster_id, node_as in (n + (None,) * (5 - len(n)) for n in nodes):
        ip = ipaddress.IPv4Address(f"192.168.10.{octet}")
        topo_nodes.append(Node(name=name, network="underlay", ip=ip, labels=frozen_labels(labels or {})))
        calico_nodes.append(CalicoNode(name=name, ipv4_address=ipaddress.IPv4Interface(f"{ip}/24"),
                                       as_number=node_as, rr_cluster_id=cluster_id))
    calico = CalicoConfig(pools=(POOL,), bgp=BGPConfiguration(node_to_node_mesh=mesh, as_number=as_number),
                          peers=peers, nodes=tuple(calico_nodes),
                          ipam=CalicoIpam(blocks=frozen_labels({}), tunnel_ips=frozen_labels({})))
    return Topology(name="calico-test", source="<test>", cluster=Cluster(cni="calico", config=calico),
                    networks=(network,), nodes=tuple(topo_nodes), namespaces=(), pods=())


def ip(octet: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"192.168.10.{octet}")


def by_name(sessions) -> dict:
    return {p.name: p for p in sessions}


REFERENCE_LAB = [("k8s-node1", 71), ("k8s-node2", 72), ("k8s-node3", 73)]


def test_reference_mesh_passive_sides():
    # §4.3: node1 (.71) is passive towards .72 and .73; node3 (.73) actively connects to both.
    result = peerings(lab(REFERENCE_LAB))
    assert [(p.name, p.passive) for p in result["k8s-node1"]] == [("Mesh_192_168_10_72", True),
                                                                  ("Mesh_192_168_10_73", True)]
    assert [(p.name, p.passive) for p in result["k8s-node3"]] == [("Mesh_192_168_10_71", False),
                                                                  ("Mesh_192_168_10_72", False)]
    assert [(p.name, p.passive) for p in result["k8s-node2"]] == [("Mesh_192_168_10_71", False),
                                                                  ("Mesh_192_168_10_73", True)]
    for p in result["k8s-node1"]:
        assert (p.kind, p.as_number, p.rr_cluster_id, p.source) == ("mesh", 64512, None, "node-to-node mesh")


def test_full_mesh_counts_and_one_passive_side_per_pair():
    # Octets chosen so that string order differs from numeric order: "…10.100" < "…10.71" < "…10.9".
    octets = [9, 71, 72, 100, 201, 3]
    nodes = [(f"node-{o}", o) for o in octets]
    result = peerings(lab(nodes))
    assert set(result) == {name for name, _ in nodes}
    for name, octet in nodes:
        sessions = result[name]
        assert len(sessions) == len(nodes) - 1
        assert {p.ip for p in sessions} == {ip(o) for o in octets if o != octet}
        assert all(p.kind == "mesh" and p.name == f"Mesh_192_168_10_{p.ip.packed[3]}" for p in sessions)
    for (a, oa), (b, ob) in combinations(nodes, 2):
        a_passive = by_name(result[a])[f"Mesh_192_168_10_{ob}"].passive
        b_passive = by_name(result[b])[f"Mesh_192_168_10_{oa}"].passive
        assert a_passive != b_passive                              # exactly one side waits
        assert a_passive == (f"192.168.10.{ob}" > f"192.168.10.{oa}")   # Go string comparison
    # "192.168.10.9" > "192.168.10.100" as strings, so node-100 waits for node-9 to connect.
    assert by_name(result["node-100"])["Mesh_192_168_10_9"].passive is True
    assert by_name(result["node-9"])["Mesh_192_168_10_100"].passive is False


def test_mesh_disabled_and_no_peers_means_no_sessions():
    result = peerings(lab(REFERENCE_LAB, mesh=False))
    assert result == {"k8s-node1": (), "k8s-node2": (), "k8s-node3": ()}


def test_reference_route_reflector():
    # §4.4: node1 RR (cluster 244.0.0.1), mesh off, BGPPeer nodeSelector all() / peerSelector RR.
    nodes = [("k8s-node1", 71, RR_LABEL, "244.0.0.1"), ("k8s-node2", 72), ("k8s-node3", 73)]
    result = peerings(lab(nodes, mesh=False, peers=(TO_REFLECTORS,)))
    node1 = result["k8s-node1"]
    assert [p.name for p in node1] == ["Node_192_168_10_72", "Node_192_168_10_73"]   # no self-peering
    assert all(p.kind == "node" and p.rr_cluster_id == "244.0.0.1" and p.as_number == 64512 for p in node1)
    for client in ("k8s-node2", "k8s-node3"):
        assert [(p.name, p.kind, p.rr_cluster_id) for p in result[client]] == [("Node_192_168_10_71", "node", None)]


def test_route_reflectors_k_of_n():
    n, k = 7, 3
    reflectors = [(f"rr-{i}", 10 + i, RR_LABEL, "244.0.0.1") for i in range(k)]
    clients = [(f"client-{i}", 100 + i) for i in range(n - k)]
    result = peerings(lab(reflectors + clients, mesh=False, peers=(TO_REFLECTORS,)))
    rr_ips = {ip(r[1]) for r in reflectors}
    client_ips = {ip(c[1]) for c in clients}
    for name, _octet in clients:
        sessions = result[name]
        assert len(sessions) == k
        assert {p.ip for p in sessions} == rr_ips
        assert all(p.kind == "node" and p.rr_cluster_id is None and not p.passive for p in sessions)
    for name, octet, *_ in reflectors:
        sessions = result[name]
        to_clients = [p for p in sessions if p.ip in client_ips]
        to_reflectors = [p for p in sessions if p.ip in rr_ips]
        assert len(sessions) == (n - k) + (k - 1)
        assert len(to_clients) == n - k and all(p.rr_cluster_id == "244.0.0.1" for p in to_clients)
        assert len(to_reflectors) == k - 1 and all(p.rr_cluster_id is None for p in to_reflectors)
        assert ip(octet) not in {p.ip for p in sessions}


def test_reflectors_are_left_out_of_an_enabled_mesh():
    # §4.3: mesh peers are the other nodes without a cluster ID; a reflector gets no mesh at all.
    nodes = [("a", 71), ("b", 72), ("rr", 73, RR_LABEL, "244.0.0.1")]
    result = peerings(lab(nodes, mesh=True, peers=(TO_REFLECTORS,)))
    assert [p.name for p in result["a"]] == ["Mesh_192_168_10_72", "Node_192_168_10_73"]
    assert [p.name for p in result["b"]] == ["Mesh_192_168_10_71", "Node_192_168_10_73"]
    assert [p.name for p in result["rr"]] == ["Node_192_168_10_71", "Node_192_168_10_72"]
    assert all(p.kind == "node" and p.rr_cluster_id == "244.0.0.1" for p in result["rr"])


def test_global_external_peer_on_every_node():
    tor = BGPPeer(name="tor", peer_ip=ipaddress.IPv4Address("192.168.10.1"), as_number=64513)
    result = peerings(lab(REFERENCE_LAB, mesh=False, peers=(tor,)))
    for name, _ in REFERENCE_LAB:
        assert [(p.name, p.kind, p.ip, p.as_number, p.passive, p.rr_cluster_id, p.source) for p in result[name]] == [
            ("Global_192_168_10_1", "global", ip(1), 64513, False, None, "tor")]


def test_global_peer_that_is_a_calico_node_and_its_reverse_peerings():
    to_node2 = BGPPeer(name="to-node2", peer_ip=ip(72), as_number=64512)
    result = peerings(lab(REFERENCE_LAB, mesh=False, peers=(to_node2,)))
    # Every node has the global key; a Calico-node peer with a higher IP string makes this side passive.
    assert [(p.name, p.passive) for p in result["k8s-node1"]] == [("Global_192_168_10_72", True)]
    assert [(p.name, p.passive) for p in result["k8s-node3"]] == [("Global_192_168_10_72", False)]
    # node2 skips itself and gets the reverse peerings towards every node (all(), as the peer is global).
    assert [(p.name, p.kind) for p in result["k8s-node2"]] == [("Node_192_168_10_71", "node"),
                                                               ("Node_192_168_10_73", "node")]


def test_node_and_node_selector_peers():
    nodes = [("k8s-node1", 71, {"rack": "a"}), ("k8s-node2", 72, {"rack": "b"}), ("k8s-node3", 73, {"rack": "a"})]
    spine = BGPPeer(name="spine-a", peer_ip=ipaddress.IPv4Address("10.0.0.1"), as_number=65001,
                    node_selector="rack == 'a'")
    only2 = BGPPeer(name="only-node2", peer_ip=ipaddress.IPv4Address("10.0.0.2"), as_number=65002, node="k8s-node2")
    result = peerings(lab(nodes, mesh=False, peers=(spine, only2)))
    assert [(p.name, p.kind, p.as_number, p.source) for p in result["k8s-node1"]] == [
        ("Node_10_0_0_1", "node", 65001, "spine-a")]
    assert [p.name for p in result["k8s-node3"]] == ["Node_10_0_0_1"]
    assert [(p.name, p.source) for p in result["k8s-node2"]] == [("Node_10_0_0_2", "only-node2")]


def test_peer_selector_between_groups_adds_reverse_peerings():
    nodes = [("k8s-node1", 71, {"group": "one"}), ("k8s-node2", 72, {"group": "two"}),
             ("k8s-node3", 73, {"group": "two"})]
    one_to_two = BGPPeer(name="one-to-two", node_selector="group == 'one'", peer_selector="group == 'two'")
    result = peerings(lab(nodes, mesh=False, peers=(one_to_two,)))
    assert [p.name for p in result["k8s-node1"]] == ["Node_192_168_10_72", "Node_192_168_10_73"]
    for name in ("k8s-node2", "k8s-node3"):
        assert [(p.name, p.source) for p in result[name]] == [
            ("Node_192_168_10_71", "one-to-two (automatic reverse peering)")]


def test_global_peer_selector_skips_self_and_is_never_passive():
    everyone = BGPPeer(name="everyone", peer_selector="all()")
    result = peerings(lab(REFERENCE_LAB, mesh=False, peers=(everyone,)))
    for name, octet in REFERENCE_LAB:
        sessions = result[name]
        assert {p.ip for p in sessions} == {ip(o) for _, o in REFERENCE_LAB if o != octet}
        assert all(p.kind == "global" and not p.passive for p in sessions)


def test_duplicates_are_merged_and_global_wins_over_node_specific():
    tor = ipaddress.IPv4Address("10.0.0.1")
    peers = (BGPPeer(name="a-global", peer_ip=tor, as_number=65001),
             BGPPeer(name="b-node", peer_ip=tor, as_number=65001, node="k8s-node1"),
             BGPPeer(name="c-selector", peer_ip=tor, as_number=65001, node_selector="all()"),
             BGPPeer(name="d-again", peer_ip=ipaddress.IPv4Address("10.0.0.2"), as_number=65002, node="k8s-node2"),
             BGPPeer(name="e-again", peer_ip=ipaddress.IPv4Address("10.0.0.2"), as_number=65002,
                     node_selector="all()"))
    result = peerings(lab(REFERENCE_LAB, mesh=False, peers=peers))
    assert [(p.name, p.source) for p in result["k8s-node1"]] == [("Global_10_0_0_1", "a-global"),
                                                                 ("Node_10_0_0_2", "e-again")]
    assert [p.name for p in result["k8s-node2"]] == ["Global_10_0_0_1", "Node_10_0_0_2"]


def test_rr_client_rule():
    # v3.28: rr client when same AS, this node has a cluster ID and the peer's is empty or different.
    nodes = [("rr-a", 71, {"rr": "a"}, "244.0.0.1"), ("rr-b", 72, {"rr": "b"}, "244.0.0.2"),
             ("rr-a2", 73, {"rr": "a"}, "244.0.0.1")]
    peers = (BGPPeer(name="mesh-of-rrs", node_selector="has(rr)", peer_selector="has(rr)"),
             BGPPeer(name="ibgp-tor", peer_ip=ipaddress.IPv4Address("10.0.0.1"), as_number=64512),
             BGPPeer(name="ebgp-tor", peer_ip=ipaddress.IPv4Address("10.0.0.2"), as_number=65000))
    sessions = by_name(peerings(lab(nodes, mesh=True, peers=peers))["rr-a"])
    assert set(sessions) == {"Global_10_0_0_1", "Global_10_0_0_2", "Node_192_168_10_72", "Node_192_168_10_73"}
    assert sessions["Global_10_0_0_1"].rr_cluster_id == "244.0.0.1"      # iBGP, peer has no cluster ID
    assert sessions["Global_10_0_0_2"].rr_cluster_id is None            # eBGP
    assert sessions["Node_192_168_10_72"].rr_cluster_id == "244.0.0.1"  # other cluster ID
    assert sessions["Node_192_168_10_73"].rr_cluster_id is None         # same cluster ID


def test_node_as_numbers():
    nodes = [("k8s-node1", 71, {}, None, 65001), ("k8s-node2", 72), ("k8s-node3", 73, {}, None, 65003)]
    result = peerings(lab(nodes, as_number=64600))
    assert [(p.name, p.as_number) for p in result["k8s-node2"]] == [("Mesh_192_168_10_71", 65001),
                                                                    ("Mesh_192_168_10_73", 65003)]
    assert [(p.name, p.as_number) for p in result["k8s-node1"]] == [("Mesh_192_168_10_72", 64600),
                                                                    ("Mesh_192_168_10_73", 65003)]
