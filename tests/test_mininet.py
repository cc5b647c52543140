"""`lab mininet` (Mininet's CLI through a pty) and `lab.mininet.LabNet` over real flannel-vxlan labs.

Each lab is a copy of topologies/flannel-vxlan.yaml renamed `tm2-<hex>-...`; the expected pods, nodes and
pod CIDRs come from that YAML, the expected routes and links from the kernel (`ip -n <netns>`). Node
shells are found as the `mininet:<node>` children of the process under test (their pids and start times
recorded while it runs) and must be gone afterwards; `mn` runs in its own session with a timeout that
kills only that session and the shells recorded (never Mininet's machine-wide cleanup).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from calico_labs import renamed_copy
from conftest import REPO, TOPOLOGIES, netns_list, run_lab
from hoststate import snapshot
from test_host_untouched import assert_same

from lab.errors import LabError

pytestmark = pytest.mark.needs_root
PREFIX = f"tm2-{secrets.token_hex(2)}"
PROMPT = "mininet> "


def _spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _pod_keys(spec: dict) -> list[str]:
    return [f"{p.get('namespace', 'default')}/{p['name']}" for p in spec["pods"]]


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _child_shells(ppid: int) -> dict[int, str]:
    """{pid: start time} of the Mininet node shells (`bash ... mininet:<node>`) that are children of ppid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(stat[1]) == ppid and any(arg.startswith(b"mininet:") for arg in cmdline):
            found[int(entry)] = stat[19]
    return found


def _alive(shells: dict[int, str], timeout: float = 10.0) -> list[int]:
    """The recorded shells still running (same pid and start time) after waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid, start in shells.items() if _start_time(pid) == start]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


class ShellWatch:
    """Records, while `proc` runs, the node shells it starts (so that their end can be checked)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.shells = proc, {}
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.proc.poll() is None:
            self.shells.update(_child_shells(self.proc.pid))
            time.sleep(0.2)


def _kill_tree(proc: subprocess.Popen, shells: dict[int, str]) -> None:
    """SIGKILL the session `proc` leads and the shells recorded for it; nothing else."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for pid, start in shells.items():
        if _start_time(pid) == start:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    proc.wait()


@pytest.fixture(scope="module")
def flannel_path(labs, tmp_path_factory):
    """(lab name, topology dict, YAML path) of a flannel-vxlan copy that is up."""
    name = f"{PREFIX}-fv"
    path = renamed_copy("flannel-vxlan", name, tmp_path_factory.mktemp("mn"))
    labs(str(path), name)
    run_lab("wait", name)
    return name, _spec(path), path


@pytest.fixture(scope="module")
def flannel(flannel_path):
    """(lab name, topology dict) of a flannel-vxlan copy that is up."""
    return flannel_path[:2]


class Pty:
    """`lab mininet <lab>` on a pseudo-terminal, as a student at a terminal runs it."""

    def __init__(self, *args: str, argv: list[str] | None = None, env: dict | None = None) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv or [sys.executable, "-m", "lab.cli", "mininet", *args], cwd=REPO,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = ""
        self.watch = ShellWatch(self.proc)

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

    def wait(self, timeout: float) -> int:
        """Read what the child prints (as a terminal does) until it exits; its status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    time.sleep(0.2)
        if self.proc.poll() is None:
            state = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:24,cmd", "--ppid", str(self.proc.pid), "-p",
                                    str(self.proc.pid)], capture_output=True, text=True).stdout
            stack = subprocess.run(["cat", f"/proc/{self.proc.pid}/stack"], capture_output=True, text=True).stdout
            raise AssertionError(f"still running after {timeout:g} s:\n{state}\n{stack}\n{self.seen[-3000:]}")
        return self.proc.returncode

    def close(self) -> int:
        try:
            if self.proc.poll() is None:
                os.write(self.master, b"exit\n")
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                _kill_tree(self.proc, self.watch.shells)
            os.close(self.master)


def test_cli_pingall_routes_iperf_exit(flannel):
    lab, spec = flannel
    pods = _pod_keys(spec)
    cli = Pty(lab)
    try:
        cli.read_until(PROMPT)
        shells = _child_shells(cli.proc.pid)
        assert len(shells) == len(spec["pods"]) + len(spec["nodes"]) + 1     # pods, nodes, underlay
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
    assert _alive(shells) == []


def _kernel_link(netns: str, ifname: str) -> dict:
    return json.loads(subprocess.run(["ip", "-n", netns, "-j", "addr", "show", "dev", ifname], capture_output=True,
                                     text=True, check=True).stdout)[0]


