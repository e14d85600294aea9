"""Property tests of the tick's invariants (hypothesis), on a small workspace across the spring
DST change in Helsinki: whatever the ticks' times, the same messages go out at the same logical
times, no message is sent twice, and a second tick at the same time does nothing."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api import Engine
from engine.clock import FixedClock
from engine.testing import separate_store

UTC = timezone.utc
START = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)
END = datetime(2026, 4, 12, 0, 0, tzinfo=UTC)

FILES = {
    "engine.yaml": """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  fields: {name: string, email: string, phone: string, tier: {enum: [silver, gold]}, ok: bool}
consent: {email: partner.ok, sms: partner.ok}
""",
    "partners.csv": """\
id,name,email,phone,tier,ok
p1,Aino,aino@example.com,+3584011,gold,true
p2,Ben,ben@example.com,,silver,true
p3,Cleo,cleo@example.com,+3584033,gold,false
p4,Dan,dan@example.com,+3584044,gold,true
""",
    "campaigns/welcome.yaml": """\
name: Welcome
trigger: {audience: true}
audience: {rulesets: {gold: partner.tier == "gold"}}
window: {start: 2026-03-22, end: 2026-04-05}
steps:
  - id: hello
    email: {subject: "Hi {{ partner.name }}", body: "It is {{ now.isoformat() }}"}
  - wait: {until: "03:30"}
  - id: early
    sms: {text: "Early bird {{ partner.name }}"}
  - wait: 1d
  - id: late
    when: not opened("hello")
    email: {subject: "Again", body: "{{ today }}"}
""",
    "campaigns/weekly.yaml": """\
name: Weekly
trigger: {cron: "30 3 * * SUN"}
audience: {rulesets: {all: partner.ok == true}}
reenroll: after_exit
steps:
  - id: digest
    email: {subject: "Digest", body: "Week of {{ today }}"}
  - wait: 2d
  - id: ping
    sms: {text: "Ping"}
""",
    "campaigns/event.yaml": """\
name: Event
trigger: {event: order.placed, when: event.total > 10}
audience: {rulesets: {all: partner.ok == true}}
reenroll: after_exit
steps:
  - id: thanks
    email: {subject: "Thanks", body: "{{ partner.name }}"}
  - wait: 12h
  - id: survey
    sms: {text: "How was it?"}
""",
    "events.jsonl": """\
{"type": "order.placed", "at": "2026-03-25T10:00:00Z", "partner": "p1", "data": {"total": 50}}
{"type": "order.placed", "at": "2026-03-28T23:30:00Z", "partner": "p4", "data": {"total": 5}}
{"type": "order.placed", "at": "2026-03-29T00:45:00Z", "partner": "p4", "data": {"total": 99}}
{"type": "opened", "at": "2026-03-22T08:00:00Z", "partner": "p4", "campaign": "welcome", "step": "hello"}
""",
}


def _workspace(root: Path) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _run(times: list[datetime]) -> tuple[list[tuple], list[tuple]]:
    """Sends and step states after ticking at START, at ``times`` and at END."""
    root = Path(tempfile.mkdtemp(prefix="tick-property-"))
    try:
        with separate_store() as store, Engine.open(_workspace(root), store=store, clock=FixedClock(START)) as engine:
            engine.import_events(root / "events.jsonl")
            for moment in [START, *sorted(times), END]:
                engine.tick(moment)
            repeat = engine.tick(END)
            assert (repeat.enrolled, repeat.executed, repeat.skipped, repeat.finished) == (0, 0, 0, 0)
            sent = [(m["channel"], m["campaign"], m["step"], m["partner"], m["at"], m.get("subject"), m["body"])
                    for channel in ("email", "sms") for m in engine.sent(channel)]
            ids = [m["id"] for channel in ("email", "sms") for m in engine.sent(channel)]
            assert len(ids) == len(set(ids)), "a message was sent twice"
            states = engine.store.db.execute(
                "SELECT e.campaign, e.partner, e.number, e.status, e.reason, r.step, r.status, r.reason, r.at "
                "FROM enrollments e LEFT JOIN step_runs r ON r.enrollment = e.id ORDER BY 1, 2, 3, 6").fetchall()
        return sorted(sent), [tuple(s) for s in states]
    finally:
        shutil.rmtree(root, ignore_errors=True)


_REFERENCE: dict[str, tuple] = {}


def reference() -> tuple[list[tuple], list[tuple]]:
    """One tick at the start and one at the end."""
    if "once" not in _REFERENCE:
        _REFERENCE["once"] = _run([])
    return _REFERENCE["once"]


minutes = st.integers(min_value=1, max_value=int((END - START).total_seconds() // 60) - 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(minutes, max_size=25, unique=True))
def test_any_tick_times_give_the_same_sends_and_states(offsets):
    times = [START + timedelta(minutes=m) for m in offsets]
    assert _run(times) == reference()


def test_the_reference_run_sends_what_the_campaigns_say():
    sent, _ = reference()
    by_step: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for channel, campaign, step, partner, at, _, _ in sent:
        by_step.setdefault((campaign, step), []).append((partner, at))
    # gold partners with consent (p3 has none), at the window's start: local midnight on
    # 22 March is 21 March 22:00Z
    assert sorted(by_step[("welcome", "hello")]) == [("p1", "2026-03-21T22:00:00Z"), ("p4", "2026-03-21T22:00:00Z")]
    # the next 03:30 local after midnight: 22 March 03:30 EET = 01:30Z
    assert sorted(by_step[("welcome", "early")]) == [("p1", "2026-03-22T01:30:00Z"), ("p4", "2026-03-22T01:30:00Z")]
    # p4 opened the welcome: only p1 gets the second email, a day later
    assert by_step[("welcome", "late")] == [("p1", "2026-03-23T01:30:00Z")]
    # Sundays at 03:30 local: 22 March (EET, 01:30Z); 29 March is the DST change, 03:30 does not
    # exist, so the end of the gap (04:00 EEST = 01:00Z); 5 April (EEST, 00:30Z)
    digest_times = sorted({at for _, at in by_step[("weekly", "digest")]})
    assert digest_times == ["2026-03-22T01:30:00Z", "2026-03-29T01:00:00Z", "2026-04-05T00:30:00Z"]
    # order events: p1's total 50 enrolls at its time; p4's 5 does not, its 99 does
    assert sorted(by_step[("event", "thanks")]) == [("p1", "2026-03-25T10:00:00Z"), ("p4", "2026-03-29T00:45:00Z")]
    assert sorted(by_step[("event", "survey")]) == [("p1", "2026-03-25T22:00:00Z"), ("p4", "2026-03-29T12:45:00Z")]
