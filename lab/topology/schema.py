"""JSON-schema checks of a topology document and of each manifest in it, with errors that name the
line and field. The topology has its own schema; each manifest kind has one (manifests.schema.json),
checked before the lab reads the manifest, as kubectl checks a manifest against the API's OpenAPI."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema

from lab.errors import TopologyError
from lab.topology import dataplanes
from lab.topology.yamlsource import Document, Path, short

YAML_TYPES = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}


@lru_cache(maxsize=1)
def topology_schema() -> dict[str, Any]:
    """The topology JSON schema shipped with the package, completed from the data-plane registry: the
    `cluster.cni` enum, each data plane's `cluster.<cni>` settings and `cluster.networkPolicy`'s enum."""
    whole = _load("topology.schema.json")
    cluster = whole["properties"]["cluster"]["properties"]
    planes = dataplanes.registry().values()
    fragments = {plane.name: dict(plane.schema) for plane in planes if plane.schema is not None}
    cluster_props = {"cni": {**cluster.pop("cni"), "enum": [plane.name for plane in planes]}, **fragments, **cluster}
    cluster_props["networkPolicy"] = {"enum": dataplanes.enforcers(), **cluster_props["networkPolicy"]}
    whole["properties"]["cluster"]["properties"] = cluster_props
    return whole


@lru_cache(maxsize=1)
def manifests_schema() -> dict[str, Any]:
    """The per-kind manifest schemas shipped with the package."""
    return _load("manifests.schema.json")


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files("lab.topology").joinpath(name).read_text())
    return schema


@cache
def _validator(definition: str | None) -> jsonschema.Draft202012Validator:
    if definition is None:
        return jsonschema.Draft202012Validator(topology_schema())
    whole = manifests_schema()
    return jsonschema.Draft202012Validator({**whole, "$ref": f"#/$defs/{definition}"})


def check(document: Document) -> None:
    """Raise a TopologyError for the first schema violation of a topology, in document order."""
    _validate(document, _validator(None), document.data, ())


def check_manifest(document: Document, path: Path, data: Any) -> None:
    """The manifest at `path`: its envelope (kind, apiVersion, metadata), then its kind's own shape."""
    _validate(document, _validator("envelope"), data, path)
    kind = data["kind"]
    if kind in manifests_schema()["$defs"] and kind not in ("envelope", "objectMeta", "stringMap"):
        _validate(document, _validator(kind), data, path)


def _validate(document: Document, validator: jsonschema.Draft202012Validator, data: Any, base: Path) -> None:
    errors = sorted(validator.iter_errors(data),
                    key=lambda e: (document.line(base + tuple(e.absolute_path)) or 0, len(e.absolute_path)))
    if errors:
        raise _explain(document, errors[0], base)


def _explain(document: Document, error: jsonschema.ValidationError, base: Path) -> TopologyError:
    path = base + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        given = error.instance if isinstance(error.instance, dict) else {}   # additionalProperties: an object
        extra = sorted(str(k) for k in set(given) - set(allowed))
        key = extra[0] if extra else "?"
        return document.error(path + (key,), f"unknown key {short(key)}",
                              f"allowed keys here: {', '.join(allowed)} (see docs/topology.md)")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return document.error(path, f"missing required key '{missing}'", "see docs/topology.md")
    if error.validator == "pattern":
        return document.error(path, f"{short(error.instance)} is not a valid name",
                              _pattern_hint(path))
    if error.validator == "const":
        return document.error(path, f"{short(error.instance)} is not supported: only {_choice(error.validator_value)}",
                              schema.get("description"))
    if error.validator == "enum":
        listed = error.validator_value if isinstance(error.validator_value, list) else []   # enum: a list
        choices = ", ".join(_choice(c) for c in listed)
        return document.error(path, f"{_as_read(document, path, error.instance)} is not one of: {choices}")
    if error.validator == "type":
        return _type_error(document, path, error)
    if error.validator in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return document.error(path, f"{short(error.instance)} is out of range: it must be from {low} to {high}")
        return document.error(path, f"{short(error.instance)} is out of range ({short(error.message, 100)})")
    if error.validator == "maxLength":
        return document.error(path, f"{short(error.instance)} is longer than {error.validator_value} characters")
    if error.validator == "minItems":
        return document.error(path, f"needs at least {error.validator_value} entry")
    return document.error(path, short(error.message, 200))


def _type_error(document: Document, path: Path, error: jsonschema.ValidationError) -> TopologyError:
    """Name what YAML made of the value; when a string was wanted, say to quote it."""
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    written = document.written(path)
    if "string" in wanted and written is not None:
        what = YAML_TYPES.get(type(error.instance), type(error.instance).__name__)
        if written == "" or error.instance is None:
            return document.error(path, "the value is empty, which YAML reads as null, not a string",
                                  'write "" for an empty string')
        return document.error(path, f"{written} is read by YAML as {what} ({_choice(error.instance)}), "
                              "but a string is needed here", f'quote it: "{written}"')
    if wanted == ["boolean"]:
        quoted = isinstance(error.instance, str) and error.instance.lower() in ("true", "false")
        return document.error(path, f"must be true or false, not {short(error.instance)}",
                              "remove the quotes" if quoted else None)
    names = " or ".join(_TYPE_NAMES.get(str(w), str(w)) for w in wanted)
    got = YAML_TYPES.get(type(error.instance)) or _TYPE_NAMES.get(type(error.instance).__name__,
                                                                  type(error.instance).__name__)
    return document.error(path, f"expected {names}, got {got} ({short(error.instance)})")


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "boolean": "true or false", "number": "a number", "null": "null", "dict": "a mapping",
               "list": "a list", "str": "a string"}


def _choice(value: Any) -> str:
    """A schema value as YAML writes it: true, false, null, "text", 3."""
    return json.dumps(value) if isinstance(value, (bool, type(None), str)) else str(value)


def _as_read(document: Document, path: Path, value: Any) -> str:
    written = document.written(path)
    if written is not None and not isinstance(value, str):
        return f"{written} (read by YAML as {_choice(value)})"
    return short(value)


def _pattern_hint(path: Path) -> str:
    if "ports" in path or "containerPorts" in path:
        return "a port name is at most 15 lower-case letters, digits and '-', with at least one letter"
    return "use lower-case letters, digits and '-', starting and ending with a letter or digit"
