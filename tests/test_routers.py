"""External BGP routers (ExaBGP) on the shipped calico-tor topology, under a unique lab name.

Everything asserted is read from the running lab's kernels, BIRD and sockets; what is expected comes
from the topology file (routers, racks, addresses, announcements) and, for each node's blocks, from
tests/expect_calico.py's reading of the same file (Calico's IPAM: pods in order, blockSize blocks).
Waits poll for a condition with a generous limit; nothing asserts how fast it happens.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import expect_calico
import pytest
import yaml
from calico_kernel import start_bird, stop_bird, wait_for
from conftest import TOPOLOGIES, netns_list, run_lab

pytestmark = pytest.mark.needs_root

RTPROT_BGP = "bgp"
UNDERLAY = "_underlay"          # the namespace of the lab's switches (docs/design.md)
WEB = "203.0.113.10"


class Tor:
    """What the topology file says about the lab: routers, nodes and their racks."""

    def __init__(self, path: Path, name: str) -> None:
        data = yaml.safe_load(path.read_text())
        self.path = path
        self.lab = name
        self.routers = {r["name"]: r for r in data["routers"]}
        self.nodes = {n["name"]: n for n in data["nodes"]}
        self.pods = {p["name"]: p for p in data["pods"]}
        self.rack_router = {r["network"]: name for name, r in self.routers.items()}
        self.blocks = {n.name: {str(b) for b in n.blocks} for n in expect_calico.load(path).nodes}

    def blocks_of(self, node: str) -> set[str]:
        """The node's blocks, as Calico's IPAM assigns them from the topology (never empty: every node has pods)."""
        found = self.blocks[node]
        assert found, f"the topology gives {node} no block: nothing to check"
        return found

    def tor_of(self, node: str) -> str:
        return self.rack_router[self.nodes[node]["network"]]

    def spine_ip(self, router: str) -> str:
        return next(link["ip"] for link in self.routers[router]["links"] if link["network"] == "spine")

    def netns(self, member: str) -> str:
        return f"{self.lab}.{member}"


def ip_json(netns: str, *argv: str) -> list[dict]:
    out = subprocess.run(["ip", "-n", netns, "-j", *argv], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def routes(netns: str) -> list[dict]:
    return ip_json(netns, "route", "show", "table", "main")


def rx_packets(netns: str, device: str) -> int:
    return ip_json(netns, "-s", "link", "show", "dev", device)[0]["stats64"]["rx"]["packets"]


@pytest.fixture(scope="module")
def tor(tmp_path_factory):
    name = f"rt{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("tor") / f"{name}.yaml"
    text = (TOPOLOGIES / "calico-tor.yaml").read_text().replace("name: calico-tor\n", f"name: {name}\n", 1)
    path.write_text(text)
    run_lab("up", str(path))
    try:
        run_lab("wait", name, "--timeout", "120")
        yield Tor(path, name)
    finally:
        run_lab("down", name, check=False)


def test_bird_sessions_with_the_tors_are_established_as_node_specific_peers(tor):
    for node in tor.nodes:
        router = tor.routers[tor.tor_of(node)]
        status = run_lab("calicoctl", "node", "status", node, "--lab", tor.lab).stdout
        rows = [line.split("|")[1:-1] for line in status.splitlines() if line.startswith("| ") and "PEER" not in line]
        cells = [[c.strip() for c in row] for row in rows]
        assert cells == [[router["ip"], "node specific", "up", cells[0][3], "Established"]], status


def test_every_switch_port_floods_multicast_once_the_lab_is_built(tor):
    """Nodes', routers' (each of their links) and external hosts' switch ports, held quiet while the lab is built
    (lab/netns/apply.py), all flood multicast again. A port is named after its host, a router's links' ports
    `<router>.<N>` (lab/cni/underlay.py)."""
    data = yaml.safe_load(tor.path.read_text())
    expected = {n["name"] for n in data["nodes"]} | {e["name"] for e in data.get("externals", [])}
    for router in data["routers"]:
        expected |= {router["name"]} | {f"{router['name']}.{i}" for i in range(1, len(router["links"]) + 1)}
    ports = json.loads(subprocess.run(["bridge", "-n", f"{tor.lab}.{UNDERLAY}", "-d", "-j", "link", "show"],
                                      capture_output=True, text=True, check=True).stdout)
    assert {port["ifname"]: port.get("mcast_flood") for port in ports} == {name: True for name in expected}


def test_exabgp_sessions_are_established_with_every_peer(tor):
    for name, router in tor.routers.items():
        out = subprocess.run(["ip", "netns", "exec", tor.netns(name), "ss", "-Htn", "state", "established"],
                             capture_output=True, text=True, check=True).stdout
        remote = {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines()
                  if ":179" in line}
        wanted = {tor.nodes[p]["ip"] if p in tor.nodes else tor.spine_ip(p) for p in router["peers"]}
        assert wanted <= remote, f"{name}: established BGP connections {remote}, expected {wanted}"
        processes = [pid for pid in os.listdir("/proc") if pid.isdigit()
                     and _in_netns(int(pid), tor.netns(name)) and b"exabgp" in _cmdline(int(pid))]
        assert processes, f"no exabgp process runs in {tor.netns(name)}"


def test_each_tor_kernel_routes_every_block_via_the_right_hop(tor):
    assert tor.routers and tor.nodes
    for name in tor.routers:
        installed = {r["dst"]: r for r in routes(tor.netns(name)) if r.get("protocol") == RTPROT_BGP}
        for node in tor.nodes:
            for block in tor.blocks_of(node):
                own = tor.tor_of(node) == name
                hop = tor.nodes[node]["ip"] if own else tor.spine_ip(tor.tor_of(node))
                assert block in installed, f"{name} has no proto bgp route to {node}'s block {block}"
                got = installed[block]["gateway"]
                assert got == hop, f"{name}: {block} via {got}, not {hop}"


def test_nodes_learn_the_announced_prefix_from_their_tor(tor):
    announced = tor.routers["tor-a"]["announce"]
    for node in tor.nodes:
        table = {r["dst"]: r for r in routes(tor.netns(node))}
        for prefix in announced:
            assert prefix in table, f"{node} has no route to {prefix}"
            assert table[prefix].get("protocol") == "bird", table[prefix]
            assert table[prefix]["gateway"] == tor.routers[tor.tor_of(node)]["ip"], table[prefix]


@pytest.mark.parametrize("pod", ["pa1", "pb1"])
def test_a_pod_reaches_the_external_host_through_the_tors(tor, pod):
    node = tor.pods[pod]["node"]
    path = [tor.tor_of(node)] + (["tor-a"] if tor.tor_of(node) != "tor-a" else [])
    before = {r: rx_packets(tor.netns(r), "eth0" if r == tor.tor_of(node) else "eth1") for r in path}
    ping = subprocess.run(["ip", "netns", "exec", tor.netns(f"default.{pod}"), "ping", "-c", "5", "-i", "0.2",
                           "-W", "2", WEB], capture_output=True, text=True)
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    for router, count in before.items():
        device = "eth0" if router == tor.tor_of(node) else "eth1"
        assert rx_packets(tor.netns(router), device) - count >= 5, f"the pings did not pass {router} {device}"


def test_pods_in_the_other_rack_are_reached_through_both_tors(tor):
    target = ip_json(tor.netns("default.pb1"), "-4", "addr", "show", "dev", "eth0")[0]["addr_info"][0]["local"]
    before = {"tor-a": rx_packets(tor.netns("tor-a"), "eth0"), "tor-b": rx_packets(tor.netns("tor-b"), "eth1")}
    ping = subprocess.run(["ip", "netns", "exec", tor.netns("default.pa1"), "ping", "-c", "5", "-i", "0.2", "-W", "2",
                           target], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert rx_packets(tor.netns("tor-a"), "eth0") - before["tor-a"] >= 5
    assert rx_packets(tor.netns("tor-b"), "eth1") - before["tor-b"] >= 5


def _has_prefix(tor: Tor, prefix: str) -> dict[str, bool]:
    return {node: any(r["dst"] == prefix and r.get("protocol") == "bird" for r in routes(tor.netns(node)))
            for node in tor.nodes}


def test_withdrawing_an_announcement_removes_it_from_every_node_and_announcing_restores_it(tor):
    prefix = tor.routers["tor-a"]["announce"][0]
    assert all(_has_prefix(tor, prefix).values())
    run_lab("bgp", "withdraw", "tor-a", prefix, "--lab", tor.lab)
    try:
        gone = wait_for(lambda: _has_prefix(tor, prefix), lambda got: not any(got.values()), 60, 0.2)
        assert not any(gone.values()), f"still routed after the withdrawal: {gone}"
        tor_b = {r["dst"] for r in routes(tor.netns("tor-b")) if r.get("protocol") == RTPROT_BGP}
        assert prefix not in tor_b
    finally:
        run_lab("bgp", "announce", "tor-a", prefix, "--lab", tor.lab)
    back = wait_for(lambda: _has_prefix(tor, prefix), lambda got: all(got.values()), 60, 0.2)
    assert all(back.values()), back


def test_a_new_announcement_reaches_every_node(tor):
    prefix = "198.51.100.0/24"
    run_lab("bgp", "announce", "tor-b", prefix, "--lab", tor.lab)
    try:
        got = wait_for(lambda: _has_prefix(tor, prefix), lambda got: all(got.values()), 60, 0.2)
        assert all(got.values()), got
    finally:
        run_lab("bgp", "withdraw", "tor-b", prefix, "--lab", tor.lab)
    gone = wait_for(lambda: _has_prefix(tor, prefix), lambda got: not any(got.values()), 60, 0.2)
    assert not any(gone.values()), gone


class Events:
    """`lab bgp monitor --json` in the background, its lines collected."""

    def __init__(self, lab: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "lab.cli", "bgp", "monitor", "--lab", lab, "--json"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.seen: list[dict] = []

    def until(self, ok, limit: int = 2000) -> dict | None:
        """Read events until one satisfies `ok` (None if the monitor ends first)."""
        for _ in range(limit):
            line = self.process.stdout.readline()
            if not line:
                return None
            event = json.loads(line)
            self.seen.append(event)
            if ok(event):
                return event
        return None

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def test_monitor_sees_a_block_withdrawn_when_bird_stops_and_announced_when_it_starts(tor):
    node = "node-a1"
    block = sorted(tor.blocks_of(node))[0]
    far = "tor-b"
    events = Events(tor.lab)
    try:
        first = events.until(lambda e: e["event"] == "update" and e["prefix"] == block and e["peer"] == far)
        assert first is not None, f"no UPDATE for {block} at {far}: {events.seen[-5:]}"
        assert first["next_hop"] == tor.spine_ip("tor-a") and first["as_path"] == [tor.routers["tor-a"]["asNumber"]]
        assert set(first) >= {"time", "peer", "peer_ip", "prefix", "next_hop", "as_path", "communities"}
        stop_bird(tor.lab, node)
        try:
            gone = events.until(lambda e: e["event"] == "withdraw" and e["prefix"] == block and e["peer"] == far)
            assert gone is not None, f"no WITHDRAW of {block} at {far}: {events.seen[-5:]}"
            assert gone["time"] >= first["time"]
        finally:
            start_bird(tor.lab, node)
        back = events.until(lambda e: e["event"] == "update" and e["prefix"] == block and e["peer"] == far)
        assert back is not None, f"no new UPDATE of {block} at {far}: {events.seen[-5:]}"
    finally:
        code, err = events.stop()
    assert code == 0, err
    assert f"{tor.lab}._bgpmon" not in netns_list(), "the monitor left its namespace"
    assert not Path(f"/run/lab/{tor.lab}/bgpmon").exists(), "the monitor left its files"


def test_monitor_with_duration_stops_by_itself_and_cleans_up(tor):
    result = run_lab("bgp", "monitor", "--lab", tor.lab, "--duration", "3")
    lines = result.stdout.splitlines()
    assert any("session up" in line for line in lines), result.stdout
    assert any("UPDATE" in line for line in lines), result.stdout
    assert f"{tor.lab}._bgpmon" not in netns_list()


def test_monitors_run_back_to_back(tor):
    """A monitor started the moment the previous one ended: its switch ports (`bgpmon<i>` in the underlay) must
    be gone, not waiting for the kernel's asynchronous cleanup of the old namespace (NetlinkError 17 before)."""
    underlay = tor.netns(UNDERLAY)
    for run in range(3):
        result = run_lab("bgp", "monitor", "--lab", tor.lab, "--duration", "1", check=False)
        assert result.returncode == 0, f"run {run + 1}: {result.stderr}"
    # the race made deterministic: the previous monitor's port still in the underlay, as while the kernel has
    # not yet cleaned its namespace up (`lab` owns the name `bgpmon<i>` there)
    subprocess.run(["ip", "-n", underlay, "link", "add", "bgpmon0", "type", "veth", "peer", "name", "bgpmonx"],
                   check=True)
    result = run_lab("bgp", "monitor", "--lab", tor.lab, "--duration", "1", check=False)
    assert result.returncode == 0, f"a leftover bgpmon0: {result.stderr}"
    assert f"{tor.lab}._bgpmon" not in netns_list()
    ports = [link["ifname"] for link in ip_json(underlay, "link") if link["ifname"].startswith("bgpmon")]
    assert not ports, "the monitor left its switch ports"


