"""When a Calico lab is ready: its BGP sessions are Established and every node routes the blocks it learns.

Both are read from the running lab, never assumed: the sessions from each node's BIRD (`show
protocols`), the routes from each node's main table. The expectation comes from the configuration:
lab/cni/calico/propagation.py says which sessions exist and which nodes learn whose blocks. Felix-only labs
(calico_backend vxlan) have their routes in the plan, so they are ready as soon as they are up.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Network
from typing import Any

import lab.cni.calico.config as calico_config
import lab.cni.calico.propagation as propagation
from lab.bgp import birdc
from lab.bgp.channel import Channel
from lab.bgp.route import Route, route_dump_request
from lab.cni.calico.runtime import node_paths
from lab.netns import names, namespace
from lab.netns.rtnl import RT_TABLE_MAIN, RTA_DST
from lab.netns.state import StateStore
from lab.readiness import Check
from lab.topology.model import Topology


def checks(topology: Topology, store: StateStore, runtime: dict[str, Any]) -> list[Check]:
    if not runtime.get("bird"):
        return []
    return [_sessions(topology, store), _routes(topology)]


def _sessions(topology: Topology, store: StateStore) -> Check:
    missing: list[str] = []
    total = 0
    for node, mine in propagation.sessions(topology).items():
        states = _bird_states(node_paths(store, topology.name, node).socket)
        for peer, session in mine.items():
            total += 1
            state = states.get(session.protocol, "BIRD does not answer" if not states else "no such protocol")
            if state != "Established":
                missing.append(f"{node} -> {peer} {session.protocol} ({state})")
    return Check("BGP sessions Established", total - len(missing), total, tuple(missing))


def _bird_states(socket_path: str) -> dict[str, str]:
    try:
        return birdc.established(socket_path, timeout=2.0)
    except (OSError, birdc.BirdError):
        return {}


def _routes(topology: Topology) -> Check:
    calico = calico_config.of(topology)
    assert calico is not None
    blocks = calico.ipam.blocks
    wanted: dict[str, set[IPv4Network]] = {n.name: set() for n in topology.nodes}
    for origin, learners in propagation.learners(topology).items():
        for learner in learners:
            wanted[learner].update(blocks.get(origin, ()))
    nodes = [n for n in topology.nodes if wanted[n.name]]
    netns = {n.name: names.node_netns(topology.name, n.name) for n in nodes}
    gone = {n.name for n in nodes if not namespace.exists(netns[n.name])}
    here = [n for n in nodes if n.name not in gone]
    tables = dict(zip([n.name for n in here], namespace.run_in_each([netns[n.name] for n in here], _main_routes),
                      strict=True))
    missing: list[str] = []
    total = 0
    for node in nodes:
        for block in sorted(wanted[node.name]):
            total += 1
            if node.name in gone:
                missing.append(f"{node.name}: {block} (namespace {netns[node.name]} is gone)")
            elif block not in tables[node.name]:
                missing.append(f"{node.name}: {block}")
    return Check("block routes present", total - len(missing), total, tuple(missing))


def _main_routes(_netns: str) -> set[IPv4Network]:
    """The destinations of the calling thread's namespace's main table."""
    channel = Channel.open()
    try:
        messages, _ = channel.dump(route_dump_request)
    finally:
        channel.close()
    found: set[IPv4Network] = set()
    for _type, _flags, _seq, _port, body in messages:
        route = Route.parse(body, (RT_TABLE_MAIN,))
        if route is not None and RTA_DST in route.attrs:
            found.add(IPv4Network((socket.inet_ntoa(route.attrs[RTA_DST]), route.dst_len)))
    return found
