"""policy-scale: what N NetworkPolicies cost under the lab's enforcer (kube-router or Calico's Felix).

For each policy count P (param policies=P; default 0, 10, 100, 1000), on the cross-node pair
default/xp-a -> default/xp-c, one repetition:
  1. every live policy is removed; then P policies are applied with `lab apply` (in-process): policy 0
     isolates xp-c and admits everything from xp-a; policies 1..P-1 also select xp-c and admit one
     unused port each from pods that do not exist (lab/experiment/policyload.py), so the measured flow
     is checked against all of them;
  2. apply_s: the apply itself; enforced_s: from the start of the apply until a probe from xp-b (not
     admitted) to xp-c TCP 80 is denied (probing every 5 ms);
  3. iptables_rules_per_node_avg/max (`-A` lines of iptables-save) and ipsets_per_node_max;
  4. rtt_tcp_rr (sockperf TCP ping-pong, or the built-in one) and throughput_tcp_1 (iperf3) of the
     allowed flow xp-a -> xp-c with the P policies loaded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from lab.errors import LabError
from lab.experiment import iperf, policyload
from lab.experiment.kinds import Kind, PairContext, Value, latency
from lab.lifecycle import Lab
from lab.probe import matrix

IPERF_PORT = iperf.PORT + 3
ENFORCE_TIMEOUT = 120.0


class PolicyScale(Kind):
    id = "policy-scale"
    serve_http = True
    placements = ("cross-node",)
    SCHEMA = {
        "policies": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 5000}, "minItems": 1,
                     "default": [0, 10, 100, 1000], "description": "policy counts to load, in order"},
        "duration": {"type": "integer", "minimum": 1, "maximum": 600, "default": 2,
                     "description": "seconds of ping-pong and of iperf3 per policy count"},
        "tool": {"enum": ["auto", "sockperf", "builtin"], "default": "auto",
                 "description": "request/response tool: auto is sockperf when installed"},
    }

    def check_topology(self, topology: Any, params: dict[str, Any]) -> str | None:
        if topology.cluster.enforcer == "none":
            return (f"topology {topology.name} has no NetworkPolicy enforcer (networkPolicy: none); "
                    "use one with kube-router (flannel) or cni calico")
        return None

    def tools(self, params: dict[str, Any]) -> list[str]:
        return ["iperf3", "ss", "iptables-save", "ipset"] + (["sockperf"] if params["tool"] == "sockperf" else [])

    def optional_tools(self, params: dict[str, Any]) -> list[str]:
        return ["sockperf"] if params["tool"] == "auto" else []

    def estimate(self, params: dict[str, Any]) -> float:
        duration: float = params["duration"]
        policies: list[int] = params["policies"]
        return sum(2 * duration + 3 + count / 200 for count in policies)

    def _tool(self, ctx: PairContext, params: dict[str, Any]) -> str:
        return "builtin" if params["tool"] == "builtin" or (params["tool"] == "auto" and not ctx.has("sockperf")) \
            else "sockperf"

    def session(self, ctx: PairContext, params: dict[str, Any]) -> AbstractContextManager[None]:
        return self._servers(ctx, params)

    @contextlib.contextmanager
    def _servers(self, ctx: PairContext, params: dict[str, Any]) -> Iterator[None]:
        tool = self._tool(ctx, params)
        ctx.implementations["enforcer"] = ctx.topology.cluster.enforcer
        rr = latency.KIND.session(ctx, {"protocols": ["tcp"], "tool": tool})   # records latency_tool
        lab = Lab()
        try:
            with rr, iperf.server(ctx, port=IPERF_PORT):
                yield
        finally:
            policyload.clear_policies(lab, ctx.lab)

    def measure(self, ctx: PairContext, params: dict[str, Any]) -> list[Value]:
        lab = Lab()
        values: list[Value] = []
        watched = matrix.Case(f"default/{_other(ctx)}", ctx.dst.pod.key, 80, "TCP")
        for count in params["policies"]:
            param = ("policies", str(count))
            policyload.clear_policies(lab, ctx.lab)
            if policyload.wait_until(lambda: _allowed(lab, ctx.lab, watched) is True, ENFORCE_TIMEOUT) is None:
                raise LabError(f"{watched.src} -> {watched.dst} TCP 80 is not allowed with no policy "
                               f"{ENFORCE_TIMEOUT:.0f} s after clearing them")
            if count:
                started = time.monotonic()
                applied = policyload.apply_text(lab, ctx.lab, policyload.experiment_policies(count))
                enforced = _first_denied(lab, ctx.lab, watched, started)
                if enforced is None:
                    raise LabError(f"{watched.src} -> {watched.dst} still allowed {ENFORCE_TIMEOUT:.0f} s after "
                                   f"applying {count} policies")
                values += [Value("apply_s", applied, "s", *param), Value("enforced_s", enforced, "s", *param)]
            rules, sets = policyload.count_rules(ctx.topology, ctx.lab)
            values += [Value("iptables_rules_per_node_avg", sum(rules) / len(rules), "count", *param),
                       Value("iptables_rules_per_node_max", float(max(rules)), "count", *param),
                       Value("ipsets_per_node_max", float(max(sets)), "count", *param)]
            rr_params = {"duration": params["duration"], "size": 64, "raw_cap": 0}   # the median only
            tool = self._tool(ctx, params)
            rtt = (latency.sockperf(ctx, "tcp", rr_params) if tool == "sockperf"
                   else latency.builtin(ctx, "tcp", rr_params))
            values += [Value(v.metric, v.value, v.unit, *param) for v in rtt if v.metric == "rtt_tcp_rr"]
            report = iperf.client(ctx, params["duration"], port=IPERF_PORT)
            values.append(Value("throughput_tcp_1", report.receiver_gbps, "Gbit/s", *param))
        return values


def _other(ctx: PairContext) -> str:
    """The experiment pod that policy 0 does not admit: xp-b (on the source's node)."""
    return "xp-b"


def _first_denied(lab: Lab, name: str, case: matrix.Case, started: float) -> float | None:
    """Seconds from `started` to the sending of the first probe that was denied. A denied probe under a
    DROP rule only returns after its timeout, so the moment it was sent is when the rule was in force."""
    while time.monotonic() - started < ENFORCE_TIMEOUT:
        sent = time.monotonic()
        if _allowed(lab, name, case) is False:
            return sent - started
        time.sleep(0.005)
    return None


def _allowed(lab: Lab, name: str, case: matrix.Case) -> bool | None:
    return matrix.observe(lab.topology(name), [case], timeout=0.5, source_ports=lab.source_ports(name))[case].allowed


KIND = PolicyScale()
