"""UDP probes are new flows: an earlier flow's conntrack entry cannot make a denied probe pass.

Both enforcers accept ESTABLISHED traffic before any policy, so a UDP flow that was allowed keeps
flowing after a policy denies it, for as long as its conntrack entry lives (real kube-router and
Felix behave so too). A probe that reused that flow's source port would read "allowed"; this is the
flake CI once hit (z/a -> x/a UDP/81 "connected" under a deny). The test pins the pod's ephemeral
range to the old flow's port, so a probe that let the kernel choose its port would certainly reuse it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_lab
from test_policy_xyz import DENY_X, renamed

from lab.lifecycle import Lab
from lab.probe import matrix
from lab.probe.sourceports import HIGH, LOW, SourcePorts

OLD_FLOW_PORT = 40001
UDP_EXCHANGE = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", int(sys.argv[2])))
sock.settimeout(2)
sock.sendto(b"old-flow\\n", (sys.argv[1], 81))
try:
    print(sock.recv(100).decode().strip())
except OSError:
    print("no answer")
"""


def exchange(netns: str, address: str, sport: int) -> str:
    """One datagram from `sport` to address:81 inside `netns`; the answer's first line, or 'no answer'."""
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", UDP_EXCHANGE, address, str(sport)],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.needs_root
def test_a_udp_probe_is_denied_even_while_an_old_flow_of_the_pair_lives(tmp_path):
    name = "tpc-kr"
    run_lab("up", str(renamed("netpol-xyz-kuberouter", name, tmp_path)))
    try:
        topology = Lab().topology(name)
        x_a = str(topology.pod("x/a").ip)
        client = f"{name}.z.a"
        subprocess.run(["ip", "netns", "exec", client, "sysctl", "-qw",
                        f"net.ipv4.ip_local_port_range={OLD_FLOW_PORT} {OLD_FLOW_PORT}"], check=True)
        assert exchange(client, x_a, OLD_FLOW_PORT) == "x/a"          # allowed: the flow is in conntrack

        policy = tmp_path / "deny.yaml"
        policy.write_text(DENY_X)
        run_lab("apply", "-f", str(policy), "--lab", name)
        assert exchange(client, x_a, OLD_FLOW_PORT) == "x/a"          # the old flow still passes, as in a cluster
        assert exchange(client, x_a, OLD_FLOW_PORT + 1) == "no answer"  # a new flow is denied

        case = matrix.Case("z/a", "x/a", 81, "UDP")
        seen = matrix.observe(Lab().topology(name), [case], timeout=1.0, source_ports=Lab().source_ports(name))
        assert seen[case].allowed is False, seen[case]
        result = run_lab("probe", "--lab", name, "--protocol", "UDP", "--port", "81", check=False)
        assert result.returncode == 0, result.stdout
    finally:
        run_lab("down", name, check=False)


def test_consecutive_runs_take_disjoint_windows(tmp_path):
    ports = SourcePorts(str(tmp_path / "cursor"))
    first = ports.reserve(18)
    second = SourcePorts(str(tmp_path / "cursor")).reserve(18)    # another `lab probe` process
    assert set(range(first, first + 18)).isdisjoint(range(second, second + 18))
    assert LOW <= first and second + 17 <= HIGH


def test_every_udp_case_of_a_source_gets_its_own_port_and_windows_wrap(tmp_path):
    cursor = tmp_path / "cursor"
    cursor.write_text(str(HIGH - LOW - 1))                          # two ports left before the wrap
    cases = [matrix.Case("x/a", dst, 81, "UDP") for dst in ("x/a", "x/b", "x/c")]
    cases += [matrix.Case("x/b", "x/a", 81, "UDP"), matrix.Case("x/b", "x/a", 81, "TCP")]
    sports = matrix.udp_source_ports(cases, SourcePorts(str(cursor)))
    assert [sports[c] for c in cases[:3]] == [HIGH - 1, HIGH, LOW]
    assert sports[cases[3]] == HIGH - 1 and cases[4] not in sports
    assert cursor.read_text() == "1"
