"""Enrollments: their statuses, the operations on them, who a trigger may enroll, and when the
next step is due. Pure functions over small frozen data; time is always passed in.

An enrollment is (campaign, partner, number). What each operation may do is one table,
:data:`TRANSITIONS` (and :data:`STEP_TRANSITIONS` for the steps of an enrollment); anything not
in a table is refused with a :class:`Refused` whose message says what to do instead.

Decisions where SPEC §7 is silent:

- ``start`` makes a *new* enrollment (the next number) from no enrollment, a finished one or a
  removed one; it is refused while one is scheduled, active or paused. ``schedule`` is a manual
  start with a future date; ``activate`` is the engine starting it when that date comes.
- ``pause`` needs an active enrollment: a scheduled one has not started, so remove it to cancel
  it. A paused enrollment does not advance and is never finished by the engine (no exit, no
  window_closed) until it is resumed; remove ends it.
- ``skip`` needs an active or paused enrollment and a pending step. ``rerun`` needs an executed
  step of an active, paused or finished enrollment (a finished enrollment keeps its history; a
  removed one keeps no progress, so start it again instead). Neither changes the enrollment's
  status.
- Removal is a reset of that campaign for that partner (the seed manual's "Remove (reset; may
  be re-added)"): a removed enrollment does not count for ``reenroll``, so the trigger may
  enroll the partner again at the next tick. To keep someone out, exclude them in the audience.
  It still counts as "ever enrolled" for another exclusive campaign's ``previously_treated``.
- Manual starts and follow-ups bypass ``reenroll``, ``exclusive`` and ``previously_treated``:
  a person (or a response) asked for this enrollment. Only the "already current" refusal of
  ``start`` applies to them.
- ``wait: {until: "09:00"}`` is due at the first instant at or after the previous step's due
  time at which the campaign's local clock reads 09:00 (so a step due at 09:00 sharp goes on at
  once). A local time skipped by a DST change is read as the first instant after the gap; a
  repeated one as its first occurrence (or the second, when the wait starts between the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from enum import StrEnum
from functools import lru_cache
from typing import Iterable

from .shapes import Campaign, Until, Wait, Window

UTC = timezone.utc


class Status(StrEnum):
    NONE = "none"  # no enrollment in the campaign yet: the state ``start`` begins from
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"
    REMOVED = "removed"


CURRENT = frozenset({Status.SCHEDULED, Status.ACTIVE, Status.PAUSED})
"""An enrollment in one of these is the partner's current one: at most one per campaign."""


class FinishReason(StrEnum):
    COMPLETED = "completed"
    EXIT = "exit"  # exit_when turned true
    WINDOW_CLOSED = "window_closed"
    AUDIENCE_LOST = "audience_lost"  # exit_on_audience_loss
    REMOVED_STEP = "removed_step"  # the step it waited for left the file, and so did the one before
    PARTNER_REMOVED = "partner_removed"  # the partner left the partner source
    GOAL = "goal"  # it converted, and its goal says exit


class StepStatus(StrEnum):
    PENDING = "pending"
    EXECUTED = "executed"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    CONDITION = "condition"  # the step's `when` was false
    NO_CONSENT = "no_consent"
    STEP_REMOVED = "step_removed"  # the step disappeared from the campaign file
    SKIPPED_BY_USER = "skipped_by_user"
    EXCLUDED = "excluded"  # engine.yaml's exclude matches the partner now
    NO_ADDRESS = "no_address"  # no email address or phone number to send to
    UNDELIVERABLE = "undeliverable"  # the email address hard-bounced before
    BRANCH = "branch"  # a branch jumped over it
    RESPONSE = "response"  # a response's goto jumped over it
    SPLIT = "split"  # a split path jumped over it
    HOLDOUT = "holdout"  # the partner is in the campaign's holdout: no messages
    FREQUENCY_CAP = "frequency_cap"  # the partner had all the messages of the channel a cap allows


class Origin(StrEnum):
    TRIGGER = "trigger"
    MANUAL = "manual"
    FOLLOW_UP = "follow_up"


class Operation(StrEnum):
    START = "start"
    SCHEDULE = "schedule"  # a manual start with a future date
    ACTIVATE = "activate"  # engine: a scheduled enrollment's date came
    PAUSE = "pause"
    RESUME = "resume"
    REMOVE = "remove"
    SKIP = "skip"
    RERUN = "rerun"
    FINISH = "finish"  # engine: completed, exit, window_closed or audience_lost
    EXECUTE = "execute"  # engine, steps only
    FAIL = "fail"  # engine, steps only


