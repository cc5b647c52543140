"""A client for BIRD 1.6's control socket: what `birdc -s <socket> <command>` does, without birdc.

BIRD greets each connection with `0001 BIRD 1.6.8 ready.`. Every reply line then starts with a
4-digit code and '-' (more lines follow) or ' ' (the last line), or with a single space (one more
line under the previous code). Codes 0xxx report success, 1xxx and 2xxx carry table rows and
headings, 8xxx are runtime errors and 9xxx parse errors. Lines starting with '+' are
asynchronous log messages, which birdc shows and this client skips.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

_HEADINGS = ["name", "proto", "table", "state", "since", "info"]
# "%-8s %-8s %-8s %-5s  %-10s  %s": the first four columns hold no spaces, and a long value
# pushes the rest of the line to the right; `since` ends at the two spaces before `info`.
_ROW = re.compile(r"(\S+) +(\S+) +(\S+) +(\S+) +(.*?)(?:  +(.*))?$")


class BirdError(Exception):
    """BIRD refused a command, or its control socket could not be reached or understood."""


@dataclass(frozen=True)
class ProtocolRow:
    """One row of `show protocols`; `info` is right-stripped (e.g. 'Active        Socket: ...')."""

    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str


@dataclass(frozen=True)
class _Line:
    """One reply line: its code, its text, and whether birdc prints it."""

    code: int
    text: str
    shown: bool


class _Connection:
    """A line reader over a connected control socket, bounded by one deadline."""

    def __init__(self, sock: socket.socket, socket_path: str, deadline: float) -> None:
        self.sock = sock
        self.socket_path = socket_path
        self.deadline = deadline
        self.buffer = b""

    def read_line(self, command: str) -> str:
        """The next line BIRD sent, without its newline."""
        while b"\n" not in self.buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise BirdError(f"BIRD at {self.socket_path} did not finish answering {command!r} in time; "
                                "check that bird is not stuck (`birdc -s <socket> show status`), "
                                "or pass a longer timeout")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise BirdError(f"BIRD at {self.socket_path} closed the connection while answering {command!r}; "
                                "check bird's log, or whether it is still running")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")

    def read_reply(self, command: str) -> list[_Line]:
        """Every line of one reply, up to its last coded line."""
        lines: list[_Line] = []
        code = 0
        while True:
            raw = self.read_line(command)
            if raw.startswith("+"):
                continue
            if raw.startswith(" "):
                lines.append(_Line(code, raw[1:], shown=True))
                continue
            if len(raw) >= 4 and raw[:4].isdigit() and (len(raw) == 4 or raw[4] in " -"):
                code = int(raw[:4])
                lines.append(_Line(code, raw[5:], shown=code != 0))
                if len(raw) == 4 or raw[4] == " ":
                    return lines
                continue
            raise BirdError(f"unexpected line from BIRD at {self.socket_path} answering {command!r}: {raw!r}; "
                            "is this a BIRD 1.x control socket?")


def _connect(socket_path: str, timeout: float) -> socket.socket:
    """A stream socket connected to BIRD's control socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except FileNotFoundError:
        sock.close()
        raise BirdError(f"no BIRD control socket at {socket_path}; is bird running? "
                        f"Start it with `bird -c <config> -s {socket_path}`, or check the path") from None
    except ConnectionRefusedError:
        sock.close()
        raise BirdError(f"nothing listens on {socket_path}: bird has exited and left its socket behind; "
                        "restart bird") from None
    except PermissionError:
        sock.close()
        raise BirdError(f"permission denied on {socket_path}; run as root") from None
    except OSError as error:
        sock.close()
        raise BirdError(f"cannot connect to BIRD at {socket_path}: {error}") from None
    return sock


def _exchange(socket_path: str, text: str, timeout: float) -> list[_Line]:
    """Send one command and return its reply; raises BirdError on an 8xxx/9xxx code."""
    if "\n" in text or not text.strip():
        raise BirdError(f"a BIRD command is one non-empty line, not {text!r}")
    deadline = time.monotonic() + timeout
    with _connect(socket_path, timeout) as sock:
        conn = _Connection(sock, socket_path, deadline)
        greeting = conn.read_reply("<greeting>")
        if greeting[-1].code != 1:
            raise BirdError(f"{socket_path} did not greet like BIRD ({greeting[-1].text!r}); "
                            "is this a BIRD control socket?")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.sendall(text.encode() + b"\n")
        except OSError as error:
            raise BirdError(f"cannot send {text!r} to BIRD at {socket_path}: {error}") from None
        reply = conn.read_reply(text)
    errors = [line for line in reply if line.code >= 8000]
    if errors:
        kind = "could not parse" if errors[0].code >= 9000 else "failed to run"
        raise BirdError(f"BIRD {kind} {text!r}: {errors[0].text} (code {errors[0].code}); "
                        "check the command against `birdc -s <socket> help`")
    return reply


def command(socket_path: str, text: str, timeout: float = 5.0) -> str:
    """Run one command; return its reply as `birdc` prints it (after birdc's 'ready' line)."""
    return "".join(f"{line.text}\n" for line in _exchange(socket_path, text, timeout) if line.shown)


def parse_row(line: str) -> ProtocolRow:
    """One `show protocols` row, as BIRD 1.6 prints it; raises BirdError if it is not one."""
    match = _ROW.match(line.rstrip())
    if not match:
        raise BirdError(f"not a `show protocols` row: {line!r}; this client reads BIRD 1.6's format")
    name, proto, table, state, since, info = match.groups()
    return ProtocolRow(name, proto, table, state, since, info or "")


def show_protocols(socket_path: str, timeout: float = 5.0) -> list[ProtocolRow]:
    """Every protocol of `show protocols`, in BIRD's order."""
    rows: list[ProtocolRow] = []
    for line in _exchange(socket_path, "show protocols", timeout):
        if line.code == 2002 and line.text.split() != _HEADINGS:
            raise BirdError(f"unexpected `show protocols` headings {line.text!r} from {socket_path}; "
                            "this client reads BIRD 1.6's format")
        if line.code == 1002:
            rows.append(parse_row(line.text))
    return rows


def bgp_state(row: ProtocolRow) -> str:
    """The BGP FSM state of a BGP row: the first word of its info, or 'Down' when disabled or failed."""
    if row.state == "down" or not row.info:
        return "Down"                   # what `show protocols all` reports as "BGP state"
    return row.info.split()[0]


def established(socket_path: str, timeout: float = 5.0) -> dict[str, str]:
    """Each BGP protocol's name mapped to its FSM state ('Established', 'Active', 'Connect', ...)."""
    return {row.name: bgp_state(row) for row in show_protocols(socket_path, timeout) if row.proto == "BGP"}
