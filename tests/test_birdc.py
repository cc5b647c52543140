"""The BIRD control-socket client, against a real bird in its own namespace and against birdc."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path

import pytest

from lab.bgp.birdc import BirdError, ProtocolRow, command, established, parse_row, show_protocols
from lab.cni.calico.calicoctl import node_status

PEER = "Mesh_10_255_0_2"
CONFIG = f"""\
router id 10.255.0.1;
protocol device {{ scan time 10; }}
protocol static static1 {{ route 10.254.0.0/24 blackhole; }}
protocol bgp {PEER} {{ local as 64512; neighbor 10.255.0.2 as 64512; }}
"""
ROW_FORMAT = "%-8s %-8s %-8s %-5s  %-10s  %s"           # BIRD 1.6's proto_cmd_show()


def run(*argv: str) -> str:
    """Run a command; fail the test with its output if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def stop(pid: int) -> None:
    """SIGTERM `pid`, then SIGKILL it if it is still there after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive(pid):
            return


@pytest.fixture(scope="module")
def bird(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real bird in a fresh namespace, with one BGP peer that never answers; yields its socket."""
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        pytest.skip("bird and birdc are not installed: run scripts/install-deps.sh")
    netns = f"tA-birdc-{os.getpid()}"
    workdir = tmp_path_factory.mktemp("bird")
    config, sock, pidfile = workdir / "bird.conf", workdir / "bird.ctl", workdir / "bird.pid"
    config.write_text(CONFIG)
    try:
        run("ip", "netns", "add", netns)
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "void0")
        run("ip", "-n", netns, "addr", "add", "10.255.0.1/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "void0", "up")    # nothing answers for 10.255.0.2
        run("ip", "netns", "exec", netns, "bird", "-c", str(config), "-s", str(sock), "-P", str(pidfile))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                command(str(sock), "show status", timeout=1)
                break
            except BirdError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"bird did not open {sock} within 10 s")
        yield str(sock)
    finally:
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            stop(int(pidfile.read_text()))
        leftovers = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
        for pid in leftovers.split():                    # only processes in our own namespace
            stop(int(pid))
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def birdc(sock: str, text: str) -> str:
    """What the real birdc prints for one command."""
    return run("birdc", "-s", sock, *text.split())


def stable(sock: str, text: str, check: Callable[[str], None]) -> None:
    """Call check(birdc output) around our own query, retrying while BIRD's state moves."""
    for _ in range(20):
        before = birdc(sock, text)
        try:
            check(before)
        except AssertionError:
            if birdc(sock, text) == before:
                raise
            continue
        if birdc(sock, text) == before:
            return
    raise AssertionError(f"BIRD's answer to {text!r} never held still")


needs_root = pytest.mark.needs_root


@needs_root
@pytest.mark.parametrize("text", ["show protocols", "show route", "show protocols all static1",
                                  f"show protocols all {PEER}", "show interfaces"])
def test_command_prints_what_birdc_prints(bird: str, text: str) -> None:
    def check(printed: str) -> None:
        greeting, rest = printed.split("\n", 1)
        assert greeting.startswith("BIRD 1.") and greeting.endswith(" ready.")
        assert command(bird, text) == rest

    stable(bird, text, check)


@needs_root
def test_show_protocols_matches_birdc(bird: str) -> None:
    def check(printed: str) -> None:
        lines = printed.splitlines()
        assert lines[1].split() == ["name", "proto", "table", "state", "since", "info"]
        rows = show_protocols(bird)
        assert [row.name for row in rows] == ["device1", "static1", PEER]
        assert len(rows) == len(lines) - 2
        for row, line in zip(rows, lines[2:], strict=False):
            assert (ROW_FORMAT % astuple(row)).rstrip() == line.rstrip()      # BIRD's own format
            assert row.info == row.info.strip()
        assert rows[1] == ProtocolRow("static1", "Static", "master", "up", rows[1].since, "")
        assert rows[2].proto == "BGP" and rows[2].state == "start"

    stable(bird, "show protocols", check)


@needs_root
def test_established_maps_bgp_peers_to_their_state(bird: str) -> None:
    def check(printed: str) -> None:
        line = next(line for line in printed.splitlines() if line.startswith(PEER + " "))
        states = established(bird)
        assert states == {PEER: line.split()[5]}                               # first word of info
        assert states[PEER] in {"Idle", "Connect", "Active", "OpenSent"}

    stable(bird, "show protocols", check)


@needs_root
def test_a_disabled_peer_is_down(bird: str) -> None:
    assert command(bird, f"disable {PEER}") == f"{PEER}: disabled\n"
    try:
        assert established(bird) == {PEER: "Down"}
        row = next(row for row in show_protocols(bird) if row.name == PEER)
        assert (row.state, row.info) == ("down", "")
        assert "10.255.0.2" not in node_status(show_protocols(bird))           # calicoctl skips it
    finally:
        assert command(bird, f"enable {PEER}") == f"{PEER}: enabled\n"
    assert established(bird)[PEER] != "Down"


@needs_root
def test_node_status_from_a_live_bird(bird: str) -> None:
    status = node_status(show_protocols(bird))
    assert status.startswith("Calico process is running.\n\nIPv4 BGP status\n+")
    assert "| 10.255.0.2   | node-to-node mesh | start |" in status


