"""`lab trace`: resolve the endpoints in a running lab, walk the path, optionally capture one real packet."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from lab.errors import LabError
from lab.lifecycle import Lab
from lab.trace import path, render
from lab.trace.model import Packet, Trace
from lab.trace.view import LabView

DEFAULT_PORT = 80


@dataclass
class Result:
    trace: Trace
    text: str


def packet_for(src_ip: str, dst_ip: str, port: int | None, protocol: str | None) -> Packet:
    protocol = protocol or ("TCP" if port is not None else "ICMP")
    if protocol == "ICMP":
        if port is not None:
            raise LabError("--port makes no sense with ICMP", "drop --port, or give --protocol TCP or UDP")
        return Packet(src_ip, dst_ip, "ICMP")
    return Packet(src_ip, dst_ip, protocol, random.randint(40000, 59999), port or DEFAULT_PORT)


def run(lab: Lab, src: str, dst: str, port: int | None, protocol: str | None, lab_name: str | None,
        capture: bool = False, write: str | None = None) -> Result:
    state = lab._state(lab_name)
    if state.status != "up":
        raise LabError(f"lab {state.lab} is {state.status}", f"bring it up with `lab up {state.topology}`")
    bird = state.summary.get("runtime", {}).get("bird")
    view = LabView(state.lab, state.summary, list(state.namespaces),
                        bird_socket=(lambda node: lab.bird_socket(node, state.lab)) if bird else None)
    source = view.endpoint(src, "source")
    destination = view.endpoint(dst, "destination")
    if source.name == destination.name:
        raise LabError(f"source and destination are both {src}", "trace between two different endpoints")
    packet = packet_for(source.ip, destination.ip, port, protocol)
    topology = lab.topology(state.lab)
    started = time.monotonic()
    trace = path.trace(view, topology, source, destination, packet)
    trace.seconds["walk"] = round(time.monotonic() - started, 4)
    if capture:
        from lab.trace import observe
        started = time.monotonic()
        observe.capture(trace, lab.store.lab_dir(state.lab), write)
        trace.seconds["capture"] = round(time.monotonic() - started, 4)
    mode = f"{state.summary.get('cni', '')} {state.summary.get('mode', '')}".strip()
    return Result(trace, render.text(trace, mode))
