"""The expression grammar: precedence, literals, positions, errors, and round trips."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.diagnostics import SourceError
from dsl.nodes import Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from dsl.parser import parse, parse_duration
from dsl.printer import to_source


def sexpr(node: Node) -> str:
    """A fully parenthesised rendering, so precedence is visible in the expected strings."""
    if isinstance(node, Literal):
        return repr(node.value) if node.kind == "string" else str(node.text or node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Attribute):
        return f"{sexpr(node.value)}.{node.name}"
    if isinstance(node, Index):
        return f"{sexpr(node.value)}[{sexpr(node.index)}]"
    if isinstance(node, Call):
        return f"{node.function}(" + ", ".join(sexpr(a) for a in node.args) + ")"
    if isinstance(node, ListExpr):
        return "[" + ", ".join(sexpr(i) for i in node.items) + "]"
    if isinstance(node, Unary):
        return f"({node.op} {sexpr(node.operand)})"
    assert isinstance(node, Binary)
    return f"({sexpr(node.left)} {node.op} {sexpr(node.right)})"


PRECEDENCE_CASES = [
    ("a or b and c", "(a or (b and c))"),
    ("a and b or c", "((a and b) or c)"),
    ("not a and b", "((not a) and b)"),
    ("not a == b", "(not (a == b))"),
    ("a == b + c * d", "(a == (b + (c * d)))"),
    ("a - b - c", "((a - b) - c)"),
    ("a / b * c % d", "(((a / b) * c) % d)"),
    ("-a * b", "((- a) * b)"),
    ("-a.b[0]", "(- a.b[0])"),
    ("a not in b", "(a not in b)"),
    ("not a not in b", "(not (a not in b))"),
    ("a in [1, 2,]", "(a in [1, 2])"),
    ("f(a, b or c)", "f(a, (b or c))"),
    ("(a or b) and c", "((a or b) and c)"),
    ("partner.tags[0] == 'x'", "(partner.tags[0] == 'x')"),
    ("now - 3d > partner.last_login", "((now - 3d) > partner.last_login)"),
    ("today - 2026-07-01 >= 2w", "((today - 2026-07-01) >= 2w)"),
    ("nothing or notable", "(nothing or notable)"),
    ("android and orchid", "(android and orchid)"),
]


@pytest.mark.parametrize("text, expected", PRECEDENCE_CASES)
def test_precedence(text: str, expected: str) -> None:
    assert sexpr(parse(text)) == expected


LITERAL_CASES = [
    ("42", "number", 42),
    ("3.25", "number", 3.25),
    ('"it\\"s"', "string", 'it"s'),
    ("'tab\\there'", "string", "tab\there"),
    ("'\\u00e9'", "string", "é"),
    ("true", "bool", True),
    ("false", "bool", False),
    ("null", "null", None),
    ("2026-07-01", "date", date(2026, 7, 1)),
    ("2026-07-01T09:00", "datetime", datetime(2026, 7, 1, 9, 0)),
    ("2026-07-01T09:00:30Z", "datetime", datetime(2026, 7, 1, 9, 0, 30, tzinfo=timezone.utc)),
    ("2026-07-01T09:00+03:00", "datetime", datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc)),
    ("15m", "duration", timedelta(minutes=15)),
    ("12h", "duration", timedelta(hours=12)),
    ("3d", "duration", timedelta(days=3)),
    ("2w", "duration", timedelta(weeks=2)),
]


@pytest.mark.parametrize("text, kind, value", LITERAL_CASES)
def test_literals(text: str, kind: str, value: object) -> None:
    node = parse(text)
    assert isinstance(node, Literal)
    assert (node.kind, node.value) == (kind, value)


def test_positions_point_at_tokens() -> None:
    text = 'partner.tier in ["gold"] and partner.countyr == "FI"'
    node = parse(text)
    assert isinstance(node, Binary) and isinstance(node.right, Binary)
    attribute = node.right.left
    assert isinstance(attribute, Attribute)
    assert text[attribute.name_start : attribute.end] == "countyr"
    assert text[node.right.op_start : node.right.op_start + 2] == "=="
    assert text[node.start : node.end] == text


ERROR_CASES = [
    ("a < b < c", 7, "unexpected '<'"),
    ("partner.x ==", 13, "unexpected end of expression"),
    ('x == "abc', 6, "unterminated string"),
    ("x == 'a\\qb'", 8, "unknown escape"),
    ("2026-13-01", 1, "invalid date"),
    ("a $ b", 3, "unexpected character '$'"),
    ("f(1,,2)", 5, "unexpected ','"),
    ("", 1, "unexpected end of expression"),
]


@pytest.mark.parametrize("text, col, message", ERROR_CASES)
def test_syntax_errors_have_columns(text: str, col: int, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse(text)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.span.col == col
    assert message in diagnostic.message


def test_too_deep_nesting_is_a_syntax_error() -> None:
    with pytest.raises(SourceError, match="nested too deeply"):
        parse("not " * 400 + "true")
    assert parse("(" * 100 + "1" + ")" * 100) == Literal("number", 1)


def test_durations_outside_expressions() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    with pytest.raises(ValueError):
        parse_duration("3 days")


def test_canonical_spacing() -> None:
    assert to_source(parse("partner.tier  in['gold','platinum']and(a or b)")) == (
        "partner.tier in ['gold', 'platinum'] and (a or b)"
    )


# --- Property tests ----------------------------------------------------------------------------

names = st.sampled_from(["partner", "event", "now", "today", "x", "tier_2"])
fields = st.sampled_from(["tier", "revenue", "country", "tags", "joined_at", "a_b"])
functions = st.sampled_from(["len", "lower", "coalesce", "days_since", "opened", "f"])

literals = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(lambda v: Literal("number", v)),
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False).map(lambda v: Literal("number", v)),
    st.text(max_size=8).map(lambda v: Literal("string", v)),
    st.booleans().map(lambda v: Literal("bool", v)),
    st.just(Literal("null", None)),
    st.dates(min_value=date(1000, 1, 1)).map(lambda v: Literal("date", v)),
    st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda v: Literal("datetime", v.replace(microsecond=0))),
    st.datetimes(min_value=datetime(1000, 1, 2), timezones=st.just(timezone.utc)).map(
        lambda v: Literal("datetime", v.replace(microsecond=0))
    ),
    st.builds(lambda n, u: Literal("duration", timedelta(**{u: n})), st.integers(0, 999), st.sampled_from(["minutes", "hours", "days", "weeks"])),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(Binary, st.sampled_from(["or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"]), children, children),
        st.builds(Unary, st.sampled_from(["not", "-"]), children),
        st.builds(Attribute, children, fields),
        st.builds(Index, children, children),
        st.builds(Call, functions, st.lists(children, max_size=3).map(tuple)),
        st.builds(ListExpr, st.lists(children, max_size=3).map(tuple)),
    )


expressions = st.recursive(st.one_of(literals, names.map(Name)), _extend, max_leaves=12)


@given(expressions)
@settings(max_examples=400, deadline=None)
def test_print_then_parse_gives_the_same_tree(node: Node) -> None:
    text = to_source(node)
    assert parse(text) == node, text


@given(expressions)
@settings(max_examples=200, deadline=None)
def test_printing_is_canonical(node: Node) -> None:
    text = to_source(node)
    assert to_source(parse(text)) == text


@given(st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_any_text_parses_or_raises_source_error(text: str) -> None:
    try:
        parse(text)
    except SourceError as exc:
        assert exc.diagnostics and all(d.span.line >= 1 for d in exc.diagnostics)


tokens = st.sampled_from(
    ["partner", ".", "tier", "==", "in", "not", "and", "or", "(", ")", "[", "]", ",", '"x"', "'y'", "1", "2.5",
     "2026-07-01", "3d", "-", "+", "*", "%", "f", "null", "true", "<", ">=", " ", "\\", '"']
)


@given(st.lists(tokens, max_size=14).map(" ".join))
@settings(max_examples=500, deadline=None)
def test_token_soup_parses_or_raises_source_error(text: str) -> None:
    try:
        parse(text)
    except SourceError:
        pass
