"""Property tests of experiments and policies (hypothesis): the pure rules of campaigns.policy
for any times, zones, windows and send histories, and the tick's invariants on a workspace where
three campaigns compete under a cap and quiet hours: whatever the ticks' times, no partner ever
gets more emails than the cap in any window, no message goes out inside the partner's quiet
hours, and every partner gets the same variants and paths (across ticks, processes and stores)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.model import Cap, QuietHours
from campaigns.policy import Rules, cap_allows, cap_frees, next_allowed, sending_hold
from engine.api import Engine
from engine.clock import FixedClock
from engine.testing import separate_store

UTC = timezone.utc
ZONES = ["Europe/Helsinki", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "UTC"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))
clocks = st.integers(min_value=0, max_value=24 * 4 - 1).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")


def _quiet(local: time, quiet: QuietHours) -> bool:
    start, end = time.fromisoformat(quiet.from_), time.fromisoformat(quiet.to)
    return start <= local < end if start < end else (local >= start or local < end)


def _allowed(at: datetime, tz: ZoneInfo, rules: Rules) -> bool:
    local = at.astimezone(tz)
    if rules.send_days is not None and DAYS[local.weekday()] not in rules.send_days:
        return False
    return rules.quiet_hours is None or not _quiet(local.time().replace(tzinfo=None), rules.quiet_hours)


@pytest.mark.no_store
@settings(max_examples=300, deadline=None)
@given(instants, st.sampled_from(ZONES), clocks, clocks,
       st.sets(st.sampled_from(DAYS), min_size=1).map(lambda days: tuple(d for d in DAYS if d in days)))
def test_the_next_allowed_instant_is_allowed_and_nothing_allowed_comes_before_it(due, zone, start, end, days):
    quiet = QuietHours.model_validate({"from": start, "to": end}) if start != end else None
    rules = Rules(quiet_hours=quiet, send_days=days)
    tz = ZoneInfo(zone)
    found = next_allowed(due, tz, rules)
    assert found >= due
    assert _allowed(found, tz, rules)
    hold = sending_hold(due, tz, rules)
    assert (hold is None) == (found == due)
    probe = due
    while probe < found:  # every quarter of an hour before it (the clocks are on quarter hours) is not allowed
        assert not _allowed(probe, tz, rules), (probe, found)
        probe = (probe + timedelta(minutes=15)).replace(minute=probe.minute // 15 * 15 % 60, second=0, microsecond=0) \
            if probe.minute % 15 or probe.second or probe.microsecond else probe + timedelta(minutes=15)


def _windows_hold(times: list[datetime], cap: Cap) -> bool:
    ordered = sorted(times)
    return all(sum(1 for t in ordered if end - cap.per < t <= end) <= cap.max for end in ordered)


attempts = st.lists(st.integers(min_value=0, max_value=60 * 24 * 30), max_size=40)


@pytest.mark.no_store
@settings(max_examples=300, deadline=None)
@given(attempts, st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=10), st.booleans())
def test_whatever_order_sends_are_tried_in_the_cap_is_never_exceeded(minutes, most, days, shuffled):
    cap = Cap(max=most, per=timedelta(days=days))
    start = datetime(2026, 7, 1, tzinfo=UTC)
    tries = [start + timedelta(minutes=m) for m in minutes]
    if not shuffled:
        tries.sort()
    sent: list[datetime] = []
    for at in tries:
        window = [s for s in sent if at - cap.per < s <= at]
        if cap_allows(at, sorted(sent), cap):
            if not shuffled:  # in time order this is the SPEC's count over (t - per, t]
                assert len(window) < cap.max
            sent.append(at)
        else:
            if not shuffled:
                assert len(window) >= cap.max
            freed = cap_frees(at, sorted(sent), cap)
            assert freed > at and cap_allows(freed, sorted(sent), cap)
    assert _windows_hold(sent, cap)


# --- the tick ---------------------------------------------------------------------------------------

START = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 7, 22, 0, 0, tzinfo=UTC)
PARTNERS = [(f"p{i}", ZONES[i % 3]) for i in range(12)]

FILES = {
    "engine.yaml": """\
timezone: UTC
partners:
  source: partners.csv
  timezone_field: tz
  fields: {name: string, email: string, tz: string}
consent: {email: "true"}
policies:
  frequency: {email: {max: 2, per: 7d}}
  quiet_hours: {from: "21:00", to: "08:00"}
""",
    "campaigns/a-welcome.yaml": """\
trigger: {audience: true}
audience: {rulesets: {all: "true"}}
priority: 2
holdout: 25%
steps:
  - id: welcome
    email:
      subject: Default
      body: Hello
      variants: {short: {weight: 1, subject: Short}, long: {weight: 1, subject: Long}}
  - wait: 13h
  - id: follow-up
    email: {subject: Again, body: Hello again}