S, Op = Status, Operation

TRANSITIONS: dict[tuple[Operation, Status], Status] = {
    (Op.START, S.NONE): S.ACTIVE,
    (Op.START, S.FINISHED): S.ACTIVE,
    (Op.START, S.REMOVED): S.ACTIVE,
    (Op.SCHEDULE, S.NONE): S.SCHEDULED,
    (Op.SCHEDULE, S.FINISHED): S.SCHEDULED,
    (Op.SCHEDULE, S.REMOVED): S.SCHEDULED,
    (Op.ACTIVATE, S.SCHEDULED): S.ACTIVE,
    (Op.PAUSE, S.ACTIVE): S.PAUSED,
    (Op.RESUME, S.PAUSED): S.ACTIVE,
    (Op.REMOVE, S.SCHEDULED): S.REMOVED,
    (Op.REMOVE, S.ACTIVE): S.REMOVED,
    (Op.REMOVE, S.PAUSED): S.REMOVED,
    (Op.SKIP, S.ACTIVE): S.ACTIVE,
    (Op.SKIP, S.PAUSED): S.PAUSED,
    (Op.RERUN, S.ACTIVE): S.ACTIVE,
    (Op.RERUN, S.PAUSED): S.PAUSED,
    (Op.RERUN, S.FINISHED): S.FINISHED,
    (Op.FINISH, S.ACTIVE): S.FINISHED,
}
"""(operation, current status) → the enrollment's status afterwards. Start and schedule from
none, finished or removed create a new enrollment; every pair not listed is refused."""

STEP_TRANSITIONS: dict[tuple[Operation, StepStatus], StepStatus] = {
    (Op.EXECUTE, StepStatus.PENDING): StepStatus.EXECUTED,
    (Op.FAIL, StepStatus.PENDING): StepStatus.FAILED,
    (Op.SKIP, StepStatus.PENDING): StepStatus.SKIPPED,
    (Op.RERUN, StepStatus.EXECUTED): StepStatus.EXECUTED,  # one more run, now
}
"""(operation, current step status) → the step's status afterwards."""

_HINTS: dict[tuple[Operation, Status], str] = {
    (Op.START, S.ACTIVE): "remove it first or wait until it finishes",
    (Op.START, S.PAUSED): "resume it, or remove it first",
    (Op.START, S.SCHEDULED): "remove it first to start at another time",
    (Op.PAUSE, S.SCHEDULED): "remove it to cancel it, or pause it once it has started",
    (Op.RERUN, S.REMOVED): "a removed enrollment keeps no progress; start it again instead",
}
"""What to do instead, where it is not obvious (``schedule`` shares the hints of ``start``)."""

_ENDED_HINT = "start it again for a new enrollment"


class Refused(Exception):
    """An operation that the enrollment's state does not allow; ``str()`` is a one-line
    message for the user (the CLI exits with 3)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAllowed(Refused):
    """Refused because of who asks, not of the enrollment's state: the user lacks the role (the
    CLI exits with 3 as for every refusal; the web API answers 403, not 409)."""


def transition(operation: Operation | str, status: Status | str, *, partner: str | None = None,
               campaign: str | None = None) -> Status:
    """The enrollment's status after ``operation``, or :class:`Refused`."""
    return _enrollment_after(Operation(operation), Status(status), partner, campaign)


def _enrollment_after(operation: Operation, status: Status, partner: str | None, campaign: str | None,
                      step_id: str | None = None) -> Status:
    after = TRANSITIONS.get((operation, status))
    if after is None:
        raise Refused(_refusal(operation, status, partner, campaign, step_id))
    return after


def step_transition(operation: Operation | str, enrollment: Status | str, step: StepStatus | str, *,
                    step_id: str | None = None, partner: str | None = None,
                    campaign: str | None = None) -> StepStatus:
    """The step's status after a user's skip or rerun (or the engine's execute or fail), once
    both the enrollment and the step allow it; :class:`Refused` otherwise."""
    operation, step = Operation(operation), StepStatus(step)
    needed = next((s for (op, s) in STEP_TRANSITIONS if op == operation), None)
    if needed is None:
        raise ValueError(f"{operation} is not an operation on a step")
    if operation in (Op.SKIP, Op.RERUN):
        _enrollment_after(operation, Status(enrollment), partner, campaign, step_id or "")
    after = STEP_TRANSITIONS.get((operation, step))
    if after is None:
        name = f"step {step_id}" if step_id else "the step"
        raise Refused(f"cannot {operation} {name} of {_who(partner)} in {_where(campaign)}: "
                      f"it is {step}, and only {_article(needed)} {needed} step can be {_participle(operation)}")
    return after


