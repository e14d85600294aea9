"""Operations on enrollments through the ``Engine`` API (SPEC §7): start (now or scheduled),
pause, resume, remove (one partner or many, all or nothing), skip and run again; every allowed
row of ``TRANSITIONS`` that an operation reaches and every refused pair, with the exact status
afterwards; how operations interact with ticks and the audience trigger; roles; the audit log.

Each test builds a small workspace under ``tmp_path``: UTC, four partners (p4 without consent),
a campaign ``drip`` with an audience trigger, and a campaign ``manual`` without a trigger, both
with the steps ``hello`` (email), 1 day, ``nudge`` (SMS), 1 day, ``call`` (activity).
"""

from __future__ import annotations

import getpass
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from campaigns.enrollment import TRANSITIONS, Operation, Refused, Status
from engine.api import Engine
from engine.operations import UnknownName

UTC = timezone.utc
T0 = "2026-07-01T00:00"

ENGINE_YAML = """\
timezone: UTC
store: sqlite:///.engine/state.db
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    phone: string
    ok: bool
consent:
  email: partner.ok
  sms: partner.ok
channels:
  email: {transport: file}
  sms: {transport: file}
"""

USERS_YAML = """\
users:
  alice: {roles: [marketing]}
  bob: {roles: [viewer]}
  carol: {roles: [viewer, marketing]}
"""

PARTNERS_CSV = """\
id,name,email,phone,ok
p1,Ann,ann@example.com,+358401,true
p2,Ben,ben@example.com,+358402,true
p3,Cid,cid@example.com,+358403,true
p4,Dee,dee@example.com,+358404,false
"""

STEPS = """\
steps:
  - id: hello
    email:
      subject: "Hello {{ partner.name }}"
      template: hello.txt.j2
  - wait: 1d
  - id: nudge
    sms: {text: "Still there, {{ partner.name }}?"}
  - wait: 1d
  - id: call
    activity:
      kind: call
      assignee: desk@example.com
      subject: "Call {{ partner.name }}"
      responses:
        done: {result: successful}
"""

DRIP_YAML = """\
name: Drip
audience:
  rulesets:
    everyone: "true"
trigger: {audience: true}
""" + STEPS

MANUAL_YAML = """\
name: Manual
audience:
  rulesets:
    everyone: "true"
""" + STEPS