def test_lab_down_with_a_monitor_running_leaves_nothing(tmp_path):
    name = f"rd{secrets.token_hex(3)}"
    path = tmp_path / f"{name}.yaml"
    path.write_text((TOPOLOGIES / "calico-rr-external.yaml").read_text()
                    .replace("name: calico-rr-external\n", f"name: {name}\n", 1))
    run_lab("up", str(path))
    try:
        run_lab("wait", name, "--timeout", "120")
        events = Events(name)
        assert events.until(lambda e: e["event"] == "state" and e["state"] == "up") is not None
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and b"exabgp" in _cmdline(int(p))
                and f"/run/lab/{name}/".encode() in _cmdline(int(p))]
        assert len(pids) >= 2, "expected the edge's and the monitor's ExaBGP"
    finally:
        run_lab("down", name)
    events.process.wait(timeout=30)
    assert not [n for n in netns_list() if n.startswith(f"{name}.")]
    assert not Path(f"/run/lab/{name}").exists()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
    assert not alive, f"exabgp processes left: {alive}"


def test_the_reflector_peers_with_the_edge_router(tmp_path):
    name = f"re{secrets.token_hex(3)}"
    path = tmp_path / f"{name}.yaml"
    path.write_text((TOPOLOGIES / "calico-rr-external.yaml").read_text()
                    .replace("name: calico-rr-external\n", f"name: {name}\n", 1))
    data = yaml.safe_load(path.read_text())
    edge = data["routers"][0]
    run_lab("up", str(path))
    try:
        run_lab("wait", name, "--timeout", "120")
        status = run_lab("calicoctl", "node", "status", "k8s-node01", "--lab", name).stdout
        assert any(edge["ip"] in line and "node specific" in line and "Established" in line
                   for line in status.splitlines()), status
        rr = {r["dst"]: r for r in routes(f"{name}.k8s-node01")}
        assert rr[edge["announce"][0]]["gateway"] == edge["ip"] and rr[edge["announce"][0]]["protocol"] == "bird"
        edge_routes = {r["dst"]: r["gateway"] for r in routes(f"{name}.edge") if r.get("protocol") == RTPROT_BGP}
        rr_ip = next(n["ip"] for n in data["nodes"] if n["name"] == "k8s-node01")
        for node in data["nodes"]:
            for block in {r["dst"] for r in routes(f"{name}.{node['name']}") if r.get("type") == "blackhole"}:
                assert edge_routes.get(block) == rr_ip, f"edge: {block} -> {edge_routes.get(block)}"
    finally:
        run_lab("down", name)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return "gone"


