"""The static checker: every problem in an expression, each at its own token."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.checker import Scope, check, check_text
from dsl.parser import inline, parse
from dsl.types import ANY, BOOL, DATE, DATETIME, DURATION, NUMBER, STRING, enum, list_of, record
from dsl.yamlload import load_yaml

PARTNER = record({
    "id": STRING,
    "name": STRING,
    "email": STRING,
    "country": STRING,
    "tier": enum(["silver", "gold", "platinum"]),
    "revenue": NUMBER,
    "joined_at": DATE,
    "last_login": DATETIME,
    "tags": list_of(STRING),
    "scores": list_of(NUMBER),
    "supplier_emails": BOOL,
    "active": BOOL,
})
CAMPAIGN = Scope(PARTNER, steps=("welcome", "intro-call"), groups=("summit-2026",), campaigns=("nurture", "demo-invite"))
OUTSIDE = Scope(PARTNER, groups=("summit-2026",), campaigns=("nurture",))  # consent, global exclude
EVENT = replace(CAMPAIGN, event=True)
FUNCTIONS = ("bounced, clicked, coalesce, contains, days_since, ends_with, in_campaign, in_group, len, lower, "
             "matches, opened, responded, response, split, starts_with, upper, variant, was_in_campaign")


def found(text: str, scope: Scope = CAMPAIGN, expect=BOOL) -> list[str]:
    """Each diagnostic as 'col message' (warnings marked), in text order."""
    _, diagnostics = check_text(text, scope, expect=expect)
    return [f"{d.span.col} {'warning: ' if d.severity == 'warning' else ''}{d.message}" for d in diagnostics]


FINE = [
    'partner.tier in ["gold", "platinum"] and partner.country == "FI"',
    "partner.revenue >= 100000",
    "partner.active == false",
    "not opened(\"welcome\") or responded(\"intro-call\")",
    'response("intro-call") == "interested"',
    'in_group("summit-2026") and not in_campaign("nurture") and not was_in_campaign("demo-invite")',
    "partner.revenue == null or partner.tier != null",
    '"gold" == partner.tier',
    "partner.joined_at + 3d < today and partner.last_login > now - 2w",
    "partner.joined_at < now and 2026-07-01 <= partner.last_login",
    "today - partner.joined_at > 30d and now - partner.last_login >= 12h and now - partner.joined_at > 1d",
    'partner.name + " Oy" == partner.tier + "x" and partner.name[0] == "A"',
    "-3d < 1d and -partner.revenue < 0",
    "days_since(partner.joined_at) > 14 and days_since(partner.last_login) < 2",
    'lower(partner.email) == upper(partner.tier) and len(partner.tags) > 0',
    'contains(partner.tags, "vip") and contains(partner.name, "Oy")',
    'starts_with(partner.email, "info@") or ends_with(partner.email, ".fi")',
    'matches(partner.email, "^[a-z]+@example\\\\.com$")',
    'coalesce(partner.revenue, 0) > 10 and coalesce(partner.tier, "gold") == "gold"',
    '"vip" in partner.tags and "Oy" in partner.name and "gold" not in partner.tier',
    "partner.tags[0] == \"vip\" and partner.scores[1] * 2 % 3 / 4 > 1",
    'partner["tier"] == "gold" and partner["revenue"] > 1',
    "[1, 2.5] == partner.scores and [] != partner.tags and [null, 1] == [2]",
    "partner.tier < \"gold\" and partner.name > partner.email",
    "partner.revenue in [1, 2, 3] and 3 not in partner.scores",
    "partner.supplier_emails",
    "null",
]


@pytest.mark.parametrize("text", FINE)
def test_well_typed_expressions_have_no_diagnostics(text):
    assert found(text) == []


def test_event_conditions():
    assert found("event.amount > 100 and event.data.kind == \"refund\" and event[\"x\"] in [1]", EVENT) == []


CASES = [
    # names and fields
    ("partner.countyr == \"FI\"", ["9 unknown field 'countyr' of partner; did you mean 'country'?"]),
    ("partner.zzz == 1", ["9 unknown field 'zzz' of partner"]),
    ('partner["countyr"] == "FI"', ["9 unknown field 'countyr' of partner; did you mean 'country'?"]),
    ("partners.tier == 1", ["1 unknown name 'partners'; did you mean 'partner'?"]),
    ('tier == "gold"', ["1 unknown name 'tier'; did you mean 'partner.tier'?"]),
    ("countyr == 1", ["1 unknown name 'countyr'; did you mean 'partner.country'?"]),
    ("True", ["1 unknown name 'True'; did you mean 'true'?"]),
    ("event.amount > 100", ["1 'event' is only available in the 'when' of an event trigger"]),
    ("partner.name.first == 1", ["14 cannot read field 'first' of a string"]),
    ("partner.revenue[0] == 1", ["1 only lists, strings and records can be indexed, but this is a number"]),
    ('partner.tags["a"] == "b"', ["14 a position must be a number, but this is a string"]),
    ("partner.name[0] == 1", ['17 cannot compare string with number: partner.name[0] is a string; write "1" in quotes']),
    ("partner[1] == 1", ["9 a field name must be a string, but this is a number"]),
    # comparisons
    ('partner.revenue > "x"', ["17 cannot compare number with string: partner.revenue is a number; "
                                "compare it with a number such as 100, without quotes"]),
    ("partner.active == \"true\"", ["16 cannot compare bool with string: partner.active is a bool; write true without quotes"]),
    ("partner.joined_at == 3d", ["19 cannot compare date with duration: partner.joined_at is a date; "
                                 "compare it with a date such as 2026-01-31"]),
    ("partner.tags == [1]", ['14 cannot compare list[string] with list[number]: partner.tags is a list[string]; write ["1"]']),
    ("partner.active < true", ["1 '<' needs numbers, strings, dates or durations, but this is a bool",
                               "18 '<' needs numbers, strings, dates or durations, but this is a bool"]),
    ("partner.revenue > null", ["19 warning: '>' with null is always false; to test for a missing value use == null"]),
    # enum values, literal on either side, inside lists, with != and not in
    ('partner.tier == "gld"', ["17 'gld' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?"]),
    ('"gld" != partner.tier', ["1 'gld' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?"]),
    ('partner.tier in ["gold", "gld", "bronze"]', [
        "26 'gld' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?",
        "33 'bronze' is not a value of partner.tier (silver, gold, platinum)",
    ]),
    ('partner.tier not in ["Gold"]', ["22 'Gold' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?"]),
    ('coalesce(null, partner.tier) == "platnum"',
     ["33 'platnum' is not a value of coalesce(null, partner.tier) (silver, gold, platinum); did you mean 'platinum'?"]),
    # membership
    ("3 in partner.tags", ['3 cannot look for a number in a list[string]: partner.tags is a list[string]; write "3" in quotes']),
    ("3 in partner.name", ['3 cannot look for a number in a string: partner.name is a string; write "3" in quotes']),
    ("partner.name in 3", ["17 'in' needs a list or a string on its right, but this is a number"]),
    ("null in partner.tags", ["1 warning: 'in' with null is always false"]),
    ("partner.name not in null", ["21 warning: 'not in' with null is always false"]),
    # arithmetic
    ("partner.revenue + 1d > 0", ["17 cannot use '+' with a number and a duration"]),
    ("partner.joined_at + partner.last_login > 1d", ["19 cannot use '+' with a date and a datetime"]),
    ('partner.name + 1 == "y"', ["14 cannot use '+' with a string and a number"]),
    ('partner.name - "x" == "y"', ["1 '-' needs numbers, dates or durations, but this is a string",
                                   "16 '-' needs numbers, dates or durations, but this is a string"]),
    ("true + 1 == 2", ["1 '+' needs numbers, strings, dates or durations, but this is a bool"]),
    ("2 * 3d > 1d", ["5 '*' needs numbers, but this is a duration"]),
    ("-partner.name == 1", ["2 '-' needs a number or a duration, but this is a string"]),
    # logic
    ("not partner.revenue", ["5 'not' needs true or false, but this is a number"]),
    ('partner.name and partner.active or 1', [
        "1 'and' needs true or false on both sides, but this is a string",
        "36 'or' needs true or false on both sides, but this is a number",
    ]),
    # lists
    ('partner.revenue in [1, "a"]', ["24 mixed types in a list: a number, then a string"]),
    # calls
    ("lenght(partner.name) > 2", [f"1 unknown function 'lenght'; did you mean 'len'? (functions: {FUNCTIONS})"]),
    ("today() > partner.joined_at", ["1 'today' is not a function; write today without parentheses"]),
    ("len(partner.name, 2) > 1", ["1 len() takes 1 argument, got 2"]),
    ('contains("a") or starts_with()', ["1 contains() takes 2 arguments, got 1", "18 starts_with() takes 2 arguments, got 0"]),
    ("coalesce() == 1", ["1 coalesce() takes at least 1 argument, got 0"]),
    ("lower(partner.revenue) == \"x\"", ["7 lower() needs a string, but this is a number"]),
    ("days_since(partner.name) > 1", ["12 days_since() needs a date or a datetime, but this is a string"]),
    ("len(partner.revenue) > 1", ["5 len() needs a string or a list, but this is a number"]),
    ("contains(partner.tags, 1)", ['24 cannot look for a number in a list[string]: partner.tags is a list[string]; '
                                   'write "1" in quotes']),
    ('coalesce(partner.revenue, "none") == 1', ["27 mixed types in coalesce(): a number, then a string"]),
    ('matches(partner.name, "(")', ["23 invalid regular expression: missing ), unterminated subpattern at position 0"]),
    ('opened("welcom")', ["8 unknown step 'welcom' in this campaign; did you mean 'welcome'?"]),
    ("opened(partner.name)", ["8 opened() needs the step name as a quoted string, such as opened(\"...\")"]),
    ('in_group("summit")', ["10 unknown group 'summit'; did you mean 'summit-2026'?"]),
    ('in_campaign("nurtur") or was_in_campaign("x")', [
        "13 unknown campaign 'nurtur'; did you mean 'nurture'?",
        "42 unknown campaign 'x'",
    ]),
    # the expected type
    ("partner.revenue", ["1 a condition must be true or false, but this is a number"]),
    ("partner.revenue + 1", ["1 a condition must be true or false, but this is a number"]),
    ('"yes"', ["1 a condition must be true or false, but this is a string"]),
    ("response(\"welcome\")", ["1 a condition must be true or false, but this is a string"]),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_diagnostics(text, expected):
    assert found(text) == expected


def test_step_functions_only_inside_a_campaign():
    assert found('opened("welcome") and partner.active', OUTSIDE) == [
        "1 opened() is only available inside a campaign (it refers to a step)"
    ]
    assert found('in_group("summit-2026") and in_campaign("nurture")', OUTSIDE) == []


def test_every_problem_is_reported_once_without_cascades():
    text = 'partner.countyr == "FI" and lenght(partner.x) > "a" and partner.tier == "gld" and opened("nope")'
    assert found(text) == [
        "9 unknown field 'countyr' of partner; did you mean 'country'?",
        f"29 unknown function 'lenght'; did you mean 'len'? (functions: {FUNCTIONS})",
        "44 unknown field 'x' of partner",
        "73 'gld' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?",
        "90 unknown step 'nope' in this campaign",
    ]


def test_check_returns_the_type():
    where = inline("x")
    assert check(parse("partner.joined_at + 1w"), CAMPAIGN, where, expect=None) == (DATE, [])
    assert check(parse("now - partner.last_login"), CAMPAIGN, where, expect=None) == (DURATION, [])
    assert check(parse("coalesce(null, partner.tier)"), CAMPAIGN, where, expect=None)[0] == PARTNER.field_map["tier"]
    assert check(parse('coalesce(partner.tier, "gold")'), CAMPAIGN, where, expect=None)[0] == STRING
    assert check(parse("event.x"), EVENT, where, expect=None) == (ANY, [])
    assert check(parse("[1, 2]"), CAMPAIGN, where, expect=None) == (list_of(NUMBER), [])
    assert found("partner.revenue * 2", expect=NUMBER) == []
    assert found("partner.name", expect=NUMBER) == ["1 expected a number, but this is a string"]


def test_syntax_errors_are_diagnostics():
    node, [problem] = check_text("partner.revenue > > 1", CAMPAIGN)
    assert node is None
    assert (problem.span.col, problem.message.split(":")[0]) == (19, "syntax error")


def test_deep_nesting_is_a_diagnostic():
    (message,) = found("-" * 5000 + "1", expect=None)
    assert message.startswith("1 expression is nested too deeply")


WORKSPACE_FILE = textwrap.dedent('''\
    name: Onboarding
    audience:
      rulesets:
        quoted: "partner.tier == \\"gold\\" and partner.countyr == 'FI'"
        plain: partner.revenue > 10 and partner.countyr == "FI"
        folded: >
          partner.revenue > 10
            and partner.countyr == "FI"
''')


@pytest.mark.parametrize("key, line, col", [("quoted", 4, 51), ("plain", 5, 45), ("folded", 8, 21)])
def test_positions_are_inside_the_yaml_file(key, line, col):
    doc = load_yaml("campaigns/onboarding.yaml", WORKSPACE_FILE)
    where = doc.scalar(("audience", "rulesets", key))
    _, diagnostics = check_text(doc.data["audience"]["rulesets"][key], CAMPAIGN, where)
    [problem] = diagnostics
    assert problem.message == "unknown field 'countyr' of partner; did you mean 'country'?"
    assert (problem.span.path, problem.span.line, problem.span.col) == ("campaigns/onboarding.yaml", line, col)
    assert doc.source.line_text(line)[col - 1:].startswith("countyr")


def test_a_syntax_error_inside_the_yaml_file_points_there():
    doc = load_yaml("c.yaml", 'when: "partner.revenue > > 1"\n')
    _, [problem] = check_text(doc.data["when"], CAMPAIGN, doc.scalar(("when",)))
    assert (problem.span.line, problem.span.col) == (1, 26)
    assert problem.message.startswith("syntax error: unexpected '>'")


# --- Robustness: no input text makes the checker raise ----------------------------------------

TOKENS = [
    "partner", "event", "now", "today", "partner.tier", "partner.revenue", "partner.tags", "partner.countyr",
    "partner.joined_at", "partner.last_login", "event.x", ".", "[", "]", "(", ")", ",", "==", "!=", "<", ">=",
    "in", "not in", "not", "and", "or", "+", "-", "*", "/", "%", '"gold"', '"gld"', "'('", "1", "2.5", "3d",
    "2026-07-01", "2026-07-01T09:00Z", "true", "null", "len", "lenght", "coalesce", "opened", "in_group",
    "matches", "contains", "days_since", '"welcome"', "x",
]


def _expressions():
    """Mostly well-formed expressions built from the grammar, so the checker's paths run."""
    atoms = st.sampled_from([t for t in TOKENS if t[0].isalnum() or t[0] in "\"'"])

    def grow(children):
        return st.one_of(
            st.tuples(children, st.sampled_from(["==", "<", "in", "not in", "+", "-", "*", "and", "or"]), children)
            .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(["not ", "-"]), children).map("".join),
            st.tuples(st.sampled_from(["len", "coalesce", "opened", "matches", "contains", "days_since", "lenght"]),
                      st.lists(children, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
            st.tuples(children, children).map(lambda t: f"({t[0]})[{t[1]}]"),
            st.tuples(children, st.sampled_from(["tier", "x", "name"])).map(lambda t: f"({t[0]}).{t[1]}"),
        )

    return st.recursive(atoms, grow, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join),
    _expressions(),
), st.sampled_from([CAMPAIGN, OUTSIDE, EVENT]), st.sampled_from([BOOL, None, NUMBER]))
def test_random_text_never_raises(text, scope, expect):
    node, diagnostics = check_text(text, scope, expect=expect)
    assert node is not None or diagnostics
    for d in diagnostics:
        assert d.severity in ("error", "warning") and d.message
        assert 1 <= d.span.col <= len(text) + 1
