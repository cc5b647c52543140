"""Reading and writing pcap files, and decoding the few layers a trace needs (Ethernet, IPv4, UDP/VXLAN, IPIP).

tcpdump writes one classic pcap per interface; the trace merges them into one pcapng file with one
Interface Description Block per captured interface, named `<netns>:<iface>`, so Wireshark (and tshark's
frame.interface_name) shows where each frame was seen. Each block keeps its interface's link type when
all are the same (the usual case: Ethernet everywhere); when the path mixes Ethernet and raw-IP
interfaces (tunl0), every block is Linux cooked capture (SLL), because libpcap (tcpdump -r) refuses a
pcapng file whose interfaces differ in link type; SLL keeps no destination MAC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
ETH_P_IP = 0x0800


@dataclass(frozen=True)
class Record:
    ts: float
    data: bytes
    orig_len: int


def read(path: str) -> tuple[int, list[Record]]:
    """(link type, records) of a classic pcap file; an empty or truncated file gives what it holds."""
    with open(path, "rb") as handle:
        blob = handle.read()
    if len(blob) < 24:
        return LINKTYPE_ETHERNET, []
    magic = blob[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(order + "I", blob, 20)[0]
    records, offset = [], 24
    while offset + 16 <= len(blob):
        sec, frac, incl, orig = struct.unpack_from(order + "IIII", blob, offset)
        offset += 16
        if offset + incl > len(blob):
            break
        records.append(Record(sec + frac / (1e9 if nano else 1e6), blob[offset:offset + incl], orig))
        offset += incl
    return linktype, records


def write_classic(path: str, linktype: int, records: list[Record]) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for record in records:
            sec = int(record.ts)
            handle.write(struct.pack("<IIII", sec, int(round((record.ts - sec) * 1e6)), len(record.data),
                                     record.orig_len))
            handle.write(record.data)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def write_pcapng(path: str, interfaces: list[tuple[str, int]], records: list[tuple[int, Record]],
                 application: str = "lab trace --capture") -> None:
    """A pcapng file: one Interface Description Block per (name, link type), then each record as an Enhanced
    Packet Block of its interface (index into `interfaces`), timestamps in microseconds."""
    with open(path, "wb") as handle:
        options = _option(4, application.encode()) + _option(0, b"")
        handle.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + options))
        for name, linktype in interfaces:
            options = _option(2, name.encode()) + _option(9, b"\x06") + _option(0, b"")
            handle.write(_block(1, struct.pack("<HHI", linktype, 0, 262144) + options))
        for index, record in records:
            micros = int(round(record.ts * 1e6))
            body = struct.pack("<IIIII", index, micros >> 32, micros & 0xFFFFFFFF, len(record.data),
                               record.orig_len) + record.data + b"\0" * (-len(record.data) % 4)
            handle.write(_block(6, body))


ARPHRD = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: 0xFFFE}


def to_cooked(linktype: int, record: Record) -> Record:
    """A frame as a Linux cooked capture (SLL, link type 113): the one link type Ethernet and raw-IP interfaces
    (tunl0) can share in one classic pcap. The Ethernet destination MAC is not kept (SLL has no field for it)."""
    if linktype == LINKTYPE_LINUX_SLL:
        return record
    if linktype == LINKTYPE_ETHERNET and len(record.data) >= 14:
        ethertype = struct.unpack_from("!H", record.data, 12)[0]
        header = struct.pack("!HHH8sH", 4, 1, 6, record.data[6:12] + b"\0\0", ethertype)
        body = record.data[14:]
    else:
        header = struct.pack("!HHH8sH", 4, ARPHRD.get(linktype, 0xFFFE), 0, b"\0" * 8, ETH_P_IP)
        body = record.data
    return Record(record.ts, header + body, record.orig_len - len(record.data) + len(header) + len(body))


@dataclass(frozen=True)
class Layers:
    """What one captured frame holds, outside in."""

    eth: tuple[str, str] | None
    outer: tuple[str, str, int, int] | None       # src, dst, ttl, total length of the outer IPv4 header (if any)
    encap: str                                    # plain | vxlan VNI n | ipip
    inner: tuple[str, str, int, int, int]          # src, dst, ttl, total length, protocol
    l4: tuple[int, int, bytes]                     # sport/icmp id, dport/icmp type, payload

    def describe(self) -> str:
        parts = []
        if self.eth:
            parts.append(f"{self.eth[0]} > {self.eth[1]}")
        if self.outer:
            parts.append(f"outer {self.outer[0]} > {self.outer[1]} ttl {self.outer[2]} len {self.outer[3]} "
                         f"{self.encap}")
        src, dst, ttl, length, _ = self.inner
        parts.append(f"{src} > {dst} ttl {ttl} len {length}")
        return ", ".join(parts)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _ipv4(data: bytes) -> tuple[tuple[str, str, int, int, int], bytes] | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    length = struct.unpack_from("!H", data, 2)[0]
    return (_ip(data[12:16]), _ip(data[16:20]), data[8], length, data[9]), data[ihl:length]


def decode(linktype: int, frame: bytes, vxlan_ports: set[int]) -> Layers | None:
    """The layers of one frame, or None for anything that is not IPv4."""
    eth = None
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
            return None
        eth, payload = (_mac(frame[6:12]), _mac(frame[0:6])), frame[14:]
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16 or struct.unpack_from("!H", frame, 14)[0] != ETH_P_IP:
            return None
        payload = frame[16:]
    else:
        payload = frame
    ip = _ipv4(payload)
    if ip is None:
        return None
    header, body = ip
    if header[4] == 17 and len(body) >= 8 and struct.unpack_from("!H", body, 2)[0] in vxlan_ports:
        vni = int.from_bytes(body[12:15], "big")
        inner_frame = body[16:]
        inner = decode(LINKTYPE_ETHERNET, inner_frame, set())
        if inner is None:
            return None
        return Layers(eth, header[:4], f"UDP {struct.unpack_from('!H', body, 2)[0]} VXLAN VNI {vni}",
                      inner.inner, inner.l4)
    if header[4] == 4:
        inner_ip = _ipv4(body)
        if inner_ip is None:
            return None
        return Layers(eth, header[:4], "IPIP", inner_ip[0], _l4(inner_ip[0][4], inner_ip[1]))
    return Layers(eth, None, "plain", header, _l4(header[4], body))


def _l4(protocol: int, body: bytes) -> tuple[int, int, bytes]:
    if protocol in (6, 17) and len(body) >= 4:
        sport, dport = struct.unpack_from("!HH", body, 0)
        return sport, dport, body[20:] if protocol == 6 else body[8:]
    if protocol == 1 and len(body) >= 8:
        return struct.unpack_from("!H", body, 4)[0], body[0], body[8:]
    return 0, 0, b""