def _refusal(operation: Operation, status: Status, partner: str | None, campaign: str | None,
             step_id: str | None = None) -> str:
    """The one-line message; ``step_id`` (possibly empty) when a step operation was refused
    because of its enrollment."""
    hint = _HINTS.get((Op.START if operation is Op.SCHEDULE else operation, status))
    if hint is None and status in (S.FINISHED, S.REMOVED):
        hint = _ENDED_HINT
    if operation in (Op.START, Op.SCHEDULE) and status in CURRENT:
        return f"{_who(partner)} already has {_article(status)} {status} enrollment in {_where(campaign)}; {hint}"
    if status is S.NONE:
        return f"{_who(partner)} has no enrollment in {_where(campaign)} to {operation}"
    if step_id is None:
        subject, it = "the enrollment of", "it"
    else:
        subject, it = (f"step {step_id} of" if step_id else "the step of"), "its enrollment"
    message = f"cannot {operation} {subject} {_who(partner)} in {_where(campaign)}: {it} is {status}"
    return f"{message}; {hint}" if hint else message


def _who(partner: str | None) -> str:
    return f"partner {partner}" if partner else "the partner"


def _where(campaign: str | None) -> str:
    return campaign or "this campaign"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _participle(operation: Operation) -> str:
    return {Op.SKIP: "skipped", Op.RERUN: "run again", Op.EXECUTE: "executed", Op.FAIL: "failed"}[operation]


# --- Who a trigger may enroll -------------------------------------------------------------------


@dataclass(frozen=True)
class PastEnrollment:
    """One enrollment of the partner, in any campaign, as the store remembers it."""

    campaign: str
    number: int
    status: Status | str
    started_at: datetime
    finished_at: datetime | None = None  # when it finished or was removed
    exclusive: bool = False  # whether its campaign is exclusive


@dataclass(frozen=True)
class Verdict:
    """Whether the partner may be enrolled, and if not, why (for `engine explain`)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


ELIGIBLE = Verdict(True)


def current_status(campaign_id: str, history: Iterable[PastEnrollment]) -> Status:
    """The status ``start`` is checked against: the current enrollment's, else the latest
    one's (finished or removed), else none."""
    mine = sorted((h for h in history if h.campaign == campaign_id), key=lambda h: h.number)
    current = [h for h in mine if h.status in CURRENT]
    latest = current[-1] if current else mine[-1] if mine else None
    return Status(latest.status) if latest else S.NONE


def eligible(origin: Origin | str, campaign_id: str, campaign: Campaign,
             history: Iterable[PastEnrollment], at: datetime) -> Verdict:
    """Whether an enrollment of this origin may start now. Manual starts and follow-ups only
    need no current enrollment in the campaign; a trigger also obeys reenroll and exclusivity."""
    history = tuple(history)
    if Origin(origin) is Origin.TRIGGER:
        return eligible_for_trigger(campaign_id, campaign, history, at)
    return _not_current(campaign_id, history)


def eligible_for_trigger(campaign_id: str, campaign: Campaign, history: Iterable[PastEnrollment],
                         at: datetime) -> Verdict:
    """Whether the campaign's trigger may enroll the partner at ``at``, given the partner's
    enrollments in every campaign."""
    history = tuple(history)
    for rule in (_not_current(campaign_id, history),
                 _reenroll(campaign_id, campaign.reenroll, history, at),
                 _exclusivity(campaign_id, campaign, history, at)):
        if not rule:
            return rule
    return ELIGIBLE


def eligible_as_member(campaign_id: str, campaign: Campaign, history: Iterable[PastEnrollment],
                       at: datetime) -> Verdict:
    """Whether a member of the campaign's target group may be enrolled at ``at``: as for a
    trigger, but without ``reenroll`` (adding someone to the group is explicit)."""
    history = tuple(history)
    return _not_current(campaign_id, history) and _exclusivity(campaign_id, campaign, history, at)


def _not_current(campaign_id: str, history: tuple[PastEnrollment, ...]) -> Verdict:
    """A scheduled, active or paused enrollment is never joined by another one."""
    for h in history:
        if h.campaign == campaign_id and h.status in CURRENT:
            return Verdict(False, f"already {h.status} in {campaign_id}")
    return ELIGIBLE


