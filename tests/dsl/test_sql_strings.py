"""Text in the SQL back end (dsl/sql.py) against the Python back end, on every string.

SQLite's text functions count, cut and compare differently from Python around U+0000 (its JSON
functions end a string there, ``length`` stops there, ``substr`` skips what follows), and
PostgreSQL's text cannot hold it at all; case mapping differs everywhere. The property tests here
generate string expressions and records over an adversarial alphabet (U+0000 and the other
control characters, astral-plane characters, combining marks, characters whose upper or lower
case has another length, JSON's escapes, private-use and non-characters, anything
surrogate-free) and check, per dialect, that the SQL selects exactly what Python selects, or
refuses (``Unsupported``). A third opinion, tests/dsl/reference.py, is asked too.

And the compiler never fails: for any expression, surrogates and U+0000 included, ``to_sql``
gives SQL or refuses, nothing else (issue 18, item 5).
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.compile import compile_expression
from dsl.nodes import Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from dsl.parser import parse
from dsl.runtime import Context
from dsl.sql import Unsupported, to_sql
from dsl.types import NUMBER, STRING, enum, list_of
from engine.compiled import decoder, encode_partner
from tests.dsl import reference
from tests.dsl.test_compile import random_expressions, shapes
from tests.dsl.test_compile import typed_expressions as compile_typed_expressions
from tests.dsl.test_sql import (  # noqa: F401  (fixtures)
    CORNER_CHARS,
    HELSINKI,
    NOW,
    SCHEMA,
    SETTINGS,
    WORDS,
    PgStore,
    Store,
    pg,
    postgres,
    python_ids,
    store,
)
from tests.dsl.test_sql import ODD_WORDS as TEST_SQL_ODD_WORDS

# --- the alphabet ---------------------------------------------------------------------------

# the alphabet of test_sql's property test (ODD_WORDS: U+0000, control characters, astral-plane
# characters, combining marks, case mapping that changes length, JSON's escapes...), and more
ODD_WORDS = [*WORDS, *TEST_SQL_ODD_WORDS, "ß", "SS", "é", "😀", "%", "_", "a b", "\u212a", "k"]
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=4)
words = st.sampled_from(ODD_WORDS) | st.text(CORNER_CHARS, max_size=5) | unicode_text
nul_free_words = words.map(lambda w: w.replace("\0", ""))
KINDS = ["ß", "İ", "ﬁ", "ŉ", "ΑΣ", "a\0b", "\u212a", "é", "e\u0301", "😀", "x"]
STRING_SCHEMA = {
    "id": STRING, "name": STRING, "nick": STRING, "kind": enum(KINDS), "tags": list_of(STRING),
    "score": NUMBER,
}
decode = decoder(STRING_SCHEMA)


def value(typed: st.SearchStrategy) -> st.SearchStrategy:
    return st.integers(0, 5).flatmap(lambda roll: st.none() if roll == 0 else typed)


def partners(text: st.SearchStrategy[str], nul: bool = True) -> st.SearchStrategy[list[dict]]:
    """Records; without ``nul``, none holds U+0000 (PostgreSQL's jsonb cannot)."""
    kinds = KINDS if nul else [k for k in KINDS if "\0" not in k]
    record = st.fixed_dictionaries({
        "name": value(text), "nick": value(text), "kind": value(st.sampled_from(kinds)),
        "tags": value(st.lists(text, max_size=3)), "score": value(st.integers(-2, 3)),
    }).map(lambda r: {k: v for k, v in r.items() if v is not None})
    return st.lists(record, min_size=1, max_size=10).map(
        lambda records: [{"id": f"p{i}", **r} for i, r in enumerate(records)])


# --- string expressions ---------------------------------------------------------------------


def sfield(name: str) -> Node:
    return Attribute(Name("partner"), name)


def string_literals(text: st.SearchStrategy[str]) -> st.SearchStrategy[Node]:
    return st.builds(Literal, st.just("string"), text)


small = st.integers(0, 3).map(lambda n: Literal("number", n)) | st.just(Unary("-", Literal("number", 1)))


def string_expressions(text: st.SearchStrategy[str]) -> st.SearchStrategy[Node]:
    leaves = (st.sampled_from([sfield("name"), sfield("nick"), sfield("kind"), sfield("name")])
              | string_literals(text) | st.builds(Index, st.just(sfield("tags")), small))

    def extend(s: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.one_of(
            st.builds(Binary, st.just("+"), s, s),
            st.builds(Index, s, small),
            st.builds(lambda f, a: Call(f, (a,)), st.sampled_from(["lower", "upper"]),
                      st.just(sfield("kind")) | string_literals(text) | s),
            st.builds(lambda a, b: Call("coalesce", (a, b)), s, s),
        )

    return st.recursive(leaves, extend, max_leaves=4)


def string_conditions(text: st.SearchStrategy[str]) -> st.SearchStrategy[Node]:
    s = string_expressions(text)
    lists = st.just(sfield("tags")) | st.lists(s | st.just(Literal("null", None)), max_size=3).map(
        lambda items: ListExpr(tuple(items)))
    atoms = st.one_of(
        st.builds(Binary, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), s, s),
        st.builds(Binary, st.sampled_from(["in", "not in"]), s, s | lists),
        st.builds(lambda f, a, b: Call(f, (a, b)), st.sampled_from(["starts_with", "ends_with", "contains"]),
                  s, s),
        st.builds(lambda a, b: Call("contains", (a, b)), st.just(sfield("tags")), s),
        st.builds(lambda op, a, n: Binary(op, Call("len", (a,)), n),
                  st.sampled_from(["==", "!=", "<", ">="]), s | st.just(sfield("tags")),
                  st.integers(0, 4).map(lambda n: Literal("number", n))),
        st.builds(lambda a, b: Binary("==", Call("len", (a,)), Call("len", (b,))), s, s),
    )
    return st.recursive(atoms, lambda c: st.one_of(
        st.builds(Binary, st.sampled_from(["and", "or"]), c, c), st.builds(Unary, st.just("not"), c)),
        max_leaves=3)


# --- the comparison -------------------------------------------------------------------------


def put(store: Store, records: list[dict]) -> list[tuple[str, dict]]:  # noqa: F811
    rows = [(r["id"], encode_partner(r)) for r in records]
    store.put_encoded(rows)
    stored = [(pid, decode(encoded)) for pid, encoded in rows]
    assert [r for _, r in stored] == records
    return stored


def reference_ids(node: Node, stored: list[tuple[str, dict]]) -> set[str]:
    return {pid for pid, record in stored
            if reference.evaluate(node, record, now=NOW, tz=HELSINKI)[0] is True}


def compare(nodes: list[Node], records: list[dict], store: Store, counts: dict) -> None:  # noqa: F811
    """Each expression: refused, or selecting exactly what Python (and the reference) selects."""
    stored = put(store, records)
    for node in nodes:
        counts["total"] += 1
        python = python_ids(node, stored, NOW, HELSINKI)
        assert python == reference_ids(node, stored), node
        try:
            condition = to_sql(node, STRING_SCHEMA, now=NOW, tz=HELSINKI, dialect=store.dialect)
        except Unsupported as refused:
            assert not refused.internal, (node, refused.reason)
            continue
        counts["pushed"] += 1
        assert store.select(condition) == python, (node, records, condition)


def test_property_strings_agree_with_python(store: Store) -> None:  # noqa: F811
    """THE property for text: SQL selects exactly what Python selects, or refuses. PostgreSQL's
    records hold no U+0000 (jsonb cannot), its expressions may (they are refused)."""
    counts = {"pushed": 0, "total": 0}
    nul = store.dialect == "sqlite"

    @settings(SETTINGS, max_examples=150)
    @given(st.lists(string_conditions(words), min_size=4, max_size=4), partners(words if nul else nul_free_words, nul))
    def run(nodes: list[Node], records: list[dict]) -> None:
        compare(nodes, records, store, counts)

    run()
    print(f"\nstrings ({store.dialect}): {counts['pushed']} of {counts['total']} pushed down")
    assert counts["pushed"] > 0.5 * counts["total"]


# --- targeted cases -------------------------------------------------------------------------

NUL_RECORDS = [
    {"id": "n1", "name": "a\0b", "nick": "a", "tags": ["a\0b", "c"], "kind": "a\0b"},
    {"id": "n2", "name": "\0", "nick": "\0\0", "tags": ["\0"]},
    {"id": "n3", "name": "a\\u0000b", "nick": "\\\0", "tags": ["a"], "kind": "ß"},
    {"id": "n4", "name": "a", "nick": "ab", "tags": [], "kind": "İ"},
    {"id": "n5", "name": "é\0😀\0", "nick": "e\u0301", "tags": ["\\", "x\0"], "kind": "ﬁ"},
    {"id": "n6"},
]
NUL_CASES = [
    'partner.name == "a"', 'partner.name == "a\\u0000b"', 'partner.name != "a"', "len(partner.name) == 3",
    "len(partner.name) == 1", "len(partner.nick) == 2", 'partner.name < "a\\u0001"', 'partner.name > "a"',
    'partner.name >= "a\\u0000"', "partner.nick < partner.name", 'partner.name[1] == "\\u0000"',
    'partner.name[2] == "b"', 'partner.name[3] == "\\u0000"', 'partner.name[1] == ""',
    '"b" in partner.name', '"\\u0000" in partner.name', '"\\u0000b" in partner.name',
    '"a\\u0000b" in partner.tags', '"a" in partner.tags', '"\\u0000" in partner.tags',
    '"x" not in partner.tags', 'starts_with(partner.name, "a\\u0000")', 'starts_with(partner.name, "a")',
    'ends_with(partner.name, "\\u0000")', 'ends_with(partner.name, "b")', 'ends_with(partner.nick, "\\u0000")',
    'partner.name + "x" == "a\\u0000bx"', 'len(partner.name + partner.nick) == 4',
    'partner.tags[0] == "a"', 'partner.tags[0] == "a\\u0000b"', 'len(partner.tags[0]) == 3',
    'partner.kind == "a"', 'partner.kind == "a\\u0000b"', 'lower(partner.kind) == "a\\u0000b"',
    'upper(partner.kind) == "SS"', 'lower(partner.kind) == "i̇"', 'len(upper(partner.kind)) == 2',
    'partner.name in ["a", "\\u0000"]', 'partner.name in [partner.nick, "a\\u0000b"]',
    'contains(partner.nick, "\\\\")', 'partner.nick == "\\\\\\u0000"', 'partner.name < partner.tags[0]',
    'coalesce(partner.kind, partner.name) == "a\\u0000b"', 'len(partner.kind) == 3',
]


@pytest.mark.parametrize("text", NUL_CASES)
def test_nul_in_the_data_and_in_the_expression(text: str) -> None:
    """SQLite: values holding U+0000 are read, counted, cut and compared as Python does."""
    node = parse(text)
    sqlite_store = Store()
    stored = put(sqlite_store, NUL_RECORDS)
    python = python_ids(node, stored, NOW, HELSINKI)
    assert python == reference_ids(node, stored)
    condition = to_sql(node, STRING_SCHEMA, now=NOW, tz=HELSINKI)
    assert sqlite_store.select(condition) == python


@pytest.mark.parametrize("text", NUL_CASES)
def test_nul_in_postgresql(text: str, pg: PgStore) -> None:  # noqa: F811
    """PostgreSQL's text cannot hold U+0000: an expression with one is refused; records without
    it are selected as Python selects them."""
    node = parse(text)
    records = [{k: ([t.replace("\0", "") for t in v] if isinstance(v, list) else v.replace("\0", ""))
                for k, v in r.items()} for r in NUL_RECORDS]
    records = [{**r, "kind": r["kind"] if r.get("kind") in KINDS else "x"} if "kind" in r else r for r in records]
    stored = put(pg, records)
    try:
        condition = to_sql(node, STRING_SCHEMA, now=NOW, tz=HELSINKI, dialect="postgresql")
    except Unsupported as refused:
        assert "U+0000" in refused.reason
        return
    assert pg.select(condition) == python_ids(node, stored, NOW, HELSINKI)


def test_why_sqlite_needs_care_with_nul() -> None:
    """What SQLite 3.40 does with U+0000, which the dialect works around."""
    db = sqlite3.connect(":memory:")
    row = db.execute("""SELECT json_extract('{"n": "a\\u0000b"}', '$.n'), length(?), substr(?, 3, 1),
                        replace(?, char(0), 'x')""", ("a\0b",) * 3).fetchone()
    # 3.40 cuts the JSON string at U+0000 (later versions may not: the SQL works either way);
    # length() and substr() stop there; replace() cannot even search for it (an empty pattern)
    assert row[0] in ("a", "a\0b") and row[1:] == (1, "", "a\0b")


# --- the compiler never fails ---------------------------------------------------------------

SURROGATES = ["\ud800", "a\udfff", "\udbff\udc00", "\ud83d"]
hostile_text = (st.sampled_from(SURROGATES + ODD_WORDS) | st.text(max_size=4)
                | st.text(st.sampled_from("\ud800\udc00\0a\\\"'%?"), max_size=4))


def map_strings(node: Node, change) -> Node:
    """The expression with ``change(text)`` for each string literal and field name."""

    def walk(n: Node) -> Node:
        if isinstance(n, Literal) and n.kind == "string":
            return Literal("string", change(n.value))
        if isinstance(n, Attribute):
            return Attribute(walk(n.value), change(n.name))
        if isinstance(n, Index):
            return Index(walk(n.value), walk(n.index))
        if isinstance(n, Binary):
            return Binary(n.op, walk(n.left), walk(n.right))
        if isinstance(n, Unary):
            return Unary(n.op, walk(n.operand))
        if isinstance(n, Call):
            return Call(n.function, tuple(walk(a) for a in n.args))
        if isinstance(n, ListExpr):
            return ListExpr(tuple(walk(i) for i in n.items))
        return n

    return walk(node)


def with_hostile_strings(node: Node, strings: list[str]) -> Node:
    """The expression with its string literals, and the field names not in SCHEMA, replaced."""
    pool = iter(strings * 50)
    return map_strings(node, lambda text: text if text in SCHEMA else next(pool, text))


any_expression = (compile_typed_expressions | shapes | random_expressions | string_conditions(hostile_text)
                  | string_expressions(hostile_text))
hostile_schema = st.sampled_from([SCHEMA, STRING_SCHEMA, {**STRING_SCHEMA, "kind": enum(["\ud800", "a\0", "b"])},
                                  {**SCHEMA, "\ud800": STRING, "a\0b": STRING, "x\ud800": NUMBER}])


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_property_the_compiler_gives_sql_or_refuses(dialect: str) -> None:
    """For any expression (surrogates and U+0000 in its strings, its field names and the
    schema's enum values), to_sql gives SQL or raises Unsupported for a reason it knows:
    nothing else, and never its own safety net (``internal``)."""

    @settings(SETTINGS, max_examples=250)
    @given(any_expression, st.lists(hostile_text, min_size=1, max_size=4), hostile_schema,
           st.sampled_from([HELSINKI, NOW.tzinfo]))
    def run(node: Node, strings: list[str], schema: dict, tz) -> None:
        for candidate in (node, with_hostile_strings(node, strings)):
            try:
                condition = to_sql(candidate, schema, now=NOW, tz=tz, dialect=dialect)
            except Unsupported as refused:
                assert not refused.internal, (candidate, refused.reason)
                continue
            for param in condition.params:  # what a driver can send
                if isinstance(param, str):
                    param.encode("utf-8")
                    assert dialect == "sqlite" or "\0" not in param

    run()


@pytest.mark.parametrize("text", [
    'partner.name == "S"', '"S" in partner.tags', 'partner.tier in ["gold", "S"]',
    'starts_with(partner.name, "aS")', 'len(partner.name + "S") > 1', 'partner["S"] == 1', "partner.S == 1",
])
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_lone_surrogate_is_refused(text: str, dialect: str) -> None:
    """Issue 18, item 5: a surrogate in an expression crashed the SQL compiler and stopped every
    tick; no driver can send one, so the expression is evaluated in Python instead. (The parser
    may refuse one first; the SQL back end does not count on that: S becomes U+D800 in the tree.)"""
    node = map_strings(parse(text), lambda t: t.replace("S", "\ud800"))
    schema = {**SCHEMA, "\ud800": NUMBER}
    with pytest.raises(Unsupported) as refused:
        to_sql(node, schema, now=NOW, tz=HELSINKI, dialect=dialect)
    assert "surrogate" in refused.value.reason and not refused.value.internal


def test_a_failure_inside_the_compiler_is_a_refusal(monkeypatch) -> None:
    """The safety net: a bug in the SQL back end costs speed (Python evaluates), never a tick."""
    import dsl.sql

    def broken(self, node):
        raise KeyError("a bug")

    monkeypatch.setattr(dsl.sql._Compiler, "condition", broken)
    with pytest.raises(Unsupported) as refused:
        to_sql(parse("partner.vip"), SCHEMA, now=NOW, tz=HELSINKI)
    assert refused.value.internal and "KeyError" in refused.value.reason


def test_python_and_the_reference_agree_on_case_mapping() -> None:
    """The pushed-down lower()/upper() of an enum field are Python's own mapping."""
    ctx = Context(now=NOW, tz=HELSINKI)
    for word in KINDS:
        for name, mapped in (("lower", word.lower()), ("upper", word.upper())):
            node = Call(name, (sfield("kind"),))
            assert compile_expression(node)({"kind": word}, ctx) == mapped
            assert reference.evaluate(node, {"kind": word}, now=NOW, tz=HELSINKI)[0] == mapped