def _in_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False




def test_a_global_bgppeer_to_a_router_shows_as_global_beside_the_mesh(tmp_path):
    """The shipped calico-global-peer (README's walkthrough): a BGPPeer without node or nodeSelector."""
    name = f"rg{secrets.token_hex(3)}"
    source = (TOPOLOGIES / "calico-global-peer.yaml").read_text()
    data = yaml.safe_load(source)
    peer = next(d["spec"] for d in data["resources"] if d["kind"] == "BGPPeer")
    assert "nodeSelector" not in peer and "node" not in peer, "the shipped peer must be a global one"
    router = next(r for r in data["routers"] if r["ip"] == peer["peerIP"])
    nodes = {n["name"]: n["ip"] for n in data["nodes"]}
    assert len(nodes) >= 2 and router["announce"]
    path = tmp_path / f"{name}.yaml"
    path.write_text(source.replace("name: calico-global-peer\n", f"name: {name}\n", 1))
    run_lab("up", str(path))
    try:
        run_lab("wait", name, "--timeout", "120")
        for node in nodes:
            status = run_lab("calicoctl", "node", "status", node, "--lab", name).stdout
            rows = {tuple(c.strip() for c in line.split("|")[1:-1])[:3] + (line.split("|")[5].strip(),)
                    for line in status.splitlines() if line.startswith("| ") and "PEER" not in line}
            assert rows == {(router["ip"], "global", "up", "Established")} | {
                (ip, "node-to-node mesh", "up", "Established") for other, ip in nodes.items() if other != node}, status
            table = {r["dst"]: r for r in routes(f"{name}.{node}")}
            for prefix in router["announce"]:
                assert table[prefix]["gateway"] == router["ip"] and table[prefix]["protocol"] == "bird"
    finally:
        run_lab("down", name)