def build_workspace(root: Path, *, users: bool = False) -> Path:
    """A small workspace at ``root`` (see the module docstring)."""
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "engine.yaml").write_text(ENGINE_YAML + (USERS_YAML if users else ""), encoding="utf-8")
    (root / "partners.csv").write_text(PARTNERS_CSV, encoding="utf-8")
    (root / "campaigns" / "drip.yaml").write_text(DRIP_YAML, encoding="utf-8")
    (root / "campaigns" / "manual.yaml").write_text(MANUAL_YAML, encoding="utf-8")
    (root / "templates" / "hello.txt.j2").write_text("Hi {{ partner.name }}, welcome.\n", encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _no_engine_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Who operates comes from the test, never from the environment."""
    monkeypatch.delenv("ENGINE_USER", raising=False)


@pytest.fixture
def new_engine(tmp_path: Path, make_engine) -> Callable[..., Engine]:
    """An engine on a fresh workspace at T0, after the first tick (which imports the partners
    and enrolls all four of them in ``drip``)."""
    count = 0

    def make(*, users: bool = False, tick: bool = True) -> Engine:
        nonlocal count
        count += 1
        source = build_workspace(tmp_path / f"source-{count}", users=users)
        engine = make_engine(source, at=T0)
        if tick:
            engine.tick()
        return engine

    return make


@pytest.fixture
def engine(new_engine) -> Engine:
    return new_engine()


# --- helpers ------------------------------------------------------------------------------------


def t(text: str) -> datetime:
    """A UTC time written without its zone."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def z(text: str) -> str:
    """The stored form of a UTC time: ``2026-07-01T00:00`` → ``2026-07-01T00:00:00Z``."""
    return t(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def enrollments(engine: Engine, campaign: str, partner: str) -> list[dict]:
    return engine.status(partner=partner, campaign=campaign)["enrollments"]


def status_of(engine: Engine, campaign: str, partner: str) -> str:
    """The status ``start`` is checked against: the current enrollment's, else the latest
    one's, else none."""
    found = enrollments(engine, campaign, partner)
    current = [e for e in found if e["status"] in ("scheduled", "active", "paused")]
    latest = current[-1] if current else found[-1] if found else None
    return latest["status"] if latest else "none"


def latest(engine: Engine, campaign: str, partner: str) -> dict:
    found = enrollments(engine, campaign, partner)
    assert found, f"{partner} has no enrollment in {campaign}"
    return found[-1]


def steps(engine: Engine, campaign: str, partner: str, number: int | None = None) -> dict[tuple[str, Any], dict]:
    """The steps of an enrollment by (step, run)."""
    view = engine.steps(campaign, partner, number)
    assert view is not None
    return {(s["step"], s["run"]): s for s in view["steps"]}


def step(engine: Engine, campaign: str, partner: str, step_id: str, number: int | None = None) -> dict:
    """The latest row of one step in the steps view."""
    view = engine.steps(campaign, partner, number)
    assert view is not None
    rows = [s for s in view["steps"] if s["step"] == step_id]
    assert rows, f"no step {step_id}"
    return rows[-1]


def messages(engine: Engine, channel: str, partner: str, campaign: str | None = None) -> list[dict]:
    return engine.outbox(channel, partner=partner, campaign=campaign)


def calls(engine: Engine, campaign: str, partner: str) -> list[dict]:
    return engine.activities(campaign, partner)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything an operation could change: every enrollment, every step, the outbox and its
    files, activities, and the audit log."""
    partners = ("p1", "p2", "p3", "p4")
    return {
        "status": [engine.status(partner=p) for p in partners],
        "steps": [engine.steps(c, p) for c in ("drip", "manual") for p in partners],
        "outbox": engine.outbox(),
        "sent": (engine.sent("email"), engine.sent("sms")),
        "activities": engine.activities(),
        "log": engine.log(),
    }


def assert_refused(engine: Engine, partner: str | None, campaign: str | None, call: Callable[[], Any]) -> str:
    """``call`` raises Refused with a one-line message naming the partner and the campaign,
    and changes nothing at all."""
    before = snapshot(engine)
    with pytest.raises(Refused) as info:
        call()
    message = info.value.message
    assert str(info.value) == message
    assert message.strip() and "\n" not in message and "\r" not in message, message
    if partner is not None:
        assert re.search(rf"\b{re.escape(partner)}\b", message), message
    if campaign is not None:
        assert re.search(rf"\b{re.escape(campaign)}\b", message), message
    after = snapshot(engine)
    assert after["log"] == before["log"]
    assert after == before
    return message


def last_log(engine: Engine) -> dict:
    return engine.log()[-1]


# --- bringing p1 in `manual` to each status -------------------------------------------------------

C, P = "manual", "p1"
SCHEDULED_FOR = "2026-07-10T00:00"


def to_none(engine: Engine) -> None:
    engine.clock.set("2026-07-01T01:00")


def to_scheduled(engine: Engine) -> None:
    engine.start(C, P, on=SCHEDULED_FOR, user="alice", at="2026-07-01T00:30")
    engine.clock.set("2026-07-01T01:00")


def to_active(engine: Engine) -> None:
    engine.start(C, P, user="alice", at=T0)
    engine.tick(T0)  # hello executed; nudge due 07-02, call after it
    engine.clock.set("2026-07-01T01:00")


def to_paused(engine: Engine) -> None:
    to_active(engine)
    engine.pause(C, P, user="alice", at="2026-07-01T00:30")


def to_finished(engine: Engine) -> None:
    to_active(engine)
    engine.tick("2026-07-03T00:00")  # nudge 07-02, call 07-03: completed
    engine.clock.set("2026-07-03T01:00")


def to_removed(engine: Engine) -> None:
    to_active(engine)
    engine.remove(C, P, user="alice", at="2026-07-01T00:30")


SETUP: dict[str, Callable[[Engine], None]] = {
    "none": to_none,
    "scheduled": to_scheduled,
    "active": to_active,
    "paused": to_paused,
    "finished": to_finished,
    "removed": to_removed,
}


def do(engine: Engine, operation: str) -> Any:
    """The operation on p1 in `manual`, as of the engine's clock. Skip acts on `call` (pending
    in an active or paused enrollment), rerun on `hello` (executed once it started)."""
    if operation == "start":
        return engine.start(C, P, user="alice")
    if operation == "schedule":
        return engine.start(C, P, on=engine.clock.now() + timedelta(days=5), user="alice")
    if operation in ("pause", "resume", "remove"):
        return getattr(engine, operation)(C, P, user="alice")
    if operation == "skip":
        return engine.skip(C, "call", P, user="alice")
    if operation == "rerun":
        return engine.rerun(C, "hello", P, user="alice")
    raise AssertionError(operation)


USER_OPERATIONS = ("start", "schedule", "pause", "resume", "remove", "skip", "rerun")

ALLOWED = [
    ("start", "none", "active"),
    ("start", "finished", "active"),
    ("start", "removed", "active"),
    ("schedule", "none", "scheduled"),
    ("schedule", "finished", "scheduled"),
    ("schedule", "removed", "scheduled"),
    ("pause", "active", "paused"),
    ("resume", "paused", "active"),
    ("remove", "scheduled", "removed"),
    ("remove", "active", "removed"),
    ("remove", "paused", "removed"),
    ("skip", "active", "active"),
    ("skip", "paused", "paused"),
    ("rerun", "active", "active"),
    ("rerun", "paused", "paused"),
    ("rerun", "finished", "finished"),
]
ENGINE_ONLY = {("activate", "scheduled"), ("finish", "active")}  # reached by ticks, tested below

REFUSED = [(op, s.value) for op in USER_OPERATIONS for s in Status
           if (op, s.value) not in {(o, f) for o, f, _ in ALLOWED}]


def test_the_tests_cover_every_row_of_the_table():
    rows = {(Operation(op), Status(before)): Status(after) for op, before, after in ALLOWED}
    assert set(rows) | {(Operation(o), Status(s)) for o, s in ENGINE_ONLY} == set(TRANSITIONS)
    for key, after in rows.items():
        assert TRANSITIONS[key] == after
    assert len(REFUSED) == len(USER_OPERATIONS) * len(Status) - len(ALLOWED)
    for op, before in REFUSED:
        assert (Operation(op), Status(before)) not in TRANSITIONS


@pytest.mark.parametrize("setup", list(SETUP))
def test_each_setup_reaches_its_status(engine, setup):
    SETUP[setup](engine)
    assert status_of(engine, C, P) == setup
    if setup == "finished":
        assert latest(engine, C, P)["reason"] == "completed"
    if setup == "removed":
        assert latest(engine, C, P)["reason"] == "removed"


# --- 1. every allowed row -------------------------------------------------------------------------


@pytest.mark.parametrize("operation,before,after", ALLOWED, ids=[f"{o}-{b}" for o, b, _ in ALLOWED])
def test_allowed_operation_gives_the_status_of_the_table(engine, operation, before, after):
    SETUP[before](engine)
    assert status_of(engine, C, P) == before
    numbers_before = [e["number"] for e in enrollments(engine, C, P)]
    log_before = len(engine.log())
    now = engine.clock.now()

    result = do(engine, operation)

    assert status_of(engine, C, P) == after
    assert TRANSITIONS[(Operation(operation), Status(before))] == Status(after)
    numbers = [e["number"] for e in enrollments(engine, C, P)]
    entry = last_log(engine)
    assert len(engine.log()) == log_before + 1
    assert (entry["user"], entry["campaign"], entry["partner"], entry["at"]) == ("alice", C, P, z(now.strftime("%Y-%m-%dT%H:%M")))
    if operation in ("start", "schedule"):
        # a new enrollment, the next number
        assert numbers == numbers_before + [len(numbers_before) + 1]
        assert result.status == after and result.number == len(numbers)
        assert result.origin == "manual"
        assert entry["action"] == "start" and entry["detail"]["status"] == after
        if operation == "start":
            assert result.started_at == now and result.due_at == now and result.next_step == "hello"
        else:
            assert result.started_at == now + timedelta(days=5) and result.due_at is None
    else:
        assert numbers == numbers_before  # the same enrollment
        assert entry["action"] == operation
    if operation in ("pause", "resume", "remove"):
        assert [e.status for e in result] == [after]
        assert result[0].number == numbers[-1]
    if operation == "remove":
        assert latest(engine, C, P)["reason"] == "removed"
        assert latest(engine, C, P)["finished_at"] == z(now.strftime("%Y-%m-%dT%H:%M"))
    if operation == "skip":
        assert result.status == after
        row = step(engine, C, P, "call")
        assert (row["status"], row["reason"]) == ("skipped", "skipped_by_user")
    if operation == "rerun":
        assert result == "executed"
        runs = [m["id"] for m in messages(engine, "email", P, C)]
        assert runs == ["manual:p1:1:hello:1", "manual:p1:1:hello:2"]


def test_activate_and_finish_rows_are_reached_by_ticks(engine):
    """(activate, scheduled) → active and (finish, active) → finished: the engine's own rows."""
    engine.start(C, P, on="2026-07-02T00:00", user="alice", at=T0)
    assert status_of(engine, C, P) == "scheduled"
    engine.tick("2026-07-02T00:00")
    assert status_of(engine, C, P) == "active"
    engine.tick("2026-07-04T00:00")
    e = latest(engine, C, P)
    assert (e["status"], e["reason"], e["finished_at"]) == ("finished", "completed", z("2026-07-04T00:00"))


# --- 1. every refused pair ------------------------------------------------------------------------


@pytest.mark.parametrize("operation,before", REFUSED, ids=[f"{o}-{b}" for o, b in REFUSED])
def test_refused_operation_changes_nothing(engine, operation, before):
    SETUP[before](engine)
    assert status_of(engine, C, P) == before
    message = assert_refused(engine, P, C, lambda: do(engine, operation))
    assert status_of(engine, C, P) == before
    if before == "none":
        assert enrollments(engine, C, P) == []
    if operation in ("start", "schedule"):
        assert f"already has a {before} enrollment" in message or f"already has an {before} enrollment" in message


@pytest.mark.parametrize("before,hint", [
    ("active", "remove it first or wait until it finishes"),
    ("paused", "resume it, or remove it first"),
    ("scheduled", "remove it first to start at another time"),
])
def test_start_refusal_says_what_to_do_instead(engine, before, hint):
    SETUP[before](engine)
    message = assert_refused(engine, P, C, lambda: engine.start(C, P, user="alice"))
    article = "an" if before[0] in "aeiou" else "a"
    assert message == f"partner p1 already has {article} {before} enrollment in manual; {hint}"


def test_pause_of_a_scheduled_enrollment_says_remove_it(engine):
    to_scheduled(engine)
    message = assert_refused(engine, P, C, lambda: engine.pause(C, P, user="alice"))
    assert message == ("cannot pause the enrollment of partner p1 in manual: it is scheduled; "
                       "remove it to cancel it, or pause it once it has started")


def test_operations_without_any_enrollment_say_so(engine):
    for operation in ("pause", "resume", "remove"):
        message = assert_refused(engine, "p2", C, lambda: getattr(engine, operation)(C, "p2", user="alice"))
        assert message == f"partner p2 has no enrollment in manual to {operation}"
    assert assert_refused(engine, "p2", C, lambda: engine.skip(C, "nudge", "p2", user="alice")) == \
        "partner p2 has no enrollment in manual to skip"
    assert assert_refused(engine, "p2", C, lambda: engine.rerun(C, "hello", "p2", user="alice")) == \
        "partner p2 has no enrollment in manual to rerun"


def test_rerun_on_a_removed_enrollment_says_start_it_again(engine):
    to_removed(engine)
    message = assert_refused(engine, P, C, lambda: engine.rerun(C, "hello", P, user="alice"))
    assert message == ("cannot rerun step hello of partner p1 in manual: its enrollment is removed; "
                       "a removed enrollment keeps no progress; start it again instead")


@pytest.mark.parametrize("before", ["active", "paused"])
def test_skip_of_an_executed_step_is_refused(engine, before):
    SETUP[before](engine)
    assert step(engine, C, P, "hello")["status"] == "executed"
    message = assert_refused(engine, P, C, lambda: engine.skip(C, "hello", P, user="alice"))
    assert message == ("cannot skip step hello of partner p1 in manual: it is executed, "
                       "and only a pending step can be skipped")
    assert status_of(engine, C, P) == before


@pytest.mark.parametrize("before", ["active", "paused"])
def test_rerun_of_a_pending_step_is_refused(engine, before):
    SETUP[before](engine)
    for pending in ("nudge", "call"):
        assert step(engine, C, P, pending)["status"] == "pending"
        message = assert_refused(engine, P, C, lambda: engine.rerun(C, pending, P, user="alice"))
        assert message == (f"cannot rerun step {pending} of partner p1 in manual: it is pending, "
                           "and only an executed step can be run again")
    assert status_of(engine, C, P) == before


def test_skip_twice_and_rerun_of_a_skipped_step_are_refused(engine):
    to_active(engine)
    engine.skip(C, "call", P, user="alice")
    assert assert_refused(engine, P, C, lambda: engine.skip(C, "call", P, user="alice")) == \
        "cannot skip step call of partner p1 in manual: it is skipped, and only a pending step can be skipped"
    assert assert_refused(engine, P, C, lambda: engine.rerun(C, "call", P, user="alice")) == \
        "cannot rerun step call of partner p1 in manual: it is skipped, and only an executed step can be run again"


def test_rerun_of_a_step_skipped_for_want_of_consent_is_refused(engine):
    """p4 has no consent: drip's hello was skipped at T0, so there is nothing to run again."""
    row = step(engine, "drip", "p4", "hello")
    assert (row["status"], row["reason"]) == ("skipped", "no_consent")
    assert assert_refused(engine, "p4", "drip", lambda: engine.rerun("drip", "hello", "p4", user="alice")) == \
        "cannot rerun step hello of partner p4 in drip: it is skipped, and only an executed step can be run again"


def test_skip_on_a_finished_enrollment_is_refused(engine):
    to_finished(engine)
    for step_id in ("hello", "nudge", "call"):
        message = assert_refused(engine, P, C, lambda: engine.skip(C, step_id, P, user="alice"))
        assert message == (f"cannot skip step {step_id} of partner p1 in manual: its enrollment is finished; "
                           "start it again for a new enrollment")
    assert status_of(engine, C, P) == "finished"


def test_skip_of_a_step_the_enrollment_will_not_reach_is_refused(engine):
    to_removed(engine)
    message = assert_refused(engine, P, C, lambda: engine.skip(C, "nudge", P, user="alice"))
    assert message == ("cannot skip step nudge of partner p1 in manual: "
                       "the enrollment will not reach it (it is past it or finished)")


def test_unknown_names_change_nothing(engine):
    to_active(engine)
    before = snapshot(engine)
    with pytest.raises(UnknownName, match="unknown campaign 'manul'; did you mean 'manual'"):
        engine.start("manul", P, user="alice")
    with pytest.raises(UnknownName, match="unknown partner 'p9'"):
        engine.start(C, "p9", user="alice")
    with pytest.raises(UnknownName, match="unknown partner 'p9'"):
        engine.pause(C, "p9", user="alice")
    with pytest.raises(UnknownName, match="has no step 'nudg'"):
        engine.skip(C, "nudg", P, user="alice")
    with pytest.raises(UnknownName, match="has no step 'helo'"):
        engine.rerun(C, "helo", P, user="alice")
    with pytest.raises(UnknownName):
        engine.remove(C, [], user="alice")
    assert snapshot(engine) == before


# --- 2. pause, resume, remove and the audience trigger ----------------------------------------------


def test_pause_keeps_the_trigger_from_enrolling_again_and_nothing_advances(engine):
    assert [e["number"] for e in enrollments(engine, "drip", "p1")] == [1]
    [paused] = engine.pause("drip", "p1", user="alice", at="2026-07-01T01:00")
    assert (paused.status, paused.paused_at, paused.due_at) == ("paused", t("2026-07-01T01:00"), t("2026-07-02T00:00"))

    for at in ("2026-07-01T02:00", "2026-07-02T00:00", "2026-07-03T00:00", "2026-07-10T00:00"):
        report = engine.tick(at)
        assert report.enrolled == 0, at
        assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "paused")]
    assert messages(engine, "sms", "p1") == []
    assert calls(engine, "drip", "p1") == []
    assert [m["id"] for m in messages(engine, "email", "p1")] == ["drip:p1:1:hello:1"]
    assert step(engine, "drip", "p1", "nudge")["status"] == "pending"
    # the others went on meanwhile
    assert [m["at"] for m in messages(engine, "sms", "p2")] == [z("2026-07-02T00:00")]
    assert latest(engine, "drip", "p2")["status"] == "finished"


