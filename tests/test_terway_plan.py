"""Terway's plan as `lab up --dry-run` prints it (no root): the commands reference §8 implies.

Expected lines come from §8 (priorities 512 / 2048, table 1000 + ifindex: in a new namespace lo is 1,
eth0 2 and the first ENI, eth1, 3, hence 1003 as in §8's example; `default via <gateway> dev eth1
onlink`; the pod's 169.254.1.1 route and PERMANENT neighbour) and the shipped topology's addresses.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from conftest import run_lab

LAB = "terway-eniip"


@pytest.fixture(scope="module")
def script() -> list[str]:
    return run_lab("up", "--dry-run", LAB).stdout.splitlines()


def test_policy_routing_for_a_pod(script):
    node = f"ip -n {LAB}.k8s-node1"
    assert f"{node} rule add priority 512 to 192.168.10.101 lookup main" in script
    assert f"{node} rule add priority 2048 from 192.168.10.101 lookup 1003" in script
    assert f"{node} route replace default via 192.168.10.253 dev eth1 onlink table 1003" in script
    assert f"{node} addr add 192.168.10.71/32 dev eth1" in script


def test_pod_side(script):
    pod = f"ip -n {LAB}.default.web-0"
    assert f"{pod} addr add 192.168.10.101/32 dev eth0" in script
    assert f"{pod} route replace default via 169.254.1.1 dev eth0 onlink" in script
    assert any(line.startswith(f"{pod} neigh replace 169.254.1.1 lladdr ") and line.endswith(" dev eth0 nud permanent")
               for line in script)


def test_rp_filter_off_everywhere_on_a_node(script):
    node = f"ip netns exec {LAB}.k8s-node2 sysctl -qw net.ipv4.conf"
    for device in ("all", "default", "eth0", "eth1"):
        assert f"{node}.{device}.rp_filter=0" in script
        assert f"{node}.{device}.forwarding=1" in script


def test_felix_configures_each_cali_interface_after_the_cni(script):
    """§4.9 / Felix's endpoint_mgr.go configureInterface (Terway runs Felix with the default interface prefix
    `cali` and FELIX_IPV6SUPPORT=true): written once the veth is up, so after the CNI's rp_filter 0; the
    rp_filter Felix writes is default.rp_filter, which the CNI has set to 0."""
    iface = "cali" + hashlib.sha1(b"default.web-0").hexdigest()[:11]
    node = f"ip netns exec {LAB}.k8s-node1 sysctl -qw net"
    cni = script.index(f"{node}.ipv4.conf.{iface}.rp_filter=0")
    for key in ("ipv4.conf.{}.route_localnet=1", "ipv4.neigh.{}.proxy_delay=0", "ipv4.conf.{}.proxy_arp=1",
                "ipv4.conf.{}.forwarding=1", "ipv4.conf.{}.rp_filter=0", "ipv6.conf.{}.accept_ra=0",
                "ipv6.conf.{}.proxy_ndp=1", "ipv6.conf.{}.forwarding=1"):
        line = f"{node}.{key.format(iface)}"
        assert line in script[cni + 1:], line


def test_vpc_fabric(script):
    router = f"{LAB}._underlay"
    ports = [line.split()[5] for line in script if line.startswith(f"ip -n {router} link add eni")]
    assert len(ports) == 4, "k8s-node1 has eth1 and eth2, the others eth1"
    for port in ports:
        assert f"ip -n {router} link set dev {port} type bridge_slave neigh_suppress on" in script
        assert any(line.startswith(f"bridge -n {router} fdb replace 00:16:3e:") and f" dev {port} master static"
                   in line for line in script)
    assert any(line.startswith(f"ip -n {router} neigh replace 192.168.10.101 lladdr 00:16:3e:") for line in script)


def test_ipvlan_refused_in_the_dry_run_too(tmp_path):
    if os.path.isdir("/sys/module/ipvlan"):
        pytest.skip("the ipvlan module is loaded here")
    path = tmp_path / "t.yaml"
    path.write_text("name: tw-ipvlan\ncluster:\n  cni: terway\n  terway: {datapath: ipvlan}\nnetworks:\n"
                    "  - {name: vsw, cidr: 192.168.9.0/24, gateway: 192.168.9.253}\nnodes:\n"
                    "  - {name: n1, ip: 192.168.9.1}\n")
    result = run_lab("up", "--dry-run", str(path), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"lab: error: {path}:4: cluster.terway.datapath: ipvlan needs the kernel's "
                                    "ipvlan module")
