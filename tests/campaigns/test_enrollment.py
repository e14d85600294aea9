"""Enrollment statuses and operations (every allowed and refused transition, with its message),
the re-enrollment and exclusivity rules of triggers, and when the next step is due, DST
included."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.enrollment import (
    CURRENT,
    STEP_TRANSITIONS,
    TRANSITIONS,
    Operation,
    Origin,
    PastEnrollment,
    Refused,
    Status,
    after_resume,
    current_status,
    eligible,
    eligible_for_trigger,
    next_due,
    step_transition,
    transition,
    window_opens,
)
from campaigns.model import Campaign, Until, Wait, Window

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
WHO = {"partner": "p001", "campaign": "partner-onboarding"}


# --- Transitions --------------------------------------------------------------------------------

ALLOWED = [
    ("start", "none", "active"),
    ("start", "finished", "active"),
    ("start", "removed", "active"),
    ("schedule", "none", "scheduled"),
    ("schedule", "finished", "scheduled"),
    ("schedule", "removed", "scheduled"),
    ("activate", "scheduled", "active"),
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
    ("finish", "active", "finished"),
]


@pytest.mark.parametrize("operation, before, after", ALLOWED)
def test_allowed_transitions(operation: str, before: str, after: str) -> None:
    assert transition(operation, before, **WHO) == after


def test_the_table_is_exactly_the_allowed_list() -> None:
    assert {(op.value, s.value): a.value for (op, s), a in TRANSITIONS.items()} == {(o, b): a for o, b, a in ALLOWED}


REFUSED = [
    ("start", "active", "partner p001 already has an active enrollment in partner-onboarding; "
                        "remove it first or wait until it finishes"),
    ("start", "paused", "partner p001 already has a paused enrollment in partner-onboarding; "
                        "resume it, or remove it first"),
    ("start", "scheduled", "partner p001 already has a scheduled enrollment in partner-onboarding; "
                           "remove it first to start at another time"),
    ("schedule", "active", "partner p001 already has an active enrollment in partner-onboarding; "
                           "remove it first or wait until it finishes"),
    ("pause", "scheduled", "cannot pause the enrollment of partner p001 in partner-onboarding: it is scheduled; "
                           "remove it to cancel it, or pause it once it has started"),
    ("pause", "paused", "cannot pause the enrollment of partner p001 in partner-onboarding: it is paused"),
    ("pause", "finished", "cannot pause the enrollment of partner p001 in partner-onboarding: it is finished; "
                          "start it again for a new enrollment"),
    ("pause", "none", "partner p001 has no enrollment in partner-onboarding to pause"),
    ("resume", "active", "cannot resume the enrollment of partner p001 in partner-onboarding: it is active"),
    ("resume", "scheduled", "cannot resume the enrollment of partner p001 in partner-onboarding: it is scheduled"),
    ("resume", "removed", "cannot resume the enrollment of partner p001 in partner-onboarding: it is removed; "
                          "start it again for a new enrollment"),
    ("remove", "finished", "cannot remove the enrollment of partner p001 in partner-onboarding: it is finished; "
                           "start it again for a new enrollment"),
    ("remove", "removed", "cannot remove the enrollment of partner p001 in partner-onboarding: it is removed; "
                          "start it again for a new enrollment"),
    ("remove", "none", "partner p001 has no enrollment in partner-onboarding to remove"),
    ("skip", "finished", "cannot skip the enrollment of partner p001 in partner-onboarding: it is finished; "
                         "start it again for a new enrollment"),
    ("skip", "scheduled", "cannot skip the enrollment of partner p001 in partner-onboarding: it is scheduled"),
    ("rerun", "removed", "cannot rerun the enrollment of partner p001 in partner-onboarding: it is removed; "
                         "a removed enrollment keeps no progress; start it again instead"),
    ("rerun", "none", "partner p001 has no enrollment in partner-onboarding to rerun"),
    ("finish", "paused", "cannot finish the enrollment of partner p001 in partner-onboarding: it is paused"),
    ("activate", "active", "cannot activate the enrollment of partner p001 in partner-onboarding: it is active"),
]


@pytest.mark.parametrize("operation, before, message", REFUSED)
def test_refused_transitions_say_what_to_do(operation: str, before: str, message: str) -> None:
    with pytest.raises(Refused) as refused:
        transition(operation, before, **WHO)
    assert str(refused.value) == message == refused.value.message


def test_every_pair_not_in_the_table_is_refused() -> None:
    for operation in Operation:
        for status in Status:
            if (operation, status) not in TRANSITIONS:
                with pytest.raises(Refused):
                    transition(operation, status)


def test_the_refusal_reads_well_without_names() -> None:
    with pytest.raises(Refused, match="^the partner already has an active enrollment in this campaign; "):
        transition("start", "active")


STEP_CASES = [
    ("skip", "active", "pending", "skipped"),
    ("skip", "paused", "pending", "skipped"),
    ("rerun", "active", "executed", "executed"),
    ("rerun", "finished", "executed", "executed"),
    ("execute", "active", "pending", "executed"),
    ("fail", "active", "pending", "failed"),
]


@pytest.mark.parametrize("operation, enrollment, step, after", STEP_CASES)
def test_allowed_step_operations(operation: str, enrollment: str, step: str, after: str) -> None:
    assert step_transition(operation, enrollment, step, step_id="welcome", **WHO) == after


def test_an_enrollment_operation_is_not_a_step_operation() -> None:
    with pytest.raises(ValueError):
        step_transition("pause", "active", "pending")


def test_the_step_table_is_exactly_the_allowed_list() -> None:
    allowed = {(o, s): a for o, _, s, a in STEP_CASES}
    assert {(op.value, s.value): a.value for (op, s), a in STEP_TRANSITIONS.items()} == allowed


STEP_REFUSED = [
    ("skip", "active", "executed", "cannot skip step welcome of partner p001 in partner-onboarding: "
                                   "it is executed, and only a pending step can be skipped"),
    ("skip", "active", "skipped", "cannot skip step welcome of partner p001 in partner-onboarding: "
                                  "it is skipped, and only a pending step can be skipped"),
    ("rerun", "active", "pending", "cannot rerun step welcome of partner p001 in partner-onboarding: "
                                   "it is pending, and only an executed step can be run again"),
    ("rerun", "finished", "failed", "cannot rerun step welcome of partner p001 in partner-onboarding: "
                                    "it is failed, and only an executed step can be run again"),
    # the enrollment is checked first
    ("skip", "finished", "pending", "cannot skip step welcome of partner p001 in partner-onboarding: "
                                    "its enrollment is finished; start it again for a new enrollment"),
    ("rerun", "removed", "executed", "cannot rerun step welcome of partner p001 in partner-onboarding: "
                                     "its enrollment is removed; a removed enrollment keeps no progress; "
                                     "start it again instead"),
]


@pytest.mark.parametrize("operation, enrollment, step, message", STEP_REFUSED)
def test_refused_step_operations(operation: str, enrollment: str, step: str, message: str) -> None:
    with pytest.raises(Refused) as refused:
        step_transition(operation, enrollment, step, step_id="welcome", **WHO)
    assert str(refused.value) == message


# --- Who a trigger may enroll -------------------------------------------------------------------


def campaign(**fields) -> Campaign:
    return Campaign.model_validate(fields)


def past(campaign_id: str, status: str, days_ago: float = 10, number: int = 1, exclusive: bool = False) -> PastEnrollment:
    ended = NOW - timedelta(days=days_ago) if status in ("finished", "removed") else None
    return PastEnrollment(campaign_id, number, status, NOW - timedelta(days=days_ago + 30), ended, exclusive)


C = "onboarding"

ELIGIBILITY = [
    # (campaign fields, history, eligible, reason)
    ({}, [], True, ""),
    ({"reenroll": "never"}, [past(C, "finished")], False, "already enrolled in onboarding before (reenroll: never)"),
    ({"reenroll": "never"}, [past(C, "removed")], True, ""),  # removal is a reset
    ({"reenroll": "never"}, [past("other", "finished")], True, ""),
    ({"reenroll": "after_exit"}, [past(C, "finished")], True, ""),
    ({"reenroll": "after_exit"}, [past(C, "active")], False, "already active in onboarding"),
    ({"reenroll": "after_exit"}, [past(C, "paused")], False, "already paused in onboarding"),
    ({"reenroll": "after_exit"}, [past(C, "scheduled")], False, "already scheduled in onboarding"),
    ({"reenroll": "after_exit"}, [past(C, "removed")], True, ""),
    ({"reenroll": "90d"}, [past(C, "finished", days_ago=89)], False,
     "finished onboarding less than 90d ago (reenroll: 90d)"),
    ({"reenroll": "90d"}, [past(C, "finished", days_ago=90)], True, ""),
    ({"reenroll": "90d"}, [past(C, "finished", 200), past(C, "finished", 5, number=2)], False,
     "finished onboarding less than 90d ago (reenroll: 90d)"),
    ({"reenroll": "90d"}, [past(C, "removed", days_ago=1)], True, ""),
    ({"reenroll": "90d"}, [past(C, "finished", 100), past(C, "paused", 1, number=2)], False, "already paused in onboarding"),
    # exclusivity
    ({"exclusive": True}, [past("renewal", "active", exclusive=True)], False, "in exclusive campaign renewal"),
    ({"exclusive": True}, [past("renewal", "scheduled", exclusive=True)], False, "in exclusive campaign renewal"),
    ({"exclusive": True}, [past("newsletter", "active", exclusive=False)], True, ""),
    ({"exclusive": False}, [past("renewal", "active", exclusive=True)], True, ""),
    ({"exclusive": True, "previously_treated": "exclude"}, [past("renewal", "finished", exclusive=True)], False,
     "previously treated by exclusive campaign renewal"),
    ({"exclusive": True, "previously_treated": "exclude"}, [past("renewal", "removed", exclusive=True)], False,
     "previously treated by exclusive campaign renewal"),
    ({"exclusive": True, "previously_treated": "include"}, [past("renewal", "finished", exclusive=True)], True, ""),
    ({"exclusive": True, "previously_treated": "include"}, [past("renewal", "paused", exclusive=True)], False,
     "in exclusive campaign renewal"),
    ({"exclusive": True, "previously_treated": "exclude"}, [past("newsletter", "finished")], True, ""),
]


@pytest.mark.parametrize("fields, history, ok, reason", ELIGIBILITY)
def test_trigger_eligibility(fields: dict, history: list[PastEnrollment], ok: bool, reason: str) -> None:
    verdict = eligible_for_trigger(C, campaign(**fields), history, NOW)
    assert (bool(verdict), verdict.reason) == (ok, reason)


@pytest.mark.parametrize("origin", [Origin.MANUAL, Origin.FOLLOW_UP])
def test_manual_starts_and_follow_ups_bypass_reenroll_and_exclusivity(origin: Origin) -> None:
    rules = campaign(reenroll="never", exclusive=True, previously_treated="exclude")
    history = [past(C, "finished"), past("renewal", "active", exclusive=True)]
    assert eligible(origin, C, rules, history, NOW)
    assert not eligible(Origin.TRIGGER, C, rules, history, NOW)
    assert eligible(origin, C, rules, [past(C, "paused")], NOW).reason == "already paused in onboarding"


@pytest.mark.parametrize("history, status", [
    ([], "none"),
    ([past("other", "active")], "none"),
    ([past(C, "finished", number=1), past(C, "removed", number=2)], "removed"),
    ([past(C, "finished", number=1), past(C, "active", number=2)], "active"),
])
def test_current_status_is_what_start_is_checked_against(history: list[PastEnrollment], status: str) -> None:
    assert current_status(C, history) == status
    assert (status in CURRENT) == (status in ("active", "paused", "scheduled"))


# --- When the next step is due ------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


DUE = [
    # (previous step due, wait, next due) — Helsinki is UTC+3 in summer, UTC+2 in winter
    (utc(2026, 7, 1, 6), "3d", utc(2026, 7, 4, 6)),
    (utc(2026, 3, 28, 12), "1d", utc(2026, 3, 29, 12)),  # elapsed time: 14:00 local becomes 15:00 across spring
    (utc(2026, 7, 1, 5), "09:00", utc(2026, 7, 1, 6)),  # 08:00 local: later the same day
    (utc(2026, 7, 1, 6), "09:00", utc(2026, 7, 1, 6)),  # 09:00 sharp: at once
    (utc(2026, 7, 1, 6, 0, 1), "09:00", utc(2026, 7, 2, 6)),  # just past: tomorrow
    (utc(2026, 7, 1, 21), "9:00", utc(2026, 7, 2, 6)),  # 00:00 local on the 2nd
    (utc(2026, 12, 1, 6), "09:00", utc(2026, 12, 1, 7)),  # winter time
    # spring forward on 2026-03-29: 03:00 EET jumps to 04:00 EEST (01:00 UTC)
    (utc(2026, 3, 28, 22), "03:30", utc(2026, 3, 29, 1)),  # 03:30 does not exist: first instant after the gap
    (utc(2026, 3, 28, 22), "03:00", utc(2026, 3, 29, 1)),
    (utc(2026, 3, 28, 22), "04:00", utc(2026, 3, 29, 1)),
    (utc(2026, 3, 28, 22), "09:00", utc(2026, 3, 29, 6)),
    (utc(2026, 3, 28, 22), "02:59", utc(2026, 3, 29, 0, 59)),
    # fall back on 2026-10-25: 04:00 EEST goes back to 03:00 EET; 03:00–03:59 happen twice
    (utc(2026, 10, 24, 22), "03:30", utc(2026, 10, 25, 0, 30)),  # first occurrence (EEST)
    (utc(2026, 10, 25, 0, 45), "03:30", utc(2026, 10, 25, 1, 30)),  # between the two: the second one
    (utc(2026, 10, 25, 1, 45), "03:30", utc(2026, 10, 26, 1, 30)),  # after both: tomorrow
    (utc(2026, 10, 24, 22), "09:00", utc(2026, 10, 25, 7)),
]


@pytest.mark.parametrize("due, wait, expected", DUE)
def test_next_due(due: datetime, wait: str, expected: datetime) -> None:
    step = Wait.model_validate({"wait": wait if wait[-1] in "mhdw" else {"until": wait}})
    assert next_due(due, step, HELSINKI) == expected
    assert next_due(due, step.wait, HELSINKI) == expected
    assert next_due(due, step, HELSINKI).tzinfo is UTC


def test_next_due_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        next_due(datetime(2026, 7, 1, 9), timedelta(hours=1), HELSINKI)


instants = st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))
clocks = st.builds(lambda h, m: Until(until=f"{h:02d}:{m:02d}"), st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
waits = st.one_of(st.timedeltas(timedelta(0), timedelta(days=60)), clocks)
zones = st.sampled_from([HELSINKI, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), UTC])


@given(instants, instants, waits, zones)
def test_next_due_is_never_early_and_monotone(a: datetime, b: datetime, wait, tz) -> None:
    early, late = sorted((a, b))
    assert next_due(early, wait, tz) >= early
    assert next_due(early, wait, tz) <= next_due(late, wait, tz)
    if isinstance(wait, Until):
        assert next_due(early, wait, tz) - early < timedelta(days=1, hours=1)


def test_a_step_due_while_paused_is_due_at_the_resume() -> None:
    assert after_resume(utc(2026, 7, 1), resumed_at=utc(2026, 7, 5)) == utc(2026, 7, 5)
    assert after_resume(utc(2026, 7, 9), resumed_at=utc(2026, 7, 5)) == utc(2026, 7, 9)


WINDOW = Window(start=date(2026, 7, 1), end=date(2026, 12, 31))


@pytest.mark.parametrize("due, opens", [
    (utc(2026, 6, 15), utc(2026, 6, 30, 21)),  # before: waits for the start's local midnight
    (utc(2026, 6, 30, 21), utc(2026, 6, 30, 21)),
    (utc(2026, 8, 1, 12), utc(2026, 8, 1, 12)),
    (utc(2026, 12, 31, 21, 59), utc(2026, 12, 31, 21, 59)),  # 23:59 local on the last day
    (utc(2026, 12, 31, 22), None),  # midnight after the end: window_closed
])
def test_window(due: datetime, opens: datetime | None) -> None:
    assert window_opens(due, WINDOW, HELSINKI) == opens
    assert window_opens(due, None, HELSINKI) == due