def test_resume_runs_the_step_that_fell_due_at_the_resume_time_and_later_waits_count_from_there(engine):
    engine.pause("drip", "p1", user="alice", at="2026-07-01T12:00")
    engine.tick("2026-07-02T00:00")
    engine.tick("2026-07-05T00:00")
    [resumed] = engine.resume("drip", "p1", user="alice", at="2026-07-05T10:30")
    assert (resumed.status, resumed.paused_at, resumed.next_step) == ("active", None, "nudge")
    assert resumed.due_at == t("2026-07-05T10:30")

    engine.tick("2026-07-05T10:30")
    [sms] = messages(engine, "sms", "p1")
    assert (sms["id"], sms["at"]) == ("drip:p1:1:nudge:1", z("2026-07-05T10:30"))
    assert [line["at"] for line in engine.sent("sms") if line["partner"] == "p1"] == [z("2026-07-05T10:30")]
    nudge = step(engine, "drip", "p1", "nudge")
    assert (nudge["status"], nudge["due_at"], nudge["at"]) == ("executed", z("2026-07-05T10:30"), z("2026-07-05T10:30"))

    engine.tick("2026-07-06T10:29")
    assert calls(engine, "drip", "p1") == []
    assert latest(engine, "drip", "p1")["due_at"] == z("2026-07-06T10:30")
    engine.tick("2026-07-06T10:30")
    [call] = calls(engine, "drip", "p1")
    assert call["created_at"] == z("2026-07-06T10:30")
    e = latest(engine, "drip", "p1")
    assert (e["status"], e["reason"], e["finished_at"]) == ("finished", "completed", z("2026-07-06T10:30"))


