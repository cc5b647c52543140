"""Routers without root: the model of `routers:`, the BIRD configuration Calico renders for external peers,
and the API helper's routing decisions on ExaBGP's JSON (the same lines ExaBGP 5 writes)."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from conftest import TOPOLOGIES

from lab.bgp import exabgp_api, monitor
from lab.cni.calico import birdcfg
from lab.topology import loader

TOR = TOPOLOGIES / "calico-tor.yaml"


@pytest.fixture(scope="module")
def tor():
    return loader.load(str(TOR))


def test_routers_follow_the_topology_file(tor):
    data = yaml.safe_load(TOR.read_text())
    for entry, router in zip(data["routers"], tor.routers, strict=True):
        assert (router.name, router.network, str(router.ip), router.as_number) == \
            (entry["name"], entry["network"], entry["ip"], entry["asNumber"])
        assert [str(p) for p in router.announce] == entry.get("announce", [])
        assert [p.name for p in router.peers] == entry["peers"]
        nodes = {n["name"]: n["ip"] for n in data["nodes"]}
        for peer in router.peers:
            if peer.kind == "node":
                assert str(peer.ip) == nodes[peer.name] and str(peer.local_ip) == entry["ip"]
            else:
                other = next(r for r in data["routers"] if r["name"] == peer.name)
                assert str(peer.ip) == other["links"][0]["ip"]        # the spine, which both share
                assert peer.as_number == other["asNumber"]


def test_the_monitor_address_is_free_on_the_router_s_network(tor):
    taken = {str(n.ip) for n in tor.nodes} | {str(r.ip) for r in tor.routers}
    for router in tor.routers:
        network = tor.network(router.network)
        assert router.monitor_ip in network.cidr and str(router.monitor_ip) not in taken
        assert router.monitor_ip != network.gateway


def test_nodes_peer_with_their_tor_as_node_specific_peers_in_their_rack_s_as(tor):
    data = yaml.safe_load(TOR.read_text())
    tor_of = {r["network"]: r for r in data["routers"]}
    for node in data["nodes"]:
        router = tor_of[node["network"]]
        text = birdcfg.bird_cfg(tor, node["name"])
        name = "Node_" + router["ip"].replace(".", "_")
        assert f"protocol bgp {name} from bgp_template {{" in text
        assert f"  neighbor {router['ip']} as {router['asNumber']};" in text
        assert f"  local as {router['asNumber']};" in text       # AS per rack: the ToR's
        assert "# Node-to-node mesh disabled" in text
        assert "Mesh_" not in text and "# No global peers configured." in text
        assert "calico_export_to_bgp_peers(true);" in text       # iBGP with the ToR


def test_a_global_bgppeer_renders_a_global_protocol_on_every_node(tmp_path):
    text = TOR.read_text() + """\
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata: {name: upstream}
    spec: {peerIP: 10.255.0.11, asNumber: 65001}
"""
    path = tmp_path / "tor-global.yaml"
    path.write_text(text)
    topology = loader.load(str(path))
    for node in topology.nodes:
        cfg = birdcfg.bird_cfg(topology, node.name)
        assert "protocol bgp Global_10_255_0_11 from bgp_template {" in cfg
        assert "# For peer /bgp/v1/global/peer_v4/10.255.0.11" in cfg


# -- the API helper ---------------------------------------------------------------------------------
SPEC = {"router": "tor-a", "as_number": 65001, "router_id": "192.168.10.2", "announce": ["203.0.113.0/24"],
        "peers": [{"ip": "192.168.10.11", "as_number": 65001, "local_ip": "192.168.10.2", "name": "n1", "kind": "node"},
                  {"ip": "192.168.10.12", "as_number": 65001, "local_ip": "192.168.10.2", "name": "n2", "kind": "node"},
                  {"ip": "10.255.0.12", "as_number": 65002, "local_ip": "10.255.0.11", "name": "tor-b",
                   "kind": "router"}],
        "monitor": "192.168.10.254"}


class Kernel:
    def __init__(self) -> None:
        self.routes: dict[str, str] = {}

    def route(self, verb: str, dst: str, proto: int, gateway: str | None = None) -> None:
        assert proto == exabgp_api.RTPROT_BGP
        if verb == "del":
            self.routes.pop(dst)
        else:
            self.routes[dst] = gateway


def update(peer: str, announce: dict[str, list[str]] | None = None, withdraw: list[str] | None = None,
           as_path: list[int] | None = None) -> str:
    """An UPDATE as ExaBGP 5's JSON encoder writes it."""
    message: dict = {"update": {"attribute": {"origin": "igp", "as-path": {"0": {"element": "as-sequence",
                                                                              "value": as_path or []}}}}}
    if announce:
        message["update"]["announce"] = {"ipv4 unicast": {hop: [{"nlri": p} for p in prefixes]
                                                          for hop, prefixes in announce.items()}}
    if withdraw:
        message["update"]["withdraw"] = {"ipv4 unicast": [{"nlri": p} for p in withdraw]}
    return json.dumps({"exabgp": "5.0.0", "time": 1.5, "type": "update", "neighbor": {
        "address": {"local": "x", "peer": peer}, "direction": "receive", "message": message}})


