"""What environment.json must say about a mode, derived from its topology file (not from the runner).

The route programming follows docs/design.md: Calico's BIRD backend programs table 201 and the lab's
route agent mirrors it into main; flannel and Calico's VXLAN backend (Felix only) get their routes
from the lab's static plan. The datapath names the devices the reference (dataplane-fidelity.md)
names for each backend: flannel.<VNI> for flannel VXLAN, flannel.ipip for flannel ipip,
vxlan.calico for Calico VXLAN, tunl0 for Calico IPIP, eth0 routing for host-gw and plain BGP.
"""

from __future__ import annotations

from lab.topology import loader, registry


def topology(name_or_path: str):
    return loader.load(registry.resolve(name_or_path))


def route_programming_words(name_or_path: str) -> list[str]:
    cluster = topology(name_or_path).cluster
    if cluster.cni == "calico" and cluster.config.backend == "bird":
        return ["BIRD", "table 201", "route agent", "main"]
    return ["static plan"]


def datapath_words(name_or_path: str, ipip: str | None) -> list[str]:
    cluster = topology(name_or_path).cluster
    if cluster.cni == "flannel":
        backend = cluster.config.backend
        if backend.type == "vxlan":
            return [f"flannel.{backend.vni}", "(kernel)"]
        if backend.type == "ipip":              # reference §3.2: flannel.ipip, on the implementation that ran
            return [f"flannel.ipip IPIP: {ipip}"]
        return ["routing via eth0 (kernel)"]
    words = []
    for pool in cluster.config.pools:
        if pool.ipip_mode != "Never":
            words.append(f"tunl0 IPIP: {ipip}")
        elif pool.vxlan_mode != "Never":
            words.append("vxlan.calico (kernel)")
        else:
            words.append("routing via eth0 (kernel)")
    return words
