"""JSON-schema check of a topology document, with errors that name the line and field."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

from lab.topology.yamlsource import Document


@lru_cache(maxsize=1)
def topology_schema() -> dict[str, Any]:
    """The topology JSON schema shipped with the package."""
    return json.loads(resources.files("lab.topology").joinpath("topology.schema.json").read_text())


def check(document: Document) -> None:
    """Raise a TopologyError for the first schema violation, in document order."""
    validator = jsonschema.Draft202012Validator(topology_schema())
    errors = sorted(validator.iter_errors(document.data),
                    key=lambda e: (document.line(tuple(e.absolute_path)) or 0, len(e.absolute_path)))
    if errors:
        raise _explain(document, errors[0])


def _explain(document: Document, error: jsonschema.ValidationError):
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = extra[0] if extra else "?"
        return document.error(path + (key,), f"unknown key '{key}'",
                              f"allowed keys here: {', '.join(allowed)} (see docs/topology.md)")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return document.error(path, f"missing required key '{missing}'", "see docs/topology.md")
    if error.validator == "pattern":
        return document.error(path, f"{error.instance!r} is not a valid name",
                              "use lower-case letters, digits and '-', starting and ending with a letter or digit")
    if error.validator == "const":
        return document.error(path, f"{error.instance!r} is not supported: only {error.validator_value!r}",
                              (error.schema or {}).get("description"))
    if error.validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return document.error(path, f"{error.instance!r} is not one of: {choices}")
    if error.validator == "type":
        return document.error(path, f"expected {error.validator_value}, got {type(error.instance).__name__}"
                              f" ({error.instance!r})")
    if error.validator in ("minimum", "maximum"):
        return document.error(path, f"{error.instance} is out of range ({error.message})")
    if error.validator == "maxLength":
        return document.error(path, f"{error.instance!r} is longer than {error.validator_value} characters")
    if error.validator == "minItems":
        return document.error(path, f"needs at least {error.validator_value} entry")
    return document.error(path, error.message)
