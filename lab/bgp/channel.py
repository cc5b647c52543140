"""One NETLINK_ROUTE socket per namespace: acked requests in chunks, dumps, route queries, queued events."""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable

from lab.bgp.route import Route, route_query
from lab.netns.rtnl import (
    HEADER,
    I32,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_ROUTE,
    NLM_F_ACK_TLVS,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_LINK,
    RTMSG,
    SO_RCVBUFFORCE,
    SOL_NETLINK,
    U32,
    Message,
    attributes,
    split,
)

RECV_SIZE = 1 << 16
RCVBUF = 8 << 20
CHUNK_MESSAGES = 256
REPLY_TIMEOUT = 5.0
EVENT_READS = 64


class Overrun(Exception):
    """The kernel dropped netlink messages (ENOBUFS): state must be dumped again."""


class Channel:
    """A NETLINK_ROUTE socket opened in one namespace: synchronous requests, queued events."""

    def __init__(self, sock: socket.socket, cap_ack: bool) -> None:
        self.sock = sock
        self.cap_ack = cap_ack
        self.portid: int = sock.getsockname()[0]
        self.seq = 0
        self.backlog: deque[Message] = deque()
        self.overrun = False

    @classmethod
    def open(cls) -> Channel:
        """Open and subscribe a socket in the calling thread's namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            cap_ack = True
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            except OSError:
                cap_ack = False
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:
                pass
            sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
            return cls(sock, cap_ack)
        except BaseException:
            sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq = self.seq % 0xFFFFFFFF + 1
        return self.seq

    def _read(self, deadline: float) -> list[Message]:
        """The next datagram's messages, waiting until `deadline`; ENOBUFS raises Overrun."""
        while True:
            try:
                return list(split(self.sock.recv(RECV_SIZE)))
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no netlink reply within 5 s") from None
                select.select([self.sock], [], [], remaining)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overrun = True
                    raise Overrun() from None
                raise

    def _error(self, body: bytes, flags: int) -> tuple[int, str]:
        """The errno and extended-ack text of an NLMSG_ERROR body."""
        code = -I32.unpack_from(body)[0]
        text = ""
        if flags & NLM_F_ACK_TLVS:
            offset = 4 + (HEADER.size if self.cap_ack else (U32.unpack_from(body, 4)[0] + 3) & ~3)
            raw = attributes(body, offset).get(NLMSGERR_ATTR_MSG, b"")
            text = raw.split(b"\0", 1)[0].decode(errors="replace")
        return code, text

    def transact(self, requests: list[bytes]) -> dict[int, tuple[int, str]]:
        """Send acked requests in chunks, reading each chunk's acks; the failures by sequence number."""
        failures: dict[int, tuple[int, str]] = {}
        for start in range(0, len(requests), CHUNK_MESSAGES):
            chunk = requests[start:start + CHUNK_MESSAGES]
            pending = {HEADER.unpack_from(request)[3] for request in chunk}
            self.sock.send(b"".join(chunk))
            deadline = time.monotonic() + REPLY_TIMEOUT
            while pending:
                for message in self._read(deadline):
                    msg_type, flags, seq, portid, body = message
                    if msg_type == NLMSG_ERROR and portid == self.portid and seq in pending:
                        pending.discard(seq)
                        code, text = self._error(body, flags)
                        if code:
                            failures[seq] = (code, text)
                    else:
                        self.backlog.append(message)
        return failures

    def dump(self, make_request: Callable[[int], bytes]) -> tuple[list[Message], bool]:
        """Run a dump; its messages, and whether the kernel says it was interrupted by a change."""
        seq = self.next_seq()
        self.sock.send(make_request(seq))
        found: list[Message] = []
        interrupted = False
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            done = False
            for message in self._read(deadline):
                msg_type, flags, mseq, portid, body = message
                if done or portid != self.portid or mseq != seq or not (
                        flags & NLM_F_MULTI or msg_type in (NLMSG_DONE, NLMSG_ERROR)):
                    self.backlog.append(message)
                    continue
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if msg_type == NLMSG_ERROR:
                    code, text = self._error(body, flags)
                    raise OSError(code, f"dump refused: {os.strerror(code)} {text}".strip())
                if msg_type == NLMSG_DONE:
                    done = True
                else:
                    found.append(message)
            if done:
                return found, interrupted

    def query(self, dst: bytes) -> Route | None:
        """The kernel's route to `dst` (RTM_GETROUTE), or None when it has none."""
        seq = self.next_seq()
        self.sock.send(route_query(seq, dst))
        deadline = time.monotonic() + REPLY_TIMEOUT
        answer: Route | None = None
        answered = False
        while not answered:
            for message in self._read(deadline):
                msg_type, _flags, mseq, portid, body = message
                if answered or portid != self.portid or mseq != seq:
                    self.backlog.append(message)
                elif msg_type == NLMSG_ERROR:
                    answered = True
                elif msg_type == RTM_NEWROUTE:
                    answered = True
                    family, dst_len, _s, tos, table, protocol, scope, rtype, flags = RTMSG.unpack_from(body)
                    answer = Route(dst_len, tos, table, protocol, scope, rtype, flags, attributes(body, RTMSG.size))
                else:
                    self.backlog.append(message)
        return answer

    def events(self) -> list[Message]:
        """Queued events, then whatever the socket holds now (ENOBUFS sets `overrun`)."""
        found = list(self.backlog)
        self.backlog.clear()
        for _ in range(EVENT_READS):
            try:
                found.extend(split(self.sock.recv(RECV_SIZE)))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overrun = True
        return found
