"""``variant(step)`` and ``split(step)`` (SPEC §11): which variant of a message step the partner
received, which path of a split they took. The checker takes only a step of the right kind,
by name; at run time they answer what the facts object says, null otherwise; they ask the
store, so an audience that uses them is never pushed down to SQL."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo

import pytest

from campaigns.workspace import load_workspace
from dsl.checker import Scope, check, check_text
from dsl.compile import compile_closures, compile_expression
from dsl.explain import explain
from dsl.functions import SIGNATURES, inputs
from dsl.parser import inline, parse
from dsl.runtime import NO_FACTS, Context
from dsl.sql import Unsupported, to_sql
from dsl.types import BOOL, NUMBER, STRING, record
from tests.dsl.test_compile import evaluations

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PARTNER = record({"id": STRING, "name": STRING, "revenue": NUMBER})
SCOPE = Scope(PARTNER, steps=("welcome", "path", "intro-call", "reminder"),
              variant_steps=("welcome", "reminder"), splits=("path",))
OUTSIDE = Scope(PARTNER)
PLAIN = Scope(PARTNER, steps=("welcome", "intro-call"))  # a campaign without experiments


def found(text: str, scope: Scope = SCOPE) -> list[str]:
    """Each error as 'col-end_col message', in text order."""
    _, diagnostics = check_text(text, scope)
    return [f"{d.span.col}-{d.span.end_col} {d.message}" for d in diagnostics]


# --- The checker ---------------------------------------------------------------------------------


def test_the_signatures() -> None:
    variant, split = SIGNATURES["variant"], SIGNATURES["split"]
    assert (variant.params, variant.returns, variant.reads) == (("variant_step",), STRING, "store")
    assert (split.params, split.returns, split.reads) == (("split_step",), STRING, "store")
    assert variant.doc == "the key of the variant of the step the partner received, or null"
    assert split.doc == "the key of the split's path the partner took, or null"


@pytest.mark.parametrize("text", [
    'variant("welcome") == "long" and opened("welcome")',
    'variant("reminder") != null or split("path") == "call-first"',
    'split("path") in ["call-first", "email-first"]',
    'len(variant("welcome")) > 2 and starts_with(split("path"), "call")',
])
def test_steps_of_the_right_kind_are_fine(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize("text, expected_type", [
    ('variant("welcome")', STRING),
    ('split("path")', STRING),
    ('coalesce(variant("welcome"), split("path"), "none")', STRING),
    ('variant("welcome") == split("path")', BOOL),
])
def test_both_are_strings(text: str, expected_type) -> None:
    found_type, diagnostics = check(parse(text), SCOPE, inline(text), expect=None)
    assert (found_type, diagnostics) == (expected_type, [])


def test_a_string_is_not_a_number() -> None:
    assert found('variant("welcome") > 3') == [
        '20-21 cannot compare string with number: variant("welcome") is a string; write "3" in quotes']


def test_a_step_without_variants() -> None:
    assert found('variant("intro-call") == "long"') == [
        "9-21 step 'intro-call' has no variants: variant() names a step with variants "
        "(here: welcome, reminder)"]
    assert found('variant("path") == "long"') == [
        "9-15 step 'path' has no variants: variant() names a step with variants (here: welcome, reminder)"]


def test_a_step_that_is_not_a_split() -> None:
    assert found('split("welcome") == "call-first"') == [
        "7-16 'welcome' is not a split step: split() names a split (here: path)"]
    assert found('partner.revenue > 0 and split("intro-call") == "x"') == [
        "31-43 'intro-call' is not a split step: split() names a split (here: path)"]


def test_a_campaign_without_experiments_says_it_has_none() -> None:
    assert found('variant("welcome") == "a" or split("welcome") == "b"', PLAIN) == [
        "9-18 step 'welcome' has no variants: variant() names a step with variants (this campaign has none)",
        "36-45 'welcome' is not a split step: split() names a split (this campaign has none)",
    ]


def test_a_long_list_of_the_right_kind_is_cut_short() -> None:
    steps = tuple(f"mail-{n}" for n in range(1, 9)) + ("call",)
    scope = Scope(PARTNER, steps=steps, variant_steps=steps[:-1])
    assert found('variant("call") == "a"', scope) == [
        "9-15 step 'call' has no variants: variant() names a step with variants "
        "(here: mail-1, mail-2, mail-3, mail-4, mail-5 and 3 more)"]


def test_an_unknown_step_suggests_only_steps_of_the_right_kind() -> None:
    assert found('variant("welcom") == "a"') == [
        "9-17 unknown step 'welcom' in this campaign; did you mean 'welcome'?"]
    assert found('split("pth") == "a"') == ["7-12 unknown step 'pth' in this campaign; did you mean 'path'?"]
    # intro-call is close, but has no variants; path is close, but is not a message with variants
    assert found('variant("intro-cal") == "a"') == ["9-20 unknown step 'intro-cal' in this campaign"]
    assert found('variant("pth") == "a"') == ["9-14 unknown step 'pth' in this campaign"]
    assert found('split("welcom") == "a"') == ["7-15 unknown step 'welcom' in this campaign"]


def test_the_step_is_a_quoted_name() -> None:
    assert found('variant(partner.name) == "a"') == [
        '9-21 variant() needs the step name as a quoted string, such as variant("...")']
    assert found('split("pa" + "th") == "a"') == [
        '7-18 split() needs the step name as a quoted string, such as split("...")']


def test_outside_a_campaign_as_every_step_function() -> None:
    assert found('variant("welcome") == "a" or split("path") == "b" or opened("welcome")', OUTSIDE) == [
        "1-8 variant() is only available inside a campaign (it refers to a step)",
        "30-35 split() is only available inside a campaign (it refers to a step)",
        "54-60 opened() is only available inside a campaign (it refers to a step)",
    ]


def test_one_argument() -> None:
    assert found('variant() == "a"') == ["1-8 variant() takes 1 argument, got 0"]
    assert found('split("path", "path") == "a"') == ["1-6 split() takes 1 argument, got 2"]


def test_they_ask_the_store() -> None:
    assert inputs(parse('variant("welcome") == "long"')) == {"store"}
    assert inputs(parse('split("path") == "call-first" and partner.revenue > 0')) == {"store"}


# --- A campaign file: the workspace fills the scope ----------------------------------------------

CAMPAIGN = """\
name: T
description: experiments
audience:
  rulesets:
    everyone: partner.revenue >= 0
