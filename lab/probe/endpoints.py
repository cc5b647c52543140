"""What the probes connect: every pod, and every host outside the cluster, by key, namespace and ports."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.netns import names
from lab.topology.model import ContainerPort, Topology


@dataclass(frozen=True)
class Endpoint:
    """A probe source or destination: a pod (`namespace/name`) or an external host (its name)."""

    key: str
    netns: str
    ip: ipaddress.IPv4Address | None
    container_ports: tuple[ContainerPort, ...] = ()


def endpoints(topology: Topology) -> list[Endpoint]:
    """The lab's pods, then its external hosts, in topology order."""
    pods = [Endpoint(p.key, names.pod_netns(topology.name, p.namespace, p.name), p.ip, p.container_ports)
            for p in topology.pods]
    hosts = [Endpoint(e.key, names.node_netns(topology.name, e.name), e.ip, e.container_ports)
             for e in topology.externals]
    return pods + hosts