def test_lab_trace_walks_through_both_tors(tor):
    trace = json.loads(run_lab("trace", "default/pb1", "web", "--lab", tor.lab, "--json").stdout)
    where = [hop["where"] for hop in trace["hops"]]
    assert trace["outcome"] == "delivered", trace["explanation"]
    routers = [w for w in where if w.startswith("router ")]
    assert routers == ["router tor-b", "router tor-a"], where


def _protocols(lab: str, node: str) -> set[str]:
    out = run_lab("birdc", node, "show", "protocols", "--lab", lab).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


def test_monitor_is_a_reflector_client_in_a_lab_without_routers(tmp_path):
    """calico-rr: the monitor peers with the reflector as its client and sees every node's block; a
    stopped BIRD's block is withdrawn and comes back; the reflector's BIRD is left with bird.cfg alone."""
    name = f"rm{secrets.token_hex(3)}"
    path = tmp_path / f"{name}.yaml"
    path.write_text((TOPOLOGIES / "calico-rr.yaml").read_text().replace("name: calico-rr\n", f"name: {name}\n", 1))
    data = yaml.safe_load(path.read_text())
    reflector = next(n["name"] for n in data["nodes"] if n.get("labels", {}).get("route-reflector") == "true")
    victim = next(n["name"] for n in data["nodes"] if n["name"] not in (reflector, "k8s-master01"))
    run_lab("up", str(path))
    try:
        run_lab("wait", name, "--timeout", "120")
        blocks = {n["name"]: {r["dst"] for r in routes(f"{name}.{n['name']}") if r.get("type") == "blackhole"}
                  for n in data["nodes"]}
        block = sorted(blocks[victim])[0]
        events = Events(name)
        try:
            seen: set[str] = set()
            every = set().union(*blocks.values())
            done = events.until(lambda e: e["event"] == "update" and e["peer"] == reflector
                                and (seen.add(e["prefix"]) or every <= seen))
            assert done is not None, f"the monitor saw {seen}, not every block {every}"
            assert "Lab_monitor" in _protocols(name, reflector)
            stop_bird(name, victim)
            try:
                gone = events.until(lambda e: e["event"] == "withdraw" and e["prefix"] == block)
                assert gone is not None and gone["peer"] == reflector, events.seen[-5:]
            finally:
                start_bird(name, victim)
            back = events.until(lambda e: e["event"] == "update" and e["prefix"] == block)
            assert back is not None, events.seen[-5:]
        finally:
            code, err = events.stop()
        assert code == 0, err
        assert "Lab_monitor" not in _protocols(name, reflector), "the reflector kept the monitor's session"
        config_dir = Path(f"/run/lab/{name}/files/{reflector}/etc/calico/confd/config")
        assert not (config_dir / "lab_monitor.cfg").exists()
        assert f"{name}._bgpmon" not in netns_list()
    finally:
        run_lab("down", name)


