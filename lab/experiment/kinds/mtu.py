"""mtu: path MTU, throughput against MSS and message size, and the encapsulation overhead on the wire.

Per repetition and pair:
  path_mtu                 the largest IP packet that crosses pod to pod with DF set: a binary search
                           with `ping -M do -s <payload>` (bytes)
  throughput_at_mss        iperf3 -M <mss>, one stream (Gbit/s; param mss), 96..1460 step 64 as
                           kubernetes/perf-tests netperf sweeps it
  throughput_at_msg_size   iperf3 -l <size> (Gbit/s; param msg_size)
  encap_overhead           bytes the data plane adds to a packet on the underlay: tcpdump on the source
                           node's eth0 captures a DF ping of known size; the outer IP length minus the
                           inner one (0 for routed modes, 20 for IPIP, 50 for VXLAN). Only for pairs
                           whose traffic crosses the underlay (not same-node).
"""

from __future__ import annotations

import collections
import os
import signal
import struct
import subprocess
import tempfile
import time
from contextlib import AbstractContextManager
from typing import Any

from lab.experiment import iperf, proc
from lab.experiment.kinds import Kind, PairContext, Value
from lab.netns import procgroup

ICMP_HEADERS = 28          # IPv4 20 + ICMP 8
PROBE_PAYLOAD = 1000       # the captured ping's payload: fits every pod MTU
PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
LINKTYPE_ETHERNET = 1
CAPTURE_WAIT = 3.0
CAPTURE_SETTLE = 0.1


