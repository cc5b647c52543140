"""YAML parsing that remembers the line of every value, so errors can name it, within fixed bounds.

The contract: any byte string in, either documents or a TopologyError naming the file and line out,
in time and memory bounded by the limits below. The parser is libyaml's (through PyYAML's event
API); the composition is done here, without recursion, so that

  * nesting deeper than MAX_DEPTH is refused (no RecursionError);
  * aliases are expanded under Kubernetes' own rule: go-yaml (under sigs.k8s.io/yaml, which
    kubectl and the API server use) refuses "excessive aliasing" once more than a set share of the
    decoded values came through aliases (99% up to 400,000 values, falling to 10% at 4,000,000),
    so an alias bomb stops after a few thousand values; an alias to an anchor that is still open
    (a recursive alias) is refused as go-yaml refuses it;
  * merge keys (`<<: *base`) work as in kubectl;
  * explicit tags are checked: the JSON-like ones (!!str, !!int, !!float, !!bool, !!null, !!map,
    !!seq, and !!timestamp, kept as its text as sigs.k8s.io/yaml does) with a bad value are errors
    on their line; others (!!binary, !!set, !!omap, local tags) are refused;
  * mapping keys are kept as written (`on:` is the key "on", as sigs.k8s.io/yaml keeps it);
  * YAML 1.1's base-60 numbers (`1:20`) stay strings, as in go-yaml.
Files are read as bytes: only regular files of at most MAX_BYTES, UTF-8 (a BOM is allowed).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from lab.errors import TopologyError

Path = tuple[str | int, ...]
PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available; same marks
MAX_BYTES = 4 * 1024 * 1024       # a topology and its files together; the API server takes requests of at most 3 MiB
MAX_DEPTH = 100                   # a topology nests about 10 deep
MAX_VALUES = 750_000              # decoded values of a topology and its files, aliases included (20,000 pods: 321,000)
ALIAS_RATIO_LOW, ALIAS_RATIO_HIGH = 400_000, 4_000_000   # go-yaml's decode counts for its alias ratio
TAG = "tag:yaml.org,2002:"
SCALAR_TAGS = {TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
MAX_DIGITS = 4000                 # Python converts at most 4,300 digits; Kubernetes' numbers have at most 20
TAG_FORMS = {TAG + "int": "a whole number such as 80", TAG + "float": "a number such as 1.5",
             TAG + "bool": "true or false", TAG + "null": "null, ~ or nothing",
             TAG + "timestamp": "a date such as 2001-12-14 or 2001-12-14T21:59:43Z"}
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_CONSTRUCTOR = SafeConstructor()
_RESOLVER = yaml.resolver.Resolver()


class BudgetError(TopologyError):
    """The topology and its files together are bigger than the loader reads (Budget)."""


@dataclass
class Budget:
    """What is left to read of the topology and all its `file:` resources together: bytes and YAML
    values. One budget per load, so that many files (or one file named many times) cannot add up to
    more than one topology may be."""

    bytes: int = MAX_BYTES
    values: int = MAX_VALUES


@dataclass(frozen=True)
class Document:
    """Parsed YAML data plus the line number (1-based) of every path in it.

    `raw` keeps, for plain scalars YAML read as something other than a string (`off`, `1.10`,
    `017`), the text as written, so errors can say how it was read and suggest quoting it."""

    file: str
    data: Any
    lines: dict[Path, int]
    raw: dict[Path, str] = field(default_factory=dict)
    aliases: dict[Path, Path] = field(default_factory=dict)   # where an alias sits -> its anchor's path

    def resolve(self, path: Path) -> Path:
        """`path` with a leading alias replaced by its anchor's path, repeatedly (the values under an alias
        are the anchor's, so are their lines: they are shared, not copied per alias)."""
        path = tuple(path)
        if not self.aliases:
            return path
        for _ in range(MAX_DEPTH * 2):
            for size in range(len(path), 0, -1):
                target = self.aliases.get(path[:size])
                if target is not None:
                    path = target + path[size:]
                    break
            else:
                return path
        return path

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        if path in self.lines:
            return self.lines[path]
        path = self.resolve(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, message: str, hint: str | None = None) -> TopologyError:
        return TopologyError(self.file, format_path(path), message, self.line(path), hint)

    def written(self, path: Path) -> str | None:
        """The text of a plain scalar that YAML read as a non-string, as written."""
        path = tuple(path)
        return self.raw.get(path, self.raw.get(self.resolve(path)))


