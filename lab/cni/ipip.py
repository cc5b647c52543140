"""IPIP tunnel devices (Calico's tunl0, flannel's flannel.ipip) on the implementation this kernel allows.

In order of preference (`options.ipipImplementation: auto`):
  kernel     the ipip module's device (`ipip remote any local any|<ip> ttl inherit nopmtudisc`);
  ebpf       a TUN device that nobody reads, with the lab's eBPF programs (bpf/ipip.c) on tc:
             encapsulation on the device's egress, decapsulation on eth0's ingress;
  userspace  a TUN device served by the lab's route agent (lab/cni/tunnel.py).
A topology may force one; forcing one the kernel lacks fails before anything is touched.
"""

from __future__ import annotations

import socket
import sys

from lab.errors import TopologyError
from lab.netns.builder import NamespaceBuilder
from lab.netns.capabilities import Capabilities
from lab.netns.plan import BpfConstant
from lab.topology.model import Topology

KERNEL, EBPF, USERSPACE = "kernel", "ebpf", "userspace"
ORDER = (KERNEL, EBPF, USERSPACE)
LABELS = {KERNEL: "kernel-ipip", EBPF: "ebpf", USERSPACE: "userspace-tun"}
OVERHEAD = 20
PROGRAM = "ipip"
ENCAP_SECTION, DECAP_SECTION = "tc/encap", "tc/decap"
UNDERLAY = "eth0"
MAX_PEERS = 4096          # bpf/ipip.c: MAX_PEERS (the decapsulation's sorted peer array)
OPTION = "options.ipipImplementation"


def available(caps: Capabilities, nodes: int = 0) -> dict[str, bool]:
    """What can carry IPIP here, for a lab of `nodes` nodes (each node's peers are the others)."""
    return {KERNEL: caps.has("ipip"), EBPF: caps.ebpf_ipip and nodes - 1 <= MAX_PEERS, USERSPACE: True}


def choose(topology: Topology, caps: Capabilities) -> str:
    """The implementation to run: the topology's choice, or the first this kernel supports."""
    wanted = topology.ipip_implementation
    can = available(caps, len(topology.nodes))
    if wanted == "auto":
        return next(impl for impl in ORDER if can[impl])
    if not can[wanted]:
        ebpf_reason = (f"the eBPF IPIP programs cannot be attached here: {caps.ebpf_reason}" if not caps.ebpf_ipip
                       else f"{len(topology.nodes) - 1} peers per node exceed the eBPF tunnel's {MAX_PEERS} "
                            "(bpf/ipip.c MAX_PEERS)")
        reason = {KERNEL: "this kernel cannot create ipip devices (no ipip module)", EBPF: ebpf_reason}[wanted]
        hint = {KERNEL: "load it (`modprobe ipip`), run the lab in the Vagrant VM, or set "
                        f"{OPTION}: auto (eBPF, else the userspace tunnel)",
                EBPF: ("run `sudo scripts/install-deps.sh` (clang, libbpf-dev, and it builds bpf/ipip.c), or set "
                       f"{OPTION}: auto or userspace") if not caps.ebpf_ipip else
                      f"set {OPTION}: auto or userspace (auto picks the userspace tunnel for this many nodes)"}[wanted]
        where = topology.sources.get(OPTION, topology.source)          # "file:line", from the loader
        file, _, line = where.rpartition(":")
        raise TopologyError(file or where, OPTION, f"{wanted}: {reason}", int(line) if line.isdigit() else None, hint)
    return wanted


def path_caption(device: str, implementation: str | None) -> str:
    """`<device> IPIP: <implementation>` for an experiment's data-path caption (implementation: kernel, ebpf,
    userspace, or None when unknown)."""
    where = {KERNEL: "kernel", EBPF: "ebpf",
             USERSPACE: f"userspace (the lab's route agent reads {device}, a TUN)"}
    return f"{device} IPIP: {where.get(implementation or '', implementation or 'unknown')}"


def label(implementation: str) -> str:
    """What `lab status` and the route agent's stats call it."""
    return LABELS[implementation]


def device_notes(device: str, implementation: str | None) -> tuple[str, ...]:
    """How the tunnel device differs from the ipip module's, where a user looks (plan notes, `lab status`)."""
    if implementation not in (EBPF, USERSPACE):
        return ()
    notes = [f"{device} is a TUN device standing in for the ipip device (this kernel has no ipip module): "
             "`ip -d link` shows it POINTOPOINT with link/none, not link/ipip 0.0.0.0 with `ipip remote any`; "
             "addresses, MTU, routes and the packets on eth0 are the module's"]
    if implementation == EBPF:
        notes.append(f"tcpdump -i {device} shows only the packets received through the tunnel: tc on {device}'s "
                     "egress encapsulates and redirects outgoing ones before the capture point (capture them on "
                     f"{UNDERLAY} with `ip proto 4`)")
    return tuple(notes)


def tun_device(builder: NamespaceBuilder, name: str, mtu: int, implementation: str, peers: list[str]) -> None:
    """The tunnel device where the kernel has no ipip module: a persistent TUN device, NOARP and L3 as
    an ipip device is, plus the eBPF programs when `implementation` is ebpf."""
    # what `ip link` shows of an ipip device, as far as a TUN device can: NOARP, qlen 1000, qdisc noqueue
    # (POINTOPOINT cannot be cleared), and no IPv6 link-local address
    builder.tun(name, mtu, txqueuelen=1000, multicast=False)
    builder.qdisc(name, "noqueue")
    builder.sysctl(f"net/ipv6/conf/{name}/disable_ipv6", 1)
    if implementation == EBPF:
        attach(builder, name, peers)
        builder.note(f"{name}: IPIP in eBPF (this kernel has no ipip module): a TUN device with tc programs, "
                     f"encapsulation on {name} egress, decapsulation on {UNDERLAY} ingress")
    else:
        builder.note(f"{name}: userspace IPIP on a TUN device (this kernel has no ipip module); the lab's route "
                     "agent encapsulates in IP protocol 4 towards the route's gateway")


def attach(builder: NamespaceBuilder, device: str, peers: list[str]) -> None:
    """Encapsulation on the tunnel's egress; decapsulation, for packets from `peers`, on eth0's ingress."""
    assert len(peers) <= MAX_PEERS, "choose() picks eBPF only for labs whose peers fit"
    # in the order bpf/ipip.c's binary search needs: by value as the program reads them (a native u32)
    ordered = tuple(sorted(peers, key=lambda a: int.from_bytes(socket.inet_aton(a), sys.byteorder)))
    builder.bpf_filter(device, "egress", PROGRAM, ENCAP_SECTION)
    builder.bpf_filter(UNDERLAY, "ingress", PROGRAM, DECAP_SECTION, constants=(
        BpfConstant("lab_tunnel_ifindex", "ifindex", device),
        BpfConstant("lab_peer_count", "u32", len(peers)),
        BpfConstant("lab_peers", "ipv4", ordered)))
