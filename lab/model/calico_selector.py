"""Calico label selectors (libcalico-go lib/selector): parse, match, and print in normal form.

The grammar, from loosest to tightest binding:

    or        := and ( '||' and )*
    and       := operation ( '&&' operation )*
    operation := '!'* ( has(key) | all() | global() | '(' or ')'
                      | key ('==' | '!=' | contains | starts with | ends with) string
                      | key (in | not in) '{' [ string (',' string)* [','] ] '}' )

Strings are quoted with ' or " and have no escapes. As in Calico, the empty selector matches
everything, and `key != 'v'` and `key not in {...}` are true when the key is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_WHITESPACE = " \t"
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_COMPARISONS = ("==", "!=", "contains", "starts with", "ends with")
_OPERATORS = "'==', '!=', 'in', 'not in', 'contains', 'starts with' or 'ends with'"
_OPERAND = "a label key, 'has(key)', 'all()', 'global()', '!' or '('"
_WINDOW = 70      # characters of a long selector an error shows, around the fault
MAX_NESTING = 100  # '(' levels; the parser recurses once per level, and no real selector nests beyond a few
_HINT = ("fix the selector at the ^; Calico selectors look like "
         "\"role == 'rr' && has(kubernetes.io/hostname)\" or \"zone in {'a', 'b'}\"")


class SelectorError(ValueError):
    """A selector that does not parse: says where, what was expected there, and what was found."""

    def __init__(self, text: str, position: int, expected: str, found: str | None = None) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        self.found = found if found is not None else _describe_at(text, position)
        start = max(0, position - _WINDOW // 2) if len(text) > _WINDOW else 0
        window = text[start:start + _WINDOW]
        shown = "".join(c if c.isprintable() else " " for c in window)  # one column per character
        quoted = repr(text) if len(text) <= _WINDOW else f"of {len(text)} characters"
        self.message = (f"invalid selector {quoted} at position {position}: expected {expected}, found {self.found}\n"
                        f"  {shown}\n"
                        f"  {' ' * (position - start)}^")
        self.hint = _HINT
        super().__init__(f"{self.message}\n  hint: {self.hint}")


def _describe_at(text: str, position: int) -> str:
    """What the text holds at `position`, for an error message."""
    if position >= len(text):
        return "the end of the selector"
    end = position
    while end < len(text) and text[end] in _KEY_CHARS:
        end += 1
    found = text[position:max(end, position + 1)]
    return repr(found) if len(found) <= 30 else repr(found[:27] + "...")


def _quote(value: str) -> str:
    """Quote a value as Calico prints it: double quotes unless the value holds one."""
    return f"'{value}'" if '"' in value else f'"{value}"'


@dataclass(frozen=True)
class All:
    """`all()`, and the empty selector: matches everything."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Always true."""
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Global:
    """`global()`: in Calico it selects non-namespaced resources; here it matches everything."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Always true."""
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True)
class Has:
    """`has(key)`: the key is present, whatever its value."""

    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if the key is present."""
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class Compare:
    """`key <op> 'value'` for ==, !=, contains, starts with and ends with."""

    key: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Compare the label's value; an absent key matches only `!=`."""
        actual = labels.get(self.key)
        if actual is None:
            return self.op == "!="
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True)
class InSet:
    """`key in {...}` or `key not in {...}`; the values are sorted and unique."""

    key: str
    values: tuple[str, ...]
    negated: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Set membership; an absent key matches only `not in`."""
        actual = labels.get(self.key)
        if actual is None:
            return self.negated
        return (actual in self.values) != self.negated

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.key} {op} {{{', '.join(_quote(v) for v in self.values)}}}"


@dataclass(frozen=True)
class Not:
    """`!operand`."""

    operand: Node

    def matches(self, labels: Mapping[str, str]) -> bool:
        """The negation of the operand."""
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True)
class And:
    """`a && b && ...`."""

    operands: tuple[Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if every operand matches."""
        return all(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(op) for op in self.operands) + ")"


