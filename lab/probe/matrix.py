"""Reachability between pods with real TCP, UDP and SCTP traffic, every probe at once from one process.

Each client socket is created inside its source pod's network namespace (a helper thread enters
them in turn), so its packets leave through that pod's eth0. The sockets are non-blocking and one
selectors loop drives them all: a TCP or SCTP probe is allowed only when the connection completes
and the banner the probe server sends is the destination pod's key (so the right pod answered); a
UDP probe resends its datagram every RESEND seconds and is allowed only when the reply is that key.
Each UDP probe sends from a source port no recent run used (lab/probe/sourceports.py), so it is a new
flow to conntrack and meets the policies in force, never an earlier probe's ESTABLISHED entry.
A reset or ICMP error denies a probe at once; silence denies it at its own timeout. At most WAVE
sockets are open at once (a sliding window, refilled in batches of BATCH as probes finish), so 200 x
200 pods stays within the file descriptor limit.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from lab.errors import LabError
from lab.netns import namespace
from lab.probe.endpoints import Endpoint, endpoints
from lab.probe.limits import NO_PROTOCOL, raise_fd_limit
from lab.probe.sourceports import SourcePorts, port_at
from lab.topology.model import ContainerPort, Topology

WAVE = 4000
BATCH = 500
FD_RESERVE = 256
RESEND = 0.15
PAYLOAD = b"lab-probe\n"
BANNER_MAX = 512
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)   # linux/in.h; Python 3.11 lacks the name
REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED}


@dataclass(frozen=True, order=True)
class Case:
    """One probe: from pod `src` to pod `dst` on `port`/`protocol` (pod keys are `namespace/name`)."""

    src: str
    dst: str
    port: int
    protocol: str


@dataclass(frozen=True)
class Observation:
    """What a probe saw: allowed True/False, or None when the kernel cannot speak the protocol."""

    allowed: bool | None
    detail: str  # connected | refused | timeout | unreachable | unsupported | wrong-peer:<key>


ALLOWED = Observation(True, "connected")
TIMEOUT = Observation(False, "timeout")
UNSUPPORTED = Observation(None, "unsupported")


# -- which cases -------------------------------------------------------------------------------------
def cases_for(topology: Topology, port: int | str | None = None, protocol: str | None = None) -> list[Case]:
    """Every ordered pod pair (self pairs too) for every port the destination declares, filtered."""
    # `port`: a number or a containerPort name, resolved per destination pod as Kubernetes resolves a
    # named port; `protocol`: TCP, UDP or SCTP, in any case.
    wanted = protocol.upper() if protocol else None
    every = endpoints(topology)
    targets = {dst.key: [cp for cp in dst.container_ports if _matches(cp, port, wanted)] for dst in every}
    return [Case(src.key, dst.key, cp.port, cp.protocol)
            for src in every for dst in every for cp in targets[dst.key]]


def _matches(cp: ContainerPort, port: int | str | None, protocol: str | None) -> bool:
    """Whether a declared port is the one asked for (by number or name) with the protocol asked for."""
    if protocol is not None and cp.protocol != protocol:
        return False
    if port is None:
        return True
    if isinstance(port, int) or port.isdigit():
        return cp.port == int(port)
    return cp.name == port


def verdicts(observations: dict[Case, Observation]) -> dict[tuple[int, str], dict[tuple[str, str], bool | None]]:
    """Observations regrouped per (port, protocol) as {(src, dst): allowed}, the shape table.render takes."""
    grouped: dict[tuple[int, str], dict[tuple[str, str], bool | None]] = {}
    for case, seen in observations.items():
        grouped.setdefault((case.port, case.protocol), {})[(case.src, case.dst)] = seen.allowed
    return grouped


# -- probing -----------------------------------------------------------------------------------------
def observe(topology: Topology, cases: Iterable[Case], timeout: float = 1.0,
            source_ports: SourcePorts | None = None) -> dict[Case, Observation]:
    """Run every probe concurrently (at most WAVE sockets in flight); what each one saw.

    `source_ports`: the lab's shared UDP source-port cursor; without it, a window picked at random.
    """
    cases = list(dict.fromkeys(cases))
    pods = {endpoint.key: endpoint for endpoint in endpoints(topology)}
    _check(cases, pods)
    sports = udp_source_ports(cases, source_ports or SourcePorts())
    return _Run(topology.name, pods, timeout, wave_size(raise_fd_limit()), sports).run(cases)


def udp_source_ports(cases: list[Case], source_ports: SourcePorts) -> dict[Case, int]:
    """A source port for every UDP case: the n-th UDP case of each source pod takes the window's n-th port."""
    index: dict[Case, int] = {}
    per_source: dict[str, int] = {}
    for case in cases:
        if case.protocol == "UDP":
            index[case] = per_source.get(case.src, 0)
            per_source[case.src] = index[case] + 1
    if not index:
        return {}
    first = source_ports.reserve(max(per_source.values()))
    return {case: port_at(first, n) for case, n in index.items()}


