"""The parallel apply path (lab/netns/workers.py): a lab configured by several worker processes holds
exactly its plan, and a failure in any worker rolls the whole lab back.

Labs here are small, so the tests force two workers with one namespace per share (`min_share=1`)."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_up  # noqa: E402  (the generated N x M topologies)
from conftest import netns_list  # noqa: E402
from kernel import Snapshot  # noqa: E402

from lab.errors import ApplyError  # noqa: E402
from lab.lifecycle import Lab  # noqa: E402
from lab.netns import apply, namespace, workers  # noqa: E402
from lab.netns.plan import LabPlan, Route  # noqa: E402
from lab.topology import loader  # noqa: E402

pytestmark = pytest.mark.needs_root
TWO = workers.Parallelism(workers=2, min_share=1)
NODES, PODS = 6, 3


def topology(tmp_path: Path, name: str, static: bool = True):
    text = bench_up.topology_yaml(name, NODES, PODS)
    if static:   # permanent neighbours too, so every kind of object goes through the workers
        text += "options: {staticNeighbours: true}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def lab_namespaces(lab: str) -> set[str]:
    return {n for n in netns_list() if n == lab or n.startswith(f"{lab}.")}


def kernel_state(netns: str) -> dict:
    """What the plan describes, read back with pyroute2 (names, not indexes)."""
    snap = Snapshot(netns)
    links = {}
    for name, link in snap.links.items():
        info = dict(link.get_attr("IFLA_LINKINFO")["attrs"]) if link.get_attr("IFLA_LINKINFO") else {}
        master = link.get_attr("IFLA_MASTER")
        links[name] = (link["index"], info.get("IFLA_INFO_KIND"), link.get_attr("IFLA_MTU"),
                       snap.names.get(master) if master else None, bool(link["flags"] & 1))
    neighbours = {(snap.names[n["ifindex"]], n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"))
                  for n in snap.neighbours if n["state"] & 0x80}
    fdb = {(snap.names[n["ifindex"]], n.get_attr("NDA_LLADDR"), n.get_attr("NDA_DST"))
           for n in snap.fdb if n.get_attr("NDA_DST")}
    routes = {(r.dst, r.gateway, r.dev) for r in snap.routes if r.proto == "boot"}
    return {"links": links, "addresses": {(dev, cidr) for dev, cidr, _ in snap.addresses if dev != "lo"},
            "neighbours": neighbours, "fdb": fdb, "routes": routes}


def planned_state(plan: LabPlan, netns: str) -> dict:
    ns = plan.namespace(netns)
    links = {}
    for link in ns.links:
        links[link.name] = (link.index, None if link.kind == "existing" else link.kind, link.mtu, link.master, link.up)
    for other in plan.namespaces:   # veth peers created from another namespace
        for link in other.links:
            if link.peer and link.peer.netns == netns:
                links[link.peer.name] = (link.peer.index, "veth", link.peer.mtu, None, True)
    return {"links": links,
            "addresses": {(a.dev, a.cidr) for a in ns.addresses},
            "neighbours": {(n.dev, n.ip, n.mac) for n in ns.neighbours},
            "fdb": {(f.dev, f.mac, f.dst) for f in ns.fdb},
            "routes": {("default" if r.dst == "0.0.0.0/0" else r.dst, r.gateway, r.dev) for r in ns.routes}}


def comparable(kernel: dict, planned: dict) -> dict:
    """The kernel's view, keeping kinds and MTUs only where the plan states them (lo, born MTU)."""
    links = {}
    for name, (index, kind, mtu, master, up) in kernel["links"].items():
        want = planned["links"].get(name)
        if want is None:
            links[name] = (index, kind, mtu, master, up)
            continue
        links[name] = (index, kind if want[1] else None, mtu if want[2] else None, master, up)
    return {**kernel, "links": links}


def iptables_rules(netns: str) -> set[tuple[str, str]]:
    """(table, line) of every chain declaration and rule `iptables-save` prints in `netns`."""
    text = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True,
                          check=True).stdout
    table, found = "", set()
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            if chain not in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"):
                found.add((table, f":{chain}"))
        elif line.startswith("-A"):
            found.add((table, line))
    return found


