"""IPIP in userspace, for kernels without the ipip module: tunl0 is a TUN device, and real protocol-4
packets go on the wire through a raw socket."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.netns import tun
from lab.netns.rtnl import SO_RCVBUFFORCE

IPPROTO_IPIP = 4
OUTER_IP = struct.Struct("!BBHHHBBH4s4s")
PACKET_MAX = 1 << 16
PACKET_BURST = 64


@dataclass
class Counters:
    """Per-node tunnel counters; bytes are inner-packet bytes, as tunl0's own counters count them."""

    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1


Verdict = tuple[bytes, str] | str  # (outer destination, as text) or the reason to drop


class Tunnel:
    """IPIP in userspace: tunl0 (a TUN device) on one side, a raw IPPROTO_IPIP socket on the other."""

    def __init__(self, tun_fd: int, raw: socket.socket, tun_index: int, resolve: Callable[[bytes], Verdict],
                 counters: Counters) -> None:
        self.tun_fd, self.raw, self.tun_index = tun_fd, raw, tun_index
        self.resolve, self.counters = resolve, counters
        self.buffer = bytearray(PACKET_MAX)
        self.view = memoryview(self.buffer)
        self.failure: str | None = None

    @staticmethod
    def open_here(device: str) -> tuple[int, socket.socket, int]:
        """Attach the tunnel device and open the raw socket, in the calling thread's namespace."""
        tun_fd = tun.open_tun(device)
        try:
            tun_index = socket.if_nametoindex(device)
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, IPPROTO_IPIP)
        except BaseException:
            os.close(tun_fd)
            raise
        try:
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            try:
                raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
            except OSError:
                pass
        except BaseException:
            raw.close()
            os.close(tun_fd)
            raise
        return tun_fd, raw, tun_index

    def close(self) -> None:
        self.raw.close()
        os.close(self.tun_fd)

    def from_tun(self) -> None:
        """Encapsulate what the kernel routed into tunl0 and send it to the route's gateway."""
        counters = self.counters
        for _ in range(PACKET_BURST):
            try:
                packet = os.read(self.tun_fd, PACKET_MAX)
            except BlockingIOError:
                return
            except OSError as exc:
                self.failure = f"reading tunl0: {exc.strerror}"
                return
            size = len(packet)
            if size < 20 or packet[0] >> 4 != 4:
                counters.drop("not-ipv4")
                continue
            verdict = self.resolve(packet[16:20])
            if isinstance(verdict, str):
                counters.drop(verdict)
                continue
            gateway, gateway_text = verdict
            outer = OUTER_IP.pack(0x45, 0, 20 + size, 0, 0x4000 if packet[6] & 0x40 else 0, packet[8],
                                  IPPROTO_IPIP, 0, b"\0\0\0\0", gateway)
            try:
                self.raw.sendto(outer + packet, (gateway_text, 0))
            except BlockingIOError:
                counters.drop("send-busy")
                continue
            except OSError as exc:
                counters.drop("too-big" if exc.errno == errno.EMSGSIZE else "send-error")
                continue
            counters.tx_packets += 1
            counters.tx_bytes += size

    def from_network(self) -> None:
        """Strip the outer header of each IPIP packet received and hand the inner one to tunl0."""
        counters, buffer = self.counters, self.buffer
        for _ in range(PACKET_BURST):
            try:
                size = self.raw.recv_into(buffer)
            except BlockingIOError:
                return
            except OSError:
                counters.drop("receive-error")
                return
            header = (buffer[0] & 0x0F) * 4
            if size < header + 20 or buffer[header] >> 4 != 4:
                counters.drop("malformed")
                continue
            try:
                os.write(self.tun_fd, self.view[header:size])
            except OSError:
                counters.drop("tun-write-error")
                continue
            counters.rx_packets += 1
            counters.rx_bytes += size - header


class Holder(Tunnel):
    """The TUN device of an eBPF tunnel, held open: a TUN device has carrier only while a process has it
    attached (routes through it would be `linkdown` otherwise). The lab's tc programs redirect every
    packet before the device's queue, so whatever does reach it is counted and dropped, as an ipip
    device drops what it cannot route.

    It is also the slow path of decapsulation: tc ingress sees an outer packet fragmented in transit
    one fragment at a time, so ipip_decap hands fragments to the stack, which reassembles them and,
    having no ipip handler, delivers them to raw IP-protocol-4 sockets (after iptables INPUT, where
    Felix's rule drops IPIP from hosts that are not nodes). This raw socket takes the reassembled
    packet and writes the inner one into the device, as the module's ipip_rcv() would."""

    def __init__(self, tun_fd: int, raw: socket.socket, tun_index: int, counters: Counters) -> None:
        super().__init__(tun_fd, raw, tun_index, lambda _dst: "not-encapsulated", counters)

    def from_tun(self) -> None:
        for _ in range(PACKET_BURST):
            try:
                os.read(self.tun_fd, PACKET_MAX)
            except BlockingIOError:
                return
            except OSError as exc:
                self.failure = f"reading the tunnel device: {exc.strerror}"
                return
            self.counters.drop("not-encapsulated")