def _pod_peer(lab: str, pod: dict) -> str:
    """The node-side veth of a pod's eth0 (found through the kernel's link index in the pod's node)."""
    eth0 = _kernel_link(f"{lab}.{pod.get('namespace', 'default')}.{pod['name']}", "eth0")
    links = json.loads(subprocess.run(["ip", "-n", f"{lab}.{pod['node']}", "-j", "link"], capture_output=True,
                                      text=True, check=True).stdout)
    return next(link["ifname"] for link in links if link["ifindex"] == eth0["link_index"])


def test_cli_net_dump_links_sh_py_link(flannel):
    lab, spec = flannel
    pod = spec["pods"][0]
    key = f"{pod.get('namespace', 'default')}/{pod['name']}"
    peer = _pod_peer(lab, pod)
    pod_ip = next(a["local"] for a in _kernel_link(f"{lab}.{key.replace('/', '.')}", "eth0")["addr_info"]
                  if a["family"] == "inet")
    cli = Pty(lab)
    try:
        cli.read_until(PROMPT)
        net = cli.run("net")
        assert re.search(rf"(?m)^{re.escape(key)} eth0:{re.escape(peer)}\s*$", net), net
        assert re.search(rf"(?m)^{pod['node']} .*{re.escape(peer)}:eth0", net), net
        dump = cli.run("dump")
        assert re.search(rf"<LabPod {re.escape(key)}: eth0:{re.escape(pod_ip)} pid=\d+>", dump), dump
        assert "<LabNode k8s-node01:" in dump and "<LabUnderlay underlay:" in dump
        links = cli.run("links")
        assert re.search(rf"(?m)^({re.escape(key)}:eth0<->{pod['node']}:{re.escape(peer)}|"
                         rf"{pod['node']}:{re.escape(peer)}<->{re.escape(key)}:eth0) \(OK OK\)", links), links
        root_net = os.readlink("/proc/self/ns/net")
        assert cli.run("sh readlink /proc/self/ns/net").strip() == root_net      # `sh` runs on the host
        inside = cli.run("py k8s_node01.cmd('readlink /proc/self/ns/net')").strip()
        node_ns = os.stat(f"/run/netns/{lab}.k8s-node01").st_ino
        assert inside == f"net:[{node_ns}]"
        assert cli.run(f"py net.get('{key}').IP()").strip() == pod_ip
        routes_before = subprocess.run(["ip", "-n", f"{lab}.{key.replace('/', '.')}", "route"], capture_output=True,
                                       text=True, check=True).stdout
        refused = cli.run(f"link {key} {pod['node']} down")
        assert "not offered over a lab" in refused, refused
        assert subprocess.run(["ip", "-n", f"{lab}.{key.replace('/', '.')}", "route"], capture_output=True,
                              text=True, check=True).stdout == routes_before
        assert "default via" in routes_before
    finally:
        assert cli.close() == 0


def test_cli_leaves_when_lab_goes_down(tmp_path):
    name = f"{PREFIX}-dn"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    run_lab("up", str(path))
    try:
        cli = Pty(name)
        try:
            cli.read_until(PROMPT)
            shells = _child_shells(cli.proc.pid)
            assert shells
            cli.run(f"sh {sys.executable} -m lab.cli down {name}", timeout=120)
            os.write(cli.master, b"pingall\n")
            said = cli.read_until("leaving the CLI", timeout=30)
            assert f"lab {name} is down or its node shells ended" in said
            assert cli.proc.wait(timeout=30) == 0
        finally:
            cli.close()
        assert _alive(shells) == []
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
    finally:
        run_lab("down", name, check=False)


def test_labnet_attach(flannel):
    from lab.mininet import LabNet
    lab, spec = flannel
    net = LabNet(lab, up=False)
    shells = {node.pid: _start_time(node.pid) for node in net.nameToNode.values()}
    try:
        assert not net.started_lab
        assert shells == _child_shells(os.getpid())
        assert len(shells) == len(net.nameToNode) == len(spec["pods"]) + len(spec["nodes"]) + 1
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
        with pytest.raises(LabError, match="not offered over a lab"):
            net.configLinkStatus("default/bs1", "k8s-node03", "down")
    finally:
        net.stop()
    assert run_lab("status", lab).returncode == 0          # attached: the lab stays
    assert _alive(shells) == []


def test_labnet_attaches_by_yaml_of_running_lab(flannel_path):
    from lab.mininet import LabNet
    lab, _spec_, path = flannel_path
    net = LabNet(str(path))
    try:
        assert net.lab == lab and not net.started_lab
    finally:
        net.stop()
    assert run_lab("status", lab).returncode == 0