def planned_rules(ns) -> set[tuple[str, str]]:
    return ({(t.table, f":{chain}") for t in ns.iptables for chain in t.chains}
            | {(t.table, rule) for t in ns.iptables for rule in t.rules})


def test_two_workers_build_exactly_the_plan(tmp_path):
    name = "pw-exact"
    path = topology(tmp_path, name)
    lab = Lab()
    plan = lab.plan(loader.load(str(path)))[0]
    parts = [workers.shares(wave, 2) for wave in workers.waves(plan)]
    assert [len(p) for p in parts] == [1, 2, 2], "underlay alone, then nodes and pods each over two workers"
    try:
        result = lab.up(str(path), parallelism=TWO)
        assert result.created
        assert {ns.name for ns in plan.namespaces} <= lab_namespaces(name)
        for ns in plan.namespaces:
            want = planned_state(plan, ns.name)
            assert comparable(kernel_state(ns.name), want) == want, ns.name
            for sysctl in ns.sysctls:
                got = Path(f"/proc/sys/{sysctl.key}")
                assert namespace.run_in(ns.name, got.read_text).strip() == sysctl.value, (ns.name, sysctl.key)
            assert iptables_rules(ns.name) == planned_rules(ns), ns.name   # loaded by the worker that configured it
    finally:
        lab.down(name)
    assert not lab_namespaces(name)


def test_a_fault_in_a_worker_process_rolls_the_whole_lab_back(tmp_path):
    name = "pw-fault"
    path = topology(tmp_path, name)
    lab = Lab()
    plan = lab.plan(loader.load(str(path)))[0]
    pods = workers.shares(workers.waves(plan)[2], 2)
    in_worker = plan.namespaces.index(pods[1][0])   # the first namespace of the forked worker's share
    with pytest.raises(apply.FaultInjected, match=f"fault injected after {in_worker} namespaces"):
        lab.up(str(path), fail_after=in_worker, parallelism=TWO)
    assert not lab_namespaces(name)
    assert lab.store.load(name) is None
    assert not any(a.startswith(f"{name}") for a in os.listdir(lab.store.root))


def test_a_refusal_in_a_worker_names_it_and_nothing_is_left(tmp_path):
    """The kernel refuses a route in one pod (its gateway is on no connected network): the apply fails with
    that route named, and removing the plan's namespaces leaves nothing."""
    name = "pw-refuse"
    plan = Lab().plan(loader.load(str(topology(tmp_path, name, static=False))))[0]
    pods = workers.shares(workers.waves(plan)[2], 2)
    victim = pods[1][-1]
    broken = replace(victim, routes=victim.routes + (Route(dst="172.31.0.0/16", gateway="172.30.0.1", dev="eth0"),))
    plan = replace(plan, namespaces=tuple(broken if ns is victim else ns for ns in plan.namespaces))
    try:
        with pytest.raises(ApplyError, match=f"{victim.name}: route 172.31.0.0/16 via 172.30.0.1"):
            apply.apply_plan(plan, parallelism=TWO)
    finally:
        apply.remove_namespaces([ns.name for ns in plan.namespaces])
    assert not lab_namespaces(name)


def test_an_iptables_refusal_in_a_worker_names_the_node_and_nothing_is_left(tmp_path):
    """A node configured by the forked worker gets a rule iptables-restore refuses: the apply fails naming that
    node and quoting iptables-restore, and once the plan's namespaces are removed no process of it is left."""
    from lab.netns.plan import IptablesRules
    name = "pw-ipt"
    plan = Lab().plan(loader.load(str(topology(tmp_path, name, static=False))))[0]
    nodes = workers.shares(workers.waves(plan)[1], 2)
    victim = nodes[1][-1]
    assert victim.iptables, "flannel nodes have rules (FLANNEL-FWD, FLANNEL-POSTRTG)"
    bad = IptablesRules("filter", (), ("-A NO-SUCH-CHAIN -j ACCEPT",))
    broken = replace(victim, iptables=victim.iptables + (bad,))
    plan = replace(plan, namespaces=tuple(broken if ns is victim else ns for ns in plan.namespaces))
    try:
        refused = rf"iptables-restore refused the rules of {re.escape(victim.name)}: iptables-restore: line \d+ failed"
        with pytest.raises(ApplyError, match=refused):
            apply.apply_plan(plan, parallelism=TWO)
        inodes = {i for n in lab_namespaces(name) if (i := namespace.inode(n))}   # nothing is rolled back yet
    finally:
        apply.remove_namespaces([ns.name for ns in plan.namespaces])
    assert not lab_namespaces(name)
    assert inodes and namespace.pids_by_namespace(inodes) == {}, "a process outlived the namespaces (keeping them)"


