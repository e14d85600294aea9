"""The inlined built-in functions (dsl.compile.INLINE_FUNCTIONS) and the folded null case:
the same values and warnings as the generic calls (and the reference interpreter) on records
whose fields are strings, null, missing, of a wrong type or a str subclass; and the generic
functions are really not called on the fast paths."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import compile as compiler
from dsl.compile import INLINE_FUNCTIONS, compile_expression
from dsl.functions import SIGNATURES
from dsl.nodes import Binary, Call, ListExpr, Literal, Node, Unary
from dsl.parser import parse
from dsl.runtime import Context
from tests.dsl.test_compile import (
    HELSINKI,
    NOW,
    SETTINGS,
    WORDS,
    check_agreement,
    contexts,
    evaluations,
    field,
    literal,
    numbers,
    same_value,
    strict,
)


class Shout(str):
    """A str subclass: a string to the language, but off the fast paths (``type(x) is str``)."""


def test_the_table_names_functions_of_the_language() -> None:
    assert set(INLINE_FUNCTIONS) <= set(SIGNATURES)
    assert {"contains", "lower", "upper", "starts_with", "ends_with", "len"} <= set(INLINE_FUNCTIONS)


# --- The generated code -----------------------------------------------------------------------


def counted(text: str) -> tuple[Any, dict[str, int]]:
    """The compiled expression, with every generic function and operator it can call counted."""
    compiled = compile_expression(parse(text))
    calls: dict[str, int] = {}
    namespace = compiled.__globals__  # type: ignore[attr-defined]
    for name, value in list(namespace.items()):
        if name.startswith("_") and callable(value) and name not in ("_date", "_timedelta"):
            def wrapper(*args: Any, _name: str = name, _value: Any = value) -> Any:
                calls[_name] = calls.get(_name, 0) + 1
                return _value(*args)

            namespace[name] = wrapper
    return compiled, calls


RULE = ('contains(lower(partner.company), "oy") and partner.joined_at >= 2020-01-01'
        " and coalesce(partner.revenue, 0) >= 10000")


@pytest.mark.parametrize("partner, expected", [
    ({"company": "Lumiverkko Oy", "joined_at": date(2021, 1, 1), "revenue": 20000}, True),
    ({"company": "Lumiverkko Oy", "joined_at": date(2021, 1, 1)}, False),
    ({"company": "Lumiverkko Oy", "joined_at": date(2021, 1, 1), "revenue": None}, False),
    ({"company": "Lumiverkko Oy", "joined_at": None, "revenue": 20000}, False),
    ({"company": "Lumiverkko Oy", "revenue": 20000}, False),
    ({"company": None, "joined_at": date(2021, 1, 1), "revenue": 20000}, False),
    ({"joined_at": date(2021, 1, 1), "revenue": 20000}, False),
    ({"company": "Acme AB", "joined_at": date(2021, 1, 1), "revenue": 20000}, False),
])
def test_strings_and_nulls_take_no_generic_call(partner: dict, expected: bool) -> None:
    compiled, calls = counted(RULE)
    ctx = Context(now=NOW, tz=HELSINKI)
    assert compiled.test(partner, ctx) is expected
    assert calls == {} and ctx.warnings == []


@pytest.mark.parametrize("company", [5, ["oy"], Shout("Oy"), True])
def test_other_values_take_the_generic_calls(company: Any) -> None:
    compiled, calls = counted('contains(lower(partner.company), "oy")')
    ctx = Context(now=NOW, tz=HELSINKI)
    expected = compiler.runtime.contains({}, Context(now=NOW, tz=HELSINKI), compiler.runtime.lower(
        {}, Context(now=NOW, tz=HELSINKI), company), "oy")
    assert compiled({"company": company}, ctx) is expected
    assert calls == {"_fn_lower": 1, "_fn_contains": 1}
    assert len(ctx.warnings) == (0 if isinstance(company, str) else 1)


@pytest.mark.parametrize("text, fast, null", [
    ('contains(partner.company, "oy")', "'oy' in _1 if type(_1 := p.get('company')) is str", "False"),
    ('contains(lower(partner.company), "oy")', "'oy' in _1.lower() if type(_1 := p.get('company')) is str",
     "False"),
    ('starts_with(upper(partner.email), "A")', "_1.upper().startswith('A') if type(_1 := ", "False"),
    ('ends_with(partner.email, ".fi")', "_1.endswith('.fi') if type(_1 := ", "False"),
    ('matches(partner.email, "^a")', "K0.search(_1) is not None if type(_1 := ", "False"),
    ("len(lower(partner.tags))", "len(_1.lower()) if type(_1 := p.get('tags')) is str", "None"),
    ('lower(partner.tier) == "gold"', "_1.lower() == 'gold' if type(_1 := ", "False"),
    ('lower(partner.tier) != "gold"', "_1.lower() != 'gold' if type(_1 := ", "True"),
    ('lower(partner.tier) in ["gold", "platinum"]', "_1.lower() in K0 if type(_1 := ", "False"),
    ("len(partner.tags)", "len(_1) if type(_1 := p.get('tags')) in _SIZED", "None"),
    ("partner.revenue + 1", "_1 + 1 if type(_1 := p.get('revenue')) in _NUMBER", "None"),
])
def test_the_fast_paths_and_the_null_constants(text: str, fast: str, null: str) -> None:
    source = compile_expression(parse(text)).source
    assert source is not None and fast in source
    assert f"else {null} if _1 is None else _" in source


@pytest.mark.parametrize("text", [
    'contains(partner.company, partner.part)',  # the second argument is not a string literal
    'contains(partner.tags, 5)',
    'matches(partner.email, "(")',  # not a regular expression: the generic call warns
])
def test_not_inlined(text: str) -> None:
    source = compile_expression(parse(text)).source
    assert source is not None and "if type(" not in source


def test_a_null_warned_about_is_not_folded() -> None:
    def warns(value: Any, ctx: Context) -> None:
        ctx.warn("surprise")

    assert compiler._at_null(warns, None) is compiler._UNFOLDED
    assert compiler._at_null(lambda value, ctx: 0, None) is compiler._UNFOLDED  # 0 is not false
    assert compiler._at_null(lambda value, ctx: False, compiler._UNFOLDED) is compiler._UNFOLDED
    assert compiler._at_null(lambda value, ctx: value is None, None) is True


# Where the inlined forms are exact, or not: str subclasses, wrong types, case mapping that
# changes the length, patterns found at either end or nowhere.
@pytest.mark.parametrize("text, partner, expected, warnings", [
    ('contains(lower(partner.company), "oy")', {"company": Shout("Lumiverkko OY")}, True, 0),
    ('contains(partner.company, "")', {"company": ""}, True, 0),
    ('contains(partner.tags, "vip")', {"tags": ["vip"]}, True, 0),
    ('contains(partner.tags, "vip")', {"tags": ["x", 5]}, False, 1),
    ('contains(upper(partner.tags), "VIP")', {"tags": ["vip"]}, False, 1),
    ('len(lower(partner.name))', {"name": "İ"}, 2, 0),
    ('len(upper(partner.name))', {"name": "ß"}, 2, 0),
    ('len(lower(partner.name))', {"name": 5}, None, 1),
    ('starts_with(lower(partner.email), "aino")', {"email": "Aino@x.fi"}, True, 0),
    ('ends_with(partner.email, "")', {"email": "a"}, True, 0),
    ('ends_with(upper(partner.email), ".FI")', {"email": ["a.fi"]}, False, 1),
    ('matches(lower(partner.email), "^a.*fi$")', {"email": "AINO.FI"}, True, 0),
    ('lower(partner.tier) in ["gold"]', {"tier": "GOLD"}, True, 0),
    ('lower(partner.tier) not in ["gold"]', {}, False, 0),
    ('lower(partner.tier) not in ["gold"]', {"tier": 1}, False, 1),
    ('"x" + upper(partner.name)', {"name": "a"}, "xA", 0),
    ('coalesce(lower(partner.name), "none") == "none"', {}, True, 0),
    ('not contains(lower(partner.company), "oy")', {}, True, 0),
])
def test_cases(text: str, partner: dict, expected: Any, warnings: int) -> None:
    for value, warned in evaluations(text, partner):
        assert same_value(value, expected), (value, expected)
        assert warned == warnings


# --- Property tests: inlined functions against the reference, on records with nulls ----------

TEXT_FIELDS = ["company", "email", "name", "tags", "missing"]
PATTERNS = [*WORDS, "oy", "OY", "Oy", "@", ".fi", "^[a-z]+$", "a|b", "("]
texts = st.sampled_from(WORDS) | st.text(alphabet="aAoOyY.@İß ", max_size=6)
wrong = st.one_of(numbers, st.booleans(), st.dates(date(2019, 1, 1), date(2021, 12, 31)),
                  st.lists(texts | st.none(), max_size=2), st.dictionaries(st.just("a"), texts, max_size=1))


def field_value(typed: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly of its type, often null or missing (see ``partners``), sometimes anything."""
    return st.integers(0, 9).flatmap(
        lambda roll: st.none() if roll < 2 else wrong if roll == 2 else texts.map(Shout) if roll == 3
        else typed)