def test_resume_then_one_late_tick_gives_the_same_times(engine):
    """Granularity: after the resume, a single tick much later sends as of the due times."""
    engine.pause("drip", "p1", user="alice", at="2026-07-01T12:00")
    engine.resume("drip", "p1", user="alice", at="2026-07-04T08:00")
    engine.tick("2026-07-20T00:00")
    assert [m["at"] for m in messages(engine, "sms", "p1")] == [z("2026-07-04T08:00")]
    assert [c["created_at"] for c in calls(engine, "drip", "p1")] == [z("2026-07-05T08:00")]
    assert latest(engine, "drip", "p1")["finished_at"] == z("2026-07-05T08:00")


def test_resume_before_the_step_falls_due_keeps_its_due_time(engine):
    engine.pause("drip", "p1", user="alice", at="2026-07-01T06:00")
    engine.tick("2026-07-01T08:00")
    [resumed] = engine.resume("drip", "p1", user="alice", at="2026-07-01T12:00")
    assert resumed.due_at == t("2026-07-02T00:00")
    engine.tick("2026-07-03T00:00")
    assert [m["at"] for m in messages(engine, "sms", "p1")] == [z("2026-07-02T00:00")]
    assert [c["created_at"] for c in calls(engine, "drip", "p1")] == [z("2026-07-03T00:00")]