def test_waves_put_every_device_creator_first():
    """Each namespace's veth peers land in a later wave (the plan's own order is kept within a wave)."""
    plan = Lab().plan(loader.load_text(bench_up.topology_yaml("pw-waves", 4, 2), "pw-waves.yaml"))[0]
    wave_of = {ns.name: i for i, wave in enumerate(workers.waves(plan)) for ns in wave}
    for ns in plan.namespaces:
        for link in ns.links:
            if link.peer:
                assert wave_of[link.peer.netns] == wave_of[ns.name] + 1
    assert sum(len(w) for w in workers.waves(plan)) == len(plan.namespaces)


def test_sysctls_through_a_private_procfs_land_in_the_thread_s_namespace():
    """lab/netns/procfs.py: written through its own (renewed) procfs instance, read back through /proc."""
    from lab.netns import procfs
    names = [f"pw-sysctl.{i}" for i in range(3)]
    namespace.create_many(names)
    try:
        writer = procfs.SysctlWriter(renew=2)

        def write(name: str) -> None:
            writer.begin_namespace()
            writer.write("net/ipv4/ip_forward", "1" if name.endswith("1") else "0")
            writer.write("net/ipv4/conf/lo/arp_notify", "1")
        namespace.run_in_each(names, write)
        writer.close()
        assert writer.private, "the kernel here has the mount API (fsopen, fsmount)"
        read = [namespace.run_in(n, lambda: (Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
                                             Path("/proc/sys/net/ipv4/conf/lo/arp_notify").read_text().strip()))
                for n in names]
        assert read == [("0", "1"), ("1", "1"), ("0", "1")]
    finally:
        apply.remove_namespaces(names)


def test_mount_points_are_links_of_one_file_and_refuse_a_taken_name(tmp_path):
    """lab/netns/namespace.py's MountPoints: one inode for all the names (no inode allocated per namespace),
    each an empty file; a name that exists is refused, as O_EXCL refuses it."""
    points = namespace.MountPoints(str(tmp_path))
    try:
        for name in ("a", "b.c", "d"):
            points.make(name)
        with pytest.raises(FileExistsError):
            points.make("b.c")
    finally:
        points.close()
    stats = [os.stat(tmp_path / name) for name in ("a", "b.c", "d")]
    assert len({s.st_ino for s in stats}) == 1 and stats[0].st_nlink == 3
    assert all(s.st_size == 0 and s.st_mode & 0o777 == 0 for s in stats)


def test_mount_points_fall_back_to_one_file_each_where_links_are_refused(tmp_path, monkeypatch):
    def refused(*_args):
        ctypes.set_errno(errno.EPERM)
        return -1
    monkeypatch.setattr(namespace, "_libc", type("Libc", (), {"linkat": staticmethod(refused)}))
    points = namespace.MountPoints(str(tmp_path))
    points.make("a")
    points.make("b")
    points.close()
    assert os.stat(tmp_path / "a").st_ino != os.stat(tmp_path / "b").st_ino


def test_namespaces_on_linked_mount_points_are_distinct_and_ip_netns_sees_them():
    """Each name is its own network namespace (its own inode), usable and removable with iproute2."""
    names = [f"pw-mp.{i}" for i in range(3)]
    namespace.create_many(names)
    try:
        assert len({namespace.inode(n) for n in names}) == 3
        assert set(names) <= set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                                check=True).stdout.split())
        out = subprocess.run(["ip", "netns", "exec", names[1], "ip", "-o", "link", "show"], capture_output=True,
                             text=True, check=True).stdout
        assert out.count("\n") == 1 and ": lo:" in out
        subprocess.run(["ip", "netns", "delete", names[1]], check=True)
        assert not namespace.exists(names[1]) and namespace.exists(names[0]) and namespace.exists(names[2])
    finally:
        apply.remove_namespaces(names)
    assert not any(namespace.exists(n) for n in names)
