"""Calico selector parsing, matching and normal form (pure; no root needed)."""

from __future__ import annotations

import pytest

from lab.model.calico_selector import And, Compare, Has, InSet, Not, Or, SelectorError, parse

NODE = {"kubernetes.io/hostname": "k8s-node01", "route-reflector": "true", "zone": "a", "rack": "r1"}


@pytest.mark.parametrize("text", ["", "   ", "\t", "all()", "all( )", "global()", "global( )"])
def test_match_everything(text: str) -> None:
    selector = parse(text)
    assert selector.matches({})
    assert selector.matches(NODE)


def test_empty_normalises_to_all() -> None:
    assert str(parse("")) == "all()"
    assert str(parse("global()")) == "global()"


@pytest.mark.parametrize("text, labels, expected", [
    ("has(zone)", NODE, True),
    ("has(zone)", {}, False),
    ("has( zone )", NODE, True),
    ("!has(zone)", NODE, False),
    ("!has(zone)", {}, True),
    ("has(kubernetes.io/hostname)", NODE, True),
    ("zone == 'a'", NODE, True),
    ('zone == "a"', NODE, True),
    ("zone == 'b'", NODE, False),
    ("zone == 'a'", {}, False),
    ("zone=='a'", NODE, True),
    ("zone != 'a'", NODE, False),
    ("zone != 'b'", NODE, True),
    ("zone != 'a'", {}, True),                      # absent key: != is true
    ("zone in {'a', 'b'}", NODE, True),
    ("zone in {'b', 'c'}", NODE, False),
    ("zone in {'a'}", {}, False),
    ("zone in {}", NODE, False),
    ("zone in{'a'}", NODE, True),
    ("zone not in {'a', 'b'}", NODE, False),
    ("zone not in {'b'}", NODE, True),
    ("zone not in {'a'}", {}, True),                # absent key: not in is true
    ("zone not in {}", {}, True),
    ("kubernetes.io/hostname contains 'node'", NODE, True),
    ("kubernetes.io/hostname contains 'master'", NODE, False),
    ("kubernetes.io/hostname contains ''", NODE, True),
    ("kubernetes.io/hostname contains 'x'", {}, False),
    ("kubernetes.io/hostname starts with 'k8s-'", NODE, True),
    ("kubernetes.io/hostname starts with 'node'", NODE, False),
    ("kubernetes.io/hostname starts  with 'k8s'", NODE, True),
    ("kubernetes.io/hostname ends with '01'", NODE, True),
    ("kubernetes.io/hostname ends with '02'", NODE, False),
    ("kubernetes.io/hostname ends with '01'", {}, False),
    ("route-reflector == 'true'", NODE, True),
    ("a_b.c-d/e_9 == 'v'", {"a_b.c-d/e_9": "v"}, True),
    ("zone == ''", {"zone": ""}, True),
    ("zone == ''", {}, False),
    ("has(zone) && zone == 'a'", NODE, True),
    ("has(zone) && zone == 'b'", NODE, False),
    ("zone == 'b' || rack == 'r1'", NODE, True),
    ("zone == 'b' || rack == 'r2'", NODE, False),
    ("!(zone == 'a')", NODE, False),
    ("!(zone == 'a')", {}, True),
    ("!!has(zone)", NODE, True),
    ("!!!has(zone)", NODE, False),
    ("! has(zone)", NODE, False),
    # precedence: ! binds tighter than &&, which binds tighter than ||
    ("zone == 'b' && rack == 'r1' || has(route-reflector)", NODE, True),
    ("zone == 'b' && (rack == 'r1' || has(route-reflector))", NODE, False),
    ("has(route-reflector) || zone == 'b' && rack == 'r2'", NODE, True),
    ("!has(zone) || has(rack)", NODE, True),
    ("!has(zone) && has(rack)", NODE, False),
    ("!(has(zone) && has(nope))", NODE, True),
    ("((zone == 'a'))", NODE, True),
    ("all() && zone == 'a'", NODE, True),
    ("!all()", NODE, False),
    ("global() && has(zone)", NODE, True),
])
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse(text).matches(labels) is expected


def test_precedence_structure() -> None:
    selector = parse("a == 'x' && b == 'y' || !has(c) && d in {'1'}")
    assert selector.root == Or((
        And((Compare("a", "==", "x"), Compare("b", "==", "y"))),
        And((Not(Has("c")), InSet("d", ("1",)))),
    ))


def test_keywords_are_keys_where_a_key_is_expected() -> None:
    assert parse("in == 'x'").matches({"in": "x"})
    assert parse("contains == 'x' && all == 'y'").matches({"contains": "x", "all": "y"})
    assert parse("has(has)").matches({"has": ""})


def test_labels_may_be_any_mapping() -> None:
    from types import MappingProxyType
    assert parse("zone == 'a'").matches(MappingProxyType({"zone": "a"}))