def test_a_live_change_of_a_router_peer_s_as_is_refused(tor, tmp_path):
    manifest = tmp_path / "node-as.yaml"
    manifest.write_text("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node-b1}\n"
                        "spec: {bgp: {asNumber: 65009}}\n")
    config = Path(f"/run/lab/{tor.lab}/files/node-b1/etc/calico/confd/config/bird.cfg")
    before = config.read_text()
    result = run_lab("apply", "-f", str(manifest), "--lab", tor.lab, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "router tor-b's BGP sessions (node-b1 AS 65002 -> 65009)" in result.stderr, result.stderr
    assert config.read_text() == before


def test_lab_graph_draws_the_routers_and_their_live_sessions(tor, tmp_path):
    out = tmp_path / "tor.svg"
    run_lab("graph", tor.lab, "-o", str(out))
    svg = out.read_text()
    for name in tor.routers:
        assert f'id="external-{name}"' in svg
    sessions = sum(len(r["peers"]) for r in tor.routers.values()) - 1      # tor-a <-> tor-b drawn once
    assert f"BGP session (peer): {sessions}, {sessions} Established" in svg
    assert "refused" not in svg, "blocks across the racks travel through the ToRs, not refused direct routes"


def _daemon_row(lab: str, name: str) -> dict:
    status = json.loads(run_lab("status", lab, "--json", check=False).stdout)
    return next(row for row in status["supervisor"]["daemons"] if row["name"] == name)


def test_an_exabgp_killed_with_sigkill_comes_back_and_relearns_its_routes(tor):
    """The supervisor restarts a router's ExaBGP as it restarts BIRD; the new helper starts from an empty RIB
    (its predecessor's routes flushed) and learns every block again."""
    row = _daemon_row(tor.lab, "exabgp/tor-b")
    old, restarts = row["pid"], row["restarts"]
    assert row["state"] == "running" and old
    os.kill(old, signal.SIGKILL)
    row = wait_for(lambda: _daemon_row(tor.lab, "exabgp/tor-b"),
                   lambda r: r["state"] == "running" and r["pid"] not in (None, old), 60, 0.5)
    assert row["state"] == "running" and row["restarts"] == restarts + 1, row
    text = run_lab("status", tor.lab).stdout
    line = next(line for line in text.splitlines() if line.startswith("exabgp/tor-b "))
    assert line.split()[1:4] == ["running", str(row["pid"]), str(restarts + 1)], line

    def blocks_at_tor_b() -> set[str]:
        return {r["dst"] for r in routes(tor.netns("tor-b")) if r.get("protocol") == RTPROT_BGP}
    wanted = set().union(*(tor.blocks_of(node) for node in tor.nodes))
    assert len(wanted) >= len(tor.nodes), wanted
    back = wait_for(blocks_at_tor_b, lambda got: wanted <= got, 120, 0.5)
    assert wanted <= back, f"tor-b has {back}, not every block {wanted}"
    run_lab("wait", tor.lab, "--timeout", "120")