partners = st.builds(
    lambda record, gone: {k: v for k, v in record.items() if k not in gone},
    st.fixed_dictionaries({
        "company": field_value(texts), "email": field_value(texts), "name": field_value(texts),
        "tags": field_value(st.lists(texts, max_size=3)),
        "revenue": field_value(numbers),
        "joined_at": field_value(st.dates(date(2019, 1, 1), date(2021, 12, 31))),
    }),
    st.sets(st.sampled_from(["company", "email", "name", "tags", "revenue", "joined_at"]), max_size=3),
)

patterns = st.builds(Literal, st.just("string"), st.sampled_from(PATTERNS) | texts)
text_leaves = st.sampled_from(TEXT_FIELDS).map(field) | patterns | st.just(Literal("null", None))


def calls(name: str, *args: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.tuples(*args).map(lambda values: Call(name, values))


# Strings, mostly through lower/upper, as rulesets normalise case.
strings = st.recursive(
    text_leaves,
    lambda inner: st.one_of(calls("lower", inner), calls("upper", inner),
                            calls("coalesce", inner, inner | patterns)),
    max_leaves=4,
)
predicates = st.one_of(
    *[calls(name, strings, patterns) for name in ("contains", "starts_with", "ends_with", "matches")],
    *[calls(name, strings, strings) for name in ("contains", "starts_with", "ends_with")],  # not inlined
    calls("contains", st.just(field("tags")) | calls("lower", strings), patterns),
    st.builds(Binary, st.sampled_from(["==", "!=", "<", ">=", "in", "not in"]), strings, patterns),
    st.builds(Binary, st.sampled_from(["in", "not in", "=="]), patterns, strings),
    st.builds(Binary, st.sampled_from(["in", "not in"]), strings,
              st.lists(patterns, min_size=1, max_size=3).map(lambda items: ListExpr(tuple(items)))),
    st.builds(Binary, st.sampled_from([">", "<=", "=="]), calls("len", strings | st.just(field("tags"))),
              literal("number", st.integers(0, 4))),
    st.builds(Binary, st.sampled_from([">=", "<", "!="]),
              calls("coalesce", st.just(field("revenue")), literal("number", st.sampled_from([0, 1.5]))),
              literal("number", st.sampled_from([0, 1, 10000]))),
    st.builds(Binary, st.sampled_from([">=", "<"]), st.just(field("joined_at")),
              literal("date", st.dates(date(2019, 6, 1), date(2021, 6, 1)))),
)
rules = st.recursive(
    predicates,
    lambda inner: st.one_of(st.builds(Binary, st.sampled_from(["and", "or"]), inner, inner),
                            st.builds(Unary, st.just("not"), inner)),
    max_leaves=4,
)
values = st.one_of(strings, calls("len", strings), st.builds(Binary, st.just("+"), patterns, strings))


@strict
@settings(SETTINGS, max_examples=600)
@given(rules, partners, contexts)
def test_rules_of_inlined_functions(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@strict
@settings(SETTINGS, max_examples=300)
@given(values, partners, contexts)
def test_values_of_inlined_functions(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)
