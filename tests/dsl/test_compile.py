"""Compiled expressions: a table of cases straight from SPEC §4, and property tests that the
generated code (and the closures used for very deep expressions) agree with the reference
interpreter (tests/dsl/reference.py) on random expressions and random records, wrong types
included: same value, same number of warnings, never an exception."""

from __future__ import annotations

import math
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compile import MAX_DEPTH, CompileError, compile_closures, compile_expression
from dsl.functions import SIGNATURES
from dsl.nodes import Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from dsl.parser import parse
from dsl.runtime import FUNCTIONS, NO_FACTS, Context
from tests.dsl import reference

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # 12:00 in Helsinki; today is 2026-07-01


class Facts:
    """Facts from plain sets: groups and campaigns by name, steps opened and so on."""

    def __init__(self, **known: Any):
        self.known = known

    def _has(self, what: str, name: str) -> bool:
        return name in self.known.get(what, ())

    def in_group(self, partner: Mapping, name: str) -> bool:
        return self._has("groups", name)

    def in_campaign(self, partner: Mapping, campaign_id: str) -> bool:
        return self._has("campaigns", campaign_id)

    def was_in_campaign(self, partner: Mapping, campaign_id: str) -> bool:
        return self._has("campaigns", campaign_id) or self._has("past_campaigns", campaign_id)

    def opened(self, partner: Mapping, step_id: str) -> bool:
        return self._has("opened", step_id)

    def clicked(self, partner: Mapping, step_id: str) -> bool:
        return self._has("clicked", step_id)

    def bounced(self, partner: Mapping, step_id: str) -> bool:
        return self._has("bounced", step_id)

    def responded(self, partner: Mapping, step_id: str) -> bool:
        return step_id in self.known.get("responses", {})

    def response(self, partner: Mapping, step_id: str) -> str | None:
        return self.known.get("responses", {}).get(step_id)

    def variant(self, partner: Mapping, step_id: str) -> str | None:
        return self.known.get("variants", {}).get(step_id)

    def split(self, partner: Mapping, step_id: str) -> str | None:
        return self.known.get("paths", {}).get(step_id)


FACTS = Facts(groups={"summit-2026"}, campaigns={"onboarding"}, past_campaigns={"spring"},
              opened={"welcome"}, responses={"intro-call": "interested"})
EVENT = {"type": "invoice.payment_failed", "at": datetime(2026, 7, 1, 8, tzinfo=UTC), "partner": "p1",
         "data": {"amount": 150, "currency": "EUR", "type": "shadowed"}}


def evaluations(text: str, partner: Mapping, *, now: datetime = NOW, tz=HELSINKI, event=None, facts=FACTS):
    """(value, warning count) from the generated code, the closures and the reference."""
    node = parse(text)
    results = []
    for compiled in (compile_expression(node), compile_closures(node)):
        ctx = Context(now=now, tz=tz, event=event, facts=facts)
        value = compiled(partner, ctx)
        results.append((value, len(ctx.warnings)))
        assert compiled.test(partner, Context(now=now, tz=tz, event=event, facts=facts)) is (value is True)
    value, warnings = reference.evaluate(node, partner, now=now, tz=tz, event=event, facts=facts)
    results.append((value, len(warnings)))
    return results


