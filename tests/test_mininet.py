"""`lab mininet` (Mininet's CLI through a pty) and `lab.mininet.LabNet` over real flannel-vxlan labs.

Each lab is a copy of topologies/flannel-vxlan.yaml renamed `tm-<hex>-...`; the expected pods, nodes and
pod CIDRs come from that YAML, the expected routes and links from the kernel (`ip -n <netns>`).
"""

from __future__ import annotations

import os
import re
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TOPOLOGIES, netns_list, run_lab
from calico_labs import renamed_copy
from hoststate import snapshot
from test_host_untouched import assert_same

pytestmark = pytest.mark.needs_root
PREFIX = f"tm-{secrets.token_hex(3)}"
PROMPT = "mininet> "


def _spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _pod_keys(spec: dict) -> list[str]:
    return [f"{p.get('namespace', 'default')}/{p['name']}" for p in spec["pods"]]


def _shells_of(lab: str) -> list[int]:
    """Pids of Mininet node shells (`bash ... mininet:<node>`) whose namespace belongs to `lab`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            netns = subprocess.run(["ip", "netns", "identify", entry], capture_output=True, text=True).stdout
        except OSError:
            continue
        if any(arg.startswith(b"mininet:") for arg in cmdline) and netns.startswith(f"{lab}."):
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def flannel(labs, tmp_path_factory):
    """(lab name, topology dict) of a flannel-vxlan copy that is up."""
    name = f"{PREFIX}-fv"
    path = renamed_copy("flannel-vxlan", name, tmp_path_factory.mktemp("mn"))
    labs(str(path), name)
    run_lab("wait", name)
    return name, _spec(path)


class Pty:
    """`lab mininet <lab>` on a pseudo-terminal, as a student at a terminal runs it."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "mininet", *args], cwd=REPO,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = ""

    def read_until(self, marker: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {marker!r} within {timeout:g} s; got:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    data = os.read(self.master, 65536).decode(errors="replace")
                except OSError:   # the child closed the terminal
                    data = ""
                if not data:
                    raise AssertionError(f"the CLI ended before {marker!r}; got:\n{self.seen}")
                self.seen += data
        cut = self.seen.index(marker) + len(marker)
        text, self.seen = self.seen[:cut], self.seen[cut:]
        return text.replace("\r\n", "\n")

    def run(self, line: str, timeout: float = 60.0) -> str:
        """Type `line`; the output up to the next prompt, without the echoed line."""
        os.write(self.master, line.encode() + b"\n")
        text = self.read_until(PROMPT, timeout)[:-len(PROMPT)]
        return text.split("\n", 1)[1] if "\n" in text else ""

    def close(self) -> int:
        try:
            if self.proc.poll() is None:
                os.write(self.master, b"exit\n")
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def test_cli_pingall_routes_iperf_exit(flannel):
    lab, spec = flannel
    pods = _pod_keys(spec)
    cli = Pty(lab)
    try:
        cli.read_until(PROMPT)
        pingall = cli.run("pingall")
        pairs = len(pods) * (len(pods) - 1)
        assert f"*** Results: 0% dropped ({pairs}/{pairs} received)" in pingall, pingall
        for pod in pods:
            assert re.search(rf"(?m)^{re.escape(pod)} -> ", pingall), pingall

        routes = cli.run("k8s-node01 ip route")
        kernel = subprocess.run(["ip", "-n", f"{lab}.k8s-node01", "route"], capture_output=True, text=True,
                                check=True).stdout
        assert [line.strip() for line in routes.strip().splitlines()] == \
               [line.strip() for line in kernel.strip().splitlines()]
        node01 = next(n for n in spec["nodes"] if n["name"] == "k8s-node01")
        assert f"{node01['podCIDR']} dev cni0" in routes            # its own pod CIDR on the bridge
        for other in spec["nodes"]:
            if other["name"] != "k8s-node01":                        # the others' through VXLAN
                assert f"{other['podCIDR']} via" in routes and "flannel.1" in routes

        iperf = cli.run(f"iperf {pods[0]} {pods[1]}", timeout=90)
        assert re.search(r"\*\*\* Results: \['[\d.]+ [KMG]?bits/sec', '[\d.]+ [KMG]?bits/sec'\]", iperf), iperf

        unknown = cli.run("k8s-node99 ip route")
        assert "Unknown command or node: k8s-node99" in unknown and "k8s-node01" in unknown

        os.write(cli.master, b"exit\n")
        tail = cli.read_until("stays up")
        assert f"lab {lab}" in tail
    finally:
        code = cli.close()
    assert code == 0
    assert run_lab("status", lab).returncode == 0
    assert f"{lab}.k8s-node01" in netns_list()
    assert _shells_of(lab) == []


def test_labnet_attach(flannel):
    from lab.mininet import LabNet
    lab, spec = flannel
    net = LabNet(lab, up=False)
    try:
        assert not net.started_lab
        assert len(_shells_of(lab)) == len(net.nameToNode) == len(spec["pods"]) + len(spec["nodes"]) + 1
        assert sorted(h.name for h in net.hosts) == sorted(_pod_keys(spec))
        assert net.switches == [] and net.controllers == []
        assert net.pingAll() == 0.0
        for name, netns in [("k8s-node01", f"{lab}.k8s-node01"), (_pod_keys(spec)[0],
                            f"{lab}.{_pod_keys(spec)[0].replace('/', '.')}"), ("underlay", f"{lab}._underlay")]:
            inside = net.get(name).cmd("ip -o link").replace("\r\n", "\n")
            kernel = subprocess.run(["ip", "-n", netns, "-o", "link"], capture_output=True, text=True,
                                    check=True).stdout
            assert inside.split() == kernel.split(), name
        server, client = net.iperf((net.hosts[0], net.hosts[-1]), seconds=1)
        assert re.fullmatch(r"[\d.]+ [KMG]?bits/sec", server) and re.fullmatch(r"[\d.]+ [KMG]?bits/sec", client)
    finally:
        net.stop()
    assert run_lab("status", lab).returncode == 0          # attached: the lab stays
    assert _shells_of(lab) == []


def test_labnet_brings_up_and_removes(tmp_path):
    from lab.mininet import LabNet
    name = f"{PREFIX}-own"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    try:
        net = LabNet(str(path))
        try:
            assert net.started_lab and net.lab == name
            assert net.get("k8s-node02").IP() == "192.168.10.73"      # from the YAML
        finally:
            net.stop()
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert _shells_of(name) == []
    finally:
        run_lab("down", name, check=False)


def test_unknown_lab():
    result = run_lab("mininet", f"{PREFIX}-nosuch", check=False)
    assert result.returncode == 2
    assert f"no lab named '{PREFIX}-nosuch' is up" in result.stderr and "lab list" in result.stderr


def test_topology_that_fails_to_load(tmp_path):
    from lab.errors import LabError
    from lab.mininet import LabNet
    name = f"{PREFIX}-bad"
    bad = tmp_path / f"{name}.yaml"
    text = (TOPOLOGIES / "flannel-vxlan.yaml").read_text()
    bad.write_text(re.sub(r"(?m)^name:.*$", f"name: {name}", text, count=1).replace("ip: 192.168.10.72",
                                                                                      "ip: 192.168.10.999"))
    before = netns_list()
    with pytest.raises(LabError) as failure:
        LabNet(str(bad))
    message = str(failure.value)
    assert f"{bad}:" in message and "192.168.10.999" in message
    assert not [n for n in netns_list() - before if n.startswith(f"{name}.")]   # others' labs may come up meanwhile
    assert run_lab("status", name, check=False).returncode == 2


FIX_LIMITS = ["net.core.wmem_max", "net.core.rmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
              "net.core.netdev_max_backlog", "net.ipv4.neigh.default.gc_thresh1",
              "net.ipv4.neigh.default.gc_thresh2", "net.ipv4.neigh.default.gc_thresh3", "net.ipv4.route.max_size"]


def _root_sysctls() -> dict[str, str]:
    """The root namespace's values of what Mininet's fixLimits() raises (this process is in the root one)."""
    return {key: Path("/proc/sys", *key.split(".")).read_text().strip() for key in FIX_LIMITS}


def _mn(*args: str) -> subprocess.CompletedProcess:
    custom = run_lab("mininet", "--custom-path").stdout.strip()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([str(Path(sys.executable).parent / "mn"), "--custom", custom, *args], cwd="/",
                          capture_output=True, text=True, env=env, timeout=300)


def test_mn_custom_pingall_leaves_nothing(tmp_path):
    name = f"{PREFIX}-mn"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    spec = _spec(path)
    before = _root_sysctls()
    host_before = snapshot()
    try:
        result = _mn("--topo", f"lab,{path}", "--test", "pingall")
        assert result.returncode == 0, result.stdout + result.stderr
        hosts = len(spec["pods"]) + len(spec["nodes"])              # pods and nodes are mn's hosts
        pairs = hosts * (hosts - 1)
        assert f"*** Results: 0% dropped ({pairs}/{pairs} received)" in result.stdout + result.stderr
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert _shells_of(name) == []
        assert _root_sysctls() == before
        assert_same(host_before, snapshot())               # links, addresses, routes, iptables, net.* sysctls
    finally:
        run_lab("down", name, check=False)


def test_mn_custom_attached_lab_stays(flannel):
    lab, _spec_ = flannel
    result = _mn("--topo", f"lab,{lab}", "--test", "pingall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0% dropped" in result.stdout + result.stderr
    assert run_lab("status", lab).returncode == 0
    assert _shells_of(lab) == []


def test_mn_custom_bad_topology(tmp_path):
    name = f"{PREFIX}-mnbad"
    bad = tmp_path / f"{name}.yaml"
    text = re.sub(r"(?m)^name:.*$", f"name: {name}", (TOPOLOGIES / "flannel-vxlan.yaml").read_text(), count=1)
    bad.write_text(text.replace("ip: 192.168.10.72", "ip: 192.168.10.999"))
    before = netns_list()
    result = _mn("--topo", f"lab,{bad}", "--test", "pingall")
    assert result.returncode == 2
    assert f"lab: error: {bad}:" in result.stderr and "192.168.10.999" in result.stderr
    assert "Caught exception" not in result.stderr                 # mn's machine-wide cleanup did not run
    assert not [n for n in netns_list() - before if n.startswith(f"{name}.")]   # others' labs may come up meanwhile