steps:
  - id: welcome
    email:
      subject: Hi
      body: "Hi {{ unsubscribe_url }}"
      variants: {short: {weight: 1, subject: Yo}, long: {weight: 1}}
  - id: nudge
    sms: {text: Hey, variants: {a: {weight: 1}, b: {weight: 2, text: Hey you}}}
  - id: banner
    popup: {pages: [home], title: T, body: B, variants: {x: {weight: 1, title: X}}}
  - id: paper
    letter: {template: letter.txt.j2, variants: {plain: {weight: 1}}}
  - id: note
    letter: {template: letter.txt.j2}
  - id: path
    split: {call-first: {weight: 30, goto: intro-call}, email-first: {weight: 70}}
  - id: intro-call
    when: variant("welcome") == "long" and variant("nudge") != "a" and variant("banner") == "x"
    activity: {kind: call, subject: Call}
  - id: follow-up
    when: split("path") == "call-first" and variant("paper") == "plain"
    email: {subject: Later, body: "Bye {{ unsubscribe_url }}"}
  - id: route
    branch:
      - {when: 'variant("note") == "a"', goto: end}
      - {when: 'split("intro-call") == "a" or variant("welcom") == "b"', goto: end}
"""


def test_a_campaign_file_knows_its_steps_with_variants_and_its_splits(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine", "campaigns"))
    (root / "campaigns").mkdir()
    (root / "campaigns" / "t.yaml").write_text(CAMPAIGN, encoding="utf-8")
    workspace = load_workspace(root, check_partners=False)
    errors = [(d.span.line, d.span.col, d.message) for d in workspace.errors
              if d.span.path.endswith("t.yaml")]
    assert errors == [
        (30, 25, "step 'note' has no variants: variant() names a step with variants "
                 "(here: welcome, nudge, banner, paper)"),
        (31, 23, "'intro-call' is not a split step: split() names a split (here: path)"),
        (31, 55, "unknown step 'welcom' in this campaign; did you mean 'welcome'?"),
    ]


# --- Run time ------------------------------------------------------------------------------------


class Facts:
    """What the store would say: the variant and path keys recorded for steps."""

    def __init__(self, variants: Mapping[str, object], paths: Mapping[str, object]):
        self.variants, self.paths = variants, paths

    def variant(self, partner: Mapping, step_id: str) -> object:
        return self.variants.get(step_id)

    def split(self, partner: Mapping, step_id: str) -> object:
        return self.paths.get(step_id)


FACTS = Facts({"welcome": "long"}, {"path": "call-first"})


@pytest.mark.parametrize("text, expected, warnings", [
    ('variant("welcome")', "long", 0),
    ('split("path")', "call-first", 0),
    ('variant("reminder")', None, 0),
    ('split("other")', None, 0),
    ('variant("welcome") == "long" and split("path") == "call-first"', True, 0),
    ('variant("reminder") != "long"', True, 0),
    ('variant("path")', None, 0),  # variants and paths are apart: path has no variant
    ('split("welcome")', None, 0),
    ("variant(partner.step)", None, 0),
    ("split(partner.step)", None, 0),
])
def test_the_answers_of_the_facts(text: str, expected: object, warnings: int) -> None:
    for value, warned in evaluations(text, {}, facts=FACTS):
        assert (value, warned) == (expected, warnings)


@pytest.mark.parametrize("function", ["variant", "split"])
def test_a_step_that_is_not_a_string_is_a_surprise(function: str) -> None:
    for value, warned in evaluations(f"{function}(partner.step)", {"step": 5}, facts=FACTS):
        assert (value, warned) == (None, 1)
    ctx = Context(now=NOW, tz=HELSINKI, facts=FACTS)
    compile_expression(parse(f"{function}(partner.step)"))({"step": ["welcome"]}, ctx)
    assert ctx.warnings == [f"{function}: unexpected list"]


@pytest.mark.parametrize("function", ["variant", "split"])
def test_an_answer_that_is_not_a_string_is_null(function: str) -> None:
    odd = Facts({"welcome": 3}, {"path": True})
    step = "welcome" if function == "variant" else "path"
    for value, warned in evaluations(f'{function}("{step}")', {}, facts=odd):
        assert (value, warned) == (None, 0)


def test_without_facts_no_variant_and_no_path() -> None:
    text = 'variant("welcome") == null and split("path") == null'
    for value, warned in evaluations(text, {}, facts=NO_FACTS):
        assert (value, warned) == (True, 0)


def test_facts_that_know_nothing_of_experiments_answer_null() -> None:
    """Such as a dry run's, which has no history: nothing was sent, so there is no variant and
    no path, and no warning either."""

    class Older:
        def response(self, partner: Mapping, step_id: str) -> str | None:
            return "interested"

    node = parse('coalesce(variant("welcome"), split("path"), response("call"))')
    for compiled in (compile_expression(node), compile_closures(node)):
        ctx = Context(now=NOW, tz=HELSINKI, facts=Older())
        assert compiled({}, ctx) == "interested" and ctx.warnings == []


def test_explain_traces_them() -> None:
    ctx = Context(now=NOW, tz=HELSINKI, facts=FACTS)
    result = explain(parse('variant("welcome") == "long" and split("path") == "email-first"'), {}, ctx)
    assert [(s["expression"], s["value"]) for s in result.trace] == [
        ('variant("welcome")', "long"), ('variant("welcome") == "long"', True),
        ('split("path")', "call-first"), ('split("path") == "email-first"', False),
        ('variant("welcome") == "long" and split("path") == "email-first"', False),
    ]


# --- SQL: an audience that reads them is evaluated in Python -------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize("text, function", [
    ('variant("welcome") == "long"', "variant"),
    ('partner.revenue > 10 and split("path") == "call-first"', "split"),
])
def test_never_pushed_down_to_sql(text: str, function: str, dialect: str) -> None:
    schema = {"id": STRING, "revenue": NUMBER}
    with pytest.raises(Unsupported) as caught:
        to_sql(parse(text), schema, now=NOW, tz=HELSINKI, dialect=dialect)
    assert caught.value.reason == f"{function}() asks the store, not the record"

