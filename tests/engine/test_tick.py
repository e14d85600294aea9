"""The tick (SPEC §3, §6, §7; README "How a tick works" and "Decisions where SPEC is silent"),
through the ``Engine`` API, on small workspaces built inside each test.

Every workspace has the same partner schema (name, email, phone, language, tier, revenue,
active, paid, ok, role), consent ``partner.ok`` for email and SMS, and engine.yaml's
``exclude: partner.role == "internal"``; the campaigns and partners differ per test. Times are
UTC unless a test needs Europe/Helsinki (DST). Results are read back with ``engine.outbox``,
``engine.steps``, ``engine.status`` and the tick's report, always as exact values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from engine.testing import rewrite

# --- building workspaces ------------------------------------------------------------------------

ENGINE_YAML = """\
timezone: {tz}
store: sqlite:///.engine/state.db
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    phone: string
    language: string
    tier: {{enum: [silver, gold, platinum]}}
    revenue: number
    active: bool
    paid: bool
    ok: bool
    role: string
consent:
  email: partner.ok
  sms: partner.ok
exclude: partner.role == "internal"
"""

COLUMNS = ("id", "name", "email", "phone", "language", "tier", "revenue", "active", "paid", "ok", "role")


def partner(pid: str, **values: Any) -> dict[str, str]:
    """One partners.csv row: a gold, active, unpaid, consenting English partner unless told."""
    row = {"id": pid, "name": pid.upper(), "email": f"{pid}@example.com", "phone": f"+358-{pid}",
           "language": "en", "tier": "gold", "revenue": "1000", "active": "true", "paid": "false",
           "ok": "true", "role": "partner"}
    row.update({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()})
    return row


def partners_csv(*rows: dict[str, str]) -> str:
    return "\n".join([",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]) + "\n"


def workspace(tmp_path: Path, campaigns: dict[str, str], partners: str, settings_extra: str = "", *,
              tz: str = "UTC", templates: dict[str, str] | None = None, name: str = "src") -> Path:
    root = tmp_path / name
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML.format(tz=tz) + settings_extra, encoding="utf-8")
    (root / "partners.csv").write_text(partners, encoding="utf-8")
    for cid, text in campaigns.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    if templates:
        (root / "templates").mkdir()
        for file_name, text in templates.items():
            (root / "templates" / file_name).write_text(text, encoding="utf-8")
    return root


def set_partners(engine, *rows: dict[str, str]) -> None:
    rewrite(engine.root / "partners.csv", partners_csv(*rows))


def set_campaign(engine, cid: str, text: str) -> None:
    rewrite(engine.root / "campaigns" / f"{cid}.yaml", text)


# --- reading results ---------------------------------------------------------------------------


def sent(engine, channel: str, **filters: str) -> list[tuple[str, str, str]]:
    """(partner, step, at) of the committed messages of a channel, in time order."""
    return [(m["partner"], m["step"], m["at"]) for m in engine.outbox(channel, **filters)]


def steps_of(engine, campaign: str, pid: str, number: int | None = None) -> dict[str, tuple]:
    """step → (status, reason, at) of the partner's latest (or numbered) enrollment."""
    found = engine.steps(campaign, pid, number)
    assert found is not None, f"{pid} has no enrollment in {campaign}"
    return {s["step"]: (s["status"], s["reason"], s["at"]) for s in found["steps"]}


def enrollments(engine, pid: str, campaign: str | None = None) -> list[tuple]:
    """(campaign, number, status, reason, started_at, finished_at, origin) of every enrollment."""
    return [(e["campaign"], e["number"], e["status"], e["reason"], e["started_at"], e["finished_at"], e["origin"])
            for e in engine.status(partner=pid, campaign=campaign)["enrollments"]]


def counts(report) -> tuple[int, int, int, int, int]:
    return report.enrolled, report.executed, report.skipped, report.finished, report.failed


def campaign(trigger: str = "audience: true", steps: str = "", *, audience: str = 'all: "true"',
             extra: str = "") -> str:
    """A campaign file: ``audience`` is the rulesets' lines, ``steps`` the steps' YAML list."""
    rulesets = "\n".join(f"    {line}" for line in audience.splitlines())
    trigger_yaml = f"trigger:\n  {trigger}\n" if trigger else ""
    return f"name: Test\naudience:\n  rulesets:\n{rulesets}\n{trigger_yaml}{extra}steps:\n{steps}"


EMAIL = """\
  - id: {id}
    email: {{subject: "S {{{{ partner.name }}}}", body: "B {{{{ partner.name }}}}"}}
"""
SMS = """\
  - id: {id}
    sms: {{text: "T {{{{ partner.name }}}}"}}
"""


def email(step_id: str = "hello", when: str | None = None) -> str:
    text = EMAIL.format(id=step_id)
    return text + (f"    when: '{when}'\n" if when else "")


def sms(step_id: str = "nudge") -> str:
    return SMS.format(id=step_id)


def wait(value: str) -> str:
    return f"  - wait: {value}\n"


# --- 1. trigger kinds ---------------------------------------------------------------------------


def test_audience_trigger_enrolls_at_the_tick_and_a_second_tick_at_the_same_time_does_nothing(tmp_path, make_engine):
    root = workspace(tmp_path, {"welcome": campaign(steps=email(), audience='gold: partner.tier == "gold"')},
                     partners_csv(partner("p1"), partner("p2"), partner("p3", tier="silver")))
    engine = make_engine(root, at="2026-07-01T10:00Z")

    report = engine.tick("2026-07-01T10:00Z")
    assert counts(report) == (2, 2, 0, 2, 0)  # one-step runs complete at once
    assert not report.diagnostics
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T10:00:00Z"), ("p2", "hello", "2026-07-01T10:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("welcome", 1, "finished", "completed", "2026-07-01T10:00:00Z", "2026-07-01T10:00:00Z", "trigger")]
    assert enrollments(engine, "p3") == []

    again = engine.tick("2026-07-01T10:00Z")
    assert counts(again) == (0, 0, 0, 0, 0)
    assert len(engine.outbox("email")) == 2