def test_remove_lets_the_trigger_enroll_again_from_the_first_step(engine):
    [removed] = engine.remove("drip", "p1", user="alice", at="2026-07-01T06:00")
    assert (removed.status, removed.reason, removed.finished_at, removed.due_at) == \
        ("removed", "removed", t("2026-07-01T06:00"), None)

    # not at the very instant it was removed (SPEC: a second tick at the same time does nothing)
    assert engine.tick("2026-07-01T06:00").enrolled == 0
    assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "removed")]

    report = engine.tick("2026-07-01T07:00")
    assert report.enrolled == 1
    assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "removed"), (2, "active")]
    second = latest(engine, "drip", "p1")
    assert (second["origin"], second["started_at"]) == ("trigger", z("2026-07-01T07:00"))
    assert [(m["id"], m["at"]) for m in messages(engine, "email", "p1")] == [
        ("drip:p1:1:hello:1", z("2026-07-01T00:00")),
        ("drip:p1:2:hello:1", z("2026-07-01T07:00")),
    ]
    assert step(engine, "drip", "p1", "hello", number=2)["status"] == "executed"

    engine.tick("2026-07-05T00:00")
    # the removed enrollment never advanced; the new one ran every step from its own start
    assert [(m["id"], m["at"]) for m in messages(engine, "sms", "p1")] == [("drip:p1:2:nudge:1", z("2026-07-02T07:00"))]
    assert [c["created_at"] for c in calls(engine, "drip", "p1")] == [z("2026-07-03T07:00")]
    assert steps(engine, "drip", "p1", number=1)[("nudge", None)]["status"] == "not_run"
    assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "removed"), (2, "finished")]


def test_remove_of_a_paused_enrollment_also_lets_the_trigger_enroll_again(engine):
    engine.pause("drip", "p2", user="alice", at="2026-07-01T01:00")
    engine.remove("drip", "p2", user="alice", at="2026-07-01T02:00")
    engine.tick("2026-07-01T03:00")
    assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p2")] == [(1, "removed"), (2, "active")]


def test_remove_then_start_by_hand_makes_a_manual_enrollment(engine):
    engine.remove("drip", "p1", user="alice", at="2026-07-01T06:00")
    started = engine.start("drip", "p1", user="alice", at="2026-07-01T06:00")
    assert (started.number, started.status, started.origin) == (2, "active", "manual")
    engine.tick("2026-07-01T07:00")
    assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "removed"), (2, "active")]
    assert [m["at"] for m in messages(engine, "email", "p1")] == [z("2026-07-01T00:00"), z("2026-07-01T06:00")]


# --- 3. scheduled manual starts -------------------------------------------------------------------


def test_scheduled_start_waits_for_its_date_and_runs_as_of_it(engine):
    e = engine.start(C, P, on="2026-07-05", user="alice", at="2026-07-01T09:00")
    assert (e.status, e.number, e.started_at, e.due_at) == ("scheduled", 1, t("2026-07-05T00:00"), None)
    entry = last_log(engine)
    assert (entry["action"], entry["user"], entry["at"]) == ("start", "alice", z("2026-07-01T09:00"))
    assert entry["detail"] == {"status": "scheduled", "on": z("2026-07-05T00:00")}
    assert step(engine, C, P, "hello")["status"] == "pending"

    for at in ("2026-07-02T00:00", "2026-07-04T23:59"):
        engine.tick(at)
        assert status_of(engine, C, P) == "scheduled"
    assert messages(engine, "email", P, C) == []

    report = engine.tick("2026-07-05T09:00")  # the first tick reaching the date
    assert status_of(engine, C, P) == "active"
    assert report.executed >= 1
    [hello] = messages(engine, "email", P, C)
    assert (hello["id"], hello["at"]) == ("manual:p1:1:hello:1", z("2026-07-05T00:00"))
    row = step(engine, C, P, "hello")
    assert (row["status"], row["due_at"], row["at"]) == ("executed", z("2026-07-05T00:00"), z("2026-07-05T00:00"))
    now = latest(engine, C, P)
    assert (now["started_at"], now["next_step"], now["due_at"]) == (z("2026-07-05T00:00"), "nudge", z("2026-07-06T00:00"))
    activated = [x for x in engine.log(C) if x["action"] == "activated"]
    assert [(x["user"], x["partner"], x["at"]) for x in activated] == [("engine", P, z("2026-07-05T00:00"))]

    engine.tick("2026-07-08T00:00")
    assert [m["at"] for m in messages(engine, "sms", P, C)] == [z("2026-07-06T00:00")]
    assert latest(engine, C, P)["finished_at"] == z("2026-07-07T00:00")