def state(peer: str, value: str) -> str:
    return json.dumps({"exabgp": "5.0.0", "time": 2.0, "type": "state",
                       "neighbor": {"address": {"local": "x", "peer": peer}, "state": value}})


def router() -> tuple[exabgp_api.Router, io.StringIO, Kernel]:
    out, kernel = io.StringIO(), Kernel()
    r = exabgp_api.Router(SPEC, out, kernel)
    r.start()
    return r, out, kernel


def feed(r: exabgp_api.Router, out: io.StringIO, line: str) -> list[str]:
    out.seek(0)
    out.truncate()
    r.handle(exabgp_api.parse(line))
    return out.getvalue().splitlines()


def test_own_prefixes_go_to_every_peer_and_the_monitor_next_hop_self():
    _, out, kernel = router()
    lines = out.getvalue().splitlines()
    for peer in ("192.168.10.11", "192.168.10.12", "10.255.0.12", "192.168.10.254"):
        assert any(line.startswith(f"neighbor {peer} announce route 203.0.113.0/24 next-hop self") for line in lines)
    assert kernel.routes == {}       # its own prefix is connected, not installed


def test_a_client_s_block_is_installed_reflected_and_sent_over_ebgp_with_next_hop_self():
    r, out, kernel = router()
    lines = feed(r, out, update("192.168.10.11", {"192.168.10.11": ["10.244.0.0/26"]}))
    assert kernel.routes == {"10.244.0.0/26": "192.168.10.11"}
    reflected = next(line for line in lines if line.startswith("neighbor 192.168.10.12 "))
    assert "next-hop 192.168.10.11" in reflected and "originator-id 192.168.10.11" in reflected
    assert "cluster-list [ 192.168.10.2 ]" in reflected
    assert any(line.startswith("neighbor 10.255.0.12 announce route 10.244.0.0/26 next-hop self") for line in lines)
    assert not any(line.startswith("neighbor 192.168.10.11 ") for line in lines)    # never back to its source


def test_an_ebgp_route_goes_to_clients_next_hop_self_and_keeps_its_as_path():
    r, out, kernel = router()
    lines = feed(r, out, update("10.255.0.12", {"10.255.0.12": ["10.244.0.128/26"]}, as_path=[65002]))
    assert kernel.routes == {"10.244.0.128/26": "10.255.0.12"}
    assert any(line.startswith("neighbor 192.168.10.11 announce route 10.244.0.128/26 next-hop self")
               and "as-path [ 65002 ]" in line for line in lines)
    monitor_line = next(line for line in lines if line.startswith("neighbor 192.168.10.254 "))
    assert "next-hop 10.255.0.12" in monitor_line and "as-path [ 65002 ]" in monitor_line


def test_a_route_with_its_own_as_is_dropped():
    r, out, kernel = router()
    lines = feed(r, out, update("10.255.0.12", {"10.255.0.12": ["10.244.0.0/26"]}, as_path=[65002, 65001]))
    assert kernel.routes == {} and not any("announce" in line for line in lines)