@dataclass(frozen=True)
class Or:
    """`a || b || ...`."""

    operands: tuple[Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if any operand matches."""
        return any(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(op) for op in self.operands) + ")"


Node = All | Global | Has | Compare | InSet | Not | And | Or


@dataclass(frozen=True)
class Selector:
    """A parsed selector; `str()` gives Calico's normal form."""

    root: Node

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a resource with these labels is selected."""
        return self.root.matches(labels)

    def __str__(self) -> str:
        return str(self.root)


@dataclass(frozen=True)
class _Token:
    """One lexeme: its kind, its value (keys and strings), and where it starts and ends."""

    kind: str
    value: str
    start: int
    end: int


def _skip_space(text: str, i: int) -> int:
    """The first position at or after `i` that is not a space or tab."""
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _key_at(text: str, i: int) -> str:
    """The label key starting at `i`, or ''."""
    end = i
    while end < len(text) and text[end] in _KEY_CHARS:
        end += 1
    return text[i:end]


def _operator_after_key(text: str, i: int) -> _Token:
    """The operator word at `i`, which follows a label key."""
    for word in ("contains", "in"):
        if text.startswith(word, i):
            return _Token(word, "", i, i + len(word))
    for first, second in (("starts", "with"), ("ends", "with"), ("not", "in")):
        if text.startswith(first, i):
            j = _skip_space(text, i + len(first))
            if not text.startswith(second, j):
                raise SelectorError(text, j, f"'{second}' after '{first}'")
            return _Token(f"{first} {second}", "", i, j + len(second))
    raise SelectorError(text, i, f"an operator after the label key ({_OPERATORS})")


def _call(text: str, i: int, name: str) -> _Token:
    """`has(key)`, `all()` or `global()` starting at `i` (which holds `name(`)."""
    j = _skip_space(text, i + len(name) + 1)
    key = ""
    if name == "has":
        key = _key_at(text, j)
        if not key:
            raise SelectorError(text, j, "a label key inside 'has(...)'")
        j = _skip_space(text, j + len(key))
    if not text.startswith(")", j):
        raise SelectorError(text, j, f"')' to close '{name}('")
    return _Token(name, key, i, j + 1)


def _tokenize(text: str) -> list[_Token]:
    """Split a selector into tokens, ending with an 'eof' token."""
    tokens: list[_Token] = []
    i = 0
    while True:
        i = _skip_space(text, i)
        if i == len(text):
            tokens.append(_Token("eof", "", i, i))
            return tokens
        char = text[i]
        after_key = bool(tokens) and tokens[-1].kind == "key"
        if char in "(){},":
            token = _Token(char, "", i, i + 1)
        elif char in "'\"":
            close = text.find(char, i + 1)
            if close < 0:
                raise SelectorError(text, len(text),
                                    f"the closing {char} of the string that starts at position {i}")
            token = _Token("string", text[i + 1:close], i, close + 1)
        elif text.startswith("==", i) or text.startswith("!=", i) or text.startswith("&&", i) \
                or text.startswith("||", i):
            token = _Token(text[i:i + 2], "", i, i + 2)
        elif char == "!":
            token = _Token("!", "", i, i + 1)
        elif char in "=&|":
            raise SelectorError(text, i, f"'{char * 2}' (Calico doubles this operator)")
        elif after_key:
            token = _operator_after_key(text, i)
        elif text.startswith(("has(", "all(", "global("), i):
            token = _call(text, i, text[i:text.index("(", i)])
        elif key := _key_at(text, i):
            token = _Token("key", key, i, i + len(key))
        else:
            raise SelectorError(text, i, _OPERAND)
        tokens.append(token)
        i = token.end


class _Parser:
    """Recursive descent over the tokens of one selector."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.next = 0
        self.depth = 0

    def peek(self) -> _Token:
        """The next token, not consumed."""
        return self.tokens[self.next]

    def take(self) -> _Token:
        """Consume the next token; 'eof' is never consumed past."""
        token = self.tokens[self.next]
        if token.kind != "eof":
            self.next += 1
        return token

    def error(self, token: _Token, expected: str) -> SelectorError:
        """A SelectorError pointing at `token`."""
        found = "the end of the selector" if token.kind == "eof" else repr(self.text[token.start:token.end])
        return SelectorError(self.text, token.start, expected, found)

    def parse(self) -> Node:
        """The whole selector."""
        if self.peek().kind == "eof":
            return All()
        node = self.parse_or()
        token = self.peek()
        if token.kind != "eof":
            raise self.error(token, "'&&', '||' or the end of the selector")
        return node

    def parse_or(self) -> Node:
        """One or more `&&` expressions joined by `||`."""
        operands = [self.parse_and()]
        while self.peek().kind == "||":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        """One or more operations joined by `&&`."""
        operands = [self.parse_operation()]
        while self.peek().kind == "&&":
            self.take()
            operands.append(self.parse_operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_operation(self) -> Node:
        """One possibly negated operation; leading `!`s collapse as in Calico."""
        negated = False
        while self.peek().kind == "!":
            self.take()
            negated = not negated
        token = self.take()
        node: Node
        if token.kind == "has":
            node = Has(token.value)
        elif token.kind == "all":
            node = All()
        elif token.kind == "global":
            node = Global()
        elif token.kind == "(":
            if self.depth >= MAX_NESTING:
                raise SelectorError(self.text, token.start, f"at most {MAX_NESTING} nested '(' levels",
                                    "one more '('")
            self.depth += 1
            node = self.parse_or()
            self.depth -= 1
            close = self.take()
            if close.kind != ")":
                raise self.error(close, f"'&&', '||' or ')' to close the '(' at position {token.start}")
        elif token.kind == "key":
            node = self.parse_label_operation(token.value)
        else:
            raise self.error(token, _OPERAND)
        return Not(node) if negated else node

    def parse_label_operation(self, key: str) -> Node:
        """What follows a label key: a comparison or a set membership."""
        op = self.take()
        if op.kind in _COMPARISONS:
            value = self.take()
            if value.kind != "string":
                raise self.error(value, f"a quoted string after '{op.kind}'")
            return Compare(key, op.kind, value.value)
        if op.kind in ("in", "not in"):
            brace = self.take()
            if brace.kind != "{":
                raise self.error(brace, f"'{{' to start the set after '{op.kind}'")
            return InSet(key, self.parse_set(), negated=op.kind == "not in")
        raise self.error(op, f"an operator after the label key {key!r} ({_OPERATORS})")

    def parse_set(self) -> tuple[str, ...]:
        """The quoted strings of a set literal up to its '}', sorted and unique."""
        values: set[str] = set()
        while True:
            token = self.take()
            if token.kind == "}":
                return tuple(sorted(values))
            if token.kind != "string":
                raise self.error(token, "a quoted string or '}'")
            values.add(token.value)
            token = self.take()
            if token.kind == "}":
                return tuple(sorted(values))
            if token.kind != ",":
                raise self.error(token, "',' or '}'")


def parse(text: str) -> Selector:
    """Parse a Calico selector; raises SelectorError saying where it went wrong."""
    return Selector(_Parser(text).parse())
