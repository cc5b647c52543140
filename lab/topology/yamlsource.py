"""YAML parsing that remembers the line of every value, so errors can name it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from lab.errors import TopologyError

Path = tuple[str | int, ...]
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available; same marks


@dataclass(frozen=True)
class Document:
    """Parsed YAML data plus the line number (1-based) of every path in it."""

    file: str
    data: Any
    lines: dict[Path, int]

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, message: str, hint: str | None = None) -> TopologyError:
        return TopologyError(self.file, format_path(path), message, self.line(path), hint)


def format_path(path: Path) -> str:
    """`('nodes', 1, 'ip')` -> `nodes[1].ip`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def parse(text: str, file: str) -> list[Document]:
    """Parse every YAML document in `text`; a syntax error names the line and column."""
    try:
        nodes = list(yaml.compose_all(text, Loader=COMPOSER))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise TopologyError(file, "", f"not valid YAML: {exc}") from None
    documents = []
    constructor = yaml.SafeLoader("")
    try:
        for node in nodes:
            if node is None:
                continue
            lines: dict[Path, int] = {}
            data = _construct(node, (), lines, file, constructor)
            documents.append(Document(file, data, lines))
    finally:
        constructor.dispose()
    return documents


def parse_one(text: str, file: str) -> Document:
    """Parse a file that must hold exactly one YAML document."""
    documents = parse(text, file)
    if not documents:
        raise TopologyError(file, "", "the file is empty", hint="write a topology; see docs/topology.md")
    if len(documents) > 1:
        raise TopologyError(file, "", f"holds {len(documents)} YAML documents; a topology is one document",
                            hint="put manifests under `resources:` or in a file named there")
    return documents[0]


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> TopologyError:
    """Name the line to fix: where an unclosed bracket or quote opened, else where parsing failed."""
    problem, context = exc.problem_mark, exc.context_mark
    opener = exc.context and ("flow" in exc.context or "quoted scalar" in exc.context)
    mark = context if (opener and context) else (problem or context)
    text = exc.problem or exc.context or "invalid YAML"
    if problem is not None:
        text += f" (line {problem.line + 1}, column {problem.column + 1})"
    if exc.context and context is not None:
        text += f", {exc.context} that starts at line {context.line + 1}"
    return TopologyError(file, "", f"not valid YAML: {text}", mark.line + 1 if mark else None,
                         "fix the YAML syntax there (indentation, brackets, quotes, colons)")


def _construct(node: yaml.Node, path: Path, lines: dict[Path, int], file: str, constructor: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise TopologyError(file, format_path(path + (key,)), "duplicate key",
                                    key_node.start_mark.line + 1, "each key may appear once in a mapping")
            result[key] = _construct(value_node, path + (key,), lines, file, constructor)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, file, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
