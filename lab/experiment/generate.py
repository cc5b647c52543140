"""Generated topologies for experiments (`modes[].generate`): the same generators the benchmarks use."""

from __future__ import annotations

from typing import Any

from lab.experiment import bgpwatch


def default_name(spec: dict[str, Any]) -> str:
    return f"{spec.get('variant', 'mesh')}-{spec['nodes']}"


def topology_text(spec: dict[str, Any], lab: str) -> str:
    """The YAML of a generated topology named `lab`."""
    if spec["template"] == "calico-bgp":
        return bgpwatch.topology_yaml(lab, spec["nodes"], spec.get("variant", "mesh"))
    raise ValueError(f"unknown template {spec['template']!r}")
