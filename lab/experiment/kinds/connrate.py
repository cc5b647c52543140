"""connrate: new TCP connections per second, one 1-byte transaction each (netperf's TCP_CRR).

netperf is not packaged in Debian, so the lab's own client and server run
(lab/experiment/pingpong.py: connect, send 1 byte, read 1 byte, close, repeated for `duration`
seconds from the source pod; an echo server in the destination pod). This is where conntrack and
policy chains show: every connection is a new conntrack entry and walks the filter chains.
Per repetition: `conn_rate` (conn/s) and `conn_failures` (count). environment.json records
connrate_tool = builtin-python; a Python client is slower than netperf, so compare modes with
each other, not with published netperf figures.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from lab.experiment import proc
from lab.experiment.kinds import Kind, PairContext, Value

PORT = 11120


class ConnRate(Kind):
    id = "connrate"
    SCHEMA = {
        "duration": {"type": "number", "minimum": 0.2, "maximum": 600, "default": 2,
                     "description": "seconds of connect/request/response/close per repetition"},
    }

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["ss"]

    def estimate(self, params: dict[str, Any]) -> float:
        duration: float = params["duration"]
        return duration + 0.2

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[Any]:
        ctx.implementations["connrate_tool"] = "builtin-python"
        argv = proc.python_module("lab.experiment.pingpong", "server", "--proto", "tcp", "--port", str(PORT))
        return proc.Server(ctx.dst.netns, argv, PORT)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        argv = proc.python_module("lab.experiment.pingpong", "crr", "--host", ctx.dst.ip, "--port", str(PORT),
                                  "--duration", str(params["duration"]))
        result = json.loads(proc.run(ctx.src.netns, argv, timeout=params["duration"] + 30).stdout)
        rate = result["connections"] / result["seconds"] if result["seconds"] else 0.0
        return [Value("conn_rate", rate, "conn/s"), Value("conn_failures", float(result["failures"]), "count")]


KIND = ConnRate()
