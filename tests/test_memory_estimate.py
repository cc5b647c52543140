"""`lab up` refuses, before touching the kernel, a lab that would not fit in the machine's available memory
(lab/netns/memory.py). The available figure is given through a meminfo file of the test's own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_up  # noqa: E402
from conftest import TOPOLOGIES, netns_list  # noqa: E402

from lab.errors import TopologyError  # noqa: E402
from lab.lifecycle import Lab  # noqa: E402
from lab.netns import memory  # noqa: E402
from lab.topology import loader  # noqa: E402


def meminfo(tmp_path: Path, available_kib: int) -> str:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal: 24000000 kB\nMemFree: 1000 kB\nMemAvailable: {available_kib} kB\n")
    return str(path)


def test_the_estimate_counts_what_the_kernel_will_hold(tmp_path):
    """3 nodes x 2 pods of flannel-vxlan: 1 underlay + 3 nodes + 6 pods; every veth is two devices."""
    path = tmp_path / "est.yaml"
    path.write_text(bench_up.topology_yaml("est", 3, 2))
    plan = Lab().plan(loader.load(str(path)))[0]
    found = memory.estimate(plan)
    assert found.namespaces == 10
    # switch, 3 node uplinks (x2), per node cni0 + flannel.1 + 2 pod veths (x2)
    assert found.devices == 1 + 3 * 2 + 3 * (2 + 2 * 2)
    # per node: 2 remote VTEPs (neighbour + fdb each)
    assert found.entries == 3 * 2 * 2
    assert found.kernel == (10 * memory.NAMESPACE_BYTES + found.devices * memory.DEVICE_BYTES
                            + found.entries * memory.NEIGHBOUR_BYTES + found.routes * memory.ROUTE_BYTES)


@pytest.mark.needs_root
def test_a_lab_that_does_not_fit_is_refused_before_anything_is_created(tmp_path):
    source = (TOPOLOGIES / "flannel-vxlan.yaml").read_text().replace("name: flannel-vxlan", "name: mem-refused", 1)
    path = tmp_path / "mem-refused.yaml"
    path.write_text(source)
    lab = Lab(meminfo=meminfo(tmp_path, 50 * 1024))   # 50 MiB available: less than the lab process alone
    with pytest.raises(TopologyError) as refused:
        lab.up(str(path))
    text = str(refused.value)
    lines = source.splitlines()
    first_node = next(i for i, row in enumerate(lines, 1) if row.lstrip().startswith("- ")
                      and any(r.startswith("nodes:") for r in lines[:i - 1]))
    assert text.startswith(f"{path}:"), text
    assert ": nodes: this lab would need about " in text
    assert "but this machine has 50 MiB available (MemAvailable" in text
    assert "hint: bring up fewer nodes or pods" in text
    assert refused.value.line == first_node, "the error points at the first node of the topology"
    assert not any(n.startswith("mem-refused") for n in netns_list())
    assert lab.store.load("mem-refused") is None


@pytest.mark.needs_root
def test_the_same_lab_fits_when_memory_is_available(tmp_path):
    """The refusal depends on the figure: with 20 GiB available the estimate of a 3-node lab passes."""
    path = tmp_path / "mem-fits.yaml"
    path.write_text(bench_up.topology_yaml("mem-fits", 3, 2))
    lab = Lab(meminfo=meminfo(tmp_path, 20 * 1024 * 1024))
    topology = loader.load(str(path))
    plan = lab.plan(topology)[0]
    assert lab.check_memory(topology, plan).total < 20 * 2**30
    with pytest.raises(TopologyError):
        Lab(meminfo=meminfo(tmp_path, 1024)).check_memory(topology, plan)


def test_a_calico_bgp_lab_counts_a_bird_per_node_and_the_routes_it_will_learn(tmp_path):
    path = tmp_path / "est-calico.yaml"
    path.write_text(bench_up.topology_yaml("est-calico", 4, 1, "calico"))
    lab = Lab(meminfo=meminfo(tmp_path, 20 * 1024 * 1024))
    topology = loader.load(str(path))
    plan = lab.plan(topology)[0]
    found = lab.check_memory(topology, plan)
    assert found.daemons == 4 and found.routers == 0
    assert found.daemon_bytes == 4 * memory.BIRD_BYTES + memory.SUPERVISOR_BYTES
    planned = sum(len(ns.routes) + len(ns.addresses) for ns in plan.namespaces)
    assert found.routes == planned + 4 * 3   # each node learns the other three nodes' blocks
    assert found.sockets == 4 * 3            # a full mesh of 4: 6 sessions, each with an end on both nodes
    without = memory.estimate(plan, daemons=4, workers=2, learned_routes=4 * 3)
    assert found.kernel - without.kernel == 4 * 3 * memory.BGP_SOCKET_BYTES


def test_external_routers_count_exabgp_and_its_api_helper_each(tmp_path):
    """calico-tor: a BIRD per node, an ExaBGP + API helper per router, and the supervisor over them."""
    import yaml
    data = yaml.safe_load((TOPOLOGIES / "calico-tor.yaml").read_text())
    nodes, routers = len(data["nodes"]), len(data["routers"])
    assert nodes and routers
    lab = Lab(meminfo=meminfo(tmp_path, 20 * 1024 * 1024))
    topology = loader.load(str(TOPOLOGIES / "calico-tor.yaml"))
    found = lab.check_memory(topology, lab.plan(topology)[0])
    assert (found.daemons, found.routers) == (nodes, routers)
    assert found.daemon_bytes == nodes * memory.BIRD_BYTES + routers * memory.ROUTER_BYTES + memory.SUPERVISOR_BYTES
    assert memory.ROUTER_BYTES >= 60 * memory.MIB    # exabgp 29.7 MiB + helper 32.9 MiB RSS, measured
    assert f"{routers} ExaBGP routers" in found.describe()
    without = memory.estimate(lab.plan(topology)[0], daemons=nodes, routers=0)
    assert found.total - without.total >= routers * memory.ROUTER_BYTES


def test_an_object_shared_by_namespaces_is_counted_once_in_the_process():
    """Plans share immutable objects (every node's route to one remote node): the process holds one object
    and a reference per namespace, the kernel an entry per namespace."""
    from lab.netns.plan import LabPlan, NamespacePlan, Route
    shared = Route("10.244.1.0/24", gateway="10.244.1.0", dev="flannel.1", onlink=True)
    one = LabPlan("m", tuple(NamespacePlan(f"m.{i}", "node", str(i), routes=(shared,)) for i in range(100)))
    many = LabPlan("m", tuple(NamespacePlan(f"m.{i}", "node", str(i), routes=(Route("10.244.1.0/24"),))
                              for i in range(100)))
    a, b = memory.estimate(one), memory.estimate(many)
    assert a.kernel == b.kernel and a.routes == b.routes == 100
    assert a.process == memory.PROCESS_BYTES + memory.PLAN_BYTES_PER_OBJECT + 100 * memory.PLAN_BYTES_PER_REFERENCE
    assert b.process == memory.PROCESS_BYTES + 100 * (memory.PLAN_BYTES_PER_OBJECT + memory.PLAN_BYTES_PER_REFERENCE)