def test_a_session_going_down_withdraws_its_routes_everywhere():
    r, out, kernel = router()
    feed(r, out, update("192.168.10.11", {"192.168.10.11": ["10.244.0.0/26"]}))
    lines = feed(r, out, state("192.168.10.11", "down"))
    assert kernel.routes == {}
    for peer in ("192.168.10.12", "10.255.0.12", "192.168.10.254"):
        assert f"neighbor {peer} withdraw route 10.244.0.0/26" in lines


def test_a_withdrawal_falls_back_to_the_next_best_path():
    r, out, kernel = router()
    feed(r, out, update("192.168.10.11", {"192.168.10.11": ["198.51.100.0/24"]}, as_path=[64999]))
    feed(r, out, update("10.255.0.12", {"10.255.0.12": ["198.51.100.0/24"]}, as_path=[65002, 64999]))
    assert kernel.routes["198.51.100.0/24"] == "192.168.10.11"            # shorter AS path
    feed(r, out, update("192.168.10.11", withdraw=["198.51.100.0/24"]))
    assert kernel.routes["198.51.100.0/24"] == "10.255.0.12"


def test_a_reloaded_spec_withdraws_a_dropped_announcement():
    r, out, _ = router()
    out.seek(0)
    out.truncate()
    r.reload({**SPEC, "announce": []})
    lines = out.getvalue().splitlines()
    assert "neighbor 10.255.0.12 withdraw route 203.0.113.0/24" in lines
    assert "neighbor 192.168.10.11 withdraw route 203.0.113.0/24" in lines


def test_the_observer_writes_one_event_per_prefix():
    events: list[dict] = []
    lines = [state("192.168.20.2", "up"),
             update("192.168.20.2", {"10.255.0.11": ["10.244.0.0/26", "10.244.0.64/26"]}, as_path=[65001]),
             update("192.168.20.2", withdraw=["10.244.0.0/26"])]
    monitor.observe(iter(lines), {"192.168.20.2": "tor-b"}, events.append)
    assert [e["event"] for e in events] == ["state", "update", "update", "withdraw"]
    assert events[1] == {"time": 1.5, "peer": "tor-b", "peer_ip": "192.168.20.2", "event": "update",
                         "prefix": "10.244.0.0/26", "next_hop": "10.255.0.11", "as_path": [65001], "communities": []}
    assert "WITHDRAW 10.244.0.0/26" in monitor.line(events[3])


BIRD_SHOW_PROTOCOLS_ALL = """\
name     proto    table    state  since       info
Mesh_192_168_10_12 BGP      master   up     18:24:02    Established
  Description:    Connection to BGP peer
  BGP state:          Established
    Neighbor address: 192.168.10.12
    Neighbor AS:      64512
    Hold timer:       200/240
    Keepalive timer:  10/80
Node_192_168_10_2 BGP      master   up     18:24:02    Established
  Description:    Connection to BGP peer
  BGP state:          Established
    Neighbor address: 192.168.10.2
    Neighbor AS:      65001
    Hold timer:       133/180
    Keepalive timer:  43/60
Node_192_168_10_3 BGP      master   start  18:24:02    Active
  Description:    Connection to BGP peer
  BGP state:          Active
    Neighbor address: 192.168.10.3
"""


def test_the_benchmark_reads_the_hold_time_the_session_negotiated():
    """scripts/bench_bgp_tor.py's link-down target is the session's hold time (BIRD's `Hold timer: left/hold`,
    the BIRD 1.6 format), not BIRD's 240 s default: ExaBGP's 180 s offer wins on calico-tor."""
    import sys
    sys.path.insert(0, str(TOPOLOGIES.parent / "scripts"))
    import bench_bgp_tor
    assert bench_bgp_tor.parse_timers(BIRD_SHOW_PROTOCOLS_ALL, "192.168.10.2") == (180, 60)
    assert bench_bgp_tor.parse_timers(BIRD_SHOW_PROTOCOLS_ALL, "192.168.10.12") == (240, 80)
    assert bench_bgp_tor.parse_timers(BIRD_SHOW_PROTOCOLS_ALL, "192.168.10.3") is None    # not established
    assert bench_bgp_tor.parse_timers(BIRD_SHOW_PROTOCOLS_ALL, "192.168.10.99") is None