def wave_size(fd_limit: int) -> int:
    """How many probes may be in flight at once under `fd_limit` descriptors."""
    return max(1, min(WAVE, fd_limit - FD_RESERVE))


def _check(cases: list[Case], pods: dict[str, Endpoint]) -> None:
    """Every case names pods of this lab, a destination with an address, and a known protocol."""
    for case in cases:
        for key in (case.src, case.dst):
            if key not in pods:
                raise LabError(f"no pod {key} in this lab", f"pods are: {', '.join(sorted(pods))}")
        if pods[case.dst].ip is None:
            raise LabError(f"pod {case.dst} has no IP address")
        if case.protocol not in ("TCP", "UDP", "SCTP"):
            raise LabError(f"protocol {case.protocol!r} must be TCP, UDP or SCTP")


@dataclass(eq=False)
class _Probe:
    """A probe in flight."""

    case: Case
    sock: socket.socket
    address: tuple[str, int]
    deadline: float = 0.0
    banner: bytes = b""
    done: bool = False

    @property
    def datagram(self) -> bool:
        """UDP: answered per datagram, resent until answered."""
        return self.case.protocol == "UDP"


class _Run:
    """One observe() call: a sliding window of probes, refilled in batches as probes finish."""

    # Each probe has its own deadline (its launch plus the timeout), so silent drops in one batch do
    # not hold back the next: a run takes about (work) + timeout, not one timeout per wave.

    def __init__(self, lab: str, pods: dict[str, Endpoint], timeout: float, window: int,
                 sports: dict[Case, int]) -> None:
        self.lab, self.pods, self.timeout, self.window, self.sports = lab, pods, timeout, window, sports
        self.selector = selectors.DefaultSelector()
        self.results: dict[Case, Observation] = {}
        self.launched: deque[_Probe] = deque()   # in launch order, so deadlines ascend
        self.open: set[_Probe] = set()
        self.datagrams: set[_Probe] = set()

    def run(self, cases: list[Case]) -> dict[Case, Observation]:
        """Probe every case; every socket is closed on the way out, whatever happens."""
        batch = max(1, min(BATCH, self.window))
        pending = deque(cases[i:i + batch] for i in range(0, len(cases), batch))
        resend_at = time.monotonic() + RESEND
        try:
            while pending or self.open:
                while pending and len(self.open) + len(pending[0]) <= self.window:
                    self._start(pending.popleft())
                resend_at = self._turn(resend_at)
        finally:
            for probe in list(self.open):
                self._finish(probe, TIMEOUT)
            self.selector.close()
        return self.results

    def _turn(self, resend_at: float) -> float:
        """Wait for events up to the next deadline or resend, handle them; returns the next resend time."""
        now = time.monotonic()
        until = min(resend_at, self.launched[0].deadline) if self.launched else resend_at
        for key, _ in self.selector.select(max(0.0, until - now)):
            self._step(key.data)
        now = time.monotonic()
        self._expire(now)
        if now < resend_at:
            return resend_at
        self._resend()
        return now + RESEND

    def _start(self, cases: list[Case]) -> None:
        """Open a batch's sockets inside their source namespaces, then launch them."""
        deadline = time.monotonic() + self.timeout
        probes = self._open(cases)
        for probe in probes:
            probe.deadline = deadline
            self.open.add(probe)
            self.launched.append(probe)
        for probe in probes:
            self._launch(probe)

    def _open(self, cases: list[Case]) -> list[_Probe]:
        """Client sockets, each created inside its source pod's namespace; unsupported protocols noted."""
        by_netns: dict[str, list[Case]] = {}
        for case in cases:
            by_netns.setdefault(self.pods[case.src].netns, []).append(case)
        opened: list[_Probe] = []

        def make(netns: str) -> None:
            for case in by_netns[netns]:
                try:
                    sock = _client_socket(case.protocol, self.sports.get(case, 0))
                except OSError as exc:
                    if exc.errno not in NO_PROTOCOL:
                        raise
                    self.results[case] = UNSUPPORTED
                    continue
                opened.append(_Probe(case, sock, (str(self.pods[case.dst].ip), case.port)))

        try:
            namespace.run_in_each(list(by_netns), make)
        except BaseException:
            for probe in opened:
                probe.sock.close()
            raise
        return opened

    def _launch(self, probe: _Probe) -> None:
        """A non-blocking connect (its completion shows as the banner arriving), or a first datagram."""
        try:
            if probe.datagram:
                probe.sock.connect(probe.address)
                probe.sock.send(PAYLOAD)
                self.datagrams.add(probe)
            else:
                code = probe.sock.connect_ex(probe.address)
                if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
                    raise OSError(code, errno.errorcode.get(code, "connect"))
        except OSError as exc:
            self._finish(probe, denied(exc.errno))
            return
        self.selector.register(probe.sock, selectors.EVENT_READ, probe)

    def _expire(self, now: float) -> None:
        """Time out every probe whose deadline has passed."""
        while self.launched and self.launched[0].deadline <= now:
            probe = self.launched.popleft()
            if not probe.done:
                self._finish(probe, TIMEOUT)

    def _resend(self) -> None:
        """Send every unanswered UDP probe's datagram again (the first may have met an unresolved neighbour)."""
        for probe in list(self.datagrams):
            try:
                probe.sock.send(PAYLOAD)
            except BlockingIOError:
                pass
            except OSError as exc:
                self._finish(probe, denied(exc.errno))

    def _step(self, probe: _Probe) -> None:
        """Read what arrived: a reply, a banner (or part of one), or a socket error (reset, ICMP)."""
        try:
            data = probe.sock.recv(BANNER_MAX)
        except BlockingIOError:
            code = pending_error(probe.sock)
            if code:
                self._finish(probe, denied(code))
            return
        except OSError as exc:
            self._finish(probe, denied(exc.errno))
            return
        if probe.datagram:
            self._finish(probe, identify(data, probe.case.dst))
            return
        probe.banner += data
        if data and b"\n" not in probe.banner and len(probe.banner) < BANNER_MAX:
            return
        self._finish(probe, identify(probe.banner, probe.case.dst))

    def _finish(self, probe: _Probe, seen: Observation) -> None:
        """Record the observation and close the probe's socket."""
        if probe.done:
            return
        probe.done = True
        self.results[probe.case] = seen
        if probe in self.open:
            self.open.discard(probe)
            self.datagrams.discard(probe)
            if probe.sock.fileno() in self.selector.get_map():
                self.selector.unregister(probe.sock)
        probe.sock.close()


