"""When a lab's external routers are ready: every session Established, every peer node's block installed.

Read from the running lab: a node's session with a router from the node's BIRD (`show protocols`,
the Global_/Node_ protocol for the router's address), a session between routers from the kernel
(an established TCP connection to port 179 in the router's namespace), and the routes from the
router's main table (`proto bgp`, via the node). The expectation comes from the topology.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from lab.bgp import birdc, daemons
from lab.netns import names, namespace
from lab.readiness import Check
from lab.topology.model import CalicoConfig, Topology

RTPROT_BGP = 186
BGP_PORT = 179


def checks(topology: Topology, bird_paths: Callable[[str], daemons.BirdPaths]) -> list[Check]:
    """`bird_paths(node)`: where the node's BIRD is (the data plane's layout: lab/cni/calico/layout.py)."""
    if not topology.routers:
        return []
    return [_sessions(topology, bird_paths), _routes(topology)]


def _sessions(topology: Topology, bird_paths: Callable[[str], daemons.BirdPaths]) -> Check:
    missing: list[str] = []
    total = 0
    tcp = dict(zip([r.name for r in topology.routers],
                   namespace.run_in_each([names.node_netns(topology.name, r.name) for r in topology.routers],
                                         lambda _: established_peers()), strict=True))
    for router in topology.routers:
        for peer in router.peers:
            total += 1
            if peer.kind == "node" and peer.name:
                states = _bird_states(bird_paths(peer.name).socket)
                state = next((s for name, s in states.items() if name in _protocols(router.ip)), "no such protocol")
                if state != "Established":
                    missing.append(f"{peer.name} -> {router.name} ({state})")
            elif peer.ip not in tcp[router.name]:
                missing.append(f"{router.name} -> {peer.name or peer.ip} (no TCP session on port {BGP_PORT})")
    return Check("router BGP sessions Established", total - len(missing), total, tuple(missing))


def _protocols(ip: ipaddress.IPv4Address) -> set[str]:
    """confd's names for a node's session with an external peer: Global_<ip> or Node_<ip>, dots as _."""
    return {f"{kind}_{str(ip).replace('.', '_')}" for kind in ("Global", "Node")}


def _bird_states(socket_path: str) -> dict[str, str]:
    try:
        return birdc.established(socket_path, timeout=2.0)
    except (OSError, birdc.BirdError):
        return {}


def established_peers() -> set[ipaddress.IPv4Address]:
    """Remote addresses of the calling thread's namespace's established TCP connections on port 179
    (/proc/thread-self: the helper thread is in the namespace, the process is not)."""
    found = set()
    with open("/proc/thread-self/net/tcp", encoding="ascii") as handle:
        lines = handle.read().splitlines()[1:]
    for line in lines:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state != "01":      # TCP_ESTABLISHED
            continue
        if int(local.split(":")[1], 16) == BGP_PORT or int(remote.split(":")[1], 16) == BGP_PORT:
            found.add(ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(remote.split(":")[0])))))
    return found


def _routes(topology: Topology) -> Check:
    """Each router has a route (proto bgp) to every block of the nodes it peers with. Not necessarily via
    that node: with several equal paths (e.g. a global BGPPeer beside the mesh, where every node also
    exports its mesh peers' blocks) the router's tie-break may prefer another node, as a real one may."""
    from pyroute2 import IPRoute
    calico = topology.cluster.config
    blocks = calico.ipam.blocks if isinstance(calico, CalicoConfig) else {}

    def table(_: str) -> set[str]:
        with IPRoute() as ipr:
            return {f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                    for r in ipr.get_routes(family=2, table=254) if r["proto"] == RTPROT_BGP}
    tables = dict(zip([r.name for r in topology.routers],
                      namespace.run_in_each([names.node_netns(topology.name, r.name) for r in topology.routers],
                                            table), strict=True))
    missing = []
    total = 0
    for router in topology.routers:
        for peer in router.peers:
            for block in blocks.get(peer.name or "", ()) if peer.kind == "node" else ():
                total += 1
                if str(block) not in tables[router.name]:
                    missing.append(f"{router.name}: {block} of {peer.name}")
    return Check("router routes to peer nodes' blocks", total - len(missing), total, tuple(missing))
