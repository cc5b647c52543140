"""Experiment files: YAML -> an immutable Experiment, or an error naming file:line and field.

Everything is checked here, before any lab is touched: the schema, each mode's topology (it must
load), each measurement's kind and parameters (the kind's own schema), the baseline, the --quick
profile, --only and --repeat, and the tools each measurement needs (on PATH now).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from importlib import resources
from typing import Any

import jsonschema

from lab.errors import LabError, TopologyError
from lab.experiment import generate, kinds, labs
from lab.topology import loader, registry
from lab.topology.model import Topology
from lab.topology.yamlsource import Document, Path, parse_one

PLACEMENTS = ("same-node", "cross-node", "cross-subnet")
DEFAULT_PLACEMENTS = ("same-node", "cross-node")
DEFAULT_REPETITIONS = 3
DEFAULT_WARMUP = 1
DEFAULT_READY_TIMEOUT = 120.0
DOCS = "docs/experiments.md"


@dataclass(frozen=True)
class Mode:
    """One topology to compare, under its label."""

    name: str
    topology: Topology
    path: str
    placements: tuple[str, ...]
    text: str = ""                       # the topology's YAML (a file's text, or a generated one)
    generate: dict[str, Any] | None = None
    pod_nodes: dict[str, str] = field(default_factory=dict)   # a/c/d -> node (labs.choose_nodes)


@dataclass(frozen=True)
class Measurement:
    """One measurement: its label, kind and full parameters (defaults filled in)."""

    name: str
    kind: str
    params: dict[str, Any]
    placements: tuple[str, ...] | None


@dataclass(frozen=True)
class Experiment:
    """A validated experiment, after --quick, --repeat and --only."""

    name: str
    title: str
    notes: str
    baseline: str | None
    repetitions: int
    warmup: int
    modes: tuple[Mode, ...]
    measurements: tuple[Measurement, ...]
    file: str
    text: str
    quick: bool = False
    only: tuple[str, ...] = ()
    tools: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = DEFAULT_READY_TIMEOUT

    def resolved(self) -> dict[str, Any]:
        """The parameters that ran, for resolved.json."""
        return {"name": self.name, "title": self.title, "baseline": self.baseline, "quick": self.quick,
                "only": list(self.only), "repetitions": self.repetitions, "warmup": self.warmup,
                "ready_timeout": self.ready_timeout,
                "modes": [{"name": m.name, "topology": m.path, "generate": m.generate, "placements": list(m.placements)}
                          for m in self.modes],
                "measurements": [{"name": m.name, "kind": m.kind, "params": m.params,
                                  "placements": list(m.placements) if m.placements else None}
                                 for m in self.measurements],
                "tools": self.tools}

    def placements_for(self, mode: Mode, measurement: Measurement) -> tuple[str, ...]:
        if measurement.placements is None:
            return mode.placements
        return tuple(p for p in measurement.placements if p in mode.placements) or measurement.placements


@lru_cache(maxsize=1)
def experiment_schema() -> dict[str, Any]:
    """The schema a whole file is checked against: experiment.schema.json without its generated per-kind
    part (each measurement is checked against its kind's SCHEMA, with the kind named in the error)."""
    from lab.experiment import schema
    return schema.without_kinds(json.loads(resources.files("lab.experiment").joinpath("experiment.schema.json")
                                           .read_text()))


def load(path: str, repeat: int | None = None, only: list[str] | None = None, quick: bool = False) -> Experiment:
    """Read and check an experiment file completely; raise a TopologyError (file:line: field) or LabError."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise LabError(f"{path}: cannot read the experiment file: {exc.strerror}",
                       "give a path to an experiment YAML file, e.g. experiments/modes-latency-throughput.yaml"
                       ) from None
    document = parse_one(text, path)
    if not isinstance(document.data, dict):
        raise document.error((), "an experiment must be a YAML mapping with name, modes and measurements",
                             f"see {DOCS}")
    check_schema(document, experiment_schema(), ())
    return _Builder(document, text).build(repeat, only, quick)


def check_schema(document: Document, schema: dict[str, Any], base: Path, data: Any = None) -> None:
    """Raise an error for the first violation of `schema` by the data at `base`, in document order."""
    instance = document.data if data is None else data
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance),
                    key=lambda e: (document.line(base + tuple(e.absolute_path)) or 0, len(e.absolute_path)))
    if errors:
        raise _explain(document, errors[0], base)


def _explain(document: Document, error: jsonschema.ValidationError, base: Path) -> TopologyError:
    path = base + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    about = schema.get("description")
    hint = f"{about} (see {DOCS})" if about else f"see {DOCS}"
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        given = error.instance if isinstance(error.instance, dict) else {}   # additionalProperties: an object
        extra = sorted(set(given) - set(allowed))
        key = extra[0] if extra else "?"
        return document.error(path + (key,), f"unknown key '{key}'",
                              f"allowed keys here: {', '.join(allowed) or 'none'} (see {DOCS})")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return document.error(path, f"missing required key '{missing}'", f"add it; see {DOCS}")
    if error.validator == "pattern":
        return document.error(path, f"{error.instance!r} is not a valid name",
                              "use lower-case letters, digits and '-', starting and ending with a letter or digit")
    if error.validator == "enum":
        listed = error.validator_value if isinstance(error.validator_value, list) else []   # enum: a list
        return document.error(path, f"{error.instance!r} is not one of: " + ", ".join(str(c) for c in listed), hint)
    if error.validator == "type":
        return document.error(path, f"expected {error.validator_value}, got {type(error.instance).__name__}"
                              f" ({error.instance!r})", hint)
    if error.validator in ("minimum", "maximum", "exclusiveMinimum"):
        return document.error(path, f"{error.instance!r} is out of range ({error.message})", hint)
    if error.validator == "minItems":
        return document.error(path, f"needs at least {error.validator_value} entry", hint)
    if error.validator == "uniqueItems":
        return document.error(path, "lists an entry twice", "give each entry once")
    return document.error(path, error.message, hint)


class _Builder:
    def __init__(self, document: Document, text: str) -> None:
        self.doc = document
        self.data: dict[str, Any] = document.data
        self.text = text
        self.base = os.path.dirname(os.path.abspath(document.file))

    def build(self, repeat: int | None, only: list[str] | None, quick: bool) -> Experiment:
        data = self.data
        placements = tuple(data.get("placements", DEFAULT_PLACEMENTS))
        raw_measurements = self._measurements()
        modes = self._modes(placements)
        names = [m.name for m in modes]
        baseline = data.get("baseline")
        if baseline is not None and baseline not in names:
            raise self.doc.error(("baseline",), f"{baseline!r} is not one of the modes",
                                 f"name one of: {', '.join(names)}")
        repetitions = data.get("repetitions", DEFAULT_REPETITIONS)
        warmup = data.get("warmup", DEFAULT_WARMUP)
        if "quick" in data:     # checked whether or not --quick is given: a bad profile is a bad file
            profile = self._quick(modes, raw_measurements, repetitions, warmup)
            if quick:
                modes, raw_measurements, repetitions, warmup = profile
        if repeat is not None:
            if not isinstance(repeat, int) or repeat < 1:
                raise LabError(f"--repeat {repeat}: the repetition count must be at least 1",
                               "give --repeat N with N >= 1")
            repetitions = repeat
        if only:
            unknown = [o for o in only if o not in names]
            if unknown:
                raise LabError(f"--only {unknown[0]}: {self.doc.file} has no mode named {unknown[0]!r}",
                               f"its modes are: {', '.join(names)}")
            modes = tuple(m for m in modes if m.name in only)
            if not modes:
                raise LabError(f"--only {' '.join(only)}: none of these modes is in the quick profile",
                               "name a mode of the quick profile, or drop --quick")
        if baseline is not None and baseline not in [m.name for m in modes]:
            baseline = None     # the baseline does not run (--quick, --only): no ratios
        measurements = tuple(self._finish(i, m) for i, m in enumerate(raw_measurements))
        self._check_fit(modes, measurements)
        tools = self._tools(measurements)
        return Experiment(name=data["name"], title=data.get("title", data["name"]), notes=data.get("notes", ""),
                          baseline=baseline, repetitions=repetitions, warmup=warmup, modes=modes,
                          measurements=measurements, file=os.path.abspath(self.doc.file), text=self.text,
                          quick=quick, only=tuple(only or ()), tools=tools,
                          ready_timeout=float(data.get("ready_timeout", DEFAULT_READY_TIMEOUT)))

    # -- modes --------------------------------------------------------------------------------------
    def _modes(self, placements: tuple[str, ...]) -> tuple[Mode, ...]:
        modes: list[Mode] = []
        for index, entry in enumerate(self.data["modes"]):
            path: Path = ("modes", index)
            if ("topology" in entry) == ("generate" in entry):
                raise self.doc.error(path, "a mode needs either `topology:` or `generate:`, not both or neither",
                                     f"see {DOCS}")
            if "generate" in entry:
                where = os.path.join(self.base, f"generated-{generate.default_name(entry['generate'])}.yaml")
                text = generate.topology_text(entry["generate"], "generated")
                load: Callable[[], Topology] = partial(loader.load_text, text, where)
            else:
                where = self._topology_file(entry["topology"], path + ("topology",))
                text = ""
                load = partial(loader.load, where)
            try:
                topology = load()
            except TopologyError as exc:
                key = "topology" if "topology" in entry else "generate"
                raise self.doc.error(path + (key,), f"the topology does not load: {exc.message}",
                                     "fix the topology first; `lab up --dry-run <it>` shows the same error") from None
            if not text:
                with open(where, encoding="utf-8") as handle:
                    text = handle.read()
            name = entry.get("name", generate.default_name(entry["generate"]) if "generate" in entry
                             else topology.name)
            if len(name) > 30 or not name:
                raise self.doc.error(path, f"mode name {name!r} is longer than 30 characters",
                                     "give the mode a shorter `name:`")
            if name in [m.name for m in modes]:
                raise self.doc.error(path + ("name",) if "name" in entry else path + ("topology",),
                                     f"a mode named {name!r} is listed twice",
                                     "give each mode its own `name:`")
            mode_placements = tuple(entry.get("placements", placements))
            self._check_placements(topology, mode_placements, path + ("placements",) if "placements" in entry
                                   else ("placements",) if "placements" in self.data else path)
            pod_nodes = dict(entry.get("pod_nodes", {}))
            self._check_pod_nodes(topology, pod_nodes, mode_placements, path + ("pod_nodes",))
            modes.append(Mode(name=name, topology=topology, path=where, placements=mode_placements, text=text,
                              generate=entry.get("generate"), pod_nodes=pod_nodes))
        return tuple(modes)

    def _check_pod_nodes(self, topology: Topology, pod_nodes: dict[str, str], placements: tuple[str, ...],
                         path: Path) -> None:
        nodes = {n.name: n for n in topology.nodes}
        for key, node in pod_nodes.items():
            if node not in nodes:
                raise self.doc.error(path + (key,), f"topology {topology.name!r} has no node {node!r}",
                                     f"nodes are: {', '.join(nodes)}")
        try:
            labs.choose_nodes(topology, placements, pod_nodes)
        except ValueError as exc:
            raise self.doc.error(path, str(exc),
                                 "pick nodes that fit the placements (see docs/experiments.md)") from None

    def _topology_file(self, value: str, path: Path) -> str:
        relative = os.path.join(self.base, value)
        if value.endswith((".yaml", ".yml")) and os.path.exists(relative):
            return relative
        try:
            return registry.resolve(value)
        except LabError as exc:
            raise self.doc.error(path, f"unknown topology {value!r}", exc.hint) from None

    def _check_placements(self, topology: Topology, placements: tuple[str, ...], path: Path) -> None:
        """Each placement must be possible on the topology's nodes."""
        networks = {n.network for n in topology.nodes}
        if "cross-subnet" in placements and len(networks) < 2:
            raise self.doc.error(path, f"cross-subnet needs nodes on two networks; topology {topology.name!r} "
                                 f"has one ({next(iter(networks))})",
                                 "drop cross-subnet for this mode (give the mode its own `placements:`)")
        if "cross-node" in placements and not any(
                sum(1 for n in topology.nodes if n.network == net) >= 2 for net in networks):
            raise self.doc.error(path, f"cross-node needs two nodes on one network in topology {topology.name!r}",
                                 "drop cross-node for this mode")

    # -- measurements -----------------------------------------------------------------------------
    def _measurements(self) -> list[tuple[int, dict[str, Any]]]:
        found: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        registered = kinds.registry()
        for index, entry in enumerate(self.data["measurements"]):
            path: Path = ("measurements", index)
            kind = entry["kind"]
            if kind not in registered:
                raise self.doc.error(path + ("kind",), f"unknown measurement kind {kind!r}",
                                     f"kinds are: {', '.join(sorted(registered))}")
            name = entry.get("name", kind)
            if name in seen:
                raise self.doc.error(path + ("name",) if "name" in entry else path + ("kind",),
                                     f"two measurements are named {name!r}",
                                     "give one of them its own `name:`")
            seen.add(name)
            self._check_params(index, entry, registered[kind])
            found.append((index, entry))
        return found

    def _check_params(self, index: int, entry: dict[str, Any], kind: kinds.Kind) -> None:
        params = {k: v for k, v in entry.items() if k not in ("kind", "name", "placements")}
        schema = {"type": "object", "additionalProperties": False, "properties": kind.SCHEMA}
        check_schema(self.doc, schema, ("measurements", index), params)
        problem = kind.check(kind.with_defaults(params))
        if problem:
            key, message, hint = problem
            raise self.doc.error(("measurements", index, key), message, hint)

    def _finish(self, index: int, item: tuple[int, dict[str, Any]]) -> Measurement:
        original, entry = item
        kind = kinds.registry()[entry["kind"]]
        params = kind.with_defaults({k: v for k, v in entry.items() if k not in ("kind", "name", "placements")})
        placements = tuple(entry["placements"]) if "placements" in entry else None
        return Measurement(name=entry.get("name", entry["kind"]), kind=entry["kind"], params=params,
                           placements=placements)

    def _check_fit(self, modes: tuple[Mode, ...], measurements: tuple[Measurement, ...]) -> None:
        """Each measurement must be able to measure each mode's topology."""
        names = [e.get("name", e.get("topology") or generate.default_name(e["generate"])) for e in self.data["modes"]]
        for mode in modes:
            for measurement in measurements:
                problem = kinds.registry()[measurement.kind].check_topology(mode.topology, measurement.params)
                if problem:
                    index = names.index(mode.name) if mode.name in names else 0
                    key = "topology" if "topology" in self.data["modes"][index] else "generate"
                    raise self.doc.error(("modes", index, key), f"{measurement.name}: {problem}",
                                         "drop the mode, or the measurement")

    # -- the quick profile --------------------------------------------------------------------------
    def _quick(self, modes: tuple[Mode, ...], measurements: list[tuple[int, dict[str, Any]]], repetitions: int,
               warmup: int) -> tuple[tuple[Mode, ...], list[tuple[int, dict[str, Any]]], int, int]:
        quick = self.data["quick"]
        names = [m.name for m in modes]
        if "modes" in quick:
            for i, name in enumerate(quick["modes"]):
                if name not in names:
                    raise self.doc.error(("quick", "modes", i), f"{name!r} is not one of the modes",
                                         f"name one of: {', '.join(names)}")
            modes = tuple(m for m in modes if m.name in quick["modes"])
        if "placements" in quick:
            modes = tuple(replace(m, placements=tuple(p for p in quick["placements"] if p in m.placements)
                                  or m.placements) for m in modes)
        by_name = {entry.get("name", entry["kind"]): (i, entry) for i, entry in measurements}
        for i, name in enumerate(quick.get("skip", [])):
            if name not in by_name:
                raise self.doc.error(("quick", "skip", i), f"no measurement is named {name!r}",
                                     f"measurements are: {', '.join(by_name)}")
        overrides = quick.get("measurements", {})
        updated = dict(by_name)
        for name, params in overrides.items():
            if name not in by_name:
                raise self.doc.error(("quick", "measurements", name), f"no measurement is named {name!r}",
                                     f"measurements are: {', '.join(by_name)}")
            index, entry = by_name[name]
            merged = {**copy.deepcopy(entry), **params}
            kind = kinds.registry()[entry["kind"]]
            schema = {"type": "object", "additionalProperties": False, "properties": kind.SCHEMA}
            check_schema(self.doc, schema, ("quick", "measurements", name), params)
            problem = kind.check(kind.with_defaults({k: v for k, v in merged.items()
                                                     if k not in ("kind", "name", "placements")}))
            if problem:
                key, message, hint = problem
                raise self.doc.error(("quick", "measurements", name, key), message, hint)
            updated[name] = (index, merged)
        kept = [item for name, item in updated.items() if name not in quick.get("skip", [])]
        return modes, kept, quick.get("repetitions", repetitions), quick.get("warmup", warmup)

    # -- tools ----------------------------------------------------------------------------------------
    def _tools(self, measurements: tuple[Measurement, ...]) -> dict[str, str]:
        """Every tool a measurement needs, found on PATH now: name -> path; a missing one is an error."""
        found: dict[str, str] = {}
        for tool in ("ip",):
            found[tool] = self._which(tool, ("modes",), "the runner")
        for _index, measurement in enumerate(measurements):
            kind = kinds.registry()[measurement.kind]
            for tool in kind.tools(measurement.params):
                found[tool] = self._which(tool, self._measurement_path(measurement.name), measurement.kind)
            for tool in kind.optional_tools(measurement.params):
                where = shutil.which(tool)
                if where:
                    found[tool] = where
        return found

    def _measurement_path(self, name: str) -> Path:
        for index, entry in enumerate(self.data["measurements"]):
            if entry.get("name", entry["kind"]) == name:
                return ("measurements", index, "kind")
        return ("measurements",)

    def _which(self, tool: str, path: Path, user: str) -> str:
        where = shutil.which(tool)
        if where is None:
            raise self.doc.error(path, f"{user} needs {tool}, which is not on PATH",
                                 f"install it (scripts/install-deps.sh installs {kinds.PACKAGES.get(tool, tool)}), "
                                 "or drop the measurement")
        return where