def test_start_with_a_date_now_or_past_starts_at_once(engine):
    now = engine.start(C, "p1", on="2026-07-01T05:00", user="alice", at="2026-07-01T05:00")
    past = engine.start(C, "p2", on="2026-06-01", user="alice", at="2026-07-01T05:00")
    for e in (now, past):
        assert (e.status, e.started_at, e.due_at) == ("active", t("2026-07-01T05:00"), t("2026-07-01T05:00"))
    engine.tick("2026-07-01T06:00")
    assert [m["at"] for m in messages(engine, "email", "p1", C)] == [z("2026-07-01T05:00")]
    assert [m["at"] for m in messages(engine, "email", "p2", C)] == [z("2026-07-01T05:00")]


def test_removed_scheduled_start_never_activates(engine):
    engine.start(C, P, on="2026-07-03", user="alice", at=T0)
    [removed] = engine.remove(C, P, user="alice", at="2026-07-02T00:00")
    assert removed.status == "removed"
    engine.tick("2026-07-10T00:00")
    assert [(e["number"], e["status"]) for e in enrollments(engine, C, P)] == [(1, "removed")]
    assert messages(engine, "email", P, C) == []
    assert not [x for x in engine.log(C) if x["action"] == "activated"]


def test_scheduled_start_in_a_triggered_campaign_keeps_the_trigger_away(engine):
    engine.remove("drip", "p1", user="alice", at="2026-07-01T01:00")
    engine.start("drip", "p1", on="2026-07-03", user="alice", at="2026-07-01T01:00")
    for at in ("2026-07-01T02:00", "2026-07-02T00:00", "2026-07-02T23:00"):
        assert engine.tick(at).enrolled == 0
        assert [(e["number"], e["status"]) for e in enrollments(engine, "drip", "p1")] == [(1, "removed"), (2, "scheduled")]
    engine.tick("2026-07-03T00:00")
    second = latest(engine, "drip", "p1")
    assert (second["number"], second["status"], second["origin"]) == (2, "active", "manual")
    assert [m["at"] for m in messages(engine, "email", "p1")] == [z("2026-07-01T00:00"), z("2026-07-03T00:00")]


# --- 4. skip and run again ----------------------------------------------------------------------


def test_skip_of_a_future_step_passes_over_it_when_reached(engine):
    # p1: skip the step after the next one; p2: skip the next one
    engine.skip("drip", "call", "p1", user="alice", at="2026-07-01T01:00")
    engine.skip("drip", "nudge", "p2", user="alice", at="2026-07-01T01:00")
    assert latest(engine, "drip", "p1")["status"] == "active"

    engine.tick("2026-07-02T00:00")
    assert [m["at"] for m in messages(engine, "sms", "p1")] == [z("2026-07-02T00:00")]
    assert messages(engine, "sms", "p2") == []
    assert [line for line in engine.sent("sms") if line["partner"] == "p2"] == []
    nudge = step(engine, "drip", "p2", "nudge")
    assert (nudge["status"], nudge["reason"]) == ("skipped", "skipped_by_user")

    engine.tick("2026-07-03T00:00")
    assert calls(engine, "drip", "p1") == []
    call = step(engine, "drip", "p1", "call")
    assert (call["status"], call["reason"]) == ("skipped", "skipped_by_user")
    e1 = latest(engine, "drip", "p1")
    assert (e1["status"], e1["reason"], e1["finished_at"]) == ("finished", "completed", z("2026-07-03T00:00"))
    # the waits around a skipped step count as before
    assert [c["created_at"] for c in calls(engine, "drip", "p2")] == [z("2026-07-03T00:00")]
    assert latest(engine, "drip", "p2")["finished_at"] == z("2026-07-03T00:00")


def test_skip_while_paused_then_resume(engine):
    engine.pause("drip", "p1", user="alice", at="2026-07-01T01:00")
    skipped = engine.skip("drip", "nudge", "p1", user="alice", at="2026-07-01T02:00")
    assert skipped.status == "paused"
    engine.tick("2026-07-03T00:00")
    engine.resume("drip", "p1", user="alice", at="2026-07-04T00:00")
    engine.tick("2026-07-06T00:00")
    assert messages(engine, "sms", "p1") == []
    assert [c["created_at"] for c in calls(engine, "drip", "p1")] == [z("2026-07-05T00:00")]


def test_skip_of_the_first_step_before_any_tick(engine):
    engine.start(C, P, user="alice", at=T0)
    engine.skip(C, "hello", P, user="alice", at=T0)
    engine.tick("2026-07-02T00:00")
    assert messages(engine, "email", P, C) == []
    assert [m["at"] for m in messages(engine, "sms", P, C)] == [z("2026-07-02T00:00")]


def test_rerun_sends_a_second_message_with_its_own_id_now(engine):
    status = engine.rerun("drip", "hello", "p1", user="alice", at="2026-07-01T05:00")
    assert status == "executed"
    first, second = messages(engine, "email", "p1")
    assert (first["id"], first["at"]) == ("drip:p1:1:hello:1", z("2026-07-01T00:00"))
    assert (second["id"], second["at"]) == ("drip:p1:1:hello:2", z("2026-07-01T05:00"))
    assert second["id"] != first["id"]
    assert (second["to"], second["subject"], second["body"]) == (first["to"], first["subject"], first["body"])
    # delivered at once, through the file transport
    assert [line["id"] for line in engine.sent("email") if line["partner"] == "p1"] == \
        ["drip:p1:1:hello:1", "drip:p1:1:hello:2"]
    rows = steps(engine, "drip", "p1")
    assert rows[("hello", 1)]["at"] == z("2026-07-01T00:00")
    assert (rows[("hello", 2)]["status"], rows[("hello", 2)]["at"]) == ("executed", z("2026-07-01T05:00"))
    # the schedule does not move
    e = latest(engine, "drip", "p1")
    assert (e["status"], e["next_step"], e["due_at"]) == ("active", "nudge", z("2026-07-02T00:00"))
    entry = last_log(engine)
    assert (entry["action"], entry["user"], entry["partner"], entry["detail"]["run"]) == ("rerun", "alice", "p1", 2)

    assert engine.rerun("drip", "hello", "p1", user="alice", at="2026-07-01T06:00") == "executed"
    assert [m["id"] for m in messages(engine, "email", "p1")][-1] == "drip:p1:1:hello:3"
    # a tick afterwards sends nothing again
    engine.tick("2026-07-01T07:00")
    assert len(messages(engine, "email", "p1")) == 3
    assert len([line for line in engine.sent("email") if line["partner"] == "p1"]) == 3


