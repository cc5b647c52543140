"""`lab trace --capture`: one real packet, captured by tcpdump on every interface of the predicted path at once.

One tcpdump per interface, each inside its namespace (`ip netns exec <ns> timeout 30 tcpdump -i <iface>
-w ...`), all started before the packet is sent and all stopped afterwards, whatever happens: SIGTERM,
SIGHUP and SIGINT become an exception while the capture runs, so the `finally` that stops them and
the removal of the temporary directory always run (a second signal during that clean-up is held
until it is done), and `timeout` bounds each tcpdump even if this process is killed outright. The
packet is sent from the source's namespace by a helper thread (ICMP echo, a UDP datagram, or a TCP
SYN), carrying a nonce; each capture is decoded (VXLAN and IPIP included) to find that packet, and what
each interface saw is compared with what the trace predicted. After a predicted drop, the next
interfaces (the policy-denied output, the down link's far end, the VXLAN lower device, the other
routed interfaces) are captured too and must stay silent.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from types import FrameType
from typing import Any

from lab.errors import LabError
from lab.netns import namespace, procgroup
from lab.probe import icmp
from lab.trace import pcap
from lab.trace.capture import check_output
from lab.trace.model import Trace

START_TIMEOUT = 3.0
SETTLE = 0.25            # seconds after sending: a packet crosses a lab in well under a millisecond
TCPDUMP_LIMIT = 30       # seconds any one tcpdump may live (coreutils `timeout`), whatever happens to us
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM, SIGHUP, SIGINT) arrived during a capture; `lab` exits with 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """While armed, SIGTERM/SIGHUP/SIGINT raise Interrupted; once disarmed (clean-up), a signal is held and
    raised when the guard is left, so no clean-up is cut short. Only on the main thread (where Python runs
    signal handlers); elsewhere it does nothing."""

    def __init__(self) -> None:
        self.armed = False
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise Interrupted(signum)
        self.pending = self.pending or signum

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
            self.armed = True
        return self

    def disarm(self) -> None:
        self.armed = False

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self.armed = False
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if self.pending is not None and kind is None:
            raise Interrupted(self.pending)


def _filter(trace: Trace) -> str:
    """The capture filter: the destination's plain packets, and every VXLAN / IPIP envelope (whose outer
    addresses are the nodes'); the decoder then picks the trace's own packet out of them."""
    ports = sorted({step.data["port"] for hop in trace.hops for step in hop.steps
                    if step.kind == "encap" and step.data.get("port")})
    return " or ".join([f"host {trace.dst.ip}", "ip proto 4"] + [f"udp port {p}" for p in ports])


def _vxlan_ports(trace: Trace) -> set[int]:
    found = {8472, 4789}
    for hop in trace.hops:
        for step in hop.steps:
            if step.kind == "encap" and step.data.get("port"):
                found.add(step.data["port"])
    return found


def _start(netns: str, iface: str, path: str, bpf: str) -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", netns, "timeout", "-k", "1", str(TCPDUMP_LIMIT),
            "tcpdump", "-nn", "-U", "--immediate-mode", "-s", "262144", "-i", iface, "-w", path, bpf]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_listening(procs: list[subprocess.Popen[bytes]]) -> None:
    pending = {p.stderr.fileno(): p for p in procs if p.stderr}
    banners: dict[int, bytes] = {fd: b"" for fd in pending}
    deadline = time.monotonic() + START_TIMEOUT
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError("tcpdump did not start on every interface within 3 s",
                           "is tcpdump installed (scripts/install-deps.sh)? is the machine very busy?")
        ready, _, _ = select.select(list(pending), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 4096)
            banners[fd] += chunk
            if b"listening on" in banners[fd]:
                del pending[fd]
            elif not chunk:
                raise LabError(f"tcpdump failed: {banners[fd].decode(errors='replace').strip()}",
                               "check the interface with `lab capture`")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop every tcpdump (SIGTERM, then SIGKILL) and reap it: none may outlive the trace."""
    procgroup.stop_groups(procs)


def _send(trace: Trace, nonce: bytes, ident: int) -> None:
    """Send the trace's packet from inside the source namespace (runs on a helper thread)."""
    packet = trace.packet
    if packet.protocol == "ICMP":
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + nonce
        body = body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            sock.sendto(body, (packet.dst, 0))
        return
    kind = socket.SOCK_DGRAM if packet.protocol == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((packet.src, packet.sport))
        if kind == socket.SOCK_DGRAM:
            sock.sendto(nonce, (packet.dst, packet.dport))
            return
        sock.setblocking(False)
        try:
            sock.connect((packet.dst, packet.dport))
        except BlockingIOError:
            pass
        time.sleep(SETTLE)              # the SYN is on its way; closing later sends nothing that matters


def _ours(layers: pcap.Layers, trace: Trace, ident: int) -> bool:
    src, dst, _ttl, _length, protocol = layers.inner
    packet = trace.packet
    if dst != trace.dst.ip:
        return False
    if packet.protocol == "ICMP":
        return protocol == 1 and layers.l4[0] == ident and layers.l4[1] == 8
    number = 6 if packet.protocol == "TCP" else 17
    return protocol == number and layers.l4[1] == packet.dport