def format_path(path: Path) -> str:
    """`('nodes', 1, 'ip')` -> `nodes[1].ip`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters so that an error never prints a huge value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- reading -----------------------------------------------------------------------------------------
def read_file(path: str, what: str = "the file", budget: Budget | None = None) -> str:
    """The text of a regular file that fits in `budget` (MAX_BYTES by default), decoded as UTF-8, or a
    TopologyError (a BudgetError when the budget is what is exceeded)."""
    budget = budget if budget is not None else Budget()
    try:
        info = os.stat(path)
    except OSError as exc:
        raise TopologyError(path, "", f"cannot read {what}: {exc.strerror}",
                            hint="give a path to a YAML file") from None
    if not stat.S_ISREG(info.st_mode):
        raise TopologyError(path, "", f"{what} is not a regular file (a directory, device or pipe)",
                            hint="give a path to a YAML file")
    if info.st_size > budget.bytes:
        raise _too_big(path, info.st_size, budget)
    try:
        with open(path, "rb") as handle:
            data = handle.read(budget.bytes + 1)
    except OSError as exc:
        raise TopologyError(path, "", f"cannot read {what}: {exc.strerror}",
                            hint="give a path to a YAML file") from None
    if len(data) > budget.bytes:
        raise _too_big(path, len(data), budget)
    budget.bytes -= len(data)
    return decode(data, path)


def read_stream(stream: Any, name: str) -> str:
    """At most MAX_BYTES of a binary stream (standard input), decoded as UTF-8."""
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _too_big(name, len(data), Budget())
    return decode(data, name)


def decode(data: bytes, file: str) -> str:
    """UTF-8 text (a leading BOM dropped); a bad byte is an error naming its line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TopologyError(file, "", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} "
                            f"cannot be decoded", line, "save the file as UTF-8") from None


def _too_big(file: str, size: int, budget: Budget) -> BudgetError:
    if budget.bytes == MAX_BYTES:
        return BudgetError(file, "", f"is {size:,} bytes or more; the lab reads files of at most {MAX_BYTES:,} "
                           "bytes (the API server takes requests of at most 3 MiB)",
                           hint="split it, or generate fewer objects")
    return BudgetError(file, "", f"is {size:,} bytes or more, and only {budget.bytes:,} of the {MAX_BYTES:,} bytes "
                       "the lab reads for a topology and all its files are left", hint="generate fewer objects, "
                       "or name each file once")


# -- parsing -----------------------------------------------------------------------------------------
def parse(text: str, file: str, budget: Budget | None = None) -> list[Document]:
    """Parse every non-empty YAML document in `text`, within `budget`'s values (a fresh one by default);
    a syntax error names the line and column."""
    _check_printable(text, file)
    composer = _Composer(file, budget)
    try:
        for event in yaml.parse(text, Loader=PARSER):
            composer.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise TopologyError(file, "", f"not valid YAML: {short(str(exc), 200)}") from None
    return composer.documents


def parse_one(text: str, file: str, budget: Budget | None = None) -> Document:
    """Parse a file that must hold exactly one YAML document."""
    documents = parse(text, file, budget)
    if not documents:
        raise TopologyError(file, "", "the file is empty", hint="write a topology; see docs/topology.md")
    if len(documents) > 1:
        raise TopologyError(file, "", f"holds {len(documents)} YAML documents; a topology is one document "
                            "(the second starts here)", documents[1].line(()),
                            hint="put manifests under `resources:` or in a file named there")
    return documents[0]


def _check_printable(text: str, file: str) -> None:
    found = _NON_PRINTABLE.search(text)
    if found:
        at = found.start()
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        raise TopologyError(file, "", f"control character U+{ord(found.group()):04X} at column {column}: YAML "
                            "allows no control characters but tab and newline", line,
                            "remove it (write it as an escape like \\x01 inside double quotes if you mean it)")


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


@dataclass
class _Anchor:
    """A finished anchored node: its value, its size in decoded values, and its path (None for a key)."""

    value: Any
    size: int
    path: Path | None = None


@dataclass
class _Frame:
    """A mapping or sequence being composed."""

    path: Path
    line: int
    value: Any                     # dict or list
    anchor: str | None
    start_count: int               # decoded values before this node
    key: str | None = None         # a mapping's pending key
    key_line: int = 0
    expecting_key: bool = True
    merging: bool = False          # the pending key is `<<`
    merged: dict[Any, Any] = field(default_factory=dict)


