"""`lab probe`: observed reachability held against the reference evaluator's expectation.

Every case is probed with real traffic (lab/probe/matrix.py); the evaluator (lab/policy/evaluator.py)
says what the policies allow. A case whose observation differs from the expectation is a mismatch;
a case the kernel cannot probe (SCTP without the module) is "unsupported": neither a pass nor a
mismatch, and reported as such.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from lab.policy import evaluator
from lab.probe import matrix, table
from lab.probe.sourceports import SourcePorts
from lab.topology.model import Pod, Topology


@dataclass(frozen=True)
class Result:
    """One probe: its case, what the evaluator expects, and what the traffic showed."""

    case: matrix.Case
    expected: bool
    observed: bool | None
    detail: str

    @property
    def mismatch(self) -> bool:
        return self.observed is not None and self.observed != self.expected

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.case.src, "to": self.case.dst, "expected": self.expected, "observed": self.observed,
                "detail": self.detail}


@dataclass(frozen=True)
class Report:
    """Every result of one `lab probe` run, grouped by (port, protocol)."""

    endpoints: tuple[str, ...]
    results: tuple[Result, ...]
    seconds: float = 0.0

    def groups(self) -> dict[tuple[int, str], list[Result]]:
        grouped: dict[tuple[int, str], list[Result]] = {}
        for result in self.results:
            grouped.setdefault((result.case.port, result.case.protocol), []).append(result)
        return dict(sorted(grouped.items()))

    @property
    def mismatches(self) -> list[Result]:
        return [r for r in self.results if r.mismatch]

    @property
    def unsupported(self) -> list[Result]:
        return [r for r in self.results if r.observed is None]

    def exit_code(self) -> int:
        """0: all as expected; 1: some mismatch; 3: no mismatch, but some probes could not run."""
        if self.mismatches:
            return 1
        return 3 if self.unsupported else 0


def expected(topology: Topology, case: matrix.Case) -> bool:
    """The evaluator's verdict on one case (externals are plain IP addresses to it)."""
    return evaluator.allowed(topology, _endpoint(topology, case.src), _endpoint(topology, case.dst),
                             case.port, case.protocol)


def _endpoint(topology: Topology, key: str) -> Pod | ipaddress.IPv4Address:
    if "/" in key:
        return topology.pod(key)
    return ipaddress.IPv4Address(str(next(e.ip for e in topology.externals if e.name == key)))


def run(topology: Topology, port: int | str | None = None, protocol: str | None = None,
        timeout: float = 1.0, source_ports: SourcePorts | None = None) -> Report:
    """Probe every case the filters select, concurrently, and compare each with the evaluator."""
    cases = matrix.cases_for(topology, port, protocol)
    started = time.monotonic()
    observations = matrix.observe(topology, cases, timeout=timeout, source_ports=source_ports)
    seconds = time.monotonic() - started
    results = tuple(Result(case, expected(topology, case), seen.allowed, seen.detail)
                    for case, seen in sorted(observations.items()))
    endpoints = tuple(p.key for p in topology.pods) + tuple(e.name for e in topology.externals)
    return Report(endpoints=endpoints, results=results, seconds=seconds)


def render(report: Report) -> str:
    """Per (port, protocol): the observed truth table, the expected one when they differ, and the mismatches."""
    parts = []
    for (port, protocol), results in report.groups().items():
        probed = {k for r in results for k in (r.case.src, r.case.dst)}
        keys = [k for k in report.endpoints if k in probed]
        observed = {(r.case.src, r.case.dst): r.observed for r in results}
        title = f"{protocol}/{port}"
        parts.append(f"observed {title}:\n" + table.render(keys, observed, title))
        wrong = [r for r in results if r.mismatch]
        if wrong:
            wanted = {(r.case.src, r.case.dst): r.expected for r in results}
            parts.append(f"expected {title} (reference evaluator):\n" + table.render(keys, wanted, title))
            parts += [f"MISMATCH {r.case.src} -> {r.case.dst} {title}: expected "
                      f"{'allowed' if r.expected else 'denied'}, observed "
                      f"{'allowed' if r.observed else 'denied'} ({r.detail})" for r in wrong]
        missing = [r for r in results if r.observed is None]
        if missing:
            parts.append(f"UNSUPPORTED {title}: {len(missing)} probes could not run ({missing[0].detail}); "
                         "they are not counted as passes")
    total = len(report.results)
    parts.append(f"{total} probes in {report.seconds:.2f} s: {len(report.mismatches)} mismatches, "
                 f"{len(report.unsupported)} unsupported")
    return "\n".join(parts) + "\n"


def as_json(report: Report) -> object:
    """The issue's shape, one object per (port, protocol); a single object when there is one group."""
    groups = [{"port": port, "protocol": protocol, "results": [r.as_dict() for r in results]}
              for (port, protocol), results in report.groups().items()]
    return groups[0] if len(groups) == 1 else groups
