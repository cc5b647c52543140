"""Does the eBPF IPIP data path work on this kernel? Found by sending a packet through it.

Loading the programs is not enough: with zero constants the verifier skips the decapsulation, and
the helpers' flags (BPF_FIB_LOOKUP_SRC since 6.8, BPF_FIB_LOOKUP_SKIP_NEIGH, the ADJ_ROOM decap
flags) are only refused when a packet runs them. So the probe builds two scratch namespaces joined by
a veth pair, gives each a tunl0-like TUN device (held open, so it has carrier) with the programs
attached and real constants (tunnel ifindex, the other end as the one peer), and sends a UDP
datagram each way between the tunnel addresses. Everything lives in the scratch namespaces (never
the host's) and goes with them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable

from lab.errors import LabError
from lab.netns import bpfobj, namespace, tc, tun
from lab.netns.plan import BpfConstant, BpfFilter, Qdisc

PROGRAM = "ipip"
TUNNEL = "probe-tunl"
UNDERLAY = ("probe-ul-a", "probe-ul-b")
# documentation ranges (RFC 5737): only ever in the scratch namespaces
UNDERLAY_IPS = ("192.0.2.1", "192.0.2.2")
TUNNEL_IPS = ("198.51.100.1", "198.51.100.2")
PORT = 4000
TIMEOUT = 2.0


def scratch_names(scratch: str) -> tuple[str, str]:
    return f"{scratch}-a", f"{scratch}-b"


def probe(scratch: str) -> tuple[bool, str]:
    """(works, why): a datagram through the tunnel each way between two scratch namespaces."""
    if shutil.which("tc") is None:
        return False, "tc is not installed"
    try:
        bpfobj.ensure_built(PROGRAM)
    except LabError as exc:
        return False, exc.message
    sides = scratch_names(scratch)
    for name in sides:
        namespace.remove(name)
    namespace.create_many(sides)
    fds: list[int] = []
    try:
        try:
            _wire(sides)
            fds = [namespace.run_in(side, lambda: tun.open_tun(TUNNEL)) for side in sides]
        except OSError as exc:
            return False, f"cannot build the probe's namespaces: {exc.strerror or exc}"
        failure = _attach(sides)
        if failure:
            return False, failure
        return _exchange(sides)
    finally:
        for fd in fds:
            os.close(fd)
        for name in sides:
            namespace.remove(name)


def _wire(sides: tuple[str, str]) -> None:
    """veth between the sides; in each a TUN device with its /32, and a route to the other's via it."""
    from pyroute2 import (
        IPRoute,  # imported here: commands that only read a lab never load it
    )

    def veth() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=UNDERLAY[0], kind="veth", peer=UNDERLAY[1])
            index = ipr.link_lookup(ifname=UNDERLAY[1])[0]
            ipr.link("set", index=index, net_ns_fd=namespace.path(sides[1]))

    namespace.run_in(sides[0], veth)
    for number, side in enumerate(sides):
        other = 1 - number
        namespace.run_in(side, _side_setup(UNDERLAY[number], UNDERLAY_IPS[number], TUNNEL_IPS[number],
                                           TUNNEL_IPS[other], UNDERLAY_IPS[other]))


def _side_setup(underlay: str, underlay_ip: str, tunnel_ip: str, remote_tunnel: str,
                remote_node: str) -> Callable[[], None]:
    def setup() -> None:
        from pyroute2 import IPRoute
        # bpf_fib_lookup() answers only for devices that forward (a lab node does); this is the
        # scratch namespace's own setting, read through this thread's /proc/sys/net
        with open("/proc/sys/net/ipv4/conf/all/forwarding", "w") as handle:
            handle.write("1")
        tun.create_persistent_tun(TUNNEL)
        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            dev = ipr.link_lookup(ifname=underlay)[0]
            ipr.addr("add", index=dev, address=underlay_ip, prefixlen=24)
            ipr.link("set", index=dev, state="up")
            tunnel = ipr.link_lookup(ifname=TUNNEL)[0]
            ipr.addr("add", index=tunnel, address=tunnel_ip, prefixlen=32)
            ipr.link("set", index=tunnel, state="up", mtu=1480)
            ipr.route("add", dst=f"{remote_tunnel}/32", gateway=remote_node, oif=tunnel, flags=4)   # RTNH_F_ONLINK
    return setup


def filters(underlay: str, peer: str) -> list[BpfFilter]:
    """The filters a lab node gets (lab/cni/ipip.py attach()), for the probe's devices."""
    return [BpfFilter(TUNNEL, "egress", PROGRAM, "tc/encap"),
            BpfFilter(underlay, "ingress", PROGRAM, "tc/decap", constants=(
                BpfConstant("lab_tunnel_ifindex", "ifindex", TUNNEL),
                BpfConstant("lab_peer_count", "u32", 1),
                BpfConstant("lab_peers", "ipv4", (peer,))))]


def _attach(sides: tuple[str, str]) -> str | None:
    """The programs with real constants on both sides; why not, if tc refuses."""
    workdir = tempfile.mkdtemp(prefix="lab-bpf-probe-")
    try:
        for number, side in enumerate(sides):
            qdiscs = [Qdisc(TUNNEL), Qdisc(UNDERLAY[number])]
            text = tc.batch(side, qdiscs, filters(UNDERLAY[number], UNDERLAY_IPS[1 - number]),
                            os.path.join(workdir, side))
            result = subprocess.run(["tc", "-n", side, "-batch", "-"], input=text, capture_output=True, text=True,
                                    check=False, timeout=tc.TIMEOUT)
            if result.returncode:
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                return f"tc refused the programs: {' | '.join(lines[-3:]) or 'no message'}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return None


def _exchange(sides: tuple[str, str]) -> tuple[bool, str]:
    def bound(address: str) -> Callable[[], socket.socket]:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, PORT))
            sock.settimeout(TIMEOUT)
            return sock
        return make

    socks = [namespace.run_in(side, bound(TUNNEL_IPS[n])) for n, side in enumerate(sides)]
    try:
        for sender, receiver in ((0, 1), (1, 0)):
            payload = f"lab ipip probe {sender}".encode()
            socks[sender].sendto(payload, (TUNNEL_IPS[receiver], PORT))
            try:
                data, _ = socks[receiver].recvfrom(256)
            except (TimeoutError, OSError):
                return False, ("the programs attach, but a packet through the tunnel never arrived (the kernel "
                               "lacks a helper flag they use: BPF_FIB_LOOKUP_SRC needs Linux >= 6.8)")
            if data != payload:
                return False, "a packet through the tunnel arrived altered"
    finally:
        for sock in socks:
            sock.close()
    return True, "a packet crossed the tunnel each way between two scratch namespaces (encap, decap)"
