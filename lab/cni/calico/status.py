"""Calico's lines in `lab status`, and `calicoctl node status` on a running lab's node."""

from __future__ import annotations

from typing import Any, Protocol


class RunningLabs(Protocol):
    """What `node_status` asks of lifecycle.Lab (a protocol: the data plane does not import the lifecycle)."""

    def state(self, lab: str | None = None) -> Any: ...

    def node_name(self, target: str, lab: str | None = None) -> str: ...

    def bird_socket(self, target: str, lab: str | None = None) -> str: ...


def node_lines(node: dict[str, Any]) -> list[str]:
    """A node's line: what calico/node was told (its address, AS, IPAM blocks...)."""
    env = " ".join(f"{k}={v}" for k, v in node["calico"].items() if v not in (None, []))
    return [f"{node['name']} calico: {env}"]


def lines(status: dict[str, Any]) -> list[str]:
    out = [f"cni: calico {status['mode']} (calico_backend {status['backend']})"
           + (f", IPIP implementation: {status['ipip_implementation']}" if status.get("ipip_implementation") else "")]
    for pool in status["pools"]:
        out.append(f"  IPPool {pool['name']}: {pool['cidr']} blockSize {pool['blockSize']} ipipMode {pool['ipipMode']} "
                   f"vxlanMode {pool['vxlanMode']} natOutgoing {str(pool['natOutgoing']).lower()}")
    if status.get("bgp"):
        bgp = status["bgp"]
        out.append(f"  BGPConfiguration default: nodeToNodeMeshEnabled {str(bgp['nodeToNodeMeshEnabled']).lower()}, "
                   f"asNumber {bgp['asNumber']}")
    for peer in status.get("bgp_peers", []):
        out.append(f"  BGPPeer {peer['name']}: " + ", ".join(f"{k} {v}" for k, v in peer.items() if k != "name" and v))
    return out


def node_status(lab: RunningLabs, target: str, lab_name: str | None = None) -> str:
    """`calicoctl node status` on a node, from its BIRD's `show protocols` (none with calico_backend vxlan)."""
    import lab.cni.calico.calicoctl as calicoctl
    from lab.bgp import birdc
    state = lab.state(lab_name)
    if state.summary.get("cni") == "calico" and not state.summary.get("runtime", {}).get("bird"):
        lab.node_name(target, state.lab)
        return calicoctl.node_status(None)
    sock = lab.bird_socket(target, lab_name)
    try:
        rows = birdc.show_protocols(sock)
    except (OSError, birdc.BirdError):
        rows = None
    return calicoctl.node_status(rows)
