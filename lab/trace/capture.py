"""tcpdump in a lab's namespaces: the argv of `lab capture`, and its checks before anything runs
(interfaces: lab/netns/interfaces.py)."""

from __future__ import annotations

import os
import subprocess

from lab.errors import LabError


def split_target(text: str) -> tuple[str, str | None]:
    """`k8s-node01:flannel.1` -> ("k8s-node01", "flannel.1"); `default/bs1` -> ("default/bs1", None)."""
    target, _, iface = text.partition(":")
    if not target or (_ and not iface):
        raise LabError(f"{text!r}: expected <node|namespace/pod>[:interface]", "e.g. `lab capture k8s-node01:eth0`")
    return target, iface or None


def check_output(path: str) -> None:
    """A pcap file to write: its directory must exist (checked before any tcpdump starts)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise LabError(f"-w {path}: directory {directory} does not exist", "create it, or write the file elsewhere")
    if os.path.isdir(path):
        raise LabError(f"-w {path}: is a directory", "give a file name, e.g. -w /tmp/trace.pcapng")


def tcpdump_argv(netns: str, iface: str, write: str | None, bpf: str | None, count: int | None) -> list[str]:
    """`ip netns exec <ns> tcpdump -nn -e -i <iface> ...`: the command `lab capture` runs (and prints)."""
    if count is not None and count <= 0:
        raise LabError(f"--count {count}: must be a positive number of packets", "e.g. --count 10")
    if write:
        check_output(write)
    argv = ["ip", "netns", "exec", netns, "tcpdump", "-nn", "-e", "-i", iface]
    if write:
        argv += ["-U", "-w", write]
    else:
        argv += ["-l"]
    if count:
        argv += ["-c", str(count)]
    if bpf:
        argv += [bpf]
    return argv


def check_filter(bpf: str) -> None:
    """Compile the filter without capturing (tcpdump -d), so a bad one is an argument error."""
    result = subprocess.run(["tcpdump", "-d", "-i", "lo", bpf], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "tcpdump refused it"
        raise LabError(f"--filter {bpf!r}: {message}", "write a pcap-filter(7) expression, e.g. 'udp port 8472'")