def _client_socket(protocol: str, sport: int = 0) -> socket.socket:
    """A non-blocking client socket that reports ICMP errors (IP_RECVERR), in this thread's netns.

    A UDP socket is bound to `sport` when given (an ephemeral port if the pod itself serves on it).
    """
    if protocol == "UDP":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _bind_source(sock, sport)
    elif protocol == "SCTP":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    sock.setblocking(False)
    return sock


def _bind_source(sock: socket.socket, sport: int) -> None:
    """Bind a UDP client to its source port; the kernel picks one if a server in the pod holds it."""
    if not sport:
        return
    try:
        sock.bind(("0.0.0.0", sport))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            sock.close()
            raise


def pending_error(sock: socket.socket) -> int:
    """An error the socket holds that recv() does not report: a queued ICMP error, else SO_ERROR."""
    # An ICMP error that arrives while connect() still holds the socket (in a lab the whole path often
    # runs inline in that call) is only a soft error to TCP, which recv() ignores until the SYN is
    # retransmitted a second later; IP_RECVERR queues it at once (raising EPOLLERR), and SO_ERROR
    # returns the soft error too.
    return queued_error(sock) or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def queued_error(sock: socket.socket) -> int | None:
    """The errno of an ICMP error waiting on the socket's error queue (IP_RECVERR), if any."""
    try:
        _, ancillary, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        return None
    except OSError as exc:
        return exc.errno
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_RECVERR and len(data) >= 4:
            code: int = struct.unpack_from("=I", data)[0]   # struct sock_extended_err: ee_errno first
            return code
    return None


def identify(answer: bytes, dst: str) -> Observation:
    """Allowed only when the answer names the destination pod; otherwise which peer answered."""
    peer = answer.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    if peer == dst:
        return ALLOWED
    return Observation(False, f"wrong-peer:{peer or '(nothing)'}")


def denied(code: int | None) -> Observation:
    """A denial from an errno: a reset or port-unreachable is `refused`, a timeout `timeout`, else `unreachable`."""
    if code in REFUSED:
        return Observation(False, "refused")
    if code == errno.ETIMEDOUT:
        return TIMEOUT
    return Observation(False, "unreachable")
