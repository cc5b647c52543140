"""Probe servers: one per-lab daemon answering on every pod's declared containerPorts.

`python -m lab.probe.servers <spec.json>` runs inside the lab's underlay namespace, so `lab down`
finds and stops it with every other process of the lab. Each socket is opened on a helper thread
that has entered the pod's network namespace; a socket stays in the namespace it was created in,
so one process and one selectors loop serve every pod. A TCP (or SCTP) connection is sent the pod's
key and a newline, then closed; a UDP datagram is answered with the same line. SCTP sockets exist
only where the kernel has SCTP: a port the kernel cannot serve is listed as unsupported in the ready
file, never faked. The ready file is written (atomically) once every socket is bound.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from lab.netns import apply, daemon, names, namespace
from lab.probe.endpoints import endpoints
from lab.probe.limits import NO_PROTOCOL, raise_fd_limit
from lab.topology.model import Topology

BACKLOG = 4096
SPEC_FILE = "probe-servers.json"
LOG_FILE = "probe-servers.log"
READY_FILE = "probe-servers.ready"


# -- the caller's side -------------------------------------------------------------------------------
def spec(topology: Topology, state_dir: str) -> dict[str, Any]:
    """The daemon's spec: where it logs and signals readiness, and every pod's namespace and ports."""
    pods = [{"key": pod.key, "netns": pod.netns,
             "ports": [{"port": cp.port, "protocol": cp.protocol} for cp in pod.container_ports]}
            for pod in endpoints(topology) if pod.container_ports]
    return {"lab": topology.name, "underlay": names.underlay_netns(topology.name),
            "log": os.path.join(state_dir, LOG_FILE), "ready": os.path.join(state_dir, READY_FILE), "pods": pods}


def start(topology: Topology, state_dir: str) -> dict[str, Any]:
    """Start the lab's probe servers and wait until every socket is bound; returns their runtime record."""
    data = spec(topology, state_dir)
    os.makedirs(state_dir, exist_ok=True)
    process = daemon.start(data["underlay"], "lab.probe.servers", data, os.path.join(state_dir, SPEC_FILE),
                           "the probe servers")
    with open(data["ready"], encoding="utf-8") as handle:
        ready = json.load(handle)
    return {"pid": process.pid, "served": ready["served"], "unsupported": ready["unsupported"],
            "sctp": ready["sctp"], "log": data["log"], "ready": data["ready"]}


def stop(pid: int | None, grace: float = 5.0) -> None:
    """Stop the probe servers (SIGTERM, then SIGKILL after `grace` seconds); None is a no-op."""
    if pid is not None:
        apply.stop_processes([pid], grace=grace)


# -- the daemon --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """One bound socket and the line it answers with."""

    sock: socket.socket
    line: bytes
    datagram: bool


@dataclass(frozen=True)
class PodSockets:
    """What was opened in one pod's namespace."""

    key: str
    endpoints: tuple[Endpoint, ...]
    served: tuple[str, ...]
    unsupported: tuple[str, ...]


def listen(port: int, protocol: str) -> socket.socket:
    """A non-blocking socket bound to 0.0.0.0:`port` (listening, for TCP and SCTP) in this thread's netns."""
    kind = socket.SOCK_DGRAM if protocol == "UDP" else socket.SOCK_STREAM
    proto = socket.IPPROTO_SCTP if protocol == "SCTP" else 0
    sock = socket.socket(socket.AF_INET, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_pod(pod: dict[str, Any]) -> PodSockets:
    """Bind every declared port of one pod (call inside its namespace); SCTP without kernel support is skipped."""
    endpoints: list[Endpoint] = []
    served: list[str] = []
    unsupported: list[str] = []
    line = pod["key"].encode() + b"\n"
    for entry in pod["ports"]:
        label = f"{entry['port']}/{entry['protocol']}"
        try:
            sock = listen(entry["port"], entry["protocol"])
        except OSError as exc:
            if entry["protocol"] == "SCTP" and exc.errno in NO_PROTOCOL:
                unsupported.append(label)
                continue
            for endpoint in endpoints:
                endpoint.sock.close()
            raise OSError(exc.errno, f"{pod['key']} {label}: {exc.strerror}") from None
        endpoints.append(Endpoint(sock, line, entry["protocol"] == "UDP"))
        served.append(label)
    return PodSockets(pod["key"], tuple(endpoints), tuple(served), tuple(unsupported))


def kernel_has_sctp() -> bool:
    """Whether this kernel can make an SCTP socket."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def answer(endpoint: Endpoint) -> None:
    """Answer everything waiting on one socket: accept-send-close, or reply to each datagram."""
    while True:
        try:
            if endpoint.datagram:
                _, peer = endpoint.sock.recvfrom(2048)
                endpoint.sock.sendto(endpoint.line, peer)
            else:
                conn, _ = endpoint.sock.accept()
                _greet(conn, endpoint.line)
        except BlockingIOError:
            return
        except OSError:
            continue  # one failed peer (aborted, unreachable) does not stop the rest


def _greet(conn: socket.socket, line: bytes) -> None:
    """Send the banner and close; a peer that is already gone is no error."""
    try:
        conn.send(line)
    except OSError:
        pass
    finally:
        conn.close()


def serve(endpoints: list[Endpoint], wakeup: socket.socket) -> None:
    """The event loop; returns when a signal arrives on `wakeup`."""
    selector = selectors.DefaultSelector()
    for endpoint in endpoints:
        selector.register(endpoint.sock, selectors.EVENT_READ, endpoint)
    selector.register(wakeup, selectors.EVENT_READ, None)
    try:
        while True:
            for key, _ in selector.select():
                if key.data is None:
                    return
                answer(key.data)
    finally:
        selector.close()


def _signals() -> tuple[socket.socket, socket.socket]:
    """SIGTERM and SIGINT wake the event loop through a socket pair (set_wakeup_fd)."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    return reader, writer


def status(opened: list[PodSockets]) -> dict[str, Any]:
    """The ready file's content: per pod what is served and what the kernel cannot serve."""
    return {"pid": os.getpid(), "sctp": kernel_has_sctp(),
            "served": sum(len(p.endpoints) for p in opened),
            "unsupported": [f"{p.key}:{label}" for p in opened for label in p.unsupported],
            "pods": {p.key: {"served": list(p.served), "unsupported": list(p.unsupported)} for p in opened}}


def _write_atomically(path: str, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file and rename it, so a reader never sees half of it."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    """Bind every pod's ports, write the ready file, serve until SIGTERM."""
    if len(argv) != 2:
        print("usage: python -m lab.probe.servers <spec.json>", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        data = json.load(handle)
    raise_fd_limit()
    wakeup, _writer = _signals()
    by_netns = {pod["netns"]: pod for pod in data["pods"]}
    try:
        opened = namespace.run_in_each(list(by_netns), lambda netns: open_pod(by_netns[netns]))
    except OSError as exc:
        print(f"probe servers: cannot bind: {exc.strerror or exc}", flush=True)
        return 1
    ready = status(opened)
    _write_atomically(data["ready"], ready)
    print(f"probe servers for lab {data['lab']}: {ready['served']} sockets in {len(opened)} pods, "
          f"unsupported: {', '.join(ready['unsupported']) or 'none'} (pid {os.getpid()})", flush=True)
    serve([e for pod in opened for e in pod.endpoints], wakeup)
    _remove(data["ready"])
    print("probe servers stopped on signal", flush=True)
    return 0


def _remove(path: str) -> None:
    """Unlink a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