def test_audience_trigger_enrolls_a_partner_who_starts_matching_at_the_tick_that_sees_it(tmp_path, make_engine):
    root = workspace(tmp_path, {"welcome": campaign(steps=email(), audience='gold: partner.tier == "gold"')},
                     partners_csv(partner("p1"), partner("p3", tier="silver")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    set_partners(engine, partner("p1"), partner("p3", tier="gold"))
    report = engine.tick("2026-07-03T15:30Z")
    assert report.enrolled == 1
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T10:00:00Z"), ("p3", "hello", "2026-07-03T15:30:00Z")]


def test_at_trigger_in_the_future_fires_at_its_own_time_even_when_the_tick_is_later(tmp_path, make_engine):
    root = workspace(tmp_path, {"launch": campaign("at: 2026-07-02T10:00", email() + wait("1d") + sms())},
                     partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    first = engine.tick("2026-07-01T00:00Z")
    assert counts(first) == (0, 0, 0, 0, 0)

    report = engine.tick("2026-07-05T00:00Z")
    assert counts(report) == (2, 4, 0, 2, 0)
    assert sent(engine, "email") == [("p1", "hello", "2026-07-02T10:00:00Z"), ("p2", "hello", "2026-07-02T10:00:00Z")]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T10:00:00Z"), ("p2", "nudge", "2026-07-03T10:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("launch", 1, "finished", "completed", "2026-07-02T10:00:00Z", "2026-07-03T10:00:00Z", "trigger")]

    # one-shot: it never fires again
    later = engine.tick("2026-07-20T00:00Z")
    assert counts(later) == (0, 0, 0, 0, 0)


def test_at_trigger_already_past_at_the_first_tick_fires_once_at_that_tick(tmp_path, make_engine):
    root = workspace(tmp_path, {"launch": campaign("at: 2026-06-15T09:00", email())},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T12:00Z")
    report = engine.tick("2026-07-01T12:00Z")
    assert report.enrolled == 1
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T12:00:00Z")]
    assert enrollments(engine, "p1")[0][4] == "2026-07-01T12:00:00Z"
    assert counts(engine.tick("2026-07-02T12:00Z")) == (0, 0, 0, 0, 0)
    assert len(engine.outbox("email")) == 1


def test_cron_fires_each_occurrence_in_order_within_one_tick_never_before_the_first_tick(tmp_path, make_engine):
    """Daily at 09:00; a run lasts 12 hours, so with after_exit each occurrence enrolls anew."""
    root = workspace(tmp_path, {"daily": campaign('cron: "0 9 * * *"', email() + wait("12h"),
                                                  extra="reenroll: after_exit\n")},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T12:00Z")
    first = engine.tick("2026-07-01T12:00Z")  # 09:00 today is before the first tick: never fires
    assert counts(first) == (0, 0, 0, 0, 0)

    report = engine.tick("2026-07-04T00:00Z")
    assert counts(report) == (2, 2, 0, 2, 0)
    assert sent(engine, "email") == [("p1", "hello", "2026-07-02T09:00:00Z"), ("p1", "hello", "2026-07-03T09:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("daily", 1, "finished", "completed", "2026-07-02T09:00:00Z", "2026-07-02T21:00:00Z", "trigger"),
        ("daily", 2, "finished", "completed", "2026-07-03T09:00:00Z", "2026-07-03T21:00:00Z", "trigger"),
    ]
    ids = [m["id"] for m in engine.outbox("email")]
    assert ids == ["daily:p1:1:hello:1", "daily:p1:2:hello:1"]


def test_cron_does_not_enroll_a_partner_whose_run_is_still_going(tmp_path, make_engine):
    """A run of 36 hours: the next day's occurrence finds it active; the one after enrolls again."""
    root = workspace(tmp_path, {"daily": campaign('cron: "0 9 * * *"', email() + wait("36h") + sms(),
                                                  extra="reenroll: after_exit\n")},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T12:00Z")
    engine.tick("2026-07-01T12:00Z")
    engine.tick("2026-07-05T00:00Z")
    assert [(e[1], e[4], e[5]) for e in enrollments(engine, "p1")] == [
        (1, "2026-07-02T09:00:00Z", "2026-07-03T21:00:00Z"),
        (2, "2026-07-04T09:00:00Z", None),
    ]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T21:00:00Z")]


def test_a_cron_run_ending_at_the_next_occurrence_is_finished_before_it_fires(tmp_path, make_engine):
    root = workspace(tmp_path, {"daily": campaign('cron: "0 9 * * *"', email() + wait("24h"),
                                                  extra="reenroll: after_exit\n")},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-04T00:00Z")
    assert [(e[1], e[2], e[4], e[5]) for e in enrollments(engine, "p1")] == [
        (1, "finished", "2026-07-01T09:00:00Z", "2026-07-02T09:00:00Z"),
        (2, "finished", "2026-07-02T09:00:00Z", "2026-07-03T09:00:00Z"),
        (3, "active", "2026-07-03T09:00:00Z", None),
    ]


def test_an_at_time_without_offset_is_read_in_the_workspace_timezone(tmp_path, make_engine):
    root = workspace(tmp_path, {"launch": campaign("at: 2026-07-02T10:00", email())}, partners_csv(partner("p1")),
                     tz="Europe/Helsinki")
    engine = make_engine(root, at="2026-07-01T00:00")
    engine.tick()
    engine.tick("2026-07-03T00:00")
    assert sent(engine, "email") == [("p1", "hello", "2026-07-02T07:00:00Z")]


EVENT_CAMPAIGN = campaign("event: invoice.payment_failed\n  when: event.amount > 100", email() + wait("1d") + sms())


def events_file(tmp_path: Path, *lines: str, name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_event_trigger_enrolls_as_of_the_event_time_and_when_filters(tmp_path, make_engine):
    root = workspace(tmp_path, {"dunning": EVENT_CAMPAIGN}, partners_csv(partner("p1"), partner("p2"), partner("p3")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    path = events_file(
        tmp_path,
        '{"type": "invoice.payment_failed", "at": "2026-07-03T08:15:00Z", "partner": "p1", "data": {"amount": 450}}',
        '{"type": "invoice.payment_failed", "at": "2026-07-03T09:00:00Z", "partner": "p2", "data": {"amount": 60}}',
        '{"type": "invoice.payment_failed", "at": "2026-07-04T10:30:00Z", "partner": "p3", "data": {"amount": 101}}',
    )
    imported = engine.import_events(path, at="2026-07-05T00:00Z")
    assert (imported.imported, imported.duplicates, imported.diagnostics) == (3, 0, [])

    report = engine.tick("2026-07-10T00:00Z")
    assert report.enrolled == 2
    assert sent(engine, "email") == [("p1", "hello", "2026-07-03T08:15:00Z"), ("p3", "hello", "2026-07-04T10:30:00Z")]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-04T08:15:00Z"), ("p3", "nudge", "2026-07-05T10:30:00Z")]
    assert enrollments(engine, "p1") == [
        ("dunning", 1, "finished", "completed", "2026-07-03T08:15:00Z", "2026-07-04T08:15:00Z", "trigger")]
    assert enrollments(engine, "p2") == []


def test_events_dated_before_the_campaign_was_first_seen_active_do_not_enroll(tmp_path, make_engine):
    root = workspace(tmp_path, {"dunning": EVENT_CAMPAIGN}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-05T00:00Z")
    engine.tick("2026-07-05T00:00Z")  # the campaign is first seen here
    path = events_file(
        tmp_path,
        '{"type": "invoice.payment_failed", "at": "2026-07-04T23:59:59Z", "partner": "p1", "data": {"amount": 450}}',
        '{"type": "invoice.payment_failed", "at": "2026-07-05T00:00:00Z", "partner": "p2", "data": {"amount": 450}}',
    )
    assert engine.import_events(path).imported == 2
    report = engine.tick("2026-07-06T00:00Z")
    assert report.enrolled == 1
    assert enrollments(engine, "p1") == []
    assert sent(engine, "email") == [("p2", "hello", "2026-07-05T00:00:00Z")]


def test_reimporting_the_same_events_file_imports_nothing_and_enrolls_nobody_new(tmp_path, make_engine):
    root = workspace(tmp_path, {"dunning": EVENT_CAMPAIGN}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    path = events_file(
        tmp_path,
        '{"type": "invoice.payment_failed", "at": "2026-07-02T00:00:00Z", "partner": "p1", "data": {"amount": 450}}',
        '{"id": "ev-2", "type": "invoice.payment_failed", "at": "2026-07-02T06:00:00Z", "partner": "p2", '
        '"data": {"amount": 200}}',
    )
    assert engine.import_events(path).imported == 2
    assert engine.tick("2026-07-03T12:00Z").enrolled == 2

    again = engine.import_events(path)
    assert (again.imported, again.duplicates, again.diagnostics) == (0, 2, [])
    report = engine.tick("2026-07-10T00:00Z")
    assert report.enrolled == 0
    assert [e[1] for e in enrollments(engine, "p1")] == [1]
    assert [e[1] for e in enrollments(engine, "p2")] == [1]
    assert len(engine.outbox("email")) == 2


def test_a_bad_event_line_is_reported_at_its_line_and_the_good_lines_are_kept(tmp_path, make_engine):
    root = workspace(tmp_path, {"dunning": EVENT_CAMPAIGN}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    path = events_file(
        tmp_path,
        '{"type": "invoice.payment_failed", "at": "2026-07-02T00:00:00Z", "partner": "p1", "data": {"amount": 450}}',
        '{"type": "invoice.payment_failed", "at": "not a time", "partner": "p2", "data": {"amount": 450}}',
        '{"type": "invoice.payment_failed", "at": "2026-07-02T03:00:00Z", "partner": "p2", "data": {"amount": 999}',
        '{"type": "invoice.payment_failed", "at": "2026-07-02T04:00:00Z", "partner": "p2", "data": {"amount": 300}}',
    )
    imported = engine.import_events(path)
    assert imported.imported == 2
    assert [d.span.line for d in imported.diagnostics] == [2, 3]
    assert all(d.severity == "error" and d.span.path == str(path) for d in imported.diagnostics)

    engine.tick("2026-07-03T00:00Z")
    assert sent(engine, "email") == [("p1", "hello", "2026-07-02T00:00:00Z"), ("p2", "hello", "2026-07-02T04:00:00Z")]


def test_events_for_one_partner_enroll_in_time_order_interleaved_with_its_steps(tmp_path, make_engine):
    text = campaign("event: invoice.payment_failed", email() + wait("1d") + sms(), extra="reenroll: after_exit\n")
    root = workspace(tmp_path, {"dunning": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    path = events_file(
        tmp_path,
        '{"type": "invoice.payment_failed", "at": "2026-07-05T12:00:00Z", "partner": "p1"}',  # while run 2 goes on
        '{"type": "invoice.payment_failed", "at": "2026-07-05T00:00:00Z", "partner": "p1"}',
        '{"type": "invoice.payment_failed", "at": "2026-07-02T00:00:00Z", "partner": "p1"}',
    )
    assert engine.import_events(path).imported == 3
    engine.tick("2026-07-10T00:00Z")
    assert [(e[1], e[2], e[4], e[5]) for e in enrollments(engine, "p1")] == [
        (1, "finished", "2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z"),
        (2, "finished", "2026-07-05T00:00:00Z", "2026-07-06T00:00:00Z"),
    ]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T00:00:00Z"), ("p1", "nudge", "2026-07-06T00:00:00Z")]


# --- 2. steps as of their due time --------------------------------------------------------------


def test_a_wait_counts_from_the_previous_steps_due_time_whatever_the_ticks(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("2d") + sms())},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:17Z")
    engine.tick("2026-07-01T10:17Z")
    assert engine.tick("2026-07-03T10:16:59Z").executed == 0  # one second early: nothing
    report = engine.tick("2026-07-09T00:00Z")
    assert counts(report) == (0, 1, 0, 1, 0)
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T10:17:00Z")]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T10:17:00Z")]
    assert steps_of(engine, "drip", "p1") == {
        "hello": ("executed", None, "2026-07-01T10:17:00Z"),
        "nudge": ("executed", None, "2026-07-03T10:17:00Z"),
    }


def test_wait_until_a_local_time_in_helsinki_summer_and_across_the_spring_dst_change(tmp_path, make_engine):
    steps = email() + wait('{until: "09:00"}') + sms()
    root = workspace(tmp_path, {"morning": campaign(steps=steps)}, partners_csv(partner("p1")),
                     tz="Europe/Helsinki")
    summer = make_engine(root, at="2026-07-01T00:00", name="summer")  # local midnight, UTC+3
    summer.tick()
    summer.tick("2026-07-02T00:00Z")
    assert sent(summer, "email") == [("p1", "hello", "2026-06-30T21:00:00Z")]
    assert sent(summer, "sms") == [("p1", "nudge", "2026-07-01T06:00:00Z")]  # 09:00 EEST

    # 28 March 2026 at 12:00 EET (UTC+2); the clocks go forward that night: 09:00 EEST is 06:00Z
    spring = make_engine(root, at="2026-03-28T12:00", name="spring")
    spring.tick()
    spring.tick("2026-03-30T00:00Z")
    assert sent(spring, "email") == [("p1", "hello", "2026-03-28T10:00:00Z")]
    assert sent(spring, "sms") == [("p1", "nudge", "2026-03-29T06:00:00Z")]


def test_wait_until_due_at_that_local_time_sharp_goes_on_at_once(tmp_path, make_engine):
    root = workspace(tmp_path, {"morning": campaign(steps=email() + wait('{until: "09:00"}') + sms())},
                     partners_csv(partner("p1")), tz="Europe/Helsinki")
    engine = make_engine(root, at="2026-01-15T09:00")  # 07:00Z in winter
    engine.tick()
    assert sent(engine, "email") == [("p1", "hello", "2026-01-15T07:00:00Z")]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-01-15T07:00:00Z")]


def test_now_and_today_in_conditions_and_templates_are_the_steps_due_time_not_the_tick(tmp_path, make_engine):
    steps = """\
  - id: hello
    email: {subject: "S", body: "{{ now.isoformat() }} {{ today }}"}
  - wait: 1d
  - id: early
    when: today < 2026-07-03
    sms: {text: "due {{ now.isoformat() }}"}
  - wait: 1d
  - id: late
    when: today < 2026-07-03
    sms: {text: "due {{ now.isoformat() }}"}
"""
    root = workspace(tmp_path, {"drip": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T08:00Z")
    engine.tick()
    engine.tick("2026-07-20T00:00Z")
    assert [m["body"] for m in engine.outbox("email")] == ["2026-07-01T08:00:00+00:00 2026-07-01"]
    assert [(m["step"], m["body"], m["at"]) for m in engine.outbox("sms")] == [
        ("early", "due 2026-07-02T08:00:00+00:00", "2026-07-02T08:00:00Z")]
    assert steps_of(engine, "drip", "p1")["late"] == ("skipped", "condition", "2026-07-03T08:00:00Z")


def test_one_long_tick_and_hourly_ticks_send_the_same_messages(tmp_path, make_engine):
    steps = email() + wait("1d") + sms() + wait('{until: "09:00"}') + email("bye")
    text = campaign('cron: "30 7 * * MON"', steps, extra="reenroll: after_exit\n")
    root = workspace(tmp_path, {"weekly": text}, partners_csv(partner("p1"), partner("p2", ok=False)),
                     tz="Europe/Helsinki")
    once = make_engine(root, at="2026-07-01T00:00", name="once")
    hourly = make_engine(root, at="2026-07-01T00:00", name="hourly")
    once.tick()
    once.tick("2026-07-20T00:00")
    hourly.tick()
    hourly.run("2026-07-20T00:00", every="1h")
    for engine in (once, hourly):
        assert sent(engine, "email") == [
            ("p1", "hello", "2026-07-06T04:30:00Z"), ("p1", "bye", "2026-07-07T06:00:00Z"),
            ("p1", "hello", "2026-07-13T04:30:00Z"), ("p1", "bye", "2026-07-14T06:00:00Z"),
        ]
        assert sent(engine, "sms") == [("p1", "nudge", "2026-07-07T04:30:00Z"), ("p1", "nudge", "2026-07-14T04:30:00Z")]
        assert [e[1:3] for e in enrollments(engine, "p2")] == [(1, "finished"), (2, "finished")]


# --- 3. skips and failures ----------------------------------------------------------------------


def test_a_false_when_skips_the_step_with_reason_condition(tmp_path, make_engine):
    steps = email("hello", when="partner.revenue > 5000") + sms()
    root = workspace(tmp_path, {"drip": campaign(steps=steps)},
                     partners_csv(partner("p1", revenue=9000), partner("p2", revenue=10)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert counts(report) == (2, 3, 1, 2, 0)
    assert steps_of(engine, "drip", "p2") == {
        "hello": ("skipped", "condition", "2026-07-01T00:00:00Z"),
        "nudge": ("executed", None, "2026-07-01T00:00:00Z"),
    }
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T00:00:00Z")]


def test_no_consent_skips_message_steps_with_reason_no_consent(tmp_path, make_engine):
    popup = "  - id: note\n    popup: {pages: [dashboard], title: T, body: B}\n"
    root = workspace(tmp_path, {"drip": campaign(steps=email() + sms() + popup)},
                     partners_csv(partner("p1", ok=False), partner("p2", ok=None)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert counts(report) == (2, 2, 4, 2, 0)
    for pid in ("p1", "p2"):
        assert steps_of(engine, "drip", pid) == {
            "hello": ("skipped", "no_consent", "2026-07-01T00:00:00Z"),
            "nudge": ("skipped", "no_consent", "2026-07-01T00:00:00Z"),
            "note": ("executed", None, "2026-07-01T00:00:00Z"),  # pop-ups need no consent
        }
    assert engine.outbox() == []
    assert [p["partner"] for p in engine.popups()] == ["p1", "p2"]


def test_engine_exclude_is_asked_again_at_each_step(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("1d") + sms())},
                     partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p1", role="internal"), partner("p2"))
    report = engine.tick("2026-07-03T00:00Z")
    assert counts(report) == (0, 1, 1, 2, 0)
    assert steps_of(engine, "drip", "p1") == {
        "hello": ("executed", None, "2026-07-01T00:00:00Z"),
        "nudge": ("skipped", "excluded", "2026-07-02T00:00:00Z"),
    }
    assert sent(engine, "sms") == [("p2", "nudge", "2026-07-02T00:00:00Z")]
    assert enrollments(engine, "p1")[0][2:4] == ("finished", "completed")


def test_an_internal_partner_is_never_enrolled(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email())},
                     partners_csv(partner("p1", role="internal"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    assert engine.tick().enrolled == 1
    assert enrollments(engine, "p1") == []


def test_a_partner_without_an_address_is_skipped_with_reason_no_address(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + sms())},
                     partners_csv(partner("p1", email=None), partner("p2", phone=None)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert counts(report) == (2, 2, 2, 2, 0)
    assert steps_of(engine, "drip", "p1") == {
        "hello": ("skipped", "no_address", "2026-07-01T00:00:00Z"),
        "nudge": ("executed", None, "2026-07-01T00:00:00Z"),
    }
    assert steps_of(engine, "drip", "p2") == {
        "hello": ("executed", None, "2026-07-01T00:00:00Z"),
        "nudge": ("skipped", "no_address", "2026-07-01T00:00:00Z"),
    }
    assert sent(engine, "email") == [("p2", "hello", "2026-07-01T00:00:00Z")]
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-01T00:00:00Z")]


def test_a_template_failing_for_one_partner_fails_that_step_and_the_enrollment_goes_on(tmp_path, make_engine):
    share = """\
  - id: share
    email: {subject: "Your share", body: "{{ 1000 / partner.revenue }} per mille"}
"""
    root = workspace(tmp_path, {"drip": campaign(steps=share + wait("1d") + sms())},
                     partners_csv(partner("p1", revenue=500), partner("p2", revenue=0)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    first = engine.tick()
    assert counts(first) == (2, 1, 0, 0, 1)
    assert [(m["partner"], m["body"]) for m in engine.outbox("email")] == [("p1", "2.0 per mille")]

    failed = engine.steps("drip", "p2")["steps"][0]
    assert (failed["step"], failed["status"], failed["reason"], failed["at"]) == (
        "share", "failed", "template_error", "2026-07-01T00:00:00Z")
    assert "division" in failed["error"].lower()

    second = engine.tick("2026-07-02T00:00Z")
    assert counts(second) == (0, 2, 0, 2, 0)
    assert steps_of(engine, "drip", "p2")["nudge"] == ("executed", None, "2026-07-02T00:00:00Z")
    assert enrollments(engine, "p2")[0][2:4] == ("finished", "completed")


def test_a_filter_failing_on_a_null_field_fails_only_that_partners_step(tmp_path, make_engine):
    step = """\
  - id: hello
    email: {subject: "Hi", body: "{{ partner.revenue | round }}"}
"""
    # jinja2's round filter on a null revenue raises a TypeError
    root = workspace(tmp_path, {"drip": campaign(steps=step + sms())},
                     partners_csv(partner("p1", revenue=None), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert counts(report) == (2, 3, 0, 2, 1)
    assert steps_of(engine, "drip", "p1") == {
        "hello": ("failed", "template_error", "2026-07-01T00:00:00Z"),
        "nudge": ("executed", None, "2026-07-01T00:00:00Z"),
    }
    assert [(m["partner"], m["body"]) for m in engine.outbox("email")] == [("p2", "1000")]


# --- 4. the window ------------------------------------------------------------------------------


def test_enrolled_before_the_window_the_first_step_waits_for_its_local_midnight(tmp_path, make_engine):
    text = campaign(steps=email() + wait("1d") + sms(), extra="window: {start: 2026-07-10, end: 2026-07-31}\n")
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")), tz="Europe/Helsinki")
    engine = make_engine(root, at="2026-07-01T12:00Z")
    report = engine.tick()
    assert counts(report) == (1, 0, 0, 0, 0)
    assert enrollments(engine, "p1")[0][2] == "active"
    assert engine.tick("2026-07-09T20:59:59Z").executed == 0
    engine.tick("2026-07-20T00:00Z")
    assert sent(engine, "email") == [("p1", "hello", "2026-07-09T21:00:00Z")]  # 10 July 00:00 EEST
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-10T21:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("drip", 1, "finished", "completed", "2026-07-01T12:00:00Z", "2026-07-10T21:00:00Z", "trigger")]


def test_a_step_due_after_the_window_finishes_the_enrollment_window_closed(tmp_path, make_engine):
    text = campaign(steps=email() + wait("3d") + sms(), extra="window: {start: 2026-07-01, end: 2026-07-10}\n")
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-09T12:00Z")
    engine.tick()
    report = engine.tick("2026-07-20T00:00Z")
    assert counts(report) == (0, 0, 0, 1, 0)
    assert sent(engine, "email") == [("p1", "hello", "2026-07-09T12:00:00Z")]
    assert sent(engine, "sms") == []
    assert enrollments(engine, "p1") == [
        ("drip", 1, "finished", "window_closed", "2026-07-09T12:00:00Z", "2026-07-12T12:00:00Z", "trigger")]
    assert steps_of(engine, "drip", "p1") == {
        "hello": ("executed", None, "2026-07-09T12:00:00Z"),
        "nudge": ("not_run", None, None),
    }


def test_no_trigger_enrolls_after_the_window_end(tmp_path, make_engine):
    text = campaign(steps=email(), extra="window: {start: 2026-07-01, end: 2026-07-10}\n")
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-11T00:00Z")
    assert counts(engine.tick()) == (0, 0, 0, 0, 0)
    assert enrollments(engine, "p1") == []


# --- 5. active: false ---------------------------------------------------------------------------


def test_an_inactive_campaign_neither_enrolls_nor_advances_and_resumes_overdue_steps_at_that_tick(tmp_path,
                                                                                                  make_engine):
    steps = email() + wait("1d") + sms() + wait("1d") + email("bye")
    root = workspace(tmp_path, {"drip": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_campaign(engine, "drip", campaign(steps=steps, extra="active: false\n"))
    set_partners(engine, partner("p1"), partner("p2"))  # a new partner matches meanwhile

    report = engine.tick("2026-07-05T00:00Z")
    assert counts(report) == (0, 0, 0, 0, 0)
    assert enrollments(engine, "p2") == []
    assert sent(engine, "sms") == []

    set_campaign(engine, "drip", campaign(steps=steps, extra="active: true\n"))
    report = engine.tick("2026-07-06T12:00Z")
    # p1's SMS fell due on 2 July: it goes now, and the wait after it counts from now
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-06T12:00:00Z")]
    assert sent(engine, "email", partner="p1") == [("p1", "hello", "2026-07-01T00:00:00Z")]
    assert sent(engine, "email", partner="p2") == [("p2", "hello", "2026-07-06T12:00:00Z")]
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "email", partner="p1") == [("p1", "hello", "2026-07-01T00:00:00Z"),
                                                   ("p1", "bye", "2026-07-07T12:00:00Z")]


def test_cron_occurrences_while_a_campaign_was_inactive_do_not_fire_when_it_is_switched_back_on(tmp_path,
                                                                                                 make_engine):
    text = campaign('cron: "0 9 * * *"', email(), extra="reenroll: after_exit\n")
    root = workspace(tmp_path, {"daily": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-02T00:00Z")
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T09:00:00Z")]

    set_campaign(engine, "daily", campaign('cron: "0 9 * * *"', email(), extra="reenroll: after_exit\nactive: false\n"))
    engine.tick("2026-07-03T00:00Z")
    engine.tick("2026-07-05T00:00Z")
    set_campaign(engine, "daily", text)
    engine.tick("2026-07-05T12:00Z")  # switched back on after the 5 July occurrence
    engine.tick("2026-07-06T12:00Z")
    # no message dated while the campaign was off (2, 3, 4 and 5 July 09:00)
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T09:00:00Z"), ("p1", "hello", "2026-07-06T09:00:00Z")]


# --- 6. exits -----------------------------------------------------------------------------------


def test_exit_when_turning_true_in_an_import_finishes_the_enrollment_at_that_tick(tmp_path, make_engine):
    steps = email() + wait("2d") + sms() + wait("2d") + email("bye")
    text = campaign(steps=steps, extra="exit_when: partner.paid == true\n")
    root = workspace(tmp_path, {"dunning": text}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p1", paid=True), partner("p2"))
    report = engine.tick("2026-07-01T18:00Z")
    assert counts(report) == (0, 0, 0, 1, 0)
    assert enrollments(engine, "p1") == [
        ("dunning", 1, "finished", "exit", "2026-07-01T00:00:00Z", "2026-07-01T18:00:00Z", "trigger")]

    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "sms") == [("p2", "nudge", "2026-07-03T00:00:00Z")]
    assert sent(engine, "email", partner="p1") == [("p1", "hello", "2026-07-01T00:00:00Z")]
    assert steps_of(engine, "dunning", "p1") == {
        "hello": ("executed", None, "2026-07-01T00:00:00Z"),
        "nudge": ("not_run", None, None),
        "bye": ("not_run", None, None),
    }
    assert enrollments(engine, "p1")[0][2:4] == ("finished", "exit")
    assert enrollments(engine, "p2")[0][2:4] == ("finished", "completed")


def test_exit_on_audience_loss_finishes_with_reason_audience_lost(tmp_path, make_engine):
    text = campaign(steps=email() + wait("2d") + sms(), audience='gold: partner.tier == "gold"',
                    extra="exit_on_audience_loss: true\n")
    root = workspace(tmp_path, {"gold": text}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p1", tier="silver"), partner("p2"))
    report = engine.tick("2026-07-02T06:00Z")
    assert counts(report) == (0, 0, 0, 1, 0)
    assert enrollments(engine, "p1") == [
        ("gold", 1, "finished", "audience_lost", "2026-07-01T00:00:00Z", "2026-07-02T06:00:00Z", "trigger")]
    engine.tick("2026-07-05T00:00Z")
    assert sent(engine, "sms") == [("p2", "nudge", "2026-07-03T00:00:00Z")]


def test_exit_when_is_checked_as_of_each_steps_due_time(tmp_path, make_engine):
    steps = email() + wait("1d") + sms() + wait("1d") + email("bye")
    text = campaign(steps=steps, extra="exit_when: now >= 2026-07-02T12:00Z\n")
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    report = engine.tick("2026-07-10T00:00Z")
    assert counts(report) == (0, 1, 0, 1, 0)
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-02T00:00:00Z")]
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T00:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("drip", 1, "finished", "exit", "2026-07-01T00:00:00Z", "2026-07-03T00:00:00Z", "trigger")]


def test_without_exit_on_audience_loss_a_partner_who_stops_matching_goes_on(tmp_path, make_engine):
    text = campaign(steps=email() + wait("2d") + sms(), audience='gold: partner.tier == "gold"')
    root = workspace(tmp_path, {"gold": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p1", tier="silver"))
    engine.tick("2026-07-05T00:00Z")
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T00:00:00Z")]


# --- 7. reenroll and exclusivity ----------------------------------------------------------------


def test_reenroll_never_keeps_a_finished_partner_out_but_a_removed_one_comes_back(tmp_path, make_engine):
    root = workspace(tmp_path, {"once": campaign(steps=email() + wait("1d") + sms(), extra="reenroll: never\n")},
                     partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.remove("once", "p2", at="2026-07-01T06:00Z")
    engine.tick("2026-07-01T12:00Z")  # p2 was removed (a reset): enrolled again
    engine.tick("2026-07-10T00:00Z")
    engine.tick("2026-08-10T00:00Z")
    assert [e[1:4] for e in enrollments(engine, "p1")] == [(1, "finished", "completed")]
    assert [e[1:5] for e in enrollments(engine, "p2")] == [(1, "removed", "removed", "2026-07-01T00:00:00Z"),
                                                          (2, "finished", "completed", "2026-07-01T12:00:00Z")]
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T00:00:00Z"), ("p2", "hello", "2026-07-01T00:00:00Z"),
                                     ("p2", "hello", "2026-07-01T12:00:00Z")]


def test_reenroll_after_a_duration_counts_from_the_finish(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("1d"), extra="reenroll: 10d\n")},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-02T00:00Z")  # finished now (after the trailing wait)
    assert enrollments(engine, "p1")[0][2:6] == ("finished", "completed", "2026-07-01T00:00:00Z",
                                                 "2026-07-02T00:00:00Z")
    assert engine.tick("2026-07-11T23:59:59Z").enrolled == 0
    assert engine.tick("2026-07-12T00:00Z").enrolled == 1
    assert [(e[1], e[4]) for e in enrollments(engine, "p1")] == [(1, "2026-07-01T00:00:00Z"),
                                                                 (2, "2026-07-12T00:00:00Z")]
    assert sent(engine, "email") == [("p1", "hello", "2026-07-01T00:00:00Z"), ("p1", "hello", "2026-07-12T00:00:00Z")]


def test_reenroll_after_exit_enrolls_the_audience_again_at_the_next_tick_after_it_finished(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("1d"), extra="reenroll: after_exit\n")},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-02T00:00Z")  # finished at this very instant: not again at it
    assert [e[1:4] for e in enrollments(engine, "p1")] == [(1, "finished", "completed")]
    engine.tick("2026-07-02T01:00Z")
    assert [(e[1], e[2], e[4]) for e in enrollments(engine, "p1")] == [
        (1, "finished", "2026-07-01T00:00:00Z"), (2, "active", "2026-07-02T01:00:00Z")]


EXCLUSIVE_A = campaign(steps=email("a-mail") + wait("2d"), extra="exclusive: true\n")


def exclusive_b(treated: str) -> str:
    return campaign(steps=email("b-mail"), extra=f"exclusive: true\npreviously_treated: {treated}\n")


def test_exclusive_campaigns_previously_treated_exclude(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    rewrite(engine.root / "campaigns" / "b.yaml", exclusive_b("exclude"))
    engine.tick("2026-07-02T00:00Z")  # p1 still in a
    engine.tick("2026-07-05T00:00Z")  # a finished on 3 July: once treated, never in b
    engine.tick("2026-07-06T00:00Z")
    assert enrollments(engine, "p1", "b") == []
    assert enrollments(engine, "p1", "a")[0][2:6] == ("finished", "completed", "2026-07-01T00:00:00Z",
                                                      "2026-07-03T00:00:00Z")


def test_exclusive_campaigns_previously_treated_include_waits_until_the_other_one_ends(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    rewrite(engine.root / "campaigns" / "b.yaml", exclusive_b("include"))
    assert engine.tick("2026-07-02T00:00Z").enrolled == 0  # still in exclusive a
    assert engine.tick("2026-07-05T00:00Z").enrolled == 1
    assert enrollments(engine, "p1", "b") == [
        ("b", 1, "finished", "completed", "2026-07-05T00:00:00Z", "2026-07-05T00:00:00Z", "trigger")]
    assert sent(engine, "email") == [("p1", "a-mail", "2026-07-01T00:00:00Z"), ("p1", "b-mail", "2026-07-05T00:00:00Z")]


def test_two_exclusive_audience_campaigns_sampled_at_one_tick_take_the_partner_once(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": EXCLUSIVE_A, "b": exclusive_b("include")}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    assert engine.tick().enrolled == 1
    assert [e[0] for e in enrollments(engine, "p1")] == ["a"]


def test_a_non_exclusive_campaign_ignores_exclusive_ones(tmp_path, make_engine):
    plain = campaign(steps=email("c-mail"))
    root = workspace(tmp_path, {"a": EXCLUSIVE_A, "c": plain}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    assert engine.tick().enrolled == 2


# --- 8. translations and BCC --------------------------------------------------------------------


def test_the_translation_is_chosen_by_partner_language_and_bcc_is_added(tmp_path, make_engine):
    steps = """\
  - id: hello
    email:
      subject: "Hello {{ partner.name }}"
      body: "Hi there"
      translations:
        fi: {subject: "Hei {{ partner.name }}", template: hello.fi.txt.j2}
  - id: nudge
    sms:
      text: "Hello"
      translations:
        fi: {text: "Hei"}
"""
    root = workspace(tmp_path, {"drip": campaign(steps=steps)},
                     partners_csv(partner("p1", language="fi"), partner("p2", language="sv"),
                                  partner("p3", language=None)),
                     "channels: {email: {transport: file, bcc: audit@example.com}}\n",
                     templates={"hello.fi.txt.j2": "Moi {{ partner.name }}"})
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    mails = [(m["partner"], m["language"], m["subject"], m["body"], m["to"], m.get("bcc"))
             for m in engine.outbox("email")]
    assert mails == [
        ("p1", "fi", "Hei P1", "Moi P1", "p1@example.com", "audit@example.com"),
        ("p2", "default", "Hello P2", "Hi there", "p2@example.com", "audit@example.com"),
        ("p3", "default", "Hello P3", "Hi there", "p3@example.com", "audit@example.com"),
    ]
    texts = [(m["partner"], m["language"], m["body"], m["to"], "bcc" in m) for m in engine.outbox("sms")]
    assert texts == [("p1", "fi", "Hei", "+358-p1", False), ("p2", "default", "Hello", "+358-p2", False),
                     ("p3", "default", "Hello", "+358-p3", False)]
    assert [m["bcc"] for m in engine.sent("email")] == ["audit@example.com"] * 3


def test_without_bcc_configured_messages_have_no_bcc(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email())}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    assert "bcc" not in engine.outbox("email")[0]


# --- 9. the partner source ------------------------------------------------------------------------


def test_a_partner_removed_from_the_source_finishes_when_its_next_step_falls_due(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("2d") + sms())},
                     partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p2"))
    report = engine.tick("2026-07-02T00:00Z")
    assert counts(report) == (0, 0, 0, 0, 0)
    assert enrollments(engine, "p1")[0][2] == "active"  # not before its step is due

    report = engine.tick("2026-07-05T00:00Z")
    assert counts(report) == (0, 1, 0, 2, 0)
    assert enrollments(engine, "p1") == [
        ("drip", 1, "finished", "partner_removed", "2026-07-01T00:00:00Z", "2026-07-03T00:00:00Z", "trigger")]
    assert sent(engine, "sms") == [("p2", "nudge", "2026-07-03T00:00:00Z")]


def test_a_partner_source_with_an_error_is_not_imported_at_all(tmp_path, make_engine):
    text = campaign(steps=email() + wait("1d") + sms(), audience='gold: partner.tier == "gold"')
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1"), partner("p2", tier="silver")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    # p2 turns gold, p1 is renamed and p1's phone changes, but p3's revenue is not a number
    set_partners(engine, partner("p1", name="Renamed"), partner("p2"), partner("p3", revenue="lots"))
    report = engine.tick("2026-07-02T00:00Z")
    assert report.diagnostics
    assert any(d.severity == "error" and d.span.path.endswith("partners.csv") and d.span.line == 4
               for d in report.diagnostics)
    assert report.enrolled == 0  # the old records: p2 is still silver, p3 unknown
    assert [m["body"] for m in engine.outbox("sms")] == ["T P1"]
    assert enrollments(engine, "p2") == [] and enrollments(engine, "p3") == []

    set_partners(engine, partner("p1", name="Renamed"), partner("p2"), partner("p3", revenue=5))
    report = engine.tick("2026-07-03T00:00Z")
    assert not report.diagnostics
    assert report.enrolled == 2


def test_a_bad_partner_source_that_leaves_a_partner_out_does_not_remove_it(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("1d") + sms())},
                     partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_partners(engine, partner("p2", active="maybe"))  # p1 left out, and a bad bool
    report = engine.tick("2026-07-03T00:00Z")
    assert [(d.severity, d.span.line) for d in report.diagnostics] == [("error", 2)]
    assert counts(report) == (0, 2, 0, 2, 0)
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-02T00:00:00Z"), ("p2", "nudge", "2026-07-02T00:00:00Z")]
    assert enrollments(engine, "p1")[0][2:4] == ("finished", "completed")


# --- 10. a campaign file with errors ------------------------------------------------------------------


def test_a_campaign_file_with_an_error_does_not_run_while_the_others_do(tmp_path, make_engine):
    broken = campaign(steps=email("broken-mail"), audience='gold: partner.tier == "gold" and partner.countyr == "FI"')
    root = workspace(tmp_path, {"good": campaign(steps=email("good-mail")), "broken": broken},
                     partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert report.enrolled == 1
    assert sent(engine, "email") == [("p1", "good-mail", "2026-07-01T00:00:00Z")]
    assert enrollments(engine, "p1", "broken") == []
    errors = [d for d in report.diagnostics if d.severity == "error"]
    assert len(errors) == 1
    assert errors[0].span.path.endswith("broken.yaml")
    assert "countyr" in errors[0].message
    assert report.to_json()["errors"][0]["message"] == errors[0].message


def test_fixing_a_broken_campaign_file_lets_it_run(tmp_path, make_engine):
    broken = campaign(steps=email(), audience='gold: partner.countyr == "FI"')
    root = workspace(tmp_path, {"late": broken}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    assert engine.tick().enrolled == 0
    set_campaign(engine, "late", campaign(steps=email()))
    report = engine.tick("2026-07-02T00:00Z")
    assert not report.diagnostics
    assert sent(engine, "email") == [("p1", "hello", "2026-07-02T00:00:00Z")]


# --- 11. a step removed from the file -----------------------------------------------------------------


STEPS_BEFORE = email("first") + wait("1d") + sms("middle") + wait("1d") + email("last")
STEPS_AFTER = email("first") + wait("1d") + wait("1d") + email("last")  # "middle" left the file


def test_a_removed_step_is_closed_with_step_removed_and_the_enrollment_goes_on(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=STEPS_BEFORE)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_campaign(engine, "drip", campaign(steps=STEPS_AFTER))
    report = engine.tick("2026-07-10T00:00Z")
    assert (report.executed, report.skipped, report.finished, report.failed) == (1, 1, 1, 0)
    states = steps_of(engine, "drip", "p1")
    assert states["first"] == ("executed", None, "2026-07-01T00:00:00Z")
    assert states["middle"] == ("skipped", "step_removed", "2026-07-02T00:00:00Z")  # when it was due
    assert states["last"][:2] == ("executed", None)
    assert sent(engine, "sms") == []
    assert [m[:2] for m in sent(engine, "email")] == [("p1", "first"), ("p1", "last")]
    assert enrollments(engine, "p1")[0][2:4] == ("finished", "completed")


def test_after_a_removed_step_the_next_step_keeps_the_due_time_its_waits_give(tmp_path, make_engine):
    """``first`` ran on 1 July and two days of waits now separate it from ``last``: ``last`` is due
    on 3 July, which is also when it was due before ``middle`` left the file."""
    root = workspace(tmp_path, {"drip": campaign(steps=STEPS_BEFORE)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    set_campaign(engine, "drip", campaign(steps=STEPS_AFTER))
    engine.tick("2026-07-10T00:00Z")
    assert steps_of(engine, "drip", "p1")["last"] == ("executed", None, "2026-07-03T00:00:00Z")
    assert sent(engine, "email") == [("p1", "first", "2026-07-01T00:00:00Z"), ("p1", "last", "2026-07-03T00:00:00Z")]
    assert enrollments(engine, "p1")[0][5] == "2026-07-03T00:00:00Z"


# --- 12. editing a running campaign -------------------------------------------------------------


def test_a_step_appended_while_an_enrollment_waits_after_its_last_step_runs_for_it(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email() + wait("3d"))}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    engine.tick("2026-07-02T00:00Z")  # p1 waits in the trailing 3 days
    rewrite(engine.root / "campaigns" / "drip.yaml",
            campaign(steps=email() + wait("3d") + sms() + wait("1d")))
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-04T00:00:00Z")]
    assert enrollments(engine, "p1") == [
        ("drip", 1, "finished", "completed", "2026-07-01T00:00:00Z", "2026-07-05T00:00:00Z", "trigger")]


def test_a_step_appended_after_an_enrollment_finished_never_runs_for_it(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": campaign(steps=email())}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()
    rewrite(engine.root / "campaigns" / "drip.yaml", campaign(steps=email() + sms()))
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "sms") == []
    assert enrollments(engine, "p1")[0][2:4] == ("finished", "completed")
