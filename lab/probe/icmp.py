"""Concurrent ICMP echo probes between namespaces, from one process.

One raw ICMP socket is opened inside each source namespace; echo requests to every pending
destination are sent in rounds, and replies are collected with select() until every pair has
answered or the deadline passes.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from lab.netns import namespace

ECHO_REQUEST, ECHO_REPLY = 8, 0


@dataclass(frozen=True)
class Pair:
    """A probe from the namespace `src` to the address `dst`."""

    src: str
    dst: str


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"lab-probe") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def reachability(pairs: list[Pair], timeout: float = 10.0, interval: float = 0.2) -> dict[Pair, float | None]:
    """Round-trip time in seconds for every pair that answered, None for those that did not."""
    sources = sorted({p.src for p in pairs})
    sockets = dict(zip(sources, namespace.run_in_each(
        sources, lambda _: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)), strict=False))
    idents = {src: (os.getpid() + i) & 0xFFFF for i, src in enumerate(sources)}
    by_fd = {sock.fileno(): src for src, sock in sockets.items()}
    seqs: dict[Pair, int] = {}
    per_src: dict[str, dict[tuple[str, int], Pair]] = {src: {} for src in sources}
    for pair in pairs:
        seq = len(per_src[pair.src]) + 1
        seqs[pair] = seq
        per_src[pair.src][(pair.dst, seq)] = pair
    results: dict[Pair, float | None] = {p: None for p in pairs}
    sent_at: dict[Pair, float] = {}
    pending = set(pairs)
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            for pair in list(pending):
                sent_at[pair] = time.monotonic()
                try:
                    sockets[pair.src].sendto(echo_request(idents[pair.src], seqs[pair]), (pair.dst, 0))
                except OSError:
                    pass  # e.g. no route: stays pending, is retried
            round_end = min(deadline, time.monotonic() + interval)
            while pending and (left := round_end - time.monotonic()) > 0:
                ready, _, _ = select.select(list(by_fd), [], [], left)
                for fd in ready:
                    src = by_fd[fd]
                    _drain(sockets[src], src, idents[src], per_src[src], pending, results, sent_at)
    finally:
        for sock in sockets.values():
            sock.close()
    return results


def _drain(sock: socket.socket, src: str, ident: int, expected: dict[tuple[str, int], Pair], pending: set[Pair],
           results: dict[Pair, float | None], sent_at: dict[Pair, float]) -> None:
    while True:
        try:
            data, (addr, _) = sock.recvfrom(2048, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        header_len = (data[0] & 0x0F) * 4
        if len(data) < header_len + 8:
            continue
        kind, _, _, rid, seq = struct.unpack_from("!BBHHH", data, header_len)
        if kind != ECHO_REPLY or rid != ident:
            continue
        pair = expected.get((addr, seq))
        if pair is not None and pair in pending:
            pending.discard(pair)
            results[pair] = time.monotonic() - sent_at[pair]
