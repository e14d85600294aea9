"""Logical time: the only place that reads the wall clock, and the one format times are stored in.

Everything in the engine takes the time as an argument (a tick's ``at``, an operation's ``at``);
the CLI asks a :class:`Clock` once, at the edge. Tests hold a :class:`FixedClock` and move it.

Logical times have one-second resolution: ``--at 2026-07-01T09:00:00.750`` is 09:00:00. They are
stored and printed as ISO 8601 in UTC with a ``Z`` (``2026-07-01T06:00:00Z``), which also sorts
as text, so the store's index on due times works in any database.

Bounds: a time a person writes (``--at``, ``--from``, ``--until``, ``--on``) lies between
1900-01-01 and 2199-12-31, and a duration (``--every``, ``--duration``) is positive and at most
100 years: the same bounds as the dates and durations of campaign files and events
(:func:`dsl.types.check_date`, :func:`dsl.types.check_duration`, where they live). Outside them
a time is a typo (``9999-12-31``) that would otherwise overflow the calendar arithmetic deep
inside a tick. Such errors are :class:`TimeError`: a ValueError, and a usage error (exit 2)
when one reaches the command line unhandled.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Protocol

from dsl.ids import shown
from dsl.types import MAX_DURATION, check_date, check_duration

from .errors import UsageError

UTC = timezone.utc


class TimeError(UsageError, ValueError):
    """A written time or duration that is malformed or out of bounds (a usage error, exit 2)."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC, to the second."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)


class FixedClock:
    """A clock that only moves when told to: what tests and simulations use."""

    def __init__(self, at: datetime | str, tz: tzinfo = UTC):
        self._now = parse_time(at, tz) if isinstance(at, str) else aware(at)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime | str, tz: tzinfo = UTC) -> datetime:
        self._now = parse_time(at, tz) if isinstance(at, str) else aware(at)
        return self._now

    def advance(self, by: timedelta) -> datetime:
        self._now += by
        return self._now


def aware(at: datetime) -> datetime:
    """``at`` in UTC to the second; a naive datetime is refused, never guessed."""
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no timezone; pass an aware datetime")
    return at.astimezone(UTC).replace(microsecond=0)


def iso(at: datetime) -> str:
    """The stored and printed form: ``2026-07-01T06:00:00Z``."""
    return aware(at).isoformat()[:19] + "Z"  # isoformat is several times faster than strftime


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)  # the stored form ends in Z: aware, UTC


def maybe_iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


def maybe_from_iso(text: str | None) -> datetime | None:
    return None if text is None else from_iso(text)


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, tz: tzinfo) -> datetime:
    """A time written by a person: ``now``, a date (its local midnight), or an ISO 8601 date-time
    (local time in ``tz`` unless it ends in ``Z`` or an offset). ValueError with a readable
    message otherwise."""
    raw = text.strip()
    if raw.lower() == "now":
        return SystemClock().now()
    value: datetime
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            value = datetime.combine(date.fromisoformat(raw), time(0, 0))
        else:
            value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise TimeError(f"{shown(text, 40)} is not a time such as 2026-07-01T09:00, 2026-07-01 or 2026-07-01T06:00:00Z") from None
    problem = check_date(value)
    if problem is not None:
        raise TimeError(f"{shown(text, 40)} is out of range: {problem}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return aware(value)


def parse_every(text: str) -> timedelta:
    """A tick interval such as ``1h``, ``15m``, ``1d`` (``s`` for seconds, too, ``w`` for
    weeks): positive, at most 100 years."""
    match = _DURATION.match(text)
    digits = match.group(1).lstrip("0") if match else ""
    if not digits:
        raise TimeError(f"{shown(text, 40)} is not a positive duration such as 15m, 1h or 1d")
    # no int() of thousands of digits, no timedelta overflow: 12 digits are too long in any unit
    seconds = int(digits) * _UNITS[match.group(2)] if len(digits) <= 12 else None  # type: ignore[union-attr]
    value = timedelta(seconds=seconds) if seconds is not None and seconds <= MAX_DURATION.total_seconds() else MAX_DURATION * 2
    problem = check_duration(value)
    if problem is not None:
        raise TimeError(f"{shown(text, 40)} is too long: {problem}")
    return value