@pytest.mark.parametrize("text, normal", [
    ("zone=='a'", 'zone == "a"'),
    ("zone != 'a'", 'zone != "a"'),
    ("zone == 'say \"hi\"'", "zone == 'say \"hi\"'"),
    ("zone == \"it's\"", 'zone == "it\'s"'),
    ("has( zone )", "has(zone)"),
    ("!has(zone)", "!has(zone)"),
    ("!!has(zone)", "has(zone)"),
    ("zone in {'b','a','b'}", 'zone in {"a", "b"}'),
    ("zone in {'a',}", 'zone in {"a"}'),
    ("zone not in {}", "zone not in {}"),
    ("x contains 'y'", 'x contains "y"'),
    ("x starts   with 'y'", 'x starts with "y"'),
    ("x ends with 'y'", 'x ends with "y"'),
    ("a == 'x' && b == 'y'", '(a == "x" && b == "y")'),
    ("a == 'x' || b == 'y' && c == 'z'", '(a == "x" || (b == "y" && c == "z"))'),
    ("(a == 'x' || b == 'y') && c == 'z'", '((a == "x" || b == "y") && c == "z")'),
    ("!(a == 'x' && b == 'y')", '!(a == "x" && b == "y")'),
    ("((has(a)))", "has(a)"),
    ("all()", "all()"),
])
def test_normal_form(text: str, normal: str) -> None:
    assert str(parse(text)) == normal
    assert str(parse(normal)) == normal                 # the normal form is a fixed point


@pytest.mark.parametrize("text, position, expected, found", [
    ("route-reflector = 'true'", 16, "'=='", "'='"),
    ("has(", 4, "a label key inside 'has(...)'", "the end of the selector"),
    ("a in {'x'", 9, "',' or '}'", "the end of the selector"),
    ("a ~ 'b'", 2, "an operator after the label key", "'~'"),
    ("a", 1, "an operator after the label key 'a'", "the end of the selector"),
    ("a == 'x", 7, "the closing ' of the string that starts at position 5", "the end of the selector"),
    ('a == "x', 7, 'the closing " of the string', "the end of the selector"),
    ("a == b", 5, "a quoted string after '=='", "'b'"),
    ("a in 'x'", 5, "'{' to start the set after 'in'", "\"'x'\""),
    ("a in {x}", 6, "a quoted string or '}'", "'x'"),
    ("a in {'x' 'y'}", 10, "',' or '}'", "\"'y'\""),
    ("a in {,}", 6, "a quoted string or '}'", "','"),
    ("a starts 'x'", 9, "'with' after 'starts'", "\"'\""),
    ("a not 'x'", 6, "'in' after 'not'", "\"'\""),
    ("has(a b)", 6, "')' to close 'has('", "'b'"),
    ("has()", 4, "a label key inside 'has(...)'", "')'"),
    ("all(x)", 4, "')' to close 'all('", "'x'"),
    ("global(", 7, "')' to close 'global('", "the end of the selector"),
    ("(a == 'x'", 9, "')' to close the '(' at position 0", "the end of the selector"),
    ("a == 'x')", 8, "'&&', '||' or the end of the selector", "')'"),
    ("a == 'x' b == 'y'", 9, "'&&', '||' or the end of the selector", "'b'"),
    ("a == 'x' & b == 'y'", 9, "'&&'", "'&'"),
    ("a == 'x' | b == 'y'", 9, "'||'", "'|'"),
    ("a == 'x' &&", 11, "a label key", "the end of the selector"),
    ("&& a == 'x'", 0, "a label key", "'&&'"),
    ("!", 1, "a label key", "the end of the selector"),
    ("()", 1, "a label key", "')'"),
    ("a == 'x' || ~", 12, "a label key", "'~'"),
    ("a ==\n'x'", 4, "a label key", "'\\n'"),
])
def test_errors_point_at_the_problem(text: str, position: int, expected: str, found: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.text == text
    assert error.position == position
    assert expected in error.expected
    assert error.found == found
    message = str(error)
    assert repr(text) in message
    assert f"position {position}" in message
    assert f"expected {error.expected}" in message
    lines = message.splitlines()
    caret = next(line for line in lines if line.strip() == "^")
    assert caret.index("^") == 2 + position                 # under the offending character
    assert "hint:" in message


def test_error_caret_lines_up_with_the_quoted_selector() -> None:
    with pytest.raises(SelectorError) as info:
        parse("route-reflector = 'true'")
    lines = str(info.value).splitlines()
    assert lines[0] == ("invalid selector \"route-reflector = 'true'\" at position 16: expected '==' "
                        "(Calico doubles this operator), found '='")
    assert lines[1] == "  route-reflector = 'true'"
    assert lines[2] == "  " + " " * 16 + "^"
    assert lines[1][lines[2].index("^")] == "="


def test_selectors_are_values() -> None:
    assert parse("a == 'x'") == parse('a=="x"')
    assert hash(parse("a in {'y', 'x'}")) == hash(parse("a in {'x','y'}"))
    assert parse("a == 'x'") != parse("a != 'x'")