@needs_root
@pytest.mark.parametrize("text, message", [
    ("show route for 10.1.2.3", "BIRD failed to run 'show route for 10.1.2.3': Network not in table (code 8001)"),
    ("show nonsense", "BIRD could not parse 'show nonsense': syntax error"),
    ("show protocols nosuch", "nosuch is not a protocol (code 9002)"),
])
def test_bird_errors_raise(bird: str, text: str, message: str) -> None:
    with pytest.raises(BirdError, match=re.escape(message)):
        command(bird, text)


# Without root: a scripted server speaking BIRD's protocol, for what a real bird rarely shows.

def serve(path: Path, reply: bytes, greeting: bytes = b"0001 BIRD 1.6.8 ready.\n") -> list[bytes]:
    """Answer one connection on `path` with `greeting`, then `reply` once a command arrives."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(greeting)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        return
                    data += chunk
                received.append(data)
                try:
                    for piece in (reply[:7], reply[7:]):         # a line split across two sends
                        conn.sendall(piece)
                        time.sleep(0.01)
                    time.sleep(0.5)
                except OSError:
                    pass                                         # the client gave up first

    threading.Thread(target=answer, daemon=True).start()
    return received


SHOW_PROTOCOLS = (
    b"2002-name     proto    table    state  since       info\n"
    b"1002-kernel1  Kernel   master   up     2016-11-21  \n"
    b"+log line from an echo session\n"
    b" Mesh_172_17_8_102 BGP      master   up     2016-11-21  Established   \n"
    b" Node_10_0_0_9_port_1790 BGP      master   start  09:12:35    Active        Socket: Connection refused\n"
    b" bgp1     BGP      master   down   2016-11-21 09:12:34  \n"
    b"0000 \n"
)


def test_protocol_rows_over_a_scripted_socket(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    received = serve(sock, SHOW_PROTOCOLS)
    rows = show_protocols(str(sock))
    assert received == [b"show protocols\n"]
    assert rows == [
        ProtocolRow("kernel1", "Kernel", "master", "up", "2016-11-21", ""),
        ProtocolRow("Mesh_172_17_8_102", "BGP", "master", "up", "2016-11-21", "Established"),
        ProtocolRow("Node_10_0_0_9_port_1790", "BGP", "master", "start", "09:12:35",
                    "Active        Socket: Connection refused"),
        ProtocolRow("bgp1", "BGP", "master", "down", "2016-11-21 09:12:34", ""),
    ]


def test_command_strips_codes_like_birdc(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, b"1000-BIRD 1.6.8\n1011-Router ID is 10.0.0.1\n Current server time is now\n"
                b"0013 Daemon is up and running\n")
    assert command(str(sock), "show status") == ("BIRD 1.6.8\nRouter ID is 10.0.0.1\nCurrent server time is now\n"
                                                 "Daemon is up and running\n")


def test_established_over_a_scripted_socket(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, SHOW_PROTOCOLS)
    assert established(str(sock)) == {"Mesh_172_17_8_102": "Established", "Node_10_0_0_9_port_1790": "Active",
                                      "bgp1": "Down"}


def test_unexpected_headings_are_refused(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, b"2002-name     proto    table    state  foo       info\n0000 \n")
    with pytest.raises(BirdError, match="unexpected `show protocols` headings"):
        show_protocols(str(sock))


def test_a_line_without_a_code_is_refused(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, b"hello\n")
    with pytest.raises(BirdError, match="unexpected line from BIRD.*'hello'"):
        command(str(sock), "show status")


def test_a_socket_that_is_not_bird(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, b"", greeting=b"0000 hello\n")
    with pytest.raises(BirdError, match="did not greet like BIRD"):
        command(str(sock), "show status")


def test_silence_times_out(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.listen(1)
    with server:
        with pytest.raises(BirdError, match="did not finish answering.*longer timeout"):
            command(str(sock), "show status", timeout=0.3)


def test_closed_connection(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    serve(sock, b"1000-BIRD 1.6.8\n", greeting=b"0001 BIRD 1.6.8 ready.\n")
    with pytest.raises(BirdError, match="closed the connection"):
        command(str(sock), "show status")


def test_no_socket_says_to_start_bird(tmp_path: Path) -> None:
    with pytest.raises(BirdError, match="no BIRD control socket at .*is bird running"):
        command(str(tmp_path / "missing.ctl"), "show status")


def test_stale_socket_says_to_restart_bird(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.close()                                        # the file stays; nothing listens
    with pytest.raises(BirdError, match="restart bird"):
        command(str(sock), "show status")


@pytest.mark.parametrize("text", ["", "show status\nshow route"])
def test_a_command_is_one_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(BirdError, match="one non-empty line"):
        command(str(tmp_path / "bird.ctl"), text)


@pytest.mark.parametrize("line, row", [
    ("device1  Device   master   up     20:46:42    ",
     ProtocolRow("device1", "Device", "master", "up", "20:46:42", "")),
    ("Mesh_192_168_10_72 BGP      master   up     09:12:34    Established   ",
     ProtocolRow("Mesh_192_168_10_72", "BGP", "master", "up", "09:12:34", "Established")),
    ("Node_172_17_80_102 BGP      master   start  2016-11-21  Active        Socket: error",
     ProtocolRow("Node_172_17_80_102", "BGP", "master", "start", "2016-11-21", "Active        Socket: error")),
])
def test_parse_row(line: str, row: ProtocolRow) -> None:
    assert parse_row(line) == row


def test_parse_row_refuses_garbage() -> None:
    with pytest.raises(BirdError, match="not a `show protocols` row"):
        parse_row("0000")
