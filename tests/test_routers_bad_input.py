"""Bad `routers:` input: `lab up` refuses it with `file:line: field: message` (exit 2) and creates nothing;
a missing exabgp program is named before anything is built.

Line numbers are counted by hand from the texts below (line 1 is the first line of the text).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lab_unprivileged
from test_calico_bad_input import assert_precise, assert_refused_without_root

LAB_NAME = "bad-routers"

# lines 1-20
HEAD = """\
name: bad-routers
cluster:
  cni: calico
networks:
  - {name: lan, cidr: 192.168.10.0/24}
  - {name: outside, cidr: 203.0.113.0/24}
nodes:
  - {name: n1, network: lan, ip: 192.168.10.11}
  - {name: n2, network: lan, ip: 192.168.10.12}
resources:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: default-ipv4-ippool}
    spec: {cidr: 10.244.0.0/16}
routers:
  - name: tor
    network: lan
    ip: 192.168.10.2
    asNumber: 65001
"""


def case(id, text, line, field, message):
    return pytest.param(text, line, field, message, id=id)


CASES = [
    case("unknown-peer", HEAD + "    peers: [n1, n9]\n", 20, "routers[0].peers[1]",
         "unknown router peer 'n9': no node or router has that name"),
    case("unknown-peer-by-name", HEAD + "    peers: [{name: spine}]\n", 20, "routers[0].peers[0].name",
         "unknown router peer 'spine'"),
    case("peer-with-itself", HEAD + "    peers: [tor]\n", 20, "routers[0].peers[0]", "cannot peer with itself"),
    case("as-number-zero", HEAD.replace("asNumber: 65001", "asNumber: 0"), 19, "routers[0].asNumber",
         "AS number 0 is out of range"),
    case("as-number-too-big", HEAD.replace("asNumber: 65001", "asNumber: 4294967296"), 19, "routers[0].asNumber",
         "AS number 4294967296 is out of range"),
    case("peer-as-number-out-of-range", HEAD + "    peers: [{ip: 192.0.2.9, asNumber: 0}]\n", 20,
         "routers[0].peers[0].asNumber", "AS number 0 is out of range"),
    case("missing-network", HEAD.replace("    network: lan\n", "    network: rack-a\n"), 17, "routers[0].network",
         "no network named 'rack-a'"),
    case("link-on-missing-network", HEAD + "    links: [{network: spine, ip: 10.255.0.2}]\n", 20,
         "routers[0].links[0].network", "no network named 'spine'"),
    case("announce-not-a-cidr", HEAD + "    announce: [203.0.113.0/24, banana]\n", 20, "routers[0].announce[1]",
         "announcement 'banana' is not a CIDR"),
    case("announce-prefix-too-long", HEAD + "    announce: [203.0.113.0/33]\n", 20, "routers[0].announce[0]",
         "announcement '203.0.113.0/33' is not a CIDR"),
    case("announce-host-bits", HEAD + "    announce: [203.0.113.5/24]\n", 20, "routers[0].announce[0]",
         "has host bits set"),
    case("ip-outside-network", HEAD.replace("ip: 192.168.10.2", "ip: 10.0.0.2"), 18, "routers[0].ip",
         "10.0.0.2 is not a host address of network 'lan'"),
    case("ip-of-a-node", HEAD.replace("ip: 192.168.10.2", "ip: 192.168.10.11"), 18, "routers[0].ip",
         "192.168.10.11 is taken by node n1"),
    case("name-of-a-node", HEAD.replace("  - name: tor\n", "  - name: n1\n"), 16, "routers[0].name",
         "name 'n1' is taken by a node"),
]


def _ours(path: str) -> set[str]:
    try:
        return {e for e in os.listdir(path) if e == LAB_NAME or e.startswith(f"{LAB_NAME}.")}
    except FileNotFoundError:
        return set()


def _lab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_router_is_refused_precisely_without_root(tmp_path, monkeypatch, text, line, field, message):
    """The table without root (in this process): the loader's error comes before `lab up` asks for root."""
    assert_refused_without_root(tmp_path, monkeypatch, text, line, field, message)


def test_good_router_head_is_accepted(tmp_path, monkeypatch):
    """The shared head with two peers is itself valid, so every case above fails for its own reason."""
    path = tmp_path / "good.yaml"
    path.write_text(HEAD + "    peers: [n1, n2]\n")
    dry = run_lab_unprivileged(monkeypatch, "up", "--dry-run", str(path))
    assert dry.returncode == 0 and "bad-routers.tor" in dry.stdout, dry.stderr


@pytest.mark.needs_root
@pytest.mark.parametrize("text, line, field, message", CASES)
def test_bad_router_is_refused_precisely_and_creates_nothing(tmp_path, text, line, field, message):
    path = str(tmp_path / "topo.yaml")
    Path(path).write_text(text)
    assert not _ours("/run/netns") and not _ours("/run/lab"), "a bad-routers lab is already there"
    up = _lab("up", path)
    assert _ours("/run/netns") == set(), "lab up created network namespaces"
    assert _ours("/run/lab") == set(), "lab up left state under /run/lab"
    assert up.stdout == "", up.stdout
    assert_precise(up, path, line, field, message)


@pytest.mark.needs_root
def test_a_missing_exabgp_is_named_before_anything_is_built(tmp_path):
    """Exit 2 naming the program, and no namespace or state appears (other labs may come and go meanwhile:
    what is compared is every entry the run could have created, before and after)."""
    name = f"mx{secrets.token_hex(3)}"
    path = str(tmp_path / "topo.yaml")
    Path(path).write_text(HEAD.replace(f"name: {LAB_NAME}\n", f"name: {name}\n", 1) + "    peers: [n1, n2]\n")
    missing = str(tmp_path / "no-such-exabgp")

    def created() -> tuple[set[str], set[str]]:
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        state = set(os.listdir("/run/lab")) if os.path.isdir("/run/lab") else set()
        return {line.split()[0] for line in namespaces.splitlines() if line.strip()}, state
    before = created()
    up = _lab("up", path, env={**os.environ, "LAB_EXABGP": missing})
    after = created()
    assert up.returncode == 2, (up.returncode, up.stderr)
    assert "exabgp" in up.stderr and missing in up.stderr, up.stderr
    assert "install-deps.sh" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr, up.stderr
    assert not {n for n in after[0] - before[0] if n == name or n.startswith(f"{name}.")}, \
        "lab up created network namespaces before naming exabgp"
    assert not {e for e in after[1] - before[1] if e == name or e.startswith(f"{name}.")}, \
        "lab up left state under /run/lab"
