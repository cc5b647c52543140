"""tc qdiscs and BPF filters of a plan, applied with iproute2's tc (`tc -n <netns> -batch -`).

Each filter's object is a copy of build/bpf/<program>.o with the filter's constants written into
its .rodata (lab/netns/bpfobj.py). The copies live in a temporary directory only while tc loads
them: once loaded, a program belongs to its filter, and both go when the device (or the namespace)
goes. Nothing is pinned, so `lab down` leaves no program, map or file behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Sequence

from lab.errors import ApplyError
from lab.netns import bpfobj, namespace
from lab.netns.plan import BpfConstant, BpfFilter, LabPlan, NamespacePlan, Qdisc

TIMEOUT = 120


def qdisc_args(qdisc: Qdisc) -> tuple[str, ...]:
    if qdisc.kind == "noqueue":
        return ("qdisc", "replace", "dev", qdisc.dev, "root", "noqueue")
    return ("qdisc", "add", "dev", qdisc.dev, qdisc.kind)


def filter_args(bpf: BpfFilter, obj: str) -> tuple[str, ...]:
    return ("filter", "add", "dev", bpf.dev, bpf.direction, "pref", str(bpf.pref), "bpf", "direct-action",
            "obj", obj, "sec", bpf.section)


def describe(bpf: BpfFilter) -> str:
    """The constants a filter's object copy gets, for the dry run."""
    values = " ".join(c.describe() for c in bpf.constants)
    return (f"{bpf.dev} {bpf.direction}: {bpf.program}.o {bpf.section}"
            + (f", .rodata {values} (written into the copy tc loads)" if values else ""))


def encode(constant: BpfConstant, indexes: dict[str, int]) -> bytes:
    """A constant's bytes as the object stores them (little-endian u32s, addresses in network order)."""
    if constant.kind == "ifindex":
        return struct.pack("<I", indexes[str(constant.value)])
    if constant.kind == "ipv4":
        return b"".join(socket.inet_aton(a) for a in constant.value)  # type: ignore[union-attr]
    return struct.pack("<I", int(constant.value))  # type: ignore[arg-type]


def _indexes(netns: str, filters: Sequence[BpfFilter]) -> dict[str, int]:
    wanted = sorted({str(c.value) for f in filters for c in f.constants if c.kind == "ifindex"})
    if not wanted:
        return {}
    return namespace.run_in(netns, lambda: {dev: socket.if_nametoindex(dev) for dev in wanted})


def batch(netns: str, qdiscs: Sequence[Qdisc], filters: Sequence[BpfFilter], workdir: str) -> str:
    """tc -batch input for one namespace; writes each filter's configured object under `workdir`."""
    indexes = _indexes(netns, filters)
    lines = [" ".join(qdisc_args(q)) for q in qdiscs]
    for number, bpf in enumerate(filters):
        target = os.path.join(workdir, str(number), f"{bpf.program}.o")   # the file name names the maps
        bpfobj.write_configured(bpf.program, target,
                                {c.name: encode(c, indexes) for c in bpf.constants})
        lines.append(" ".join(filter_args(bpf, target)))
    return "\n".join(lines) + "\n"


def apply_all(plan: LabPlan) -> None:
    """Every namespace's qdiscs and filters, one `tc -batch` per namespace, concurrently."""
    apply_namespaces([ns for ns in plan.namespaces if ns.qdiscs or ns.bpf_filters])


def apply_namespaces(targets: Sequence[NamespacePlan]) -> None:
    if not targets:
        return
    workdir = tempfile.mkdtemp(prefix="lab-bpf-")
    running: list[tuple[str, subprocess.Popen[str]]] = []
    try:
        inputs = {ns.name: batch(ns.name, ns.qdiscs, ns.bpf_filters, os.path.join(workdir, ns.name))
                  for ns in targets}
        try:
            for name, _text in inputs.items():
                proc = subprocess.Popen(["tc", "-n", name, "-batch", "-"], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                running.append((name, proc))
        except OSError as exc:
            raise ApplyError(f"cannot run tc: {exc.strerror}", "install iproute2 (scripts/install-deps.sh)") from None
        failures = []
        for name, proc in running:
            try:
                _, error = proc.communicate(inputs[name], timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, error = proc.communicate()
            if proc.returncode != 0:
                failures.append(f"{name}: {_last_lines(error)}")
        if failures:
            raise ApplyError(f"tc refused the BPF attachments of {failures[0]}",
                             "the lab was rolled back; `lab up --dry-run` shows the tc commands it tried")
    finally:
        for _, proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _last_lines(text: str, count: int = 4) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no message"