def test_interact_runs_lab_cli(flannel):
    """A script's `net.interact()` (Mininet's `CLI(net)` use) reaches nodes named with '-' and '/'."""
    lab, spec = flannel
    key = _pod_keys(spec)[0]
    script = f"from lab.mininet import LabNet\nLabNet({lab!r}, up=False).interact()\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          input=f"k8s-node01 ip route\n{key} ip -o -4 addr show eth0\nexit\n")
    assert done.returncode == 0, done.stdout + done.stderr
    kernel = subprocess.run(["ip", "-n", f"{lab}.k8s-node01", "route"], capture_output=True, text=True,
                            check=True).stdout
    said = done.stdout + done.stderr                     # Mininet's output() logs to stderr
    for line in kernel.strip().splitlines():
        assert line.strip() in said
    pod = next(p for p in spec["pods"] if f"{p.get('namespace', 'default')}/{p['name']}" == key)
    assert f"inet {pod.get('ip', '10.')}" in said and "Unknown command" not in said


def test_missing_mininet_is_a_clear_error(flannel, tmp_path):
    lab, _spec_ = flannel
    (tmp_path / "mininet").mkdir()
    (tmp_path / "mininet" / "__init__.py").write_text("raise ImportError('no module named mininet (test)')\n")
    result = run_lab("mininet", lab, check=False, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lab: error: Mininet cannot be imported" in result.stderr and "install-deps.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_labnet_brings_up_and_removes(tmp_path):
    from lab.mininet import LabNet
    name = f"{PREFIX}-own"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    try:
        net = LabNet(str(path))
        try:
            assert net.started_lab and net.lab == name
            assert net.get("k8s-node02").IP() == "192.168.10.73"      # from the YAML
            shells = {node.pid: _start_time(node.pid) for node in net.nameToNode.values()}
        finally:
            net.stop()
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert shells and _alive(shells) == []
    finally:
        run_lab("down", name, check=False)


def test_unknown_lab():
    result = run_lab("mininet", f"{PREFIX}-nosuch", check=False)
    assert result.returncode == 2
    assert f"no lab named '{PREFIX}-nosuch' is up" in result.stderr and "lab list" in result.stderr


def test_topology_that_fails_to_load(tmp_path):
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


# mn is run through this guard: Mininet's machine-wide cleanup() is replaced by one that fails loudly,
# so that a custom file that did not bind its lab-safe cleanup can never reach the machine's processes.
GUARD = ("import runpy, sys\n"
         "import mininet.clean\n"
         "def refused(*_a, **_k):\n"
         "    raise SystemExit('TEST GUARD: Mininet machine-wide cleanup() was called')\n"
         "mininet.clean.cleanup = mininet.clean.Cleanup.cleanup = refused\n"
         "sys.argv = sys.argv[1:]\n"
         "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def _mn_argv(*args: str) -> list[str]:
    custom = run_lab("mininet", "--custom-path").stdout.strip()
    return [sys.executable, "-c", GUARD, str(Path(sys.executable).parent / "mn"), "--custom", custom, *args]


class Mn:
    """`mn --custom <lab's custom file> ...` (the lab environment's mn) in its own session; its node shells
    are recorded while it runs. On timeout only that session and those shells are killed."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(_mn_argv(*args), cwd="/",
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
        self.watch = ShellWatch(self.proc)

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(self.proc, self.watch.shells)
            raise AssertionError(f"mn did not end within {timeout:g} s (killed its own process tree)") from None
        self.watch.thread.join()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def _mn(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict[int, str]]:
    mn = Mn(*args)
    return mn.result(timeout), mn.watch.shells


def test_mn_custom_pingall_leaves_nothing(tmp_path):
    name = f"{PREFIX}-mn"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    spec = _spec(path)
    before = _root_sysctls()
    host_before = snapshot()
    try:
        result, shells = _mn("--topo", f"lab,{path}", "--test", "pingall")
        assert result.returncode == 0, result.stdout + result.stderr
        hosts = len(spec["pods"]) + len(spec["nodes"])              # pods and nodes are mn's hosts
        assert shells                       # sampled while mn ran: a fast run may show only some of them
        assert f"*** Stopping {hosts} hosts" in result.stdout + result.stderr
        pairs = hosts * (hosts - 1)
        assert f"*** Results: 0% dropped ({pairs}/{pairs} received)" in result.stdout + result.stderr
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert _alive(shells) == []
        assert _root_sysctls() == before
        assert_same(host_before, snapshot())               # links, addresses, routes, iptables, net.* sysctls
    finally:
        run_lab("down", name, check=False)


def test_mn_custom_attached_lab_stays(flannel):
    lab, _spec_ = flannel
    result, shells = _mn("--topo", f"lab,{lab}", "--test", "pingall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0% dropped" in result.stdout + result.stderr
    assert run_lab("status", lab).returncode == 0
    assert shells and _alive(shells) == []


def test_mn_custom_iperf_completes(flannel):
    lab, _spec_ = flannel
    result, shells = _mn("--topo", f"lab,{lab}", "--test", "iperf", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\*\*\* Results: \['[\d.]+ [KMG]?bits/sec', '[\d.]+ [KMG]?bits/sec'\]",
                     result.stdout + result.stderr), result.stdout + result.stderr
    assert run_lab("status", lab).returncode == 0
    assert shells and _alive(shells) == []


@pytest.mark.parametrize("option", [["--nat"], ["--arp"], ["--innamespace"], ["--controller", "ref"],
                                    ["--switch", "lxbr"]])
def test_mn_custom_refuses_options(flannel, option):
    lab, _spec_ = flannel
    result, shells = _mn("--topo", f"lab,{lab}", *option, "--test", "pingall", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"lab: error: mn --topo lab does not take {option[0]}" in result.stderr
    assert "Caught exception" not in result.stderr and "Removing excess controllers" not in result.stderr
    assert run_lab("status", lab).returncode == 0
    assert _alive(shells) == []


def test_mn_custom_exception_runs_lab_cleanup_only(flannel):
    """An exception in mn (--switch ovsk: no controller for it) runs the custom file's cleanup, not
    Mininet's machine-wide one."""
    lab, _spec_ = flannel
    result, shells = _mn("--topo", f"lab,{lab}", "--switch", "ovsk", "--test", "pingall", timeout=120)
    said = result.stdout + result.stderr
    assert "Caught exception" in said and "Could not find a default controller for switch ovsk" in said, said
    assert "Mininet's machine-wide cleanup (`mn -c`) is not run" in said
    assert "Removing excess controllers" not in result.stdout + result.stderr
    assert run_lab("status", lab).returncode == 0
    assert _alive(shells) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_mn_signal_removes_its_lab(tmp_path, signum):
    name = f"{PREFIX}-s{int(signum)}"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = Pty(argv=_mn_argv("--topo", f"lab,{path}"), env=env)
    try:
        cli.read_until(PROMPT, timeout=180)
        shells = _child_shells(cli.proc.pid)
        assert shells and f"{name}.k8s-node01" in netns_list()
        if signum == signal.SIGHUP:
            os.close(cli.master)                         # the terminal goes away, as when a window closes
            cli.master = os.open("/dev/null", os.O_RDONLY)
        cli.proc.send_signal(signum)
        assert cli.wait(timeout=120) == 128 + int(signum), cli.seen
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert _alive(shells) == []
    finally:
        cli.close()
        run_lab("down", name, check=False)


def test_mn_custom_bad_topology(tmp_path):
    name = f"{PREFIX}-mnbad"
    bad = tmp_path / f"{name}.yaml"
    text = re.sub(r"(?m)^name:.*$", f"name: {name}", (TOPOLOGIES / "flannel-vxlan.yaml").read_text(), count=1)
    bad.write_text(text.replace("ip: 192.168.10.72", "ip: 192.168.10.999"))
    before = netns_list()
    result, _shells = _mn("--topo", f"lab,{bad}", "--test", "pingall")
    assert result.returncode == 2
    assert f"lab: error: {bad}:" in result.stderr and "192.168.10.999" in result.stderr
    assert "Caught exception" not in result.stderr                 # mn's machine-wide cleanup did not run
    assert not [n for n in netns_list() - before if n.startswith(f"{name}.")]   # others' labs may come up meanwhile


def test_mn_custom_clean_removes_lab_of_killed_mn(tmp_path):
    """`mn --custom <file> -c` (the lab's cleanup, not Mininet's) removes a lab whose mn was SIGKILLed."""
    name = f"{PREFIX}-k"
    path = renamed_copy("flannel-vxlan", name, tmp_path)
    cli = Pty(argv=_mn_argv("--topo", f"lab,{path}"), env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        cli.read_until(PROMPT, timeout=180)
        shells = _child_shells(cli.proc.pid)
        _kill_tree(cli.proc, shells)                        # no hook can run: the lab stays up
        assert run_lab("status", name).returncode == 0
        result, _shells = _mn("-c", timeout=120)
        said = result.stdout + result.stderr
        assert result.returncode == 0 and "TEST GUARD" not in said, said
        assert f"removing lab {name}, brought up by an mn that no longer runs" in said
        assert not [n for n in netns_list() if n.startswith(f"{name}.")]
        assert run_lab("status", name, check=False).returncode == 2
        assert _alive(shells) == []
    finally:
        cli.close()
        run_lab("down", name, check=False)
