"""The seed article's 6.6 (mesh -> route reflector) and 6.7 (ipipMode Always) on live labs, step by step.

The manifests are the seed's own texts (BGPConfiguration heredoc, rr-node.yaml, bgppeer.yaml,
ipip.yaml). After every step the sessions, every node's main table and bs1 -> bs8 reachability
are checked against tests/expect_calico.py applied to the same changes. A background pinger
(`ping -i 0.01` bs1 -> bs8) runs across the four migration steps; the time it lost
(lost packets x interval) is printed and written to /tmp/lab-rr-migration-loss.txt.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import expect_calico
import pytest
import yaml
from calico_kernel import (
    assert_routes,
    bird_established,
    main_routes,
    node_files,
    node_status,
    route_diff,
    wait_sessions,
)
from calico_labs import lab_starter
from capture import tcpdump
from conftest import TOPOLOGIES, run_lab
from traffic import ping
from udp_probe import UdpProbe

pytestmark = pytest.mark.needs_root

LOSS_FILE = Path("/tmp/lab-rr-migration-loss.txt")
PING_INTERVAL = 0.01
NO_PEERS = ("Calico process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\n"
            "IPv6 BGP status\nNo IPv6 peers found.\n\n")

# 6.6 step 1, as the seed pipes it into `calicoctl create -f -` (its one-space indent and trailing blanks kept)
STEP1_BGPCONFIG = """\
 apiVersion: projectcalico.org/v3
 kind: BGPConfiguration
 metadata:
   name: default
 spec:
   logSeverityScreen: Info
   nodeToNodeMeshEnabled: false\x20\x20
   asNumber: 64512
"""
# 6.6 step 3: rr-node.yaml, `calicoctl get node k8s-node01 -o yaml` plus the cluster ID
STEP3_RR_NODE = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  annotations:
    projectcalico.org/kube-labels: '{"beta.kubernetes.io/arch":"amd64","beta.kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","kubernetes.io/hostname":"k8s-node01","kubernetes.io/os":"linux","route-reflector":"true"}'
  creationTimestamp: 2021-12-02T06:38:05Z
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: k8s-node01
    kubernetes.io/os: linux
    route-reflector: "true"
  name: k8s-node01
  resourceVersion: "89283550"
  uid: f297de1c-0dc8-46ad-8ffc-4e52a8438bd3
spec:
  bgp:
    ipv4Address: 192.168.10.72/24
    routeReflectorClusterID: 244.0.0.1 #加集群id
  orchRefs:
  - nodeName: k8s-node01
    orchestrator: k8s
"""  # noqa: E501 (calicoctl prints the kube-labels annotation on one line)
# 6.6 step 4: bgppeer.yaml
STEP4_BGPPEER = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
"""
# 6.7: ipip.yaml, `calicoctl get ipPool -o yaml` with ipipMode changed to Always
SEED_IPIP_YAML = """\
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata:
    creationTimestamp: 2021-12-02T06:38:05Z
    name: default-ipv4-ippool
    resourceVersion: "89250102"
    uid: 1e273458-f1c0-49df-84a6-a5b4faabdeef
  spec:
    blockSize: 26
    cidr: 10.244.0.0/16
    ipipMode: Always
    natOutgoing: true
    nodeSelector: all()
    vxlanMode: Never
kind: IPPoolList
metadata:
  resourceVersion: "89335249"
"""


@pytest.fixture(scope="module")
def start(labs, tmp_path_factory):
    """`start(prefix)(topology)`: one lab per prefix and topology for this module."""
    starters = {}

    def for_prefix(prefix: str):
        if prefix not in starters:
            starters[prefix] = lab_starter(labs, tmp_path_factory, prefix)
        return starters[prefix]
    return for_prefix


def manifest(tmp_path: Path, name: str, text: str) -> tuple[Path, dict]:
    path = tmp_path / name
    path.write_text(text)
    return path, yaml.safe_load(text)


def check_state(spec: expect_calico.Expected, step: str) -> None:
    """Sessions, then every node's main table, as `spec` says (polling: BIRD reconfigures asynchronously)."""
    got = wait_sessions(spec)
    for node in spec.nodes:
        assert got[node.name] == spec.sessions(node), f"after {step}: {node.name} peers {got[node.name]}"
    assert_routes(spec)