""",
    "campaigns/b-path.yaml": """\
trigger: {audience: true}
audience: {rulesets: {all: "true"}}
priority: 1
steps:
  - id: route
    split: {call: {weight: 30, goto: late}, mail: {weight: 70}}
  - id: early
    email: {subject: Early, body: Hi}
  - wait: 1d
  - id: late
    email: {subject: Late, body: Hi}
""",
    "campaigns/c-news.yaml": """\
trigger: {cron: "0 7 * * *"}
audience: {rulesets: {all: "true"}}
reenroll: after_exit
steps:
  - id: news
    email: {subject: News, body: Today}
""",
}


def _workspace(root: Path) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    rows = "\n".join(f"{pid},{pid.upper()},{pid}@example.com,{zone}" for pid, zone in PARTNERS)
    (root / "partners.csv").write_text(f"id,name,email,tz\n{rows}\n", encoding="utf-8")
    return root


def _sends(engine: Engine) -> list[tuple]:
    return sorted((m["partner"], m["campaign"], m["step"], m["at"], m.get("variant")) for m in engine.outbox("email"))


def _choices(engine: Engine) -> list[tuple]:
    return sorted(engine.store.db.execute(
        "SELECT e.partner, e.campaign, r.step, r.status, r.reason, r.detail FROM step_runs r "
        "JOIN enrollments e ON e.id = r.enrollment ORDER BY 1, 2, 3").fetchall())


def _run(times: list[datetime], *, sqlite: bool = False) -> tuple[list[tuple], list[tuple]]:
    """Sends and step runs after ticking at START, at ``times`` and at END: on the test's store
    (SQLite, or PostgreSQL in the PostgreSQL run), or on SQLite."""
    root = Path(tempfile.mkdtemp(prefix="policy-property-"))
    try:
        with separate_store() as url:
            store = "sqlite:///.engine/state.db" if sqlite else url
            with Engine.open(_workspace(root), store=store, clock=FixedClock(START)) as engine:
                for moment in [START, *sorted(times), END]:
                    engine.tick(moment)
                return _sends(engine), [tuple(row) for row in _choices(engine)]
    finally:
        shutil.rmtree(root, ignore_errors=True)


_REFERENCE: dict[str, tuple] = {}


def reference() -> tuple[list[tuple], list[tuple]]:
    """One tick at the start and one at the end, on SQLite: in the PostgreSQL run of this
    module, every comparison with it is one across stores too."""
    if "once" not in _REFERENCE:
        _REFERENCE["once"] = _run([], sqlite=True)
    return _REFERENCE["once"]


def test_the_reference_run_caps_and_keeps_quiet():
    sends, choices = reference()
    zones = dict(PARTNERS)
    cap = Cap(max=2, per=timedelta(days=7))
    quiet = QuietHours.model_validate({"from": "21:00", "to": "08:00"})
    for pid in zones:
        mine = [datetime.fromisoformat(at.replace("Z", "+00:00")) for p, _, _, at, _ in sends if p == pid]
        assert _windows_hold(mine, cap), pid
        for at in mine:
            assert not _quiet(at.astimezone(ZoneInfo(zones[pid])).time(), quiet), (pid, at)
    reasons = {reason for *_, reason, _ in choices}
    assert {"holdout", "frequency_cap"} <= reasons  # the workspace exercises both
    assert {v for *_, v in sends if v} == {"short", "long"}


def test_this_store_gives_what_sqlite_gives():
    assert _run([]) == reference()


minutes = st.integers(min_value=1, max_value=int((END - START).total_seconds() // 60) - 1)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(minutes, max_size=12, unique=True))
def test_any_tick_times_give_the_same_sends_variants_and_paths(offsets):
    assert _run([START + timedelta(minutes=m) for m in offsets]) == reference()


def test_another_process_assigns_the_same_variants_and_paths(tmp_path):
    """`engine tick` in a subprocess (its own hash seed) against the in-process reference."""
    root = _workspace(tmp_path / "ws")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    with separate_store() as url:
        env["ENGINE_STORE"] = url or f"sqlite:///{tmp_path / 'state.db'}"
        for moment in (START, END):
            subprocess.run([sys.executable, "-m", "engine", "-w", str(root), "tick", "--at", moment.isoformat()],
                           env=env, check=True, capture_output=True)
        with Engine.open(root, store=env["ENGINE_STORE"], clock=FixedClock(END)) as engine:
            assert (_sends(engine), [tuple(r) for r in _choices(engine)]) == reference()


def test_details_name_the_variant_and_path():
    _, choices = reference()
    variants = {json.loads(d)["variant"] for p, c, s, status, _, d in choices if s == "welcome" and status == "executed"}
    paths = {json.loads(d)["path"] for p, c, s, status, _, d in choices if s == "route"}
    assert variants == {"short", "long"} and paths == {"call", "mail"}