def same_value(a: Any, b: Any) -> bool:
    """Equal values of the same type; NaN equals NaN; datetimes as instants."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, datetime) and a.tzinfo is not None and b.tzinfo is not None:
        return a - b == timedelta(0)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def d(text: str) -> date:
    return date.fromisoformat(text)


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# expression, partner record, expected value, expected number of warnings
CASES: list[tuple[str, dict, Any, int]] = [
    # null: a missing field is null; == and != treat it as a value, other comparisons are false
    ("partner.revenue > 10", {}, False, 0),
    ("partner.revenue <= 10", {"revenue": None}, False, 0),
    ("not (partner.revenue > 10)", {}, True, 0),
    ("partner.revenue == null", {}, True, 0),
    ("null == null", {}, True, 0),
    ("partner.revenue != null", {"revenue": 0}, True, 0),
    ("partner.revenue != 5", {}, True, 0),
    ("partner.revenue == 5", {}, False, 0),
    ("partner.revenue + 1", {}, None, 0),
    ("-partner.revenue", {}, None, 0),
    ("partner.revenue in [1, 2]", {}, False, 0),
    ("partner.revenue not in [1, 2]", {}, False, 0),
    ("null in [null]", {}, False, 0),
    ("'a' in partner.name", {"name": None}, False, 0),
    ("'a' not in partner.name", {}, False, 0),
    # no three-valued logic: only true is true
    ("partner.active", {"active": None}, None, 0),
    ("partner.active and true", {"active": None}, False, 0),
    ("partner.active or true", {"active": None}, True, 0),
    ("not partner.active", {}, True, 0),
    ("partner.vip or partner.active", {"vip": "yes", "active": 1}, False, 0),
    ("partner.active == false", {"active": False}, True, 0),
    # numbers; bool is not a number
    ("1 == 1.0", {}, True, 0),
    ("partner.revenue >= 10000", {"revenue": 10000.0}, True, 0),
    ("partner.revenue >= -5", {"revenue": -5}, True, 0),
    ("true == 1", {}, False, 1),
    ("true != 1", {}, False, 1),
    ("true + 1", {}, None, 1),
    ("partner.vip > 0", {"vip": True}, False, 1),
    ("partner.vip in [1, 0]", {"vip": True}, False, 1),
    ("7 / 2", {}, 3.5, 0),
    ("8 / 2 == 4", {}, True, 0),
    ("-7 % 3", {}, 2, 0),
    ("partner.revenue * 2 - 1", {"revenue": 4}, 7, 0),
    ("partner.revenue / 0", {"revenue": 10}, None, 1),
    ("partner.revenue % 0", {"revenue": 10}, None, 1),
    ("(partner.revenue / 0) > 1", {"revenue": 10}, False, 1),
    ("5 % partner.revenue", {"revenue": 0}, None, 1),
    ("5 / partner.revenue", {"revenue": 0.0}, None, 1),
    ("partner.revenue % 3", {"revenue": 7.5}, 1.5, 0),
    ("partner.revenue + 1", {"revenue": 10**400}, 10**400 + 1, 0),
    ("partner.revenue + 1.5", {"revenue": 10**400}, None, 1),
    ("partner.revenue / 3", {"revenue": 10**400}, None, 1),
    # type surprises: false (or null) and a warning
    ("partner.revenue >= 10000", {"revenue": "20000"}, False, 1),
    ("partner.revenue > 'x'", {"revenue": 5}, False, 1),
    ("partner.revenue == 5", {"revenue": "5"}, False, 1),
    ("partner.revenue != 5", {"revenue": "5"}, False, 1),
    ("partner.tier == 'gold'", {"tier": 5}, False, 1),
    ("partner.revenue + 'x'", {"revenue": 5}, None, 1),
    ("'x' + partner.name", {"name": "y"}, "xy", 0),
    ("-partner.name", {"name": "y"}, None, 1),
    ("partner.tags < partner.tags", {"tags": ["a"]}, False, 1),
    ("partner.vip < true", {"vip": False}, False, 1),
    # strings and enums
    ("partner.tier == 'gold'", {"tier": "gold"}, True, 0),
    ("partner.tier != 'gold'", {"tier": "silver"}, True, 0),
    ("partner.tier in ['gold', 'platinum']", {"tier": "platinum"}, True, 0),
    ("partner.tier in ['gold', 'platinum']", {"tier": "silver"}, False, 0),
    ("partner.tier in ['gold', 'platinum']", {"tier": 5}, False, 1),
    ("partner.tier not in ['gold', 'platinum']", {"tier": "silver"}, True, 0),
    ("partner.tier not in ['gold', 'platinum']", {"tier": 5}, False, 1),
    ("partner.tier in []", {"tier": "gold"}, False, 0),
    ("'a' < 'b'", {}, True, 0),
    # membership: lists and substrings
    ("'vip' in partner.tags", {"tags": ["vip", "x"]}, True, 0),
    ("'vip' in partner.tags", {"tags": []}, False, 0),
    ("'vip' in partner.tags", {"tags": "a vip b"}, True, 0),
    ("'vip' not in partner.tags", {"tags": ["x", None]}, True, 0),
    ("'ab' in 'xaby'", {}, True, 0),
    ("'ab' not in 'xaby'", {}, False, 0),
    ("5 in 'abc'", {}, False, 1),
    ("1 in [1.0, 2]", {}, True, 0),
    ("true in [1]", {}, False, 1),
    ("'a' in ['a', 1]", {}, True, 0),
    ("'b' in ['a', 1]", {}, False, 1),
    ("[1, 2] in [[1, 2.0], [3]]", {}, True, 0),
    ("'a' in partner.profile", {"profile": {"a": 1}}, False, 1),
    # dates, datetimes, durations
    ("partner.joined < 2026-01-01", {"joined": d("2025-12-31")}, True, 0),
    ("partner.joined + 3d", {"joined": d("2025-12-31")}, d("2026-01-03"), 0),
    ("3d + partner.joined == 2026-01-03", {"joined": d("2025-12-31")}, True, 0),
    ("partner.joined - 1w", {"joined": d("2026-07-01")}, d("2026-06-24"), 0),
    ("partner.joined + 12h", {"joined": d("2026-07-01")}, dt("2026-07-01T09:00Z"), 0),
    ("2026-07-10 - 2026-07-01", {}, timedelta(days=9), 0),
    ("2026-07-10 - 2026-07-01 == 9d", {}, True, 0),
    ("now - 3d", {}, dt("2026-06-28T09:00Z"), 0),
    ("now - partner.seen > 1d", {"seen": dt("2026-06-29T09:00Z")}, True, 0),
    ("now - partner.seen", {"seen": dt("2026-07-01T08:30Z")}, timedelta(minutes=30), 0),
    ("today", {}, d("2026-07-01"), 0),
    ("today == 2026-07-01", {}, True, 0),
    ("partner.joined + 1d", {"joined": date.max}, None, 1),
    ("partner.joined + 3d", {"joined": "2026-01-01"}, None, 1),
    ("partner.joined < 2026-01-01", {"joined": "2025-01-01"}, False, 1),
    # a date compared with a datetime means the date's local midnight (Helsinki: 21:00Z in summer)
    ("2026-07-01 == 2026-07-01T00:00", {}, True, 0),
    ("2026-07-01 == 2026-07-01T00:00Z", {}, False, 0),
    ("2026-07-01 == 2026-06-30T21:00Z", {}, True, 0),
    ("2026-07-01 == 2026-07-01T00:00+03:00", {}, True, 0),
    ("partner.seen >= today", {"seen": dt("2026-06-30T21:30Z")}, True, 0),
    ("partner.seen >= today", {"seen": dt("2026-06-30T20:59Z")}, False, 0),
    ("partner.seen >= today", {"seen": datetime(2026, 7, 1, 0, 30)}, True, 0),  # naive: local
    ("partner.seen < 2026-07-01", {"seen": dt("2026-06-30T20:59Z")}, True, 0),
    ("partner.seen > partner.joined", {"seen": dt("2026-06-30T21:30Z"), "joined": d("2026-07-01")}, True, 0),
    ("now - today", {}, timedelta(hours=12), 0),
    # datetime ± duration is elapsed time: across the spring-forward night, +1d is 23 wall hours
    ("2026-03-29T02:00 + 1d == 2026-03-30T03:00", {}, True, 0),
    ("2026-03-30T00:00 - 2026-03-29T00:00", {}, timedelta(hours=23), 0),
    ("2026-03-29 + 1d == 2026-03-30", {}, True, 0),
    ("2026-03-30 - 2026-03-29", {}, timedelta(days=1), 0),
    ("3d > 48h", {}, True, 0),
    ("2w == 14d", {}, True, 0),
    ("-3d + 1w == 4d", {}, True, 0),
    ("1d * 2", {}, None, 1),
    ("1d == 24h and 90m < 2h", {}, True, 0),
    # days_since: whole days from the local date to today
    ("days_since(partner.joined)", {"joined": d("2026-06-01")}, 30, 0),
    ("days_since(partner.joined)", {"joined": d("2026-07-03")}, -2, 0),
    ("days_since(partner.seen)", {"seen": dt("2026-06-30T21:30Z")}, 0, 0),
    ("days_since(partner.seen)", {"seen": dt("2026-06-30T20:30Z")}, 1, 0),
    ("days_since(partner.seen) > 7", {}, False, 0),
    ("days_since(2026-06-01T23:30)", {}, 30, 0),  # local time: 2026-06-01 in Helsinki
    ("days_since(2026-06-01T23:30Z)", {}, 29, 0),  # 02:30 on 2026-06-02 in Helsinki
    ("days_since(partner.joined)", {"joined": None}, None, 0),
    ("days_since(partner.name)", {"name": "x"}, None, 1),
    # functions on null and on wrong types
    ("lower(partner.name)", {"name": "ÅSA"}, "åsa", 0),
    ("upper(partner.name)", {}, None, 0),
    ("lower(partner.revenue)", {"revenue": 5}, None, 1),
    ("len(partner.tags)", {"tags": ["a", "b"]}, 2, 0),
    ("len(partner.name)", {"name": "abc"}, 3, 0),
    ("len(partner.tags)", {}, None, 0),
    ("len(partner.revenue)", {"revenue": 5}, None, 1),
    ("contains(partner.name, 'an')", {"name": "Hanna"}, True, 0),
    ("contains(partner.tags, 'vip')", {"tags": ["vip"]}, True, 0),
    ("contains(partner.name, 'an')", {}, False, 0),
    ("contains(partner.name, 5)", {"name": "x"}, False, 1),
    ("starts_with(partner.email, 'info@')", {"email": "info@example.com"}, True, 0),
    ("starts_with(partner.email, 'info@')", {}, False, 0),
    ("starts_with(partner.email, 'example')", {"email": "info@example.com"}, False, 0),
    ("ends_with(partner.email, 'example')", {"email": "info@example.com"}, False, 0),
    ("starts_with(partner.email, 'info@')", {"email": 5}, False, 1),
    ("ends_with(partner.email, '.fi')", {"email": "a@b.fi"}, True, 0),
    ("ends_with(partner.email, partner.domain)", {"email": "a@b.fi", "domain": None}, False, 0),
    ("matches(partner.email, '@example\\\\.com$')", {"email": "a@example.com"}, True, 0),
    ("matches(partner.email, '@example\\\\.com$')", {"email": "a@exampleXcom"}, False, 0),
    ("matches(partner.email, '^a')", {}, False, 0),
    ("matches('abc', '(')", {}, False, 1),
    ("matches(partner.email, partner.pattern)", {"email": "a", "pattern": "("}, False, 1),
    # coalesce: the first non-null, lazily
    ("coalesce(partner.nickname, partner.name, 'friend')", {"name": "Ann"}, "Ann", 0),
    ("coalesce(partner.nickname, partner.name, 'friend')", {}, "friend", 0),
    ("coalesce(partner.revenue, 5)", {"revenue": 0}, 0, 0),
    ("coalesce(null, null)", {}, None, 0),
    ("coalesce(1, 1 / 0)", {}, 1, 0),
    ("coalesce(null, 1 / 0)", {}, None, 1),
    # records, lists, indexes
    ("partner.address.city", {"address": {"city": "Oulu"}}, "Oulu", 0),
    ("partner.address.city", {}, None, 0),
    ("partner.address.city", {"address": "Oulu"}, None, 1),
    ("partner['revenue']", {"revenue": 3}, 3, 0),
    ("partner.tags[0]", {"tags": ["vip"]}, "vip", 0),
    ("partner.tags[5]", {"tags": ["vip"]}, None, 0),
    ("partner.tags[-1]", {"tags": ["vip"]}, None, 0),
    ("partner.tags['x']", {"tags": ["vip"]}, None, 1),
    ("partner.tags[1.0]", {"tags": ["vip"]}, None, 1),
    ("partner.tags == ['a', 'b']", {"tags": ["a", "b"]}, True, 0),
    ("partner.tags == ['a', 1]", {"tags": ["a", "b"]}, False, 0),
    ("[partner.revenue, 1]", {}, [None, 1], 0),
    ("partner", {"a": 1}, {"a": 1}, 0),
    # facts
    ("in_group('summit-2026')", {}, True, 0),
    ("in_group('other')", {}, False, 0),
    ("in_campaign('onboarding') and was_in_campaign('spring')", {}, True, 0),
    ("not opened('welcome')", {}, False, 0),
    ("clicked('welcome') or bounced('welcome')", {}, False, 0),
    ("responded('intro-call') and response('intro-call') == 'interested'", {}, True, 0),
    ("response('welcome')", {}, None, 0),
    ("in_group(partner.group)", {"group": 5}, False, 1),
    ("in_group(partner.group)", {}, False, 0),
]


@pytest.mark.parametrize("text, partner, expected, warnings", CASES, ids=[c[0] for c in CASES])
def test_cases(text: str, partner: dict, expected: Any, warnings: int) -> None:
    for value, warned in evaluations(text, partner):
        assert same_value(value, expected), (value, expected)
        assert type(value) is type(expected)
        assert warned == warnings


EVENT_CASES = [
    ("event.amount > 100", EVENT, True),
    ("event.data.amount", EVENT, 150),
    ("event.type", EVENT, "invoice.payment_failed"),  # the event's own keys come first
    ("event.data.type", EVENT, "shadowed"),
    ("event.missing", EVENT, None),
    ("event.amount > 100", None, False),
    ("event == null", None, True),
    ("event.at < now", EVENT, True),
]


@pytest.mark.parametrize("text, event, expected", EVENT_CASES)
def test_event_fields(text: str, event: dict | None, expected: Any) -> None:
    for value, warned in evaluations(text, {}, event=event):
        assert value == expected and warned == 0


@pytest.mark.parametrize("text, expected", [
    ("today", d("2026-07-01")),
    ("days_since(2026-06-30)", 1),
    ("days_since(partner.joined)", 1),
    ("partner.joined < today", True),
    ("now > 2026-07-01", True),
    ("now - today", timedelta(minutes=30)),
])
def test_today_is_the_local_date(text: str, expected: Any) -> None:
    just_after_midnight = dt("2026-06-30T21:30Z")  # 00:30 on 1 July in Helsinki
    for value, warned in evaluations(text, {"joined": d("2026-06-30")}, now=just_after_midnight):
        assert value == expected and warned == 0


def test_without_facts_nobody_is_in_anything() -> None:
    for value, _ in evaluations("in_group('summit-2026') or opened('welcome')", {}, facts=NO_FACTS):
        assert value is False
    assert evaluations("response('intro-call')", {}, facts=NO_FACTS)[0] == (None, 0)


def test_the_fast_paths_are_in_the_generated_code() -> None:
    source = compile_expression(parse('partner.tier in ["gold", "platinum"] and partner.revenue >= 10000')).source
    assert "p.get('tier')" in source and ">= 10000 if type(" in source
    assert "_member(" in source and "_at_least(" in source  # the slow paths, for null and wrong types


def test_user_text_is_never_code() -> None:
    text = """partner.x == "') or __import__('os').system('true') or ('" and lower('\\u0027') == "'" """
    compiled = compile_expression(parse(text))
    assert compiled({"x": "') or __import__('os').system('true') or ('"}, Context(now=NOW, tz=HELSINKI)) is True
    field = Binary("==", Attribute(Name("partner"), "a') or p.clear() or ('"), Literal("number", 1))
    assert compile_expression(field)({"a') or p.clear() or ('": 1}, Context(now=NOW, tz=HELSINKI)) is True


def test_float_literals_that_are_not_finite_are_constants() -> None:
    node = Binary("<", Attribute(Name("partner"), "x"), Literal("number", float("inf")))
    assert compile_expression(node)({"x": 1e308}, Context(now=NOW, tz=HELSINKI)) is True


@pytest.mark.parametrize("shape", [
    "not {}", "({} + 1)", "{} and partner.a", "lower({})", "coalesce({}, null)", "[{}]", "contains({}, 'X')",
])
def test_deep_nesting_falls_back_to_closures(shape: str) -> None:
    text = "partner.a"
    for _ in range(MAX_DEPTH - 3):
        text = shape.format(text)
    node = parse(text)
    compiled = compile_expression(node)
    assert compiled.source is None
    ctx = Context(now=NOW, tz=HELSINKI)
    value = compiled({"a": True}, ctx)
    expected, _ = reference.evaluate(node, {"a": True}, now=NOW, tz=HELSINKI)
    assert same_value(value, expected)


def test_too_deep_is_refused_clearly() -> None:
    node = Literal("bool", True)
    for _ in range(MAX_DEPTH + 1):
        node = Unary("not", node)
    with pytest.raises(CompileError, match="nested too deeply"):
        compile_expression(node)


@pytest.mark.parametrize("node, message", [
    (Name("partners"), "unknown name"),
    (Call("lowercase", (Literal("string", "a"),)), "unknown function"),
    (Call("lower", ()), "takes 1 arguments"),
    (Call("coalesce", ()), "takes at least 1 arguments"),
])
def test_program_mistakes_raise_at_compile_time(node: Node, message: str) -> None:
    with pytest.raises(CompileError, match=message):
        compile_expression(node)


def test_every_signature_has_one_implementation() -> None:
    assert set(FUNCTIONS) == set(SIGNATURES)


def test_context_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        Context(now=datetime(2026, 7, 1), tz=HELSINKI)


# --- Property tests: generated code == closures == reference -----------------------------------

ZONES = [UTC, HELSINKI, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Pacific/Chatham")]
OFFSETS = [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5))]
WORDS = ["", "a", "ab", "b", "A", "gold", "silver", "platinum", "FI", "a.b", "(", "^a"]
EARLY, LATE = datetime(2025, 1, 1), datetime(2027, 12, 31)
COMPARISONS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
ARITHMETIC = ["+", "-", "*", "/", "%"]

words = st.sampled_from(WORDS) | st.text(alphabet="abAB.", max_size=3)
numbers = st.integers(-3, 3) | st.sampled_from([0, 1, 2.5, -0.5, 1.0, 10000, 9999.5])
dates = st.dates(EARLY.date(), LATE.date())
naive_datetimes = st.datetimes(EARLY, LATE)
aware_datetimes = st.datetimes(EARLY, LATE, timezones=st.sampled_from(ZONES))
durations = st.builds(timedelta, minutes=st.integers(0, 3 * 24 * 60)) | st.sampled_from(
    [timedelta(0), timedelta(hours=12), timedelta(days=1), timedelta(days=3), timedelta(weeks=2)])
any_value = st.one_of(
    st.none(), words, numbers, st.booleans(), dates, aware_datetimes, durations,
    st.sampled_from([10**400, -(10**30), 1e308, float("inf"), float("nan")]),
    st.lists(words | numbers | st.none(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "city"]), words | numbers, max_size=2),
)

SCHEMA = {
    "name": words,
    "score": numbers,
    "vip": st.booleans(),
    "joined": dates,
    "seen": aware_datetimes | naive_datetimes,
    "tags": st.lists(words, max_size=3),
    "tier": st.sampled_from(["silver", "gold", "platinum"]),
}


def records(wrong_types: bool) -> st.SearchStrategy[dict]:
    """Records of the schema, each field of its type (or of any type), null, or missing."""
    def value(typed: st.SearchStrategy) -> st.SearchStrategy:
        return st.integers(0, 3).flatmap(lambda roll: st.none() if roll == 0 else any_value if wrong_types else typed)

    full = st.fixed_dictionaries({name: value(typed) for name, typed in SCHEMA.items()})
    missing = st.sets(st.sampled_from(list(SCHEMA)), max_size=3)
    return st.builds(lambda record, gone: {k: v for k, v in record.items() if k not in gone}, full, missing)


# Evaluation times, often near a day's end somewhere (where today differs from the UTC date).
instants = st.datetimes(EARLY, LATE, timezones=st.just(UTC)) | st.builds(
    lambda day, at: datetime.combine(day, at, UTC), dates,
    st.sampled_from([time(0, 0), time(0, 30), time(3, 59), time(12), time(21, 30), time(22), time(23, 59)]))
contexts = st.fixed_dictionaries({
    "now": instants,
    "tz": st.sampled_from(ZONES),
    "event": st.none() | st.fixed_dictionaries(
        {"type": st.sampled_from(["custom.thing", "opened"]), "at": aware_datetimes},
        optional={"data": st.dictionaries(st.sampled_from(["amount", "type"]), numbers | words, max_size=2)}),
})


class RandomFacts:
    """Deterministic answers that depend on the argument."""

    def in_group(self, partner: Mapping, name: str) -> bool:
        return len(name) % 2 == 0

    in_campaign = was_in_campaign = opened = clicked = bounced = responded = in_group

    def response(self, partner: Mapping, step_id: str) -> str | None:
        return step_id.upper() if step_id else None

    variant = split = response


# --- Expressions: leaves ---


def field(name: str) -> Node:
    return Attribute(Name("partner"), name)


def literal(kind: str, values: st.SearchStrategy) -> st.SearchStrategy[Literal]:
    return st.builds(Literal, st.just(kind), values)


def list_of(items: st.SearchStrategy[Node], min_size: int = 0) -> st.SearchStrategy[ListExpr]:
    return st.lists(items, min_size=min_size, max_size=3).map(lambda i: ListExpr(tuple(i)))


fields = st.sampled_from([*SCHEMA, "missing"]).map(field)
string_literals = literal("string", words)
# Literals as the parser makes them: numbers are never negative (that is unary minus).
small_ints = st.integers(0, 3).map(lambda n: Literal("number", n)) | st.integers(1, 2).map(
    lambda n: Unary("-", Literal("number", n)))
literals = st.one_of(
    literal("number", st.integers(0, 3) | st.sampled_from([0.5, 1.0, 2, 10000])),
    string_literals,
    literal("bool", st.booleans()),
    st.just(Literal("null", None)),
    literal("date", dates),
    literal("datetime", naive_datetimes | st.datetimes(EARLY, LATE, timezones=st.sampled_from(OFFSETS))),
    literal("duration", durations),
)
leaves = st.one_of(
    fields,
    literals,
    st.sampled_from([Name("now"), Name("today"), Name("partner"), Name("event"),
                     Attribute(Name("event"), "amount"), Attribute(Name("event"), "type"),
                     Attribute(Attribute(Name("event"), "data"), "amount")]),
)

# Leaves of each type, as the checker would let them through.
TYPED_LEAVES = {
    "string": st.sampled_from(["name", "tier", "missing"]).map(field) | string_literals
    | st.just(Attribute(Name("event"), "type")),
    "number": st.sampled_from(["score", "missing"]).map(field) | small_ints
    | literal("number", st.sampled_from([0.5, 1.0, 10000])) | st.just(Attribute(Name("event"), "amount")),
    "bool": st.just(field("vip")) | literal("bool", st.booleans()),
    "date": st.just(field("joined")) | literal("date", dates) | st.just(Name("today")),
    "datetime": st.just(field("seen")) | literals.filter(lambda n: n.kind == "datetime") | st.just(Name("now")),
    "duration": literal("duration", durations),
    "list": st.just(field("tags")) | list_of(string_literals),
}
KINDS = sorted(TYPED_LEAVES)
PARAMETER_LEAVES = {
    "string": TYPED_LEAVES["string"],
    "number": TYPED_LEAVES["number"],
    "temporal": TYPED_LEAVES["date"] | TYPED_LEAVES["datetime"],
    "sized": TYPED_LEAVES["string"] | TYPED_LEAVES["list"],
    "container": TYPED_LEAVES["string"] | TYPED_LEAVES["list"],
    "any": leaves,
    "step": string_literals, "group": string_literals, "campaign": string_literals,
    "variant_step": string_literals, "split_step": string_literals,
}


# --- Expressions: the shapes people write, which the fast paths are for ---


def binary(ops: list[str], left: st.SearchStrategy[Node], right: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.builds(Binary, st.sampled_from(ops), left, right)


def call(name: str, *args: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.tuples(*args).map(lambda values: Call(name, values))


def well_typed_call(name: str) -> st.SearchStrategy[Node]:
    """A call with simple arguments of the types its signature asks for."""
    return call(name, *(PARAMETER_LEAVES[p] for p in SIGNATURES[name].params))


def any_call(arguments: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def with_arguments(name: str) -> st.SearchStrategy[Node]:
        signature = SIGNATURES[name]
        count = st.integers(1, 3) if signature.variadic else st.just(len(signature.params))
        return count.flatmap(lambda n: st.lists(arguments, min_size=n, max_size=n)).map(
            lambda args: Call(name, tuple(args)))

    return st.sampled_from(sorted(SIGNATURES)).flatmap(with_arguments)


def field_against_literal(f: Node, op: str, lit: Node, flip: bool) -> Node:
    return Binary(op, lit, f) if flip else Binary(op, f, lit)


shapes = st.one_of(
    st.builds(field_against_literal, fields, st.sampled_from(COMPARISONS + ARITHMETIC), literals | small_ints,
              st.booleans()),
    binary(["in", "not in"], fields, list_of(string_literals, 1) | list_of(
        literal("number", st.integers(0, 3) | st.just(1.0)), 1)),
    st.sampled_from(sorted(SIGNATURES)).flatmap(well_typed_call),
    any_call(leaves),
    binary(COMPARISONS + ARITHMETIC, leaves, leaves),
    st.builds(Index, fields, small_ints),
)


# --- Expressions: well-typed and deeper, reaching the interesting semantics (dates against
# datetimes, durations, membership) far more often than random trees do ---


@lru_cache(maxsize=None)
def typed(kind: str, depth: int = 3) -> st.SearchStrategy[Node]:
    """Expressions of one type, at most ``depth`` operators deep."""
    if depth == 0:
        return TYPED_LEAVES[kind]
    s = lambda k: typed(k, depth - 1)  # noqa: E731
    temporal = s("date") | s("datetime")
    ordered = ["<", "<=", ">", ">="]
    composites = {
        "string": [call("lower", s("string")), call("upper", s("string")), call("coalesce", s("string"), s("string")),
                   st.builds(Index, s("list"), small_ints), binary(["+"], s("string"), s("string")),
                   *[call(name, s("string")) for name in ("response", "variant", "split")]],
        "number": [binary(ARITHMETIC, s("number"), s("number")), st.builds(Unary, st.just("-"), s("number")),
                   call("len", s("string") | s("list")), call("days_since", temporal),
                   call("coalesce", s("number"), s("number"))],
        "bool": [binary(ordered, s("number"), s("number")), binary(ordered, s("string"), s("string")),
                 binary(["==", "!=", *ordered], temporal, temporal),
                 binary(["==", "!=", *ordered], s("duration"), s("duration")),
                 *[binary(["==", "!="], s(k), s(k)) for k in ("string", "number", "bool", "list")],
                 binary(["in", "not in"], s("string"), s("list") | s("string")),
                 binary(["in", "not in"], s("number"), list_of(small_ints, 1)),
                 binary(["and", "or"], s("bool"), s("bool")), st.builds(Unary, st.just("not"), s("bool")),
                 call("contains", s("list") | s("string"), s("string")),
                 *[call(name, s("string"), s("string")) for name in ("starts_with", "ends_with", "matches")],
                 st.sampled_from(["in_group", "opened", "responded"]).flatmap(lambda name: call(name, s("string")))],
        "date": [binary(["+", "-"], s("date"), s("duration")), binary(["+"], s("duration"), s("date"))],
        "datetime": [binary(["+", "-"], s("datetime"), s("duration"))],
        "duration": [binary(["-"], temporal, temporal), binary(["+", "-"], s("duration"), s("duration")),
                     st.builds(Unary, st.just("-"), s("duration"))],
        "list": [list_of(s("string"))],
    }
    return TYPED_LEAVES[kind] | st.one_of(*composites[kind])


typed_expressions = typed("bool") | st.sampled_from(KINDS).flatmap(typed)


# --- Expressions: anything at all, types be damned ---


def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        binary(["and", "or", *COMPARISONS, *ARITHMETIC], children, children),
        st.builds(Unary, st.sampled_from(["not", "-"]), children),
        list_of(children),
        any_call(children),
        st.builds(Index, children, children),
        st.builds(Attribute, children, st.sampled_from(["a", "city", "name"])),
        shapes,
    )


random_expressions = st.recursive(leaves | shapes, extend, max_leaves=8)


def check_agreement(node: Node, partner: dict, setting: dict) -> None:
    facts = RandomFacts()
    expected, expected_warnings = reference.evaluate(node, partner, facts=facts, **setting)
    generated = compile_expression(node)
    assert generated.source is not None  # shallow expressions never need the closures
    for compiled in (generated, compile_closures(node)):
        ctx = Context(facts=facts, **setting)
        value = compiled(partner, ctx)
        assert same_value(value, expected), (value, expected, compiled.source)
        assert len(ctx.warnings) == len(expected_warnings), (ctx.warnings, expected_warnings, compiled.source)
        assert compiled.test(partner, Context(facts=facts, **setting)) is (expected is True)


SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
strict = pytest.mark.filterwarnings("error::SyntaxWarning")  # generated code must compile cleanly


@strict
@settings(SETTINGS, max_examples=500)
@given(typed_expressions, records(wrong_types=False), contexts)
def test_typed_expressions(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@strict
@settings(SETTINGS, max_examples=250)
@given(typed_expressions, records(wrong_types=True), contexts)
def test_typed_expressions_on_wrong_types(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@strict
@settings(SETTINGS, max_examples=500)
@given(shapes, records(wrong_types=True), contexts)
def test_simple_shapes(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@strict
@settings(SETTINGS, max_examples=200)
@given(random_expressions, records(wrong_types=False), contexts)
def test_random_expressions(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)


@strict
@settings(SETTINGS, max_examples=200)
@given(random_expressions, records(wrong_types=True), contexts)
def test_random_expressions_on_wrong_types(node: Node, partner: dict, setting: dict) -> None:
    check_agreement(node, partner, setting)