def test_rerun_of_an_activity_on_a_finished_enrollment(engine):
    engine.tick("2026-07-03T00:00")
    assert latest(engine, "drip", "p1")["status"] == "finished"
    assert engine.rerun("drip", "call", "p1", user="alice", at="2026-07-04T00:00") == "executed"
    assert [(c["id"], c["created_at"]) for c in calls(engine, "drip", "p1")] == [
        ("drip:p1:1:call:1", z("2026-07-03T00:00")), ("drip:p1:1:call:2", z("2026-07-04T00:00"))]
    assert latest(engine, "drip", "p1")["status"] == "finished"


def test_rerun_still_asks_for_consent(engine):
    source = engine.root / "partners.csv"
    source.write_text(source.read_text(encoding="utf-8").replace("Ann,ann@example.com,+358401,true",
                                                                 "Ann,ann@example.com,+358401,false"), encoding="utf-8")
    engine.tick("2026-07-01T01:00")  # imports the change
    assert engine.rerun("drip", "hello", "p1", user="alice", at="2026-07-01T02:00") == "skipped"
    assert [m["id"] for m in messages(engine, "email", "p1")] == ["drip:p1:1:hello:1"]
    row = steps(engine, "drip", "p1")[("hello", 2)]
    assert (row["status"], row["reason"]) == ("skipped", "no_consent")


# --- 5. bulk operations -------------------------------------------------------------------------


def test_bulk_remove_with_one_refusal_changes_nobody(engine):
    engine.pause("drip", "p2", user="alice", at="2026-07-01T01:00")
    engine.remove("drip", "p3", user="alice", at="2026-07-01T01:00")
    for batch in (["p1", "p2", "p3"], ["p3", "p1", "p2"], ["p1", "p3", "p2"]):
        message = assert_refused(engine, "p3", "drip", lambda: engine.remove("drip", batch, user="alice"))
        assert message == ("cannot remove the enrollment of partner p3 in drip: it is removed; "
                           "start it again for a new enrollment")
        assert [status_of(engine, "drip", p) for p in ("p1", "p2", "p3")] == ["active", "paused", "removed"]
    # and the engine goes on as if nothing was tried
    engine.tick("2026-07-02T00:00")
    assert [m["at"] for m in messages(engine, "sms", "p1")] == [z("2026-07-02T00:00")]


def test_bulk_with_an_unknown_partner_changes_nobody(engine):
    before = snapshot(engine)
    with pytest.raises(UnknownName, match="p9"):
        engine.remove("drip", ["p1", "p2", "p9"], user="alice")
    assert snapshot(engine) == before


def test_bulk_pause_with_one_refusal_changes_nobody(engine):
    engine.pause("drip", "p2", user="alice", at="2026-07-01T01:00")
    message = assert_refused(engine, "p2", "drip", lambda: engine.pause("drip", ["p1", "p2", "p3"], user="alice"))
    assert message == "cannot pause the enrollment of partner p2 in drip: it is paused"
    assert [status_of(engine, "drip", p) for p in ("p1", "p2", "p3")] == ["active", "paused", "active"]


def test_bulk_remove_of_many_partners(engine):
    engine.pause("drip", "p2", user="alice", at="2026-07-01T01:00")
    removed = engine.remove("drip", ["p1", "p2", "p3", "p1"], user="alice", at="2026-07-01T02:00")
    assert [(e.partner, e.status, e.number) for e in removed] == [("p1", "removed", 1), ("p2", "removed", 1),
                                                                  ("p3", "removed", 1)]
    entries = engine.log()[-3:]
    assert [(x["action"], x["user"], x["campaign"], x["partner"], x["at"]) for x in entries] == [
        ("remove", "alice", "drip", p, z("2026-07-01T02:00")) for p in ("p1", "p2", "p3")]
    assert status_of(engine, "drip", "p4") == "active"
    # all three are enrolled again at the next tick
    assert engine.tick("2026-07-01T03:00").enrolled == 3


# --- 6. roles -------------------------------------------------------------------------------------


def every_operation(engine: Engine, user: str | None) -> list[Callable[[], Any]]:
    return [
        lambda: engine.start(C, P, user=user),
        lambda: engine.start(C, P, on="2026-07-09", user=user),
        lambda: engine.pause("drip", P, user=user),
        lambda: engine.resume("drip", P, user=user),
        lambda: engine.remove("drip", [P, "p2"], user=user),
        lambda: engine.skip("drip", "nudge", P, user=user),
        lambda: engine.rerun("drip", "hello", P, user=user),
    ]


@pytest.mark.parametrize("user,fragment", [
    (None, "engine.yaml lists users: say who you are with --as USER (one of alice, bob, carol)"),
    ("bob", "user 'bob' may not operate campaigns: that needs the marketing role (they have viewer)"),
    ("alcie", "unknown user 'alcie'"),
])
def test_roles_refuse_whoever_is_not_marketing(new_engine, user, fragment):
    engine = new_engine(users=True)
    for operation in every_operation(engine, user):
        message = assert_refused(engine, None, None, operation)
        assert fragment in message
    assert status_of(engine, "drip", P) == "active" and status_of(engine, C, P) == "none"


