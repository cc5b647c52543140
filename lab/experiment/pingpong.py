"""The built-in request/response tools, used where sockperf (or netperf) is missing.

  python -m lab.experiment.pingpong server --proto tcp|udp|crr --port P
  python -m lab.experiment.pingpong rr --proto tcp|udp --host IP --port P --duration S [--size N]
      one request of N bytes, one response, repeated for S seconds on one connection (TCP_RR/UDP_RR);
      prints {"rtt_us": [...]} (every round trip, microseconds)
  python -m lab.experiment.pingpong crr --host IP --port P --duration S
      TCP_CRR: connect, one 1-byte request and response, close; repeated for S seconds;
      prints {"connections": n, "seconds": s, "failures": f}

Timing is time.perf_counter_ns around each round trip. Python adds tens of microseconds per round
trip, so these figures are upper bounds and are labelled "builtin" in environment.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any

TIMEOUT = 2.0


def serve_tcp(port: int, size: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    import selectors
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                conn, _addr = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                continue
            sock.sendall(data)  # type: ignore[union-attr]


def serve_udp(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        data, addr = sock.recvfrom(65536)
        sock.sendto(data, addr)


def rr(proto: str, host: str, port: int, duration: float, size: int) -> dict[str, list[float]]:
    payload = b"x" * size
    if proto == "tcp":
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT)
        sock.connect((host, port))
    rtts: list[float] = []
    lost = 0
    end = time.perf_counter() + duration
    with sock:
        while time.perf_counter() < end:
            start = time.perf_counter_ns()
            sock.send(payload)
            got = 0
            try:
                while got < size:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("connection closed")
                    got += len(chunk)
                    if proto == "udp":
                        break
            except TimeoutError:
                lost += 1
                continue
            rtts.append((time.perf_counter_ns() - start) / 1000)
    return {"rtt_us": rtts, "lost": lost}  # type: ignore[dict-item]


def crr(host: str, port: int, duration: float) -> dict[str, float]:
    done = failures = 0
    start = time.perf_counter()
    end = start + duration
    while time.perf_counter() < end:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"x")
                if sock.recv(1):
                    done += 1
                else:
                    failures += 1
        except OSError:
            failures += 1
    return {"connections": done, "seconds": time.perf_counter() - start, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.experiment.pingpong")
    parser.add_argument("role", choices=["server", "rr", "crr"])
    parser.add_argument("--proto", choices=["tcp", "udp", "crr"], default="tcp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11112)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.role == "server":
        if args.proto == "udp":
            serve_udp(args.port)
        else:
            serve_tcp(args.port, args.size)
        return 0
    if args.role == "rr":
        result: dict[str, Any] = rr(args.proto, args.host, args.port, args.duration, args.size)
    else:
        result = crr(args.host, args.port, args.duration)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
