"""A steady UDP probe between two namespaces, to measure how long a path is down (independent of the lab).

The echo server answers every datagram. The sender sends one numbered datagram every `interval`
seconds on a fixed schedule (not "interval after the previous one", so a slow moment does not
stretch the run), records which came back, and on a line on its stdin waits half a second for
stragglers and prints a JSON summary: sent, received, lost, lost_time = lost x interval, and the
first and last lost probe's send time (seconds after `started`, the first probe) - the outage window.
"""

from __future__ import annotations

import json
import subprocess
import sys

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); print("ready", flush=True)
while True:
    data, peer = s.recvfrom(64)
    s.sendto(data, peer)
"""
SENDER = """
import json, select, socket, struct, sys, time
dst, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
sent, got = {}, set()
start = time.monotonic(); seq = 0; stop_at = None
print("ready", start, flush=True)
while True:
    now = time.monotonic()
    if stop_at is None and now >= start + seq * interval:
        sent[seq] = now - start
        try:
            s.sendto(struct.pack("!I", seq), (dst, port))
        except OSError:
            pass                                  # e.g. EHOSTUNREACH / ENETUNREACH: counted as lost
        seq += 1
    if stop_at is not None and now >= stop_at:
        break
    timeout = max(0.0, min(start + seq * interval, stop_at or 1e18) - time.monotonic())
    ready, _, _ = select.select([s, sys.stdin] if stop_at is None else [s], [], [], timeout)
    if s in ready:
        while True:
            try:
                data = s.recv(64)
            except (BlockingIOError, OSError):
                break
            if len(data) == 4:
                got.add(struct.unpack("!I", data)[0])
    if sys.stdin in ready:
        sys.stdin.readline()
        stop_at = time.monotonic() + 0.5
lost = sorted(set(sent) - got)
print(json.dumps({"sent": len(sent), "received": len(got & set(sent)), "lost": len(lost),
                  "interval": interval, "lost_time": round(len(lost) * interval, 3),
                  "first_lost": round(sent[lost[0]], 3) if lost else None,
                  "last_lost": round(sent[lost[-1]], 3) if lost else None,
                  "duration": round(time.monotonic() - start, 3)}), flush=True)
"""


class UdpProbe:
    """Start an echo in `dst_netns` and a sender in `src_netns`; `stop()` returns the sender's summary."""

    def __init__(self, src_netns: str, dst_netns: str, dst_ip: str, port: int = 9999, interval: float = 0.01) -> None:
        self.echo = subprocess.Popen(["ip", "netns", "exec", dst_netns, sys.executable, "-c", ECHO, str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.echo.stdout.readline().strip() == "ready"
        self.sender = subprocess.Popen(["ip", "netns", "exec", src_netns, sys.executable, "-c", SENDER, dst_ip,
                                        str(port), str(interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
        word, start = self.sender.stdout.readline().split()
        assert word == "ready"
        self.started = float(start)       # CLOCK_MONOTONIC: comparable with time.monotonic() here

    def stop(self) -> dict:
        try:
            out, _ = self.sender.communicate("stop\n", timeout=10)
            return json.loads(out.strip().splitlines()[-1])
        finally:
            self.echo.kill()
            self.echo.wait()