class Pinger:
    """`ping -i 0.01` between two pods in the background; `stop()` returns (transmitted, received)."""

    def __init__(self, netns: str, dst: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-q", "-i", str(PING_INTERVAL), "-W", "1",
                                      dst], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = time.monotonic()

    def stop(self) -> tuple[int, int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, f"ping printed no summary:\n{out}\n{err}"
        return int(m.group(1)), int(m.group(2)), out


def test_seed_6_6_route_reflector_migration(start, tmp_path):
    spec = start("tt")("calico-bgp-mesh")
    topo = spec.source
    lab = spec.lab
    bs1, bs3, bs8 = spec.pod("bs1"), spec.pod("bs3"), spec.pod("bs8")
    assert (bs1.node, bs3.node, bs8.node) == ("k8s-node03", "k8s-node03", "k8s-node01")
    check_state(spec, "lab up")
    assert ping(spec.pod_netns(bs1), str(bs8.ip), count=1)
    step1, doc1 = manifest(tmp_path, "bgpconfig.yaml", STEP1_BGPCONFIG)
    step3, doc3 = manifest(tmp_path, "rr-node.yaml", STEP3_RR_NODE)
    step4, doc4 = manifest(tmp_path, "bgppeer.yaml", STEP4_BGPPEER)
    rr_label = {"k8s-node01": {"route-reflector": "true"}}
    timeline = []

    pinger = Pinger(spec.pod_netns(bs1), str(bs8.ip))
    probe = UdpProbe(spec.pod_netns(bs1), spec.pod_netns(bs8), str(bs8.ip), interval=PING_INTERVAL)
    try:
        time.sleep(0.5)                                   # a baseline with no loss
        # 1. turn the node-to-node mesh off: no peers anywhere, remote blocks withdrawn
        timeline.append(("step 1 apply", time.monotonic()))
        run_lab("apply", "-f", str(step1), "--lab", lab)
        after1 = expect_calico.load(topo, applied=[doc1])
        check_state(after1, "step 1")
        for node in spec.nodes:
            assert node_status(lab, node.name) == NO_PEERS, node.name
            assert not any(r.proto == "bird" and r.type == "unicast" for r in main_routes(spec.node_netns(node)))
        assert not ping(spec.pod_netns(bs1), str(bs8.ip), count=1, wait=1), "bs8 reachable with the mesh off"
        assert ping(spec.pod_netns(bs1), str(bs3.ip), count=1), "pods of one node need no BGP"

        # 2. label the reflector: nothing changes in BGP yet
        timeline.append(("step 2 label", time.monotonic()))
        run_lab("label", "node", "k8s-node01", "route-reflector=true", "--lab", lab)
        after2 = expect_calico.load(topo, applied=[doc1], label_edits=rr_label)
        assert after2.node("k8s-node01").labels["route-reflector"] == "true"
        check_state(after2, "step 2")
        assert all(node_status(lab, n.name) == NO_PEERS for n in spec.nodes)

        # 3. the reflector's cluster ID (rr-node.yaml): still no peers, but k8s-node01 is a reflector
        timeline.append(("step 3 apply", time.monotonic()))
        run_lab("apply", "-f", str(step3), "--lab", lab)
        after3 = expect_calico.load(topo, applied=[doc1, doc3], label_edits=rr_label)
        check_state(after3, "step 3")
        assert all(node_status(lab, n.name) == NO_PEERS for n in spec.nodes)
        cfg = (node_files(lab, "k8s-node01") / "etc/calico/confd/config/bird.cfg").read_text()
        assert ("# This node (k8s-node01) is configured as a route reflector with cluster ID 244.0.0.1;\n"
                "# ignore node-to-node mesh setting.") in cfg
        assert not ping(spec.pod_netns(bs1), str(bs8.ip), count=1, wait=1)

        # 4. peer everyone with the reflector (bgppeer.yaml): one node-specific session per client
        timeline.append(("step 4 apply", time.monotonic()))
        run_lab("apply", "-f", str(step4), "--lab", lab)
        after4 = expect_calico.load(topo, applied=[doc1, doc3, doc4], label_edits=rr_label)
        check_state(after4, "step 4")
        timeline.append(("converged", time.monotonic()))
        assert ping(spec.pod_netns(bs1), str(bs8.ip), count=1)
        time.sleep(1.0)                                   # let the pinger see the path back
    finally:
        transmitted, received, summary = pinger.stop()
        udp = probe.stop()
    stopped = time.monotonic()

    # the seed's own view after step 4, on k8s-master01
    text = node_status(lab, "k8s-master01")
    assert re.search(r"^\| 192\.168\.10\.72 \| node specific \| up    \| \d\d:\d\d:\d\d \| Established \|$", text,
                     re.M), text
    assert len([row for row in text.splitlines() if row.startswith("| 192.")]) == 1, text
    reflector = {ip for ip, _ in bird_established(lab, "k8s-node01")}
    assert reflector == {"192.168.10.71", "192.168.10.73", "192.168.10.74"}
    # the migrated lab is exactly what the shipped calico-rr topology describes
    shipped = expect_calico.load(TOPOLOGIES / "calico-rr.yaml")
    for node in after4.nodes:
        other = shipped.node(node.name)
        assert after4.sessions(node) == shipped.sessions(other), node.name
        got = main_routes(spec.node_netns(node))
        assert got == shipped.routes(other), f"{node.name} vs calico-rr:\n{route_diff(got, shipped.routes(other))}"

    lost = transmitted - received
    marks = timeline[0][1]
    steps = ", ".join(f"{label} +{t - marks:.2f}s" for label, t in timeline)
    before = marks - probe.started                   # probe times are relative to its first datagram
    report = (f"route-reflector migration (seed 6.6, four steps, kernel state checked after each) on {lab}\n"
              f"  UDP probe every {PING_INTERVAL * 1000:.0f} ms bs1 -> bs8: {udp['sent']} sent, {udp['received']} "
              f"echoed, {udp['lost']} lost => lost time {udp['lost_time']:.2f} s; outage window "
              f"{udp['first_lost'] - before:+.2f}s .. {udp['last_lost'] - before:+.2f}s after step 1\n"
              f"  ping -i {PING_INTERVAL} bs1 -> bs8: {transmitted} sent, {received} received, {lost} lost "
              f"=> lost packets x interval = {lost * PING_INTERVAL:.2f} s (ping really sent one every "
              f"{(stopped - pinger.started) / max(transmitted, 1) * 1000:.1f} ms)\n"
              f"  timeline: {steps}\n")
    print("\n" + report)
    LOSS_FILE.write_text(report)
    # the seed's order cuts bs1 -> bs8 off from step 1 (mesh off) until step 4 (peers with the reflector)
    assert udp["lost"] > 0 and udp["received"] > 0 and received > 0 and lost > 0, (udp, summary)
    assert udp["first_lost"] - before >= -0.05, "loss before step 1"
    assert udp["last_lost"] - before <= timeline[-1][1] - marks + 0.05, "loss after the routes were back"
    assert udp["lost_time"] <= timeline[-1][1] - marks + 0.1, report



def test_seed_6_6_steps_back_to_back_loss(start, tmp_path):
    """The same four steps applied one right after the other, as an operator would: the outage the
    procedure itself causes (no test checks between the steps). Appended to the loss file."""
    spec = start("tw")("calico-bgp-mesh")
    check_state(spec, "lab up")
    bs1, bs8 = spec.pod("bs1"), spec.pod("bs8")
    docs = [manifest(tmp_path, n, t) for n, t in (("bgpconfig.yaml", STEP1_BGPCONFIG), ("rr-node.yaml", STEP3_RR_NODE),
                                                   ("bgppeer.yaml", STEP4_BGPPEER))]
    probe = UdpProbe(spec.pod_netns(bs1), spec.pod_netns(bs8), str(bs8.ip), interval=PING_INTERVAL)
    try:
        time.sleep(0.5)
        first = time.monotonic()
        run_lab("apply", "-f", str(docs[0][0]), "--lab", spec.lab)
        run_lab("label", "node", "k8s-node01", "route-reflector=true", "--lab", spec.lab)
        run_lab("apply", "-f", str(docs[1][0]), "--lab", spec.lab)
        run_lab("apply", "-f", str(docs[2][0]), "--lab", spec.lab)
        applied = time.monotonic()
        final = expect_calico.load(spec.source, applied=[d for _, d in docs],
                                   label_edits={"k8s-node01": {"route-reflector": "true"}})
        check_state(final, "steps 1-4")
        converged = time.monotonic()
        time.sleep(1.0)
    finally:
        udp = probe.stop()
    before = first - probe.started
    report = (f"back to back on {spec.lab}: steps applied in {applied - first:.2f} s, converged at "
              f"+{converged - first:.2f} s; UDP probe every {PING_INTERVAL * 1000:.0f} ms: {udp['sent']} sent, "
              f"{udp['lost']} lost => lost time {udp['lost_time']:.2f} s (window {udp['first_lost'] - before:+.2f}s .. "
              f"{udp['last_lost'] - before:+.2f}s)\n")
    print("\n" + report)
    with open(LOSS_FILE, "a", encoding="utf-8") as handle:
        handle.write(report)
    assert udp["lost"] > 0 and udp["received"] > 0, udp
    assert udp["last_lost"] - before <= converged - first + 0.05, report

def test_seed_6_7_ipip_yaml_is_accepted_as_calicoctl_accepts_it(start, tmp_path):
    """`calicoctl get ipPool -o yaml` prints an IPPoolList; `calicoctl apply -f` takes it back as is."""
    spec = start("tu")("calico-bgp-mesh")
    path, _ = manifest(tmp_path, "ipip.yaml", SEED_IPIP_YAML)
    result = run_lab("apply", "-f", str(path), "--lab", spec.lab, check=False)
    assert result.returncode == 0, f"lab apply -f ipip.yaml (the seed's IPPoolList) failed:\n{result.stderr}"


def test_seed_6_7_ipip_always_moves_remote_blocks_onto_tunl0(start, tmp_path):
    """The IPPool inside the seed's ipip.yaml, applied to a live mesh: tunl0 appears, routes go `dev tunl0 onlink`."""
    spec = start("tu")("calico-bgp-mesh")
    held = {p.key: p.ip for p in spec.pods}
    pool = yaml.safe_load(SEED_IPIP_YAML)["items"][0]
    path, _ = manifest(tmp_path, "ipip-pool.yaml", yaml.safe_dump(pool, sort_keys=False))
    run_lab("apply", "-f", str(path), "--lab", spec.lab)
    after = expect_calico.load(spec.source, applied=[pool], held=held)
    assert {p.key: p.ip for p in after.pods} == held, "pods keep their addresses"
    assert after.mode == "ipip"
    check_state(after, "ipipMode Always")
    for node in after.nodes:
        routes = main_routes(after.node_netns(node))
        remote = {r for r in routes if r.proto == "bird" and r.type == "unicast"}
        assert remote and all(r.dev == "tunl0" and r.onlink for r in remote), "\n".join(map(str, routes))
        out = subprocess.run(["ip", "netns", "exec", after.node_netns(node), "ip", "-4", "-o", "addr", "show", "tunl0"],
                             capture_output=True, text=True, check=True).stdout
        assert f"inet {node.tunnel_ip}/32" in out, out
        assert node.tunnel_ip in node.blocks[0]
    wide = run_lab("calicoctl", "get", "ippool", "-o", "wide", "--lab", spec.lab).stdout
    assert re.search(r"^default-ipv4-ippool\s+10\.244\.0\.0/16\s+true\s+Always\s+Never\s+false\s+all\(\)", wide,
                     re.M), wide
    bs1, bs8 = after.pod("bs1"), after.pod("bs8")
    src, dst = after.node(bs1.node), after.node(bs8.node)
    with tcpdump(after.node_netns(src), "eth0", "ip proto 4 or icmp", ("--immediate-mode",)) as cap:
        assert ping(after.pod_netns(bs1), str(bs8.ip), count=2)
    text = "\n".join(cap.lines)
    assert f"IP {src.ip} > {dst.ip}: IP {bs1.ip} > {bs8.ip}: ICMP echo request" in text, text
    assert f"IP {dst.ip} > {src.ip}: IP {bs8.ip} > {bs1.ip}: ICMP echo reply" in text, text