def _reenroll(campaign_id: str, rule: str | timedelta, history: tuple[PastEnrollment, ...],
              at: datetime) -> Verdict:
    """``never``: no finished enrollment before; ``after_exit``: none current (checked
    already); a duration: the last one finished at least that long ago. Removed ones are a
    reset and do not count."""
    finished = [h for h in history if h.campaign == campaign_id and h.status == S.FINISHED]
    if not finished or rule == "after_exit":
        return ELIGIBLE
    if rule == "never":
        return Verdict(False, f"already enrolled in {campaign_id} before (reenroll: never)")
    last = max(h.finished_at or h.started_at for h in finished)
    if at - last < rule:
        return Verdict(False, f"finished {campaign_id} less than {duration_text(rule)} ago (reenroll: {duration_text(rule)})")
    return ELIGIBLE


def _exclusivity(campaign_id: str, campaign: Campaign, history: tuple[PastEnrollment, ...],
                 at: datetime) -> Verdict:
    """An exclusive campaign waits until the partner is in no other exclusive campaign. With
    ``previously_treated: exclude`` it takes nobody who was ever in one; with a duration (30d),
    only those whose last enrollment in another exclusive campaign ended (finished or was
    removed) at least that long before ``at`` (exactly 30d ago is long enough)."""
    if not campaign.exclusive:
        return ELIGIBLE
    others = [h for h in history if h.exclusive and h.campaign != campaign_id]
    for h in others:
        if h.status in CURRENT:
            return Verdict(False, f"in exclusive campaign {h.campaign}")
    rule = campaign.previously_treated
    if rule == "exclude" and others:
        return Verdict(False, f"previously treated by exclusive campaign {others[0].campaign}")
    if isinstance(rule, timedelta) and others:
        last = max(others, key=lambda h: h.finished_at or h.started_at)
        if at - (last.finished_at or last.started_at) < rule:
            return Verdict(False, f"treated by exclusive campaign {last.campaign} until less than {duration_text(rule)} "
                                  f"ago (previously_treated: {duration_text(rule)})")
    return ELIGIBLE


def duration_text(value: timedelta) -> str:
    """90 days as ``90d``, as it is written in the campaign file."""
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


# --- When the next step is due (where it is: campaigns.flow) ---------------------------------------


def next_due(step_due: datetime, wait: Wait | timedelta | Until, tz: tzinfo) -> datetime:
    """When the step after ``wait`` is due, in UTC, given when the step before it was due.

    A duration is elapsed time (``1d`` across a DST change is 23 or 25 wall-clock hours);
    ``{until: "09:00"}`` is the next 09:00 on the local clock, at or after ``step_due``."""
    if step_due.tzinfo is None:
        raise ValueError("next_due needs an aware datetime")
    if isinstance(wait, Wait):
        wait = wait.wait
    if isinstance(wait, timedelta):
        return step_due.astimezone(UTC) + wait
    clock = time.fromisoformat(wait.until.zfill(5))
    day = step_due.astimezone(tz).date()
    candidates = (c for d in (day - timedelta(days=1), day, day + timedelta(days=1))
                  for c in local_instants(d, clock, tz))
    return min(c for c in candidates if c >= step_due)


def after_resume(due: datetime, resumed_at: datetime) -> datetime:
    """A step that fell due while the enrollment was paused is due when it is resumed (and
    later waits count from there)."""
    return max(due, resumed_at)


def window_opens(due: datetime, window: Window | None, tz: tzinfo) -> datetime | None:
    """When a step due at ``due`` may execute: ``due`` inside the window, the window's start
    before it, None after it (the enrollment finishes: window_closed). Both dates are whole
    local days: the window runs from the start's midnight to the midnight after the end."""
    if window is None:
        return due
    if window.end is not None and due >= _midnight(window.end + timedelta(days=1), tz):
        return None
    if window.start is not None:
        return max(due, _midnight(window.start, tz))
    return due


@lru_cache(maxsize=256)  # every tick asks each windowed campaign about the same two days
def _midnight(day: date, tz: tzinfo) -> datetime:
    return min(local_instants(day, time(0, 0), tz))


def local_instants(day: date, clock: time, tz: tzinfo) -> tuple[datetime, ...]:
    """The instants (UTC) at which the local clock in ``tz`` reads ``clock`` on ``day``: one,
    two in an autumn repeat (first first), or in a spring gap the first instant after it."""
    wall = datetime.combine(day, clock)
    first, second = (wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return tuple(sorted({first, second}))
    return (_first_instant_reaching(wall, min(first, second), max(first, second), tz),)


def _first_instant_reaching(wall: datetime, low: datetime, high: datetime, tz: tzinfo) -> datetime:
    """The first whole second in (low, high] at which the local clock reads ``wall`` or later:
    the end of the gap that swallowed ``wall``."""
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)
