"""experiment.schema.json's per-kind part, generated from the kind registry.

The file's hand-written part describes the experiment (modes, placements, repetitions...). Its
`measurements.items.allOf` is generated: one `if kind == <id> then <that kind's parameters>` per
registered kind, so an editor with a JSON-schema plugin validates a measurement's parameters too.
Regenerate after adding or changing a kind:  python -m lab.experiment.schema --write
(tests/test_experiment_units.py fails while the file is stale).

The loader (lab/experiment/spec.py) validates against the file without the generated part and
checks each measurement against its kind's SCHEMA itself, so its errors keep naming file:line,
the field and the kind.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from lab.experiment import kinds

FILE = "experiment.schema.json"
COMMON = ("kind", "name", "placements")


def stored() -> dict[str, Any]:
    """The schema file as shipped."""
    schema: dict[str, Any] = json.loads(resources.files("lab.experiment").joinpath(FILE).read_text())
    return schema


def without_kinds(schema: dict[str, Any]) -> dict[str, Any]:
    """The hand-written part only (what the loader validates a whole file against)."""
    base = copy.deepcopy(schema)
    items = base["properties"]["measurements"]["items"]
    items.pop("allOf", None)
    items["properties"]["kind"] = {"type": "string", "description": "latency, throughput, cpu, mtu, connrate, ..."}
    return base


def per_kind(kind: kinds.Kind) -> dict[str, Any]:
    """`if kind == <id> then <its parameters, and nothing else>`."""
    properties: dict[str, Any] = {name: {} for name in COMMON}
    properties["kind"] = {"const": kind.id}
    properties.update(copy.deepcopy(kind.SCHEMA))
    module = sys.modules.get(type(kind).__module__)
    about = ((module.__doc__ if module is not None else None) or kind.id).strip().splitlines()[0]
    return {"if": {"properties": {"kind": {"const": kind.id}}, "required": ["kind"]},
            "then": {"description": about, "properties": properties, "additionalProperties": False}}


def generated(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole schema: the hand-written part plus one if/then per registered kind."""
    full = without_kinds(schema if schema is not None else stored())
    registry = kinds.registry()
    items = full["properties"]["measurements"]["items"]
    items["properties"]["kind"] = {"enum": sorted(registry), "description": "the measurement kind "
                                   "(lab/experiment/kinds/<kind>.py); its parameters follow in the same mapping"}
    items["allOf"] = [per_kind(registry[kind_id]) for kind_id in sorted(registry)]
    return full


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="generate experiment.schema.json's per-kind parameter schemas")
    parser.add_argument("--write", action="store_true", help="rewrite the file (default: print it)")
    args = parser.parse_args(argv)
    text = render(generated())
    if args.write:
        Path(__file__).with_name(FILE).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
