"""What ``variant(step)`` and ``split(step)`` read from the store (SPEC §11): the ``variant`` or
``path`` the step's executed run recorded in the partner's current enrollment, under the step's
id or any id it had, up to the time of evaluation; nothing for a skipped run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dsl.compile import compile_expression
from dsl.parser import parse
from dsl.runtime import Context
from engine.api import Engine
from engine.facts import StoreFacts
from engine.store import Enrollment
from tests.engine.test_tick import campaign, partner, partners_csv, workspace

START = "2026-07-01T10:00Z"
STEPS = """\
  - id: welcome
    renamed_from: hello
    email:
      subject: Hi
      body: Hi
      variants: {short: {weight: 1, subject: Yo}, long: {weight: 1}}
  - id: path
    renamed_from: [route, fork]
    split: {call-first: {weight: 30, goto: intro-call}, email-first: {weight: 70}}
  - id: reminder
    email: {subject: Again, body: Again, variants: {a: {weight: 1}, b: {weight: 1}}}
  - id: intro-call
    activity: {kind: call, subject: Call}
"""


@pytest.fixture
def engine(tmp_path: Path, make_engine) -> Engine:
    root = workspace(tmp_path, {"exp": campaign(trigger="", steps=STEPS)},
                     partners_csv(partner("p1"), partner("p2")))
    return make_engine(root, at=START)


def enroll(engine: Engine, pid: str) -> Enrollment:
    at = engine.time(START)
    engine.store.add_enrollment("exp", pid, status="active", origin="manual", source=None, created_at=at,
                                started_at=at, next_step="welcome", due_at=at)
    [enrollment] = engine.store.enrollments_of(pid, "exp")
    return enrollment


def ran(engine: Engine, enrollment: Enrollment, step: str, status: str, detail: dict,
        after: timedelta = timedelta(0)) -> None:
    """Run 1 of the step, as the tick records it: an executed one, or one skipped by its condition."""
    at = engine.time(START) + after
    reason = None if status == "executed" else "condition"
    engine.store.record_step(enrollment.id, step, 1, status, reason, at, at, detail)


def facts(engine: Engine, enrollment: Enrollment | None, at: str = "2026-07-02T10:00Z") -> StoreFacts:
    return StoreFacts(engine.store, engine.plan, "exp", enrollment, engine.time(at))


def test_the_variant_sent_and_the_path_taken(engine: Engine) -> None:
    e = enroll(engine, "p1")
    ran(engine, e, "welcome", "executed", {"variant": "long", "message": "m1"})
    ran(engine, e, "path", "executed", {"path": "call-first", "goto": "intro-call"})
    asked = facts(engine, e)
    assert asked.variant({"id": "p1"}, "welcome") == "long"
    assert asked.split({"id": "p1"}, "path") == "call-first"
    assert asked.variant({"id": "p1"}, "path") is None  # a split's run records a path, not a variant
    assert asked.split({"id": "p1"}, "welcome") is None
    assert asked.variant({"id": "p1"}, "reminder") is None  # not reached yet


def test_under_the_ids_the_step_had(engine: Engine) -> None:
    e = enroll(engine, "p1")
    ran(engine, e, "hello", "executed", {"variant": "short"})
    ran(engine, e, "fork", "executed", {"path": "email-first"})
    asked = facts(engine, e)
    assert asked.variant({"id": "p1"}, "welcome") == "short"
    assert asked.split({"id": "p1"}, "path") == "email-first"


def test_a_skipped_run_sent_nothing_and_took_no_path(engine: Engine) -> None:
    e = enroll(engine, "p1")
    ran(engine, e, "welcome", "skipped", {"variant": "long"})
    ran(engine, e, "path", "skipped", {"path": "call-first"})
    asked = facts(engine, e)
    assert asked.variant({"id": "p1"}, "welcome") is None
    assert asked.split({"id": "p1"}, "path") is None


def test_only_the_current_enrollment_and_only_up_to_now(engine: Engine) -> None:
    first, second = enroll(engine, "p1"), enroll(engine, "p2")
    ran(engine, first, "welcome", "executed", {"variant": "long"})
    ran(engine, first, "path", "executed", {"path": "call-first"}, after=timedelta(days=2))
    assert facts(engine, second).variant({"id": "p2"}, "welcome") is None
    assert facts(engine, None).variant({"id": "p1"}, "welcome") is None
    assert facts(engine, None).split({"id": "p1"}, "path") is None
    assert facts(engine, first, "2026-07-03T09:59Z").split({"id": "p1"}, "path") is None
    assert facts(engine, first, "2026-07-03T10:00Z").split({"id": "p1"}, "path") == "call-first"


def test_expressions_ask_them(engine: Engine) -> None:
    e = enroll(engine, "p1")
    ran(engine, e, "hello", "executed", {"variant": "long"})
    ran(engine, e, "path", "executed", {"path": "call-first"})
    at = engine.time("2026-07-02T10:00Z")
    ctx = Context(now=at, tz=engine.plan.campaigns["exp"].tz, facts=facts(engine, e))
    test = compile_expression(parse('variant("welcome") == "long" and split("path") == "call-first" '
                                    'and variant("reminder") == null'))
    assert test({"id": "p1"}, ctx) is True and ctx.warnings == []
