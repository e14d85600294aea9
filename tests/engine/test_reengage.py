"""Re-engaging the previously treated (SPEC §11): ``previously_treated: 30d`` on an exclusive
campaign, and ``was_in_campaign(id, within)`` in expressions.

The rules (``_exclusivity``), the campaign model and the checker are tested without a store;
the tick tests run on both stores, with a fixed clock, on workspaces built with the helpers of
``tests/engine/test_tick.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.enrollment import PastEnrollment, _exclusivity, eligible_as_member, eligible_for_trigger
from campaigns.building import build
from campaigns.model import Campaign
from dsl.checker import Scope, check_text
from dsl.types import NUMBER, STRING, record
from dsl.yamlload import load_yaml
from engine.testing import rewrite
from tests.engine.test_tick import campaign, email, enrollments, partner, partners_csv, sent, wait, workspace

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
B = "b"


def rules(treated: str | timedelta, exclusive: bool = True) -> Campaign:
    return Campaign.model_validate({"exclusive": exclusive, "previously_treated": treated, "reenroll": "after_exit"})


def ended(cid: str, ago: timedelta, status: str = "finished", exclusive: bool = True) -> PastEnrollment:
    """An enrollment in ``cid`` that ended ``ago`` before NOW (and started 10 days before that)."""
    return PastEnrollment(cid, 1, status, NOW - ago - timedelta(days=10), NOW - ago, exclusive)


def current(cid: str, status: str = "active") -> PastEnrollment:
    return PastEnrollment(cid, 1, status, NOW - timedelta(days=100), None, True)


# --- the model -----------------------------------------------------------------------------------


@pytest.mark.no_store
@pytest.mark.parametrize("written, read", [
    ("exclude", "exclude"), ("include", "include"), ("30d", timedelta(days=30)), ("2w", timedelta(weeks=2)),
    ("12h", timedelta(hours=12)), ("0d", timedelta(0)),
])
def test_previously_treated_is_exclude_include_or_a_duration(written: str, read) -> None:
    assert Campaign.model_validate({"previously_treated": written}).previously_treated == read
    assert Campaign.model_validate({}).previously_treated == "exclude"


@pytest.mark.no_store
@pytest.mark.parametrize("written, message", [
    ("sometimes", "previously_treated is exclude, include or a duration such as 30d, not 'sometimes'"),
    ("30 days", "previously_treated is exclude, include or a duration such as 30d, not '30 days'"),
    ("-30d", "previously_treated is exclude, include or a duration such as 30d, not '-30d'"),
    ("30", "previously_treated is exclude, include or a duration such as 30d, not '30'"),
    ("true", "previously_treated is exclude, include or a duration such as 30d, not 'true'"),
    ("", "previously_treated is exclude, include or a duration such as 30d, not 'null'"),
    ("999999d", "999999d is too long: a duration is at most 36500d (100 years)"),
])
def test_anything_else_is_a_located_error(written: str, message: str) -> None:
    model, problems = build(Campaign, load_yaml("c.yaml", f"exclusive: true\npreviously_treated: {written}\n"))
    assert model is None
    assert [(d.message, d.span.line, d.span.col) for d in problems] == [(message, 2, 21 if written else 20)]


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.no_store
@pytest.mark.parametrize("history, ok, reason", [
    ([], True, ""),
    ([ended("a", timedelta(days=30))], True, ""),  # exactly 30 days ago: long enough
    ([ended("a", timedelta(days=30, seconds=1))], True, ""),
    ([ended("a", timedelta(days=30) - timedelta(seconds=1))], False,
     "treated by exclusive campaign a until less than 30d ago (previously_treated: 30d)"),
    ([ended("a", timedelta(days=2), status="removed")], False,  # a removal ends a treatment too
     "treated by exclusive campaign a until less than 30d ago (previously_treated: 30d)"),
    # the last of them counts, and is the one named
    ([ended("a", timedelta(days=90)), ended("c", timedelta(days=5)), ended("d", timedelta(days=60))], False,
     "treated by exclusive campaign c until less than 30d ago (previously_treated: 30d)"),
    ([ended("a", timedelta(days=90)), ended("c", timedelta(days=31))], True, ""),
    # one still going waits, whenever the other one ended
    ([ended("a", timedelta(days=90)), current("c")], False, "in exclusive campaign c"),
    ([current("c", "scheduled")], False, "in exclusive campaign c"),
    ([current("c", "paused")], False, "in exclusive campaign c"),
    # non-exclusive campaigns, and the campaign itself, do not count
    ([ended("news", timedelta(days=1), exclusive=False)], True, ""),
    ([ended(B, timedelta(days=1))], True, ""),
])
def test_previously_treated_with_a_duration(history: list[PastEnrollment], ok: bool, reason: str) -> None:
    verdict = _exclusivity(B, rules("30d"), tuple(history), NOW)
    assert (bool(verdict), verdict.reason) == (ok, reason)
    for other in (eligible_for_trigger(B, rules("30d"), history, NOW), eligible_as_member(B, rules("30d"), history, NOW)):
        assert (bool(other), other.reason) == (ok, reason)


@pytest.mark.no_store
def test_exclude_include_and_non_exclusive_campaigns_are_as_before() -> None:
    history = (ended("a", timedelta(days=1)),)
    assert _exclusivity(B, rules("exclude"), history, NOW).reason == "previously treated by exclusive campaign a"
    assert _exclusivity(B, rules("include"), history, NOW)
    assert _exclusivity(B, rules("30d", exclusive=False), history, NOW)  # only an exclusive campaign asks
    assert _exclusivity(B, rules("0d"), history, NOW)  # 0d is include
    assert _exclusivity(B, rules("12h"), history, NOW)
    assert _exclusivity(B, rules("2d"), history, NOW).reason == \
        "treated by exclusive campaign a until less than 2d ago (previously_treated: 2d)"


# --- the checker ---------------------------------------------------------------------------------

SCOPE = Scope(record({"id": STRING, "name": STRING, "revenue": NUMBER}), steps=("hello",), campaigns=("a", "b"))


def problems(text: str) -> list[str]:
    _, found = check_text(text, SCOPE)
    return [f"{d.span.col} {d.message}" for d in found]


@pytest.mark.no_store
@pytest.mark.parametrize("text", [
    'was_in_campaign("a")',
    'was_in_campaign("a", 30d)',
    'not was_in_campaign("a", 7d) and was_in_campaign("b", 12h + 30m)',
    'was_in_campaign("a", 0d)',
])
def test_was_in_campaign_takes_one_or_two_arguments(text: str) -> None:
    assert problems(text) == []


@pytest.mark.no_store
@pytest.mark.parametrize("text, expected", [
    ('was_in_campaign("a", "abc")', ["22 was_in_campaign() needs a duration, but this is a string"]),
    ('was_in_campaign("a", 30)', ["22 was_in_campaign() needs a duration, but this is a number"]),
    ('was_in_campaign("a", partner.name)', ["22 was_in_campaign() needs a duration, but this is a string"]),
    ('was_in_campaign("a", now)', ["22 was_in_campaign() needs a duration, but this is a datetime"]),
    ('was_in_campaign("a", 30d, 1d)', ["1 was_in_campaign() takes 1 or 2 arguments, got 3"]),
    ('was_in_campaign()', ["1 was_in_campaign() takes 1 or 2 arguments, got 0"]),
    ('was_in_campaign("x", 30d)', ["17 unknown campaign 'x'"]),
    ('was_in_campaign("a", -7d)',
     ['22 the duration cannot be negative: was_in_campaign("...", 7d) looks back 7 days from now']),
    # the other functions' messages are as before
    ('in_campaign("a", 30d)', ["1 in_campaign() takes 1 argument, got 2"]),
    ('coalesce() == 1', ["1 coalesce() takes at least 1 argument, got 0"]),
])
def test_was_in_campaign_mistakes(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


@pytest.mark.no_store
def test_the_runtime_passes_within_to_the_facts_and_refuses_a_negative_one() -> None:
    from dsl.compile import compile_expression
    from dsl.parser import inline, parse
    from dsl.runtime import Context

    asked = []

    class Facts:
        def was_in_campaign(self, partner, campaign_id, *within):
            asked.append((campaign_id, *within))
            return True

    def run(text: str) -> tuple[object, list[str]]:
        ctx = Context(now=NOW, tz=UTC, facts=Facts())
        return compile_expression(parse(text, inline(text)))({}, ctx), ctx.warnings

    assert run('was_in_campaign("a")') == (True, [])
    assert run('was_in_campaign("a", 7d)') == (True, [])
    assert run('was_in_campaign("a", 1d - 1d)') == (True, [])
    assert run('was_in_campaign("a", 1d - 2d)') == (False, ["was_in_campaign: negative duration"])
    assert asked == [("a",), ("a", timedelta(days=7)), ("a", timedelta(0))]


# --- through ticks, on both stores ---------------------------------------------------------------

EXCLUSIVE_A = campaign(steps=email("a-mail") + wait("2d"), audience='gold: partner.tier == "gold"',
                       extra="exclusive: true\n")
EXCLUSIVE_B = campaign(steps=email("b-mail"), extra="exclusive: true\npreviously_treated: 30d\n")
FRESH_C = campaign(steps=email("c-mail"), audience='fresh: not was_in_campaign("a", 7d)')


def test_previously_treated_30d_enrolls_thirty_days_after_the_other_exclusive_campaign_ended(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1"), partner("p2", tier="silver")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    rewrite(engine.root / "campaigns" / "b.yaml", EXCLUSIVE_B)
    assert engine.tick("2026-07-02T00:00Z").enrolled == 1  # p2 (never treated); p1 is still in a
    assert engine.tick("2026-07-03T00:00Z").enrolled == 0  # a finishes p1 at this very tick
    assert enrollments(engine, "p1", "a")[0][2:6] == ("finished", "completed", "2026-07-01T00:00:00Z",
                                                      "2026-07-03T00:00:00Z")
    assert engine.explain("b", "p1", "2026-07-20T00:00Z")["trigger"]["reason"] == \
        "treated by exclusive campaign a until less than 30d ago (previously_treated: 30d)"
    # a full sample, then ticks between full samples: p1 becomes eligible at 30 days sharp
    assert engine.tick("2026-08-01T12:00Z").enrolled == 0
    assert engine.tick("2026-08-01T23:00Z").enrolled == 0
    assert engine.tick("2026-08-02T00:00Z").enrolled == 1
    assert enrollments(engine, "p1", "b") == [
        ("b", 1, "finished", "completed", "2026-08-02T00:00:00Z", "2026-08-02T00:00:00Z", "trigger")]
    assert sent(engine, "email") == [("p1", "a-mail", "2026-07-01T00:00:00Z"), ("p2", "b-mail", "2026-07-02T00:00:00Z"),
                                     ("p1", "b-mail", "2026-08-02T00:00:00Z")]


def test_a_removal_from_the_other_campaign_counts_from_the_removal(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.remove("a", "p1", at="2026-07-01T06:00Z")
    rewrite(engine.root / "campaigns" / "b.yaml", EXCLUSIVE_B)
    rewrite(engine.root / "campaigns" / "a.yaml", EXCLUSIVE_A.replace("name: Test", "name: Test\nactive: false"))
    assert engine.tick("2026-07-31T05:00Z").enrolled == 0
    assert engine.tick("2026-07-31T06:00Z").enrolled == 1
    assert [e[:3] for e in enrollments(engine, "p1")] == [("a", 1, "removed"), ("b", 1, "finished")]


def test_not_was_in_campaign_within_seven_days(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1"), partner("p2", tier="silver")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    rewrite(engine.root / "campaigns" / "c.yaml", FRESH_C)
    assert engine.tick("2026-07-02T00:00Z").enrolled == 1  # p2, never in a; p1 is in a now
    engine.tick("2026-07-03T00:00Z")  # p1 finishes a
    assert engine.tick("2026-07-09T23:00Z").enrolled == 0
    assert engine.tick("2026-07-10T00:00Z").enrolled == 0  # finished exactly 7 days ago: still within
    assert engine.tick("2026-07-10T00:00:01Z").enrolled == 1
    assert [(e[0], e[4]) for e in enrollments(engine, "p1", "c")] == [("c", "2026-07-10T00:00:01Z")]
    assert [(e[0], e[4]) for e in enrollments(engine, "p2", "c")] == [("c", "2026-07-02T00:00:00Z")]


def test_was_in_campaign_within_through_the_store(tmp_path, make_engine):
    """The store's answer at the edges: started after now, still active, ended before the window."""
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1"), partner("p2", tier="silver")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-03T00:00Z")  # p1: in a from 1 July to 3 July
    store = engine.store
    at = datetime(2026, 7, 10, tzinfo=UTC)
    assert store.was_enrolled("p1", "a", at)
    assert store.was_enrolled("p1", "a", at, timedelta(days=7))
    assert not store.was_enrolled("p1", "a", at, timedelta(days=7) - timedelta(seconds=1))
    assert not store.was_enrolled("p1", "a", at, timedelta(0))
    assert store.was_enrolled("p1", "a", datetime(2026, 7, 2, tzinfo=UTC), timedelta(0))  # active then
    assert not store.was_enrolled("p1", "a", datetime(2026, 6, 30, tzinfo=UTC), timedelta(days=7))  # not yet started
    assert store.was_enrolled("p1", "a", at, timedelta.max)  # further back than dates go: since ever
    assert not store.was_enrolled("p2", "a", at, timedelta(days=700))