class _Composer:
    """Builds documents from parser events with an explicit stack (see the module docstring)."""

    def __init__(self, file: str, budget: Budget | None = None) -> None:
        self.file = file
        self.budget = budget if budget is not None else Budget()
        self.documents: list[Document] = []
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.lines: dict[Path, int] = {}
        self.raw: dict[Path, str] = {}
        self.aliases: dict[Path, Path] = {}
        self.decoded = 0           # go-yaml's decodeCount, per document
        self.aliased = 0           # go-yaml's aliasCount, per document
        self.root: Any = None
        self.has_root = False

    # -- events ------------------------------------------------------------------------------
    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.anchors, self.lines, self.raw, self.aliases = {}, {}, {}, {}
            self.decoded = self.aliased = 0
            self.has_root = False
        elif isinstance(event, yaml.DocumentEndEvent):
            if self.has_root and self.root is not None:
                self.documents.append(Document(self.file, self.root, self.lines, self.raw, self.aliases))
        elif isinstance(event, yaml.ScalarEvent):
            self._scalar(event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._start(event)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self._end()

    def _line(self, event: yaml.Event) -> int:
        return event.start_mark.line + 1 if event.start_mark is not None else 0

    def fail(self, line: int, path: Path, message: str, hint: str | None = None) -> TopologyError:
        return TopologyError(self.file, format_path(path), message, line, hint)

    def _path(self) -> Path:
        """The path of the value about to be composed."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        return top.path + (top.key if top.key is not None else "<<",)

    def _count(self, size: int, aliased: bool, line: int, path: Path) -> None:
        self.decoded += size
        self.budget.values -= size
        if aliased:
            self.aliased += size
        if (self.aliased > 100 and self.decoded > 1000
                and self.aliased / self.decoded > _allowed_alias_ratio(self.decoded)):
            raise self.fail(line, path, "excessive aliasing: too many values come from aliases (*name); "
                            "Kubernetes' YAML reader refuses this document too",
                            "expand the aliases by hand, or use fewer of them")
        if self.budget.values < 0:
            raise BudgetError(self.file, format_path(path), f"more than {MAX_VALUES:,} YAML values in the "
                              "topology and its files", line, "a lab's topology is far smaller: generate fewer "
                              "objects")

    # -- scalars -----------------------------------------------------------------------------
    def _scalar(self, event: yaml.ScalarEvent) -> None:
        line = self._line(event)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and top.expecting_key:
            self._key(event, top, line)
            return
        path = self._path()
        value = self._scalar_value(event, line, path)
        self._count(1, False, line, path)
        self._record(path, line)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, 1, path)
        self._place(value, line, path)

    def _key(self, event: yaml.ScalarEvent, top: _Frame, line: int) -> None:
        path = top.path + (event.value,)
        if event.tag not in (None, "!") and event.tag not in SCALAR_TAGS:
            raise self.fail(line, path, f"tag {event.tag} is not supported on a mapping key",
                            "write the key as a plain string")
        self._count(1, False, line, path)
        top.key = event.value
        top.key_line = line
        top.expecting_key = False
        top.merging = event.value == "<<" and event.implicit[0] and event.tag is None
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(event.value, 1)
        if not top.merging and top.key in top.value:
            raise self.fail(line, path, "duplicate key", "each key may appear once in a mapping")

    def _scalar_value(self, event: yaml.ScalarEvent, line: int, path: Path) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            if tag == "!" or not event.implicit[0]:
                return event.value                       # quoted, or the non-specific tag: a string
            # types-PyYAML leaves Resolver.resolve unannotated
            tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
            if tag == TAG + "str" or ":" in event.value and tag in (TAG + "int", TAG + "float"):
                return event.value                       # go-yaml has no base-60 numbers
            if tag == TAG + "timestamp" or tag not in SCALAR_TAGS:
                return event.value                       # timestamps as text; `<<` or `=` as a value: text
        elif tag not in SCALAR_TAGS:
            raise self.fail(line, path, f"tag {tag.replace(TAG, '!!')} is not supported",
                            "the lab reads JSON-like YAML: strings, numbers, booleans, null, mappings and "
                            "lists; remove the tag")
        explicit = event.tag not in (None, "!")
        hint = "fix the value or remove the tag" if explicit else "quote it if it is text"
        name = tag.replace(TAG, "!!")
        digits = sum(c.isdigit() for c in event.value) if tag in (TAG + "int", TAG + "float") else 0
        if digits > MAX_DIGITS:
            raise self.fail(line, path, f"a number of {digits:,} digits: the lab reads numbers of at most "
                            f"{MAX_DIGITS:,} digits (Kubernetes' fit in 64 bits)", hint)
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)   # the constructors need no marks
        try:
            value = SafeConstructor.yaml_constructors[tag](_CONSTRUCTOR, node)
        except Exception:  # noqa: BLE001 - PyYAML's scalar constructors raise ValueError, KeyError, ...
            raise self.fail(line, path, f"{short(event.value)} is not a valid {name}: write "
                            f"{TAG_FORMS.get(tag, 'a valid value')}", hint) from None
        if tag == TAG + "timestamp":
            return event.value                           # sigs.k8s.io/yaml turns timestamps into text
        if tag != TAG + "str" and event.implicit[0]:
            self.raw[path] = event.value
        return value

    # -- aliases -----------------------------------------------------------------------------
    def _alias(self, event: yaml.AliasEvent) -> None:
        line = self._line(event)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and top.expecting_key:
            raise self.fail(line, top.path, "an alias cannot be a mapping key", "write the key as a plain string")
        path = self._path()
        name = event.anchor or ""
        if name in self.open_anchors:
            raise self.fail(line, path, f"alias *{name} refers to its own anchor: the value would contain itself",
                            "anchor a value that does not contain the alias")
        anchor = self.anchors.get(name)
        if anchor is None:
            raise self.fail(line, path, f"alias *{name} names no anchor defined before it",
                            f"define &{name} on a value above this line")
        self._count(anchor.size, True, line, path)
        merging = top is not None and isinstance(top.value, dict) and top.merging
        if not merging and anchor.path is not None:
            self.aliases[path] = anchor.path      # one entry per alias: the anchor's lines are shared
            self.lines[path] = line
        self._place(anchor.value, line, path)

    # -- collections -------------------------------------------------------------------------
    def _start(self, event: yaml.CollectionStartEvent) -> None:
        line = self._line(event)
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and top.expecting_key:
            raise self.fail(line, top.path, "a mapping or list cannot be a mapping key",
                            "write the key as a plain string")
        path = self._path()
        mapping = isinstance(event, yaml.MappingStartEvent)
        tag = event.tag
        if tag not in (None, "!") and tag != TAG + ("map" if mapping else "seq"):
            raise self.fail(line, path, f"tag {tag.replace(TAG, '!!')} is not supported",
                            "the lab reads JSON-like YAML: plain mappings and lists; remove the tag")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(line, path, f"nested more than {MAX_DEPTH} levels deep",
                            "a topology nests about 10 levels; flatten the data")
        self._count(1, False, line, path)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        frame = _Frame(path=path, line=line, value={} if mapping else [], anchor=event.anchor,
                       start_count=self.decoded - 1)
        self._record(path, line)
        self.stack.append(frame)

    def _end(self) -> None:
        frame = self.stack.pop()
        value = frame.value
        if isinstance(value, dict) and frame.merged:
            value = {**{k: v for k, v in frame.merged.items() if k not in value}, **value}
            frame.value = value
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchor(value, self.decoded - frame.start_count, frame.path)
            self.open_anchors.discard(frame.anchor)
        self._place(value, frame.line, frame.path)

    def _place(self, value: Any, line: int, path: Path) -> None:
        """Put a finished value into its parent (or make it the document's root)."""
        if not self.stack:
            self.root, self.has_root = value, True
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if top.merging:
            self._merge(top, value, line)
        else:
            top.value[top.key] = value
            self.lines[path] = top.key_line
        top.expecting_key, top.merging, top.key = True, False, None

    def _merge(self, top: _Frame, value: Any, line: int) -> None:
        """`<<: value`: keys of the mapping (or of each mapping of a list, earlier ones first) that the
        mapping does not set itself."""
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            raise self.fail(line, top.path + ("<<",), "a merge key `<<` takes a mapping or a list of mappings",
                            "write `<<: *anchor` where &anchor names a mapping")
        for source in sources:
            for key, item in source.items():
                if key not in top.merged:
                    top.merged[key] = item
                    self.lines.setdefault(top.path + (key,), top.key_line)

    def _record(self, path: Path, line: int) -> None:
        self.lines[path] = line


def _allowed_alias_ratio(decoded: int) -> float:
    """go-yaml's allowedAliasRatio: 0.99 up to 400,000 decoded values, 0.10 from 4,000,000, linear between."""
    if decoded <= ALIAS_RATIO_LOW:
        return 0.99
    if decoded >= ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - ALIAS_RATIO_LOW) / (ALIAS_RATIO_HIGH - ALIAS_RATIO_LOW)