def capture(trace: Trace, workdir: str, write: str | None) -> None:
    """Capture the trace's packet on every predicted interface; fills `trace.observed`."""
    interfaces = trace.interfaces()
    watched = [(n, i) for n, i, _ in interfaces] + list(trace.beyond)
    if not interfaces:
        raise LabError("the trace crosses no interface", "nothing to capture")
    if write:
        check_output(write)
    nonce = b"lab-trace " + secrets.token_hex(8).encode()
    ident = secrets.randbelow(0xFFFF) or 1
    bpf = _filter(trace)
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    with SignalGuard() as guard, tempfile.TemporaryDirectory(prefix="trace-", dir=workdir) as tmp:
        files = [os.path.join(tmp, f"{i}.pcap") for i in range(len(watched))]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for (netns, iface), path in zip(watched, files, strict=False):
                procs.append(_start(netns, iface, path, bpf))
            _wait_listening(procs)
            assert trace.src.netns is not None
            namespace.run_in(trace.src.netns, lambda: _send(trace, nonce, ident))
            time.sleep(SETTLE)
        finally:
            guard.disarm()
            _stop(procs)
        trace.observed = _compare(trace, interfaces, files, ident, write)
    trace.observed["seconds"] = round(time.monotonic() - started, 3)
    trace.observed["filter"] = bpf


def _ours_in(path: str, trace: Trace, ident: int, ports: set[int]) -> tuple[int, list[tuple[pcap.Record, pcap.Layers]]]:
    """(link type, [(record, layers)]) of the trace's own packet in one interface's capture."""
    linktype, records = pcap.read(path)
    found = []
    for record in records:
        layers = pcap.decode(linktype, record.data, ports)
        if layers is not None and _ours(layers, trace, ident):
            found.append((record, layers))
    return linktype, found


def _compare(trace: Trace, interfaces: list[tuple[str, str, str]], files: list[str], ident: int,
             write: str | None) -> dict[str, Any]:
    ports = _vxlan_ports(trace)
    rows: list[dict[str, Any]] = []
    differences: list[str] = []
    captured: list[tuple[str, int, list[pcap.Record]]] = []     # (netns:iface, link type, our records)
    last_seen = None
    for (netns, iface, form), path in zip(interfaces, files, strict=False):
        linktype, found = _ours_in(path, trace, ident, ports)
        captured.append((f"{netns}:{iface}", linktype, [r for r, _ in found]))
        seen = found[0][1] if found else None
        observed_form = "plain" if seen is None or seen.encap == "plain" else (
            "ipip" if seen.encap == "IPIP" else "vxlan")
        rows.append({"netns": netns, "iface": iface, "predicted": form,
                     "seen": seen.describe() if seen else None, "encapsulation": seen.encap if seen else None,
                     "ttl": seen.inner[2] if seen else None, "length": seen.inner[3] if seen else None})
        if seen is None:
            differences.append(f"predicted on {netns} {iface} ({form}), not seen")
        else:
            last_seen = f"{netns} {iface}"
            if observed_form != form:
                differences.append(f"{netns} {iface}: predicted {form}, seen {seen.encap}")
    for (netns, iface), path in zip(trace.beyond, files[len(interfaces):], strict=False):
        linktype, found = _ours_in(path, trace, ident, ports)
        captured.append((f"{netns}:{iface}", linktype, [r for r, _ in found]))
        rows.append({"netns": netns, "iface": iface, "predicted": "not reached", "beyond_drop": True,
                     "seen": f"{len(found)} packets: {found[0][1].describe()}" if found else None})
        if found:
            differences.append(f"{netns} {iface}: seen past the predicted drop")
    result: dict[str, Any] = {"interfaces": rows, "differences": differences, "last_seen": last_seen,
                              "implementation": "tcpdump per interface (bounded by `timeout`), packet sent from "
                                                "the source namespace"}
    if write:
        result.update(_write(write, captured))
    return result


def _write(path: str, captured: list[tuple[str, int, list[pcap.Record]]]) -> dict[str, Any]:
    """The merged pcapng: one named interface block per captured interface, packets in time order."""
    kinds = {linktype for _, linktype, _ in captured}
    same = len(kinds) == 1
    blocks = [(name, linktype if same else pcap.LINKTYPE_LINUX_SLL) for name, linktype, _ in captured]
    records = sorted(((index, record if same else pcap.to_cooked(linktype, record))
                      for index, (_, linktype, found) in enumerate(captured) for record in found),
                     key=lambda item: item[1].ts)
    pcap.write_pcapng(path, blocks, records)
    return {"pcap": path, "pcap_packets": len(records), "pcap_interfaces": [name for name, _ in blocks],
            "pcap_format": ("pcapng, one interface block per netns:iface, each with its own link type" if same else
                            "pcapng, one interface block per netns:iface, all Linux cooked (SLL): the path mixes "
                            "Ethernet and raw-IP interfaces (tunl0), and libpcap (tcpdump -r) reads only pcapng "
                            "files whose interfaces share one link type; SLL keeps no destination MAC")}