def test_the_environment_user_is_checked_too(new_engine, monkeypatch):
    engine = new_engine(users=True)
    monkeypatch.setenv("ENGINE_USER", "bob")
    assert_refused(engine, None, None, lambda: engine.pause("drip", P))
    monkeypatch.setenv("ENGINE_USER", "alice")
    engine.pause("drip", P)
    assert last_log(engine)["user"] == "alice"


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_marketing_users_operate_and_are_logged(new_engine, user):
    engine = new_engine(users=True)
    engine.start(C, P, user=user, at="2026-07-01T01:00")
    engine.pause("drip", P, user=user, at="2026-07-01T02:00")
    engine.skip("drip", "nudge", P, user=user, at="2026-07-01T03:00")
    engine.resume("drip", P, user=user, at="2026-07-01T04:00")
    assert engine.rerun("drip", "hello", P, user=user, at="2026-07-01T05:00") == "executed"
    engine.remove("drip", [P, "p2"], user=user, at="2026-07-01T06:00")
    mine = [x for x in engine.log() if x["user"] == user]
    assert [(x["action"], x["campaign"], x["partner"]) for x in mine] == [
        ("start", C, P), ("pause", "drip", P), ("skip", "drip", P), ("resume", "drip", P),
        ("rerun", "drip", P), ("remove", "drip", P), ("remove", "drip", "p2")]
    # the tick needs no user
    assert engine.tick("2026-07-01T07:00").enrolled == 2  # drip's p1 and p2 again
    assert [m["at"] for m in messages(engine, "email", P, C)] == [z("2026-07-01T01:00")]
    assert all(x["user"] == "engine" for x in engine.log() if x["action"] in ("enrolled", "step.executed"))


# --- 7. the audit log ---------------------------------------------------------------------------


def test_every_operation_is_in_the_log_with_who_what_when(engine):
    log_before = len(engine.log())
    engine.start(C, "p1", user="dana", at="2026-07-01T01:00")
    engine.start(C, "p2", on="2026-07-04", user="erin", at="2026-07-01T02:00")
    engine.tick("2026-07-01T03:00")
    engine.pause(C, "p1", user="dana", at="2026-07-01T04:00")
    engine.skip(C, "nudge", "p1", user="dana", at="2026-07-01T05:00")
    engine.resume(C, "p1", user="dana", at="2026-07-01T06:00")
    engine.rerun(C, "hello", "p1", user="erin", at="2026-07-01T07:00")
    engine.remove(C, ["p1", "p2"], user="erin", at="2026-07-01T08:00")
    entries = [x for x in engine.log()[log_before:] if x["user"] != "engine"]
    assert [(x["at"], x["user"], x["action"], x["campaign"], x["partner"]) for x in entries] == [
        (z("2026-07-01T01:00"), "dana", "start", C, "p1"),
        (z("2026-07-01T02:00"), "erin", "start", C, "p2"),
        (z("2026-07-01T04:00"), "dana", "pause", C, "p1"),
        (z("2026-07-01T05:00"), "dana", "skip", C, "p1"),
        (z("2026-07-01T06:00"), "dana", "resume", C, "p1"),
        (z("2026-07-01T07:00"), "erin", "rerun", C, "p1"),
        (z("2026-07-01T08:00"), "erin", "remove", C, "p1"),
        (z("2026-07-01T08:00"), "erin", "remove", C, "p2"),
    ]
    details = [x["detail"] for x in entries]
    assert details[0] == {"status": "active", "on": z("2026-07-01T01:00")}
    assert details[1] == {"status": "scheduled", "on": z("2026-07-04T00:00")}
    assert details[2] == {"number": 1}
    assert details[3] == {"step": "nudge", "number": 1}
    assert details[5]["step"] == "hello" and details[5]["run"] == 2 and details[5]["status"] == "executed"
    # engine.log(campaign) has the same entries
    assert [x for x in engine.log(C) if x["user"] != "engine"] == entries


def test_without_users_the_login_name_is_logged(engine):
    engine.pause("drip", P, at="2026-07-01T01:00")
    assert last_log(engine)["user"] == getpass.getuser()


# --- operations and tick granularity ---------------------------------------------------------------


def _operate_at_noon_on_day_two(engine: Engine, operation: str) -> str:
    """One operation on drip's p1 at 07-02 12:00, twelve hours after its nudge fell due; then
    ticks up to 07-10. What p1 got, as text (or the refusal)."""
    try:
        if operation == "pause":
            engine.pause("drip", "p1", user="alice", at="2026-07-02T12:00")
            engine.resume("drip", "p1", user="alice", at="2026-07-04T00:00")
        elif operation == "remove":
            engine.remove("drip", "p1", user="alice", at="2026-07-02T12:00")
        elif operation == "skip":
            engine.skip("drip", "nudge", "p1", user="alice", at="2026-07-02T12:00")
    except Refused as refused:
        outcome = f"refused: {refused.message}"
    else:
        outcome = "done"
    engine.tick("2026-07-10T00:00")
    sms = [(m["id"], m["at"]) for m in messages(engine, "sms", "p1")]
    return f"{outcome}; sms {sms}; calls {[(c['id'], c['created_at']) for c in calls(engine, 'drip', 'p1')]}"


@pytest.mark.parametrize("operation", ["pause", "remove", "skip"])
def test_an_operation_sees_the_steps_that_fell_due_before_it(new_engine, operation):
    """SPEC §6: steps execute as of their due time, and the same inputs give the same sends
    whether the clock moved by one tick or by many. An operation at 12:00 comes after the nudge
    due at 00:00 whether or not a tick ran in between: the nudge went out at 00:00."""
    with_tick = new_engine()
    with_tick.tick("2026-07-02T06:00")  # the nudge goes out as of 00:00
    assert [m["at"] for m in messages(with_tick, "sms", "p1")] == [z("2026-07-02T00:00")]
    without_tick = new_engine()
    assert _operate_at_noon_on_day_two(without_tick, operation) == _operate_at_noon_on_day_two(with_tick, operation)
