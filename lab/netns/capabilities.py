"""What this machine can do, found by trying it in a scratch namespace (never in the host's)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import LabError, NotRootError
from lab.netns import bpfobj, ipip_probe, namespace

if TYPE_CHECKING:
    from pyroute2 import IPRoute

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
TOOLS = ("ip", "bridge", "tc", "iptables", "iptables-restore", "nsenter", "ipset", "tcpdump", "iperf3", "ping",
         "bird", "birdc")
IPIP_PROGRAM = "ipip"
SCRATCH_KINDS = ("veth", "bridge", "vxlan", "ipip", "dummy", "ipvlan")   # ipvlan last: its parent is the veth


@dataclass(frozen=True)
class Capabilities:
    """Kernel link kinds that can be created, br_netfilter, and the tools on PATH."""

    kinds: dict[str, bool]
    br_netfilter: bool
    tools: dict[str, bool]
    fresh_links: dict[str, int] = field(default_factory=dict)   # devices a new namespace starts with, besides lo
    probed: bool = True
    ebpf_ipip: bool = False      # a packet crossed the lab's IPIP programs between two scratch namespaces
    ebpf_reason: str = "not probed"

    @classmethod
    def assumed(cls) -> Capabilities:
        """A guess made without privilege (for --dry-run): module directories only, nothing tried."""
        kinds = {kind: kind in ("veth", "bridge") or os.path.isdir(f"/sys/module/{kind}") for kind in SCRATCH_KINDS}
        built = bpfobj.buildable(IPIP_PROGRAM) and shutil.which("tc") is not None
        return cls(kinds=kinds, br_netfilter=os.path.isdir("/sys/module/br_netfilter"),
                   tools={tool: shutil.which(tool) is not None for tool in TOOLS}, probed=False, ebpf_ipip=built,
                   ebpf_reason="assumed from the object or clang being there (not tried: dry run)" if built else
                   f"{bpfobj.built(IPIP_PROGRAM)} is not built and clang is not installed")

    def has(self, kind: str) -> bool:
        return self.kinds.get(kind, False)

    def notes(self) -> list[str]:
        missing = [k for k, ok in self.kinds.items() if not ok]
        notes = [f"kernel: {', '.join(k for k, ok in self.kinds.items() if ok)} available"]
        if missing:
            notes.append(f"kernel lacks: {', '.join(missing)}")
        notes.append("br_netfilter: " + ("loaded" if self.br_netfilter else "not loaded (bridged traffic "
                                                                          "bypasses iptables)"))
        notes.append("eBPF IPIP (tc): " + ("available" if self.ebpf_ipip else f"unavailable ({self.ebpf_reason})"))
        absent = [t for t, ok in self.tools.items() if not ok]
        if absent:
            notes.append(f"tools not installed: {', '.join(absent)} (run scripts/install-deps.sh)")
        return notes



def has_root() -> bool:
    """Whether this process may create namespaces and links (CAP_NET_ADMIN and CAP_SYS_ADMIN)."""
    effective = _effective_caps()
    if effective is None:
        return os.geteuid() == 0
    return bool(effective >> CAP_NET_ADMIN & 1) and bool(effective >> CAP_SYS_ADMIN & 1)


def require_root() -> None:
    """Fail clearly unless this process may create namespaces and links."""
    if not has_root():
        raise NotRootError("lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces",
                           "run it with sudo, e.g. `sudo lab up flannel-vxlan`, or inside the Vagrant VM: "
                           "`vagrant up && vagrant ssh -c 'sudo lab up flannel-vxlan'`")


def _effective_caps() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        return None
    return None


def detect(scratch: str) -> Capabilities:
    """Try each link kind in the throw-away namespace `scratch` (replacing a stale one), then remove it."""
    namespace.remove(scratch)
    namespace.create_many([scratch])
    try:
        kinds, br_netfilter = namespace.run_in(scratch, _probe_kernel)
        ebpf_ipip, ebpf_reason = _probe_ebpf_ipip(scratch)
    finally:
        namespace.remove(scratch)
    # A second, fresh namespace: modules the probe loaded (ipip, ...) add fallback devices such as tunl0.
    namespace.create_many([scratch])
    try:
        fresh = namespace.run_in(scratch, _fresh_links)
    finally:
        namespace.remove(scratch)
    return Capabilities(kinds=kinds, br_netfilter=br_netfilter,
                        tools={tool: shutil.which(tool) is not None for tool in TOOLS}, fresh_links=fresh,
                        ebpf_ipip=ebpf_ipip, ebpf_reason=ebpf_reason)


def _probe_ebpf_ipip(scratch: str) -> tuple[bool, str]:
    """Send a packet through the IPIP programs between two scratch namespaces (lab/netns/ipip_probe.py)."""
    return ipip_probe.probe(scratch)


def _fresh_links() -> dict[str, int]:
    """The devices a new namespace is born with besides lo (tunl0, gre0, sit0... when those modules are loaded)."""
    from pyroute2 import IPRoute  # imported here: commands that only read a lab never load it
    found = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name != "lo":
                found[name] = link["index"]
    return found


def _probe_kernel() -> tuple[dict[str, bool], bool]:
    from pyroute2 import IPRoute
    kinds: dict[str, bool] = {}
    with IPRoute() as ipr:
        for kind in SCRATCH_KINDS:
            kinds[kind] = _try_kind(ipr, kind)
    return kinds, os.path.isdir("/proc/sys/net/bridge")


def _try_kind(ipr: IPRoute, kind: str) -> bool:
    name = f"probe-{kind}"[:15]
    spec: dict[str, Any] = {"ifname": name, "kind": kind}
    if kind == "veth":
        spec["peer"] = "probe-peer"
    elif kind == "vxlan":
        spec.update(vxlan_id=1, vxlan_local="127.0.0.1")
    elif kind == "ipip":
        spec.update(ipip_local="127.0.0.1")
    elif kind == "ipvlan":    # a slave of an Ethernet device: the veth tried first (lo is refused as a parent)
        parents = ipr.link_lookup(ifname="probe-veth")
        if not parents:
            return False
        spec.update(link=parents[0], ipvlan_mode=0)     # IPVLAN_MODE_L2, Terway's mode
    try:
        ipr.link("add", **spec)
    except Exception:  # any refusal means the kind is unusable here
        return False
    return True


def require_tools(capabilities: Capabilities, tools: list[str], topology: str) -> None:
    """Fail before touching the kernel if a tool the plan runs is not installed."""
    missing = [t for t in tools if not capabilities.tools.get(t, shutil.which(t) is not None)]
    if missing:
        raise LabError(f"{topology} needs {', '.join(missing)}, which is not installed",
                       "run `sudo scripts/install-deps.sh` "
                       "(it installs iptables, ipset, BIRD and util-linux's nsenter)")


def require(capabilities: Capabilities, kinds: list[str], topology: str) -> None:
    """Fail before touching the kernel if the topology needs a link kind this kernel lacks."""
    missing = [k for k in kinds if not capabilities.has(k)]
    if missing:
        raise LabError(f"{topology} needs the kernel's {', '.join(missing)} support, which this kernel lacks",
                       "load the module (modprobe " + " ".join(missing) + ") or run the lab in the Vagrant VM "
                       "(see README)")
