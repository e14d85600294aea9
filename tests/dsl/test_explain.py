"""dsl.explain: the value of an expression with the trace of its sub-expressions. The trace is in
evaluation order (children before parents), skips what short-circuiting and coalesce skip,
carries JSON-ready values and positions inside the YAML file; and explain() agrees with the
compiled expression on generated expressions and records (property tests)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

from dsl.compile import CompileError, compile_expression
from dsl.explain import Explained, duration_text, explain, json_value
from dsl.nodes import MAX_DEPTH, Call, Literal, Node
from dsl.parser import inline, parse
from dsl.printer import to_source
from dsl.runtime import Context
from dsl.yamlload import load_yaml
from tests.dsl.test_compile import (FACTS, SETTINGS, RandomFacts, contexts, random_expressions, records, same_value,
                                    typed_expressions)

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(text: str, partner: dict, **options) -> Explained:
    ctx = Context(now=NOW, tz=HELSINKI, facts=FACTS)
    return explain(parse(text), partner, ctx, options.pop("where", None), **options)


def steps(result: Explained) -> list[tuple[str, object]]:
    return [(s["expression"], s["value"]) for s in result.trace]


# --- the trace ---------------------------------------------------------------------------------------


def test_children_before_parents_with_positions_in_the_expression() -> None:
    text = 'partner.tier in ["gold", "platinum"] and partner.country == "FI"'
    result = run(text, {"tier": "gold", "country": "FI"})
    assert result.value is True and result.match
    assert result.trace == [
        {"expression": "partner.tier", "value": "gold", "line": 1, "col": 1},
        {"expression": 'partner.tier in ["gold", "platinum"]', "value": True, "line": 1, "col": 1},
        {"expression": "partner.country", "value": "FI", "line": 1, "col": 42},
        {"expression": 'partner.country == "FI"', "value": True, "line": 1, "col": 42},
        {"expression": text, "value": True, "line": 1, "col": 1},
    ]


def test_expressions_are_canonical_text() -> None:
    result = run("(partner.revenue>=10000)and not(partner.tier=='gold')", {"revenue": 5, "tier": "gold"})
    assert [s["expression"] for s in result.trace] == [
        "partner.revenue", "partner.revenue >= 10000",
        # `and` short-circuits: the right side is not evaluated; literals keep how they were written
        "partner.revenue >= 10000 and not partner.tier == 'gold'",
    ]


def test_and_or_short_circuit_and_skipped_operands_are_not_traced() -> None:
    assert steps(run("partner.a and partner.b", {"a": None, "b": True})) == [
        ("partner.a", None), ("partner.a and partner.b", False)]
    assert steps(run("partner.a or partner.b", {"a": True})) == [("partner.a", True), ("partner.a or partner.b", True)]
    assert steps(run("partner.a or partner.b", {"a": "yes", "b": True})) == [
        ("partner.a", "yes"), ("partner.b", True), ("partner.a or partner.b", True)]


def test_coalesce_is_lazy() -> None:
    result = run("coalesce(partner.nickname, partner.name, partner.missing)", {"name": "Ann"})
    assert steps(result) == [("partner.nickname", None), ("partner.name", "Ann"),
                             ("coalesce(partner.nickname, partner.name, partner.missing)", "Ann")]


def test_functions_facts_and_nested_fields() -> None:
    result = run('lower(partner.address.city) == "oulu" and not opened("welcome") or in_group("summit-2026")',
                 {"address": {"city": "OULU"}})
    assert steps(result) == [
        ("partner.address", {"city": "OULU"}), ("partner.address.city", "OULU"),
        ("lower(partner.address.city)", "oulu"), ('lower(partner.address.city) == "oulu"', True),
        ('opened("welcome")', True), ('not opened("welcome")', False),
        ('lower(partner.address.city) == "oulu" and not opened("welcome")', False),
        ('in_group("summit-2026")', True),
        ('(lower(partner.address.city) == "oulu" and not opened("welcome")) or in_group("summit-2026")', True),
    ]


def test_constants_are_left_out_unless_asked_for() -> None:
    text = 'partner.tier in ["gold", "platinum"]'
    assert [s["expression"] for s in run(text, {"tier": "gold"}).trace] == ["partner.tier", text]
    full = run(text, {"tier": "gold"}, constants=True)
    assert steps(full) == [("partner", {"tier": "gold"}), ("partner.tier", "gold"), ('"gold"', "gold"),
                           ('"platinum"', "platinum"), ('["gold", "platinum"]', ["gold", "platinum"]), (text, True)]
    assert [s["col"] for s in full.trace] == [1, 1, 18, 26, 17, 1]


def test_a_constant_expression_is_still_its_own_step() -> None:
    assert steps(run("true", {})) == [("true", True)]
    assert steps(run("-5", {})) == [("-5", -5)]


def test_event_fields_and_time() -> None:
    ctx = Context(now=NOW, tz=HELSINKI, event={"type": "x", "at": NOW, "data": {"amount": 150}})
    result = explain(parse("event.amount > 100 and now - 3d < today"), {}, ctx)
    assert steps(result) == [
        ("event.amount", 150), ("event.amount > 100", True),
        ("now", "2026-07-01T09:00:00Z"), ("now - 3d", "2026-06-28T09:00:00Z"), ("today", "2026-07-01"),
        ("now - 3d < today", True), ("event.amount > 100 and now - 3d < today", True)]


def test_warnings_go_to_the_context_as_at_run_time() -> None:
    ctx = Context(now=NOW, tz=HELSINKI)
    result = explain(parse("partner.revenue >= 10000"), {"revenue": "20000"}, ctx)
    assert result.value is False and len(ctx.warnings) == 1


def test_program_mistakes_raise_like_the_compiler() -> None:
    with pytest.raises(CompileError, match="unknown function"):
        explain(Call("lowercase", (Literal("string", "a"),)), {}, Context(now=NOW, tz=HELSINKI))


@pytest.mark.parametrize("shape", ["not {}", "({} + 1)", "{} and partner.a", "coalesce({}, null)", "[{}]", "{}.a"])
def test_the_deepest_expressions_the_parser_accepts(shape: str) -> None:
    text = "partner.a"
    for _ in range(MAX_DEPTH - 3):
        text = shape.format(text)
    node = parse(text)
    ctx = Context(now=NOW, tz=HELSINKI)
    result = explain(node, {"a": True}, ctx)
    assert same_value(result.value, compile_expression(node)({"a": True}, Context(now=NOW, tz=HELSINKI)))
    assert result.trace[-1]["expression"] == to_source(node)


# --- values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (None, None), (True, True), (3, 3), (2.5, 2.5), ("x", "x"),
    (date(2026, 7, 1), "2026-07-01"),
    (datetime(2026, 7, 1, 6, 0, tzinfo=UTC), "2026-07-01T06:00:00Z"),
    (datetime(2026, 7, 1, 9, 0, tzinfo=HELSINKI), "2026-07-01T09:00:00+03:00"),
    (datetime(2026, 7, 1, 9, 0), "2026-07-01T09:00:00+03:00"),  # naive: local time
    (timedelta(days=3), "3d"), (timedelta(weeks=2), "2w"), (timedelta(hours=-12), "-12h"),
    (timedelta(minutes=90), "1h 30m"), (timedelta(minutes=45), "45m"), (timedelta(0), "0m"),
    (timedelta(days=1, hours=5, minutes=30), "1d 5h 30m"), (timedelta(seconds=45), "45s"),
    ([1, None, date(2026, 1, 2)], [1, None, "2026-01-02"]),
    ({"a": timedelta(days=1)}, {"a": "1d"}),
    (float("nan"), "NaN"), (float("-inf"), "-Infinity"),
])
def test_json_values(value: object, expected: object) -> None:
    assert json_value(value, HELSINKI) == expected
    json.dumps(json_value(value, HELSINKI), allow_nan=False)


def test_duration_text_round_numbers() -> None:
    assert duration_text(timedelta(days=14)) == "2w"
    assert duration_text(timedelta(days=1, seconds=1)) == "1d 1s"


# --- positions in a YAML file ----------------------------------------------------------------------------


def _position(text: str, line_marker: str, token: str) -> tuple[int, int]:
    """1-based line and column of ``token`` on the first line containing ``line_marker``."""
    for number, line in enumerate(text.splitlines(), 1):
        if line_marker in line:
            return number, line.index(token) + 1
    raise AssertionError(f"no line with {line_marker!r}")


def test_positions_are_in_the_campaign_file() -> None:
    path = EXAMPLES / "campaigns" / "partner-onboarding.yaml"
    text = path.read_text(encoding="utf-8")
    document = load_yaml(str(path), text)
    where = document.scalar(("audience", "rulesets", "gold-fi"))
    assert where is not None
    result = explain(parse(where.value, where), {"tier": "gold", "country": "FI"}, Context(now=NOW, tz=HELSINKI), where)
    by_text = {s["expression"]: (s["line"], s["col"]) for s in result.trace}
    assert by_text["partner.tier"] == _position(text, "gold-fi:", "partner.tier")
    assert by_text["partner.country"] == _position(text, "gold-fi:", "partner.country")
    assert by_text['partner.country == "FI"'] == _position(text, "gold-fi:", "partner.country")
    assert result.trace[-1]["expression"] == 'partner.tier in ["gold", "platinum"] and partner.country == "FI"'
    assert (result.trace[-1]["line"], result.trace[-1]["col"]) == _position(text, "gold-fi:", "partner.tier")


def test_positions_through_quotes_escapes_and_block_scalars() -> None:
    text = ('audience:\n'
            '  rulesets:\n'
            '    quoted: "partner.tier == \\"gold\\" and partner.country == \\"FI\\""\n'
            '    block: |\n'
            '      partner.tier == "gold"\n'
            '        and partner.revenue > 10\n')
    document = load_yaml("c.yaml", text)
    ctx = Context(now=NOW, tz=HELSINKI)
    quoted = document.scalar(("audience", "rulesets", "quoted"))
    result = explain(parse(quoted.value, quoted), {"tier": "gold", "country": "FI"}, ctx, quoted)
    by_text = {s["expression"]: (s["line"], s["col"]) for s in result.trace}
    assert by_text["partner.tier"] == (3, 14)  # after the quote
    assert by_text["partner.country"] == (3, text.splitlines()[2].index("partner.country") + 1)
    block = document.scalar(("audience", "rulesets", "block"))
    result = explain(parse(block.value, block), {"tier": "gold", "revenue": 20}, ctx, block)
    by_text = {s["expression"]: (s["line"], s["col"]) for s in result.trace}
    assert by_text["partner.tier"] == (5, 7)
    assert by_text["partner.revenue"] == (6, 13)
    assert by_text["partner.revenue > 10"] == (6, 13)


def test_inline_text_gives_lines_of_a_multi_line_expression() -> None:
    text = 'partner.a == 1\n  or partner.b == 2'
    where = inline(text)
    result = explain(parse(text, where), {"a": 0, "b": 2}, Context(now=NOW, tz=HELSINKI), where)
    assert [(s["expression"], s["line"], s["col"]) for s in result.trace] == [
        ("partner.a", 1, 1), ("partner.a == 1", 1, 1), ("partner.b", 2, 6), ("partner.b == 2", 2, 6),
        ("partner.a == 1 or partner.b == 2", 1, 1)]


# --- property: explain() agrees with the compiled expression ---------------------------------------------


def check_agreement(node: Node, partner: dict, setting: dict) -> None:
    facts = RandomFacts()
    compiled_ctx, explain_ctx = Context(facts=facts, **setting), Context(facts=facts, **setting)
    expected = compile_expression(node)(partner, compiled_ctx)
    result = explain(node, partner, explain_ctx)
    assert same_value(result.value, expected), (result.value, expected)
    assert len(explain_ctx.warnings) == len(compiled_ctx.warnings), (explain_ctx.warnings, compiled_ctx.warnings)
    # the last step is the whole expression, with the value made JSON-ready; the trace is JSON
    last = result.trace[-1]
    assert last["value"] == json_value(expected, setting["tz"]) or expected != expected  # NaN
    json.dumps(result.trace)
    full = explain(node, partner, Context(facts=facts, **setting), constants=True)
    assert same_value(full.value, expected)
    assert len(full.trace) >= len(result.trace)


@settings(SETTINGS, max_examples=400)
@given(typed_expressions, records(wrong_types=False), contexts)
def test_explain_agrees_with_compiled_typed(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@settings(SETTINGS, max_examples=300)
@given(typed_expressions, records(wrong_types=True), contexts)
def test_explain_agrees_with_compiled_on_wrong_types(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@settings(SETTINGS, max_examples=300)
@given(random_expressions, records(wrong_types=True), contexts)
def test_explain_agrees_with_compiled_random(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)
