"""A UDP probe every `interval` seconds, echoed by the destination (lab.experiment.pingpong's UDP server).

  python -m lab.experiment.udpprobe --host IP --port P --interval 0.01 --duration S

Sends datagram n (its sequence number) every `interval` seconds until `duration` passes or SIGTERM,
collects the echoes, and prints JSON: {"interval": i, "sent": [monotonic send time of n, ...],
"echoed": [n, ...]}. CLOCK_MONOTONIC is the same in every network namespace, so the caller can place
its own events (time.monotonic()) on the same axis.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time


def probe(host: str, port: int, interval: float, duration: float) -> dict[str, float | list[float] | list[int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent: list[float] = []
    echoed: set[int] = set()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    start = time.monotonic()
    next_send = start
    grace_end = None
    while True:
        now = time.monotonic()
        if grace_end is None and (stop[0] or now - start >= duration):
            grace_end = now + 0.2        # late echoes of the last probes
        if grace_end is not None and now >= grace_end:
            break
        if grace_end is None and now >= next_send:
            try:
                sock.sendto(str(len(sent)).encode(), (host, port))
            except OSError:
                pass                     # no route (withdrawn): the probe is lost
            sent.append(now)
            next_send += interval
        wait = max(0.0, min(next_send, grace_end or next_send) - time.monotonic())
        readable, _, _ = select.select([sock], [], [], wait)
        while readable:
            try:
                data = sock.recv(64)
            except BlockingIOError:
                break
            except OSError:
                break
            try:
                echoed.add(int(data))
            except ValueError:
                pass
    return {"interval": interval, "sent": sent, "echoed": sorted(echoed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.experiment.udpprobe")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args(argv)
    json.dump(probe(args.host, args.port, args.interval, args.duration), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