class Mtu(Kind):
    id = "mtu"
    SCHEMA = {
        "tests": {"type": "array", "items": {"enum": ["path_mtu", "mss", "msg_size", "overhead"]}, "minItems": 1,
                  "uniqueItems": True, "default": ["path_mtu", "mss", "msg_size", "overhead"]},
        "mss": {"type": "array", "items": {"type": "integer", "minimum": 88, "maximum": 9000}, "minItems": 1,
                "default": list(range(96, 1461, 64)), "description": "MSS values of the sweep (iperf3 -M)"},
        "msg_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1048576}, "minItems": 1,
                      "default": [64, 256, 1024, 4096, 16384, 65536],
                      "description": "write sizes of the message-size sweep (iperf3 -l)"},
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 1,
                     "description": "seconds per iperf3 run of the sweeps"},
        "max_mtu": {"type": "integer", "minimum": 576, "maximum": 65535, "default": 9000,
                    "description": "upper bound of the path MTU search"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        needed = ["ping", "ss"]
        if {"mss", "msg_size"} & set(params["tests"]):
            needed.append("iperf3")
        if "overhead" in params["tests"]:
            needed.append("tcpdump")
        return needed

    def estimate(self, params: dict[str, Any]) -> float:
        tests = params["tests"]
        seconds = 0.5 if "path_mtu" in tests else 0.0
        seconds += 1.0 if "overhead" in tests else 0.0
        if "mss" in tests:
            seconds += len(params["mss"]) * (params["duration"] + 0.1)
        if "msg_size" in tests:
            seconds += len(params["msg_sizes"]) * (params["duration"] + 0.1)
        return seconds

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[Any]:
        ctx.implementations["mtu_tools"] = "ping -M do, iperf3 -M/-l, tcpdump"
        return iperf.server(ctx, port=iperf.PORT + 2)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        values: list[Value] = []
        tests = params["tests"]
        if "path_mtu" in tests:
            values.append(Value("path_mtu", float(path_mtu(ctx, params["max_mtu"])), "bytes"))
        if "overhead" in tests and ctx.src.node != ctx.dst.node:
            values.append(Value("encap_overhead", float(encapsulation_overhead(ctx)), "bytes"))
        for mss in params["mss"] if "mss" in tests else []:
            report = iperf.client(ctx, params["duration"], mss=mss, port=iperf.PORT + 2)
            values.append(Value("throughput_at_mss", report.receiver_gbps, "Gbit/s", "mss", str(mss)))
        for size in params["msg_sizes"] if "msg_size" in tests else []:
            report = iperf.client(ctx, params["duration"], length=size, port=iperf.PORT + 2)
            values.append(Value("throughput_at_msg_size", report.receiver_gbps, "Gbit/s", "msg_size", str(size)))
        return values


def df_ping(ctx: PairContext, payload: int) -> bool:
    """True when one DF echo of `payload` bytes crosses from the source pod to the destination and back."""
    done = subprocess.run(proc.in_netns(ctx.src.netns, ["ping", "-n", "-M", "do", "-s", str(payload), "-c", "1",
                                                        "-W", "1", ctx.dst.ip]), capture_output=True)
    return done.returncode == 0


def link_mtu(netns: str, device: str = "eth0") -> int | None:
    try:
        done = subprocess.run(proc.in_netns(netns, ["cat", f"/sys/class/net/{device}/mtu"]), capture_output=True,
                              text=True)
        return int(done.stdout.strip()) if done.returncode == 0 else None
    except (OSError, ValueError):
        return None


def path_mtu(ctx: PairContext, max_mtu: int) -> int:
    """The largest packet (IP length) that crosses with DF set: binary search on the ping payload,
    from the source pod's own MTU down (no path is wider than its first link)."""
    first_hop = link_mtu(ctx.src.netns) or max_mtu
    low, high = 0, min(max_mtu, first_hop) - ICMP_HEADERS    # low passes (checked); high is tried first
    if not df_ping(ctx, low):
        raise proc.ToolError(f"ping {ctx.pair}: even an empty DF echo gets no reply", "check the pair with `lab ping`")
    if df_ping(ctx, high):
        return high + ICMP_HEADERS
    while high - low > 1:
        middle = (low + high) // 2
        if df_ping(ctx, middle):
            low = middle
        else:
            high = middle
    return low + ICMP_HEADERS


def encapsulation_overhead(ctx: PairContext) -> int:
    """Outer minus inner IP length of a DF ping of known size, captured on the source node's eth0."""
    inner = PROBE_PAYLOAD + ICMP_HEADERS
    with tempfile.TemporaryDirectory(prefix="lab-mtu-") as tmp:
        capture = os.path.join(tmp, "underlay.pcap")
        argv = ["tcpdump", "-Z", "root", "--immediate-mode", "-i", "eth0", "-nn", "-U", "-s", "64", "-w", capture,
                f"greater {inner} and less {inner + 14 + 200}"]
        tcpdump = subprocess.Popen(proc.in_netns(ctx.src.node_netns, argv), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_listening(tcpdump)
            pinged = subprocess.run(proc.in_netns(ctx.src.netns, ["ping", "-n", "-M", "do", "-s", str(PROBE_PAYLOAD),
                                                                  "-c", "3", "-i", "0.05", "-W", "1", ctx.dst.ip]),
                                    capture_output=True, text=True)
            if pinged.returncode != 0:
                raise proc.ToolError(f"DF ping of {PROBE_PAYLOAD} bytes {ctx.pair} failed: {pinged.stdout[-200:]}")
            time.sleep(0.05)
        finally:
            procgroup.stop_groups([tcpdump], first=signal.SIGINT, grace=3.0)   # SIGINT: tcpdump flushes its file
        lengths = ip_lengths(capture)
    extra = collections.Counter(length - inner for length in lengths if inner <= length <= inner + 200)
    if not extra:
        raise proc.ToolError(f"tcpdump on {ctx.src.node_netns} eth0 saw none of the {ctx.pair} probe packets",
                             "the pair's traffic may not cross the source node's eth0")
    return extra.most_common(1)[0][0]


def _wait_listening(tcpdump: subprocess.Popen[bytes]) -> None:
    """tcpdump prints `listening on ...` to stderr once its capture is open."""
    assert tcpdump.stderr is not None
    os.set_blocking(tcpdump.stderr.fileno(), False)
    deadline = time.monotonic() + CAPTURE_WAIT
    seen = b""
    while time.monotonic() < deadline:
        chunk = tcpdump.stderr.read() or b""
        seen += chunk
        if b"listening on" in seen:
            time.sleep(CAPTURE_SETTLE)   # tcpdump announces itself a moment before its first packet arrives
            return
        if tcpdump.poll() is not None:
            raise proc.ToolError(f"tcpdump exited: {seen.decode(errors='replace').strip()[-300:]}")
        time.sleep(0.02)
    raise proc.ToolError("tcpdump did not start capturing within 3 s")


def ip_lengths(path: str) -> list[int]:
    """The IPv4 total length of every Ethernet frame in a pcap file."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < PCAP_HEADER.size:
        return []
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = PCAP_HEADER.unpack_from(data, 0)
    if magic not in (0xA1B2C3D4, 0xA1B23C4D) or linktype != LINKTYPE_ETHERNET:
        raise proc.ToolError(f"{path}: not a little-endian Ethernet pcap (magic {magic:#x}, link type {linktype})")
    lengths = []
    offset = PCAP_HEADER.size
    while offset + RECORD_HEADER.size <= len(data):
        _sec, _usec, captured, _original = RECORD_HEADER.unpack_from(data, offset)
        frame = data[offset + RECORD_HEADER.size: offset + RECORD_HEADER.size + captured]
        offset += RECORD_HEADER.size + captured
        if len(frame) >= 18 and frame[12:14] == b"\x08\x00":
            lengths.append(struct.unpack_from("!H", frame, 16)[0])
    return lengths


KIND = Mtu()
