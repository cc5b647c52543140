"""The route agent against hand-built namespaces: two nodes joined by a veth pair, each with a
persistent TUN tunl0 and a Calico-style pod behind a cali veth; BIRD's table 201 is written by hand.
The agent's own route codec is checked against pyroute2's, as tests/test_fastmsg.py does for fastmsg."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from capture import tcpdump
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from lab.bgp.route import Route
from lab.cni.calico.mirror import Mirror
from lab.netns import namespace, tun
from lab.netns.rtnl import RTM_DELROUTE, RTM_NEWROUTE, RTNH_F_ONLINK

REPO = Path(__file__).resolve().parents[1]
TABLE = "201"
PREFIX = f"tB-{os.getpid() % 0xFFFF:04x}"
N1, N2, N3 = f"{PREFIX}-n1", f"{PREFIX}-n2", f"{PREFIX}-n3"
P1, P2 = f"{PREFIX}-p1", f"{PREFIX}-p2"
NODE_IP = {N1: "192.168.77.1", N2: "192.168.77.2"}
TUNL0_IP = {N1: "10.99.1.0", N2: "10.99.2.0"}
BLOCK = {N1: "10.99.1.0/26", N2: "10.99.2.0/26"}
POD_IP = {P1: "10.99.1.10", P2: "10.99.2.10"}



def ip(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode:
        raise AssertionError(f"ip -n {netns} {' '.join(args)}: {result.stderr.strip()}")
    return result


def sysctl(netns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"], check=True, timeout=30)


def routes(netns: str, table: str = "main") -> list[dict]:
    return json.loads(ip(netns, "-j", "-d", "route", "show", "table", table).stdout or "[]")


def find(netns: str, table: str, dst: str) -> dict | None:
    return next((r for r in routes(netns, table) if r["dst"] == dst), None)


def wait_for(check: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def make_node(node: str, peer_ip: str) -> None:
    """tunl0 (a persistent TUN), a default route proto boot, and table 201 as BIRD would fill it."""
    namespace.run_in(node, lambda: tun.create_persistent_tun("tunl0"))
    ip(node, "link", "set", "lo", "up")
    ip(node, "link", "set", "tunl0", "mtu", "1480", "up")
    ip(node, "addr", "add", f"{TUNL0_IP[node]}/32", "dev", "tunl0")
    sysctl(node, "net.ipv4.ip_forward", "1")
    ip(node, "route", "add", "default", "via", "192.168.77.254", "dev", "eth0", "proto", "boot")


def make_pod(node: str, pod: str, cali: str) -> None:
    """A pod wired as Calico's CNI wires it: /32 on eth0, default via 169.254.1.1, proxy ARP on caliX."""
    ip(node, "link", "add", cali, "type", "veth", "peer", "name", "eth0", "netns", pod)
    ip(node, "link", "set", cali, "up")
    sysctl(node, f"net.ipv4.conf.{cali}.proxy_arp", "1")
    sysctl(node, f"net.ipv4.neigh.{cali}.proxy_delay", "0")  # as Calico's CNI does; the default delays ~0.8 s
    ip(node, "route", "add", POD_IP[pod], "dev", cali, "scope", "link", "proto", "boot")
    ip(pod, "link", "set", "lo", "up")
    ip(pod, "link", "set", "eth0", "up")
    ip(pod, "addr", "add", f"{POD_IP[pod]}/32", "dev", "eth0")
    ip(pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    ip(pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")


def bird_routes(node: str, peer: str) -> None:
    """What BIRD with Calico's config exports: the next-hop helper, the peer's block, our blackhole."""
    ip(node, "route", "add", NODE_IP[peer], "dev", "tunl0", "table", TABLE, "proto", "bird")
    ip(node, "route", "add", BLOCK[peer], "via", NODE_IP[peer], "dev", "tunl0", "table", TABLE, "proto", "bird")
    ip(node, "route", "add", "blackhole", BLOCK[node], "table", TABLE, "proto", "bird")


class Agent:
    """The agent as a child process, with its spec and files in a temporary directory."""

    def __init__(self, directory: Path, nodes: list[dict], name: str = "agent") -> None:
        self.directory = directory
        self.spec_path = directory / f"{name}.json"
        self.spec = {"lab": PREFIX, "table": int(TABLE), "log": str(directory / f"{name}.log"),
                     "stats": str(directory / f"{name}-stats.json"), "ready": str(directory / f"{name}.ready"),
                     "nodes": nodes}
        self.write_spec()
        self.proc: subprocess.Popen | None = None

    def write_spec(self) -> None:
        self.spec_path.write_text(json.dumps(self.spec))

    def log(self) -> str:
        path = Path(self.spec["log"])
        return path.read_text() if path.exists() else ""

    def ready(self) -> dict | None:
        try:
            data = json.loads(Path(self.spec["ready"]).read_text())
        except (OSError, ValueError):
            return None
        return data if self.proc and data.get("pid") == self.proc.pid else None

    def start(self) -> None:
        """Start the agent and wait for its ready file (written once the first reconcile is done)."""
        if self.proc is not None:
            self.stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "lab.cni.routeagent", str(self.spec_path)], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def ready() -> dict | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited ({self.proc.returncode}): {self.proc.stdout.read()}\n{self.log()}")
            return self.ready()
        wait_for(ready, "the agent's ready file", timeout=30)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM the agent (if still running) and return its exit status."""
        if self.proc is None:
            return 0
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the agent ignored SIGTERM") from None
        finally:
            self.proc.stdout.close()

    def stats(self) -> dict:
        try:
            return json.loads(Path(self.spec["stats"]).read_text())
        except (OSError, ValueError):
            return {}


def _delete_namespaces(names: list[str]) -> None:
    for name in names:
        if namespace.exists(name):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes and their pods, table 201 filled, and a running agent."""
    names = [N1, N2, N3, P1, P2]
    _delete_namespaces(names)
    agents: list[Agent] = []
    try:
        namespace.create_many(names)
        ip(N1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", N2)
        for node in (N1, N2):
            ip(node, "link", "set", "eth0", "up")
            ip(node, "addr", "add", f"{NODE_IP[node]}/24", "dev", "eth0")
        make_node(N1, NODE_IP[N2])
        make_node(N2, NODE_IP[N1])
        make_pod(N1, P1, "cali1")
        make_pod(N2, P2, "cali2")
        bird_routes(N1, N2)
        bird_routes(N2, N1)
        ip(N3, "link", "set", "lo", "up")
        directory = tmp_path_factory.mktemp("routeagent")
        agent = Agent(directory, [{"name": "node1", "netns": N1, "tunnel": "userspace"},
                                  {"name": "node2", "netns": N2, "tunnel": "userspace"},
                                  {"name": "node3", "netns": N3, "tunnel": None}])
        agents.append(agent)
        agent.start()
        yield agent
    finally:
        for agent in agents:
            agent.stop()
        _delete_namespaces(names)
    assert not [n for n in names if namespace.exists(n)]


@pytest.mark.needs_root
def test_tunnel_route_is_mirrored_onlink(cluster):
    def mirrored():
        route = find(N1, "main", BLOCK[N2])
        return route if route and route.get("protocol") == "bird" else None
    route = wait_for(mirrored, f"{BLOCK[N2]} in {N1}'s main table")
    assert route["gateway"] == NODE_IP[N2]
    assert route["dev"] == "tunl0"
    assert "onlink" in route.get("flags", [])


@pytest.mark.needs_root
def test_blackhole_is_mirrored(cluster):
    route = wait_for(lambda: find(N1, "main", BLOCK[N1]), f"blackhole {BLOCK[N1]} in main")
    assert route.get("type") == "blackhole" and route["protocol"] == "bird"


@pytest.mark.needs_root
def test_next_hop_helper_is_not_mirrored(cluster):
    wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror")
    assert find(N1, TABLE, NODE_IP[N2]) is not None
    assert find(N1, "main", NODE_IP[N2]) is None


@pytest.mark.needs_root
def test_alien_main_routes_are_copied_into_the_bird_table(cluster):
    default = wait_for(lambda: find(N1, TABLE, "default"), "the default route in table 201")
    assert default["protocol"] == "boot" and default["gateway"] == "192.168.77.254" and default["dev"] == "eth0"
    pod = wait_for(lambda: find(N1, TABLE, POD_IP[P1]), "the pod route in table 201")
    assert pod["dev"] == "cali1" and pod["protocol"] == "boot" and pod["scope"] == "link"
    assert find(N1, TABLE, "192.168.77.0/24") is None, "proto kernel routes stay out"
    ip(N1, "route", "add", "10.98.0.0/16", "via", "192.168.77.254", "proto", "static")
    wait_for(lambda: find(N1, TABLE, "10.98.0.0/16"), "a new static route in table 201")
    ip(N1, "route", "del", "10.98.0.0/16", "proto", "static")
    wait_for(lambda: find(N1, TABLE, "10.98.0.0/16") is None, "the static route gone from table 201")


@pytest.mark.needs_root
def test_added_and_deleted_bird_routes_follow(cluster):
    ip(N1, "route", "add", "10.99.3.0/26", "via", NODE_IP[N2], "dev", "tunl0", "table", TABLE, "proto", "bird")
    ip(N1, "route", "add", "blackhole", "10.99.4.0/26", "table", TABLE, "proto", "bird")
    ip(N1, "route", "add", "10.99.5.0/26", "via", NODE_IP[N2], "dev", "eth0", "table", TABLE, "proto", "bird",
       "metric", "7")
    ip(N1, "route", "add", "10.99.6.0/26", "dev", "tunl0", "table", TABLE, "proto", "bird")
    tunnelled = wait_for(lambda: find(N1, "main", "10.99.3.0/26"), "the new tunnelled route in main")
    assert tunnelled["dev"] == "tunl0" and "onlink" in tunnelled.get("flags", [])
    wait_for(lambda: find(N1, "main", "10.99.4.0/26"), "the new blackhole in main")
    direct = wait_for(lambda: find(N1, "main", "10.99.5.0/26"), "the direct route in main")
    assert direct["dev"] == "eth0" and direct["metric"] == 7 and "onlink" not in direct.get("flags", [])
    assert find(N1, "main", "10.99.6.0/26") is None, "a gateway-less tunl0 route is a helper"
    ip(N1, "route", "del", "10.99.3.0/26", "table", TABLE)
    ip(N1, "route", "del", "10.99.4.0/26", "table", TABLE)
    ip(N1, "route", "del", "10.99.5.0/26", "table", TABLE, "metric", "7")
    ip(N1, "route", "del", "10.99.6.0/26", "table", TABLE)
    gone = ("10.99.3.0/26", "10.99.4.0/26", "10.99.5.0/26")
    wait_for(lambda: not any(find(N1, "main", dst) for dst in gone), "the mirrors deleted")


@pytest.mark.needs_root
def test_foreign_delete_of_a_mirror_is_undone(cluster):
    wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror")
    ip(N1, "route", "del", BLOCK[N2], "proto", "bird")
    wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror restored")


@pytest.mark.needs_root
def test_pod_to_pod_traffic_is_ipip_encapsulated(cluster):
    wait_for(lambda: find(N1, "main", BLOCK[N2]) and find(N2, "main", BLOCK[N1]), "both mirrors")
    before = cluster.stats()["nodes"]["node1"]
    with tcpdump(N1, "eth0", "ip proto 4", extra=("--immediate-mode",)) as capture:
        result = subprocess.run(["ip", "netns", "exec", P1, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                 POD_IP[P2]], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    requests = [line for line in capture.lines
                if f"{NODE_IP[N1]} > {NODE_IP[N2]}: IP {POD_IP[P1]} > {POD_IP[P2]}: ICMP echo request" in line]
    replies = [line for line in capture.lines
               if f"{NODE_IP[N2]} > {NODE_IP[N1]}: IP {POD_IP[P2]} > {POD_IP[P1]}: ICMP echo reply" in line]
    assert len(requests) >= 3 and len(replies) >= 3, capture.lines

    def counted():
        node1 = cluster.stats().get("nodes", {}).get("node1", {})
        return node1 if node1.get("tx_packets", 0) >= before["tx_packets"] + 3 and \
            node1.get("rx_packets", 0) >= before["rx_packets"] + 3 else None
    node1 = wait_for(counted, "the stats file to count the pings")
    assert node1["implementation"] == "userspace-tun" and node1["attached"] is True
    assert node1["tx_bytes"] >= before["tx_bytes"] + 3 * 84
    node2 = cluster.stats()["nodes"]["node2"]
    assert node2["rx_packets"] >= 3 and node2["tx_packets"] >= 3
    assert cluster.stats()["nodes"]["node3"]["implementation"] == "none"


@pytest.mark.needs_root
def test_node_to_remote_pod_uses_the_tunl0_address(cluster):
    with tcpdump(N2, "cali2", "icmp", extra=("--immediate-mode",)) as capture:
        result = subprocess.run(["ip", "netns", "exec", N1, "ping", "-c", "1", "-W", "2", POD_IP[P2]],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    assert any(f"IP {TUNL0_IP[N1]} > {POD_IP[P2]}: ICMP echo request" in line for line in capture.lines), capture.lines


@pytest.mark.needs_root
def test_full_size_packets_fit_the_underlay(cluster):
    """1480 inner bytes (tunl0's MTU) with DF make a 1500-byte outer packet, eth0's MTU."""
    result = subprocess.run(["ip", "netns", "exec", P1, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do",
                             "-s", str(1480 - 28), POD_IP[P2]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.needs_root
def test_sighup_rereads_the_spec(cluster):
    generation = cluster.ready()["generation"]
    cluster.spec["nodes"][1]["tunnel"] = "kernel"
    cluster.write_spec()
    try:
        cluster.signal(signal.SIGHUP)
        wait_for(lambda: (cluster.ready() or {}).get("generation", -1) > generation, "the reload")
        node2 = wait_for(lambda: cluster.stats()["nodes"].get("node2"), "node2 stats")
        assert node2["implementation"] == "kernel-ipip"
        # node2's tunl0 is free again: nobody reads it, so the kernel marks routes through it linkdown
        wait_for(lambda: "linkdown" in (find(N2, "main", BLOCK[N1]) or {}).get("flags", []), "linkdown")
    finally:
        cluster.spec["nodes"][1]["tunnel"] = "userspace"
        cluster.write_spec()
        cluster.signal(signal.SIGHUP)
        wait_for(lambda: (cluster.ready() or {}).get("generation", -1) > generation + 1, "the second reload")
    assert wait_for(lambda: cluster.stats()["nodes"]["node2"]["attached"], "node2 attached again")
    result = subprocess.run(["ip", "netns", "exec", P2, "ping", "-c", "1", "-W", "2", POD_IP[P1]],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.needs_root
def test_restart_reconciles(cluster):
    wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror")
    assert cluster.stop() == 0
    assert not Path(cluster.spec["ready"]).exists(), "a clean exit removes the ready file"
    assert find(N1, "main", BLOCK[N2]) is not None, "the agent removes nothing when it exits"
    ip(N1, "route", "del", BLOCK[N2], "proto", "bird")
    ip(N1, "route", "add", "10.99.200.0/24", "via", NODE_IP[N2], "dev", "tunl0", "onlink", "proto", "bird")
    ip(N1, "route", "del", "default", "table", TABLE)
    ip(N1, "route", "add", "10.97.0.0/16", "via", "192.168.77.254", "table", TABLE, "proto", "static")
    cluster.start()  # ready means reconciled
    route = find(N1, "main", BLOCK[N2])
    assert route and route["protocol"] == "bird" and "onlink" in route.get("flags", [])
    assert find(N1, "main", "10.99.200.0/24") is None, "a stale proto bird route in main is removed"
    assert find(N1, TABLE, "default") is not None, "the alien copy is restored"
    assert find(N1, TABLE, "10.97.0.0/16") is None, "a stale copy is removed"
    assert "reconciled (start)" in cluster.log()
    cluster.signal(signal.SIGKILL)  # a crash leaves a stale ready file; the next start replaces it
    cluster.proc.wait(timeout=10)
    ip(N1, "route", "del", BLOCK[N2], "proto", "bird")
    cluster.start()
    assert find(N1, "main", BLOCK[N2]) is not None


@pytest.mark.needs_root
def test_lost_namespaces_are_dropped_and_the_last_one_ends_the_agent(cluster, tmp_path):
    extra = f"{PREFIX}-x1"
    _delete_namespaces([extra])
    namespace.create_many([extra])
    agent = Agent(tmp_path, [{"name": "x1", "netns": extra, "tunnel": None},
                             {"name": "gone", "netns": f"{PREFIX}-missing", "tunnel": None}], name="solo")
    try:
        agent.start()
        assert agent.ready()["nodes"] == ["x1"]
        assert "cannot serve namespace" in agent.log()
        _delete_namespaces([extra])
        assert agent.proc.wait(timeout=10) == 0
        assert "every namespace is gone" in agent.log()
    finally:
        agent.stop()
        _delete_namespaces([extra])
    # the main agent lost node3's namespace too and keeps serving the others
    _delete_namespaces([N3])
    wait_for(lambda: "node3" not in cluster.stats().get("nodes", {"node3": 1}), "node3 dropped")
    ip(N1, "route", "add", "blackhole", "10.99.7.0/26", "table", TABLE, "proto", "bird")
    wait_for(lambda: find(N1, "main", "10.99.7.0/26"), "mirroring still works")
    ip(N1, "route", "del", "10.99.7.0/26", "table", TABLE)


@pytest.mark.needs_root
def test_routes_flushed_silently_by_the_kernel_are_mirrored_again(cluster):
    """IPv4 drops routes through a downed link without RTM_DELROUTE; the agent must dump again."""
    wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror")
    ip(N1, "link", "set", "tunl0", "down")
    assert find(N1, TABLE, BLOCK[N2]) is None and find(N1, "main", BLOCK[N2]) is None
    ip(N1, "link", "set", "tunl0", "up")
    bird_routes_again = [("route", "add", NODE_IP[N2], "dev", "tunl0", "table", TABLE, "proto", "bird"),
                         ("route", "add", BLOCK[N2], "via", NODE_IP[N2], "dev", "tunl0", "table", TABLE, "proto",
                          "bird")]
    for args in bird_routes_again:  # what BIRD's next kernel scan would do
        ip(N1, *args)
    route = wait_for(lambda: find(N1, "main", BLOCK[N2]), "the mirror after tunl0 came back")
    assert "onlink" in route.get("flags", [])
    assert "reconciled (tunl0 down)" in cluster.log()
    result = subprocess.run(["ip", "netns", "exec", P1, "ping", "-c", "1", "-W", "2", POD_IP[P2]],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def pyroute2_route(msg_type: int, flags: int, seq: int, fields: dict, attrs: list[tuple]) -> bytes:
    msg = rtmsg()
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = attrs
    msg["header"]["type"], msg["header"]["flags"], msg["header"]["sequence_number"] = msg_type, flags, seq
    msg.encode()
    return bytes(msg.data)


def test_decoded_route_reencodes_as_pyroute2_encodes_it():
    fields = {"family": 2, "dst_len": 26, "table": 201, "proto": 12, "scope": 0, "type": 1, "flags": 0x10}
    attrs = [("RTA_TABLE", 201), ("RTA_DST", "10.244.169.128"), ("RTA_PRIORITY", 7),
             ("RTA_GATEWAY", "192.168.10.72"), ("RTA_OIF", 5)]
    kernel = pyroute2_route(24, 0, 0, fields, attrs)  # as the kernel reports it, linkdown included
    route = Route.parse(kernel[16:], (201, 254))
    assert route.key == (bytes([10, 244, 169, 128]), 26, 0, 7) and route.oif == 5 and route.table == 201
    mirrored = route.copy(254, RTNH_F_ONLINK)
    expected = pyroute2_route(24, 0x1 | 0x4 | 0x100 | 0x400, 9, {**fields, "table": 254, "flags": 0x4},
                              [("RTA_TABLE", 254)] + attrs[1:])
    assert mirrored.encode(RTM_NEWROUTE, 9) == expected
    delete = pyroute2_route(25, 0x1 | 0x4, 10, {"family": 2, "dst_len": 26, "table": 254, "proto": 12,
                                                 "scope": 255, "type": 0},
                            [("RTA_TABLE", 254), ("RTA_DST", "10.244.169.128"), ("RTA_PRIORITY", 7)])
    assert mirrored.encode(RTM_DELROUTE, 10) == delete


def test_mirror_plans_what_calicos_bird_would_program():
    def route(table, proto, dst, **attrs):
        encoded = [("RTA_TABLE", table), ("RTA_DST", dst)] + [(f"RTA_{k.upper()}", v) for k, v in attrs.items()]
        data = pyroute2_route(24, 0, 0, {"family": 2, "dst_len": 26, "table": table, "proto": proto, "type": 1},
                              encoded)
        return Route.parse(data[16:], (201, 254))

    mirror = Mirror(201)
    mirror.tunl0 = 5
    mirror.load([route(201, 12, "10.0.1.0", gateway="192.168.10.72", oif=5),  # tunnelled
                 route(201, 12, "192.168.10.64", oif=5),                       # helper (a /26 here)
                 route(201, 12, "10.0.2.0", gateway="192.168.10.73", oif=2),   # direct
                 route(254, 3, "10.0.3.0", oif=7),                             # alien in main
                 route(254, 2, "10.0.4.0", oif=2),                             # kernel in main
                 route(254, 12, "10.0.9.0", oif=2)])                           # stale mirror
    writes, notes = mirror.plan(mirror.keys())
    planned = {(op, r.table, r.key[0][2]): r for op, r in writes}
    assert set(planned) == {(24, 254, 1), (24, 254, 2), (24, 201, 3), (25, 254, 9)} and not notes
    assert planned[(24, 254, 1)].flags & RTNH_F_ONLINK
    assert not planned[(24, 254, 2)].flags & RTNH_F_ONLINK
