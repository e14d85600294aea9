"""Dates and instants for the SQL back end (:mod:`dsl.sql`): local days in a time zone, found
with Python's own datetime arithmetic (bisection), as boundaries the SQL compares with."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Callable

from .sql_values import DAY_US, EPOCH, MICROSECOND, UTC, Unsupported


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _ambiguous(moment: datetime) -> bool:
    """A local time in a DST fold or gap: Python's ``==`` between time zones never finds it
    equal to anything (PEP 495), whatever the instants."""
    if moment.tzinfo is None or moment.tzinfo is UTC:
        return False
    return moment.utcoffset() != moment.replace(fold=1 - moment.fold).utcoffset()


def _fixed_offset(tz: tzinfo) -> timedelta | None:
    """The offset of a timezone without DST, or None."""
    if isinstance(tz, timezone):
        return tz.utcoffset(None)
    key = getattr(tz, "key", None)
    if key in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "GMT", "Etc/GMT", "Etc/Universal", "Universal", "Zulu",
               "Etc/Zulu", "Etc/Greenwich", "Greenwich", "GMT0", "Etc/GMT0", "GMT+0", "GMT-0", "Etc/GMT+0",
               "Etc/GMT-0"):
        return timedelta(0)
    match = re.fullmatch(r"Etc/GMT([+-])(\d{1,2})", key or "")
    if match:  # POSIX style: Etc/GMT+3 is three hours *behind* UTC
        return timedelta(hours=int(match.group(2))) * (-1 if match.group(1) == "+" else 1)
    return None


@lru_cache(maxsize=64)
def _local_range(tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The UTC instants [lo, hi) whose local date in ``tz`` exists (None: no limit)."""

    def works(moment: datetime) -> bool:
        try:
            moment.astimezone(tz)
            return True
        except (ArithmeticError, ValueError):
            return False

    lowest, highest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    lo = hi = None
    if not works(lowest):
        a, b = 0, 3 * DAY_US  # first working micro offset from the lowest instant
        while a < b:
            m = (a + b) // 2
            a, b = (a, m) if works(lowest + m * MICROSECOND) else (m + 1, b)
        lo = lowest + a * MICROSECOND
    if not works(highest):
        a, b = 0, 3 * DAY_US  # first failing micro offset back from the highest instant
        while a < b:
            m = (a + b) // 2
            a, b = (m + 1, b) if not works(highest - m * MICROSECOND) else (a, m)
        hi = highest - (a - 1) * MICROSECOND
    return lo, hi


@lru_cache(maxsize=4096)
def _day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant (UTC) whose local date in ``tz`` is ``day`` or later, checked: the
    local date must step from before ``day`` to ``day`` (or after) exactly there, for every
    instant within 36 hours (more than any offset change, so further away it cannot step back)."""
    try:
        start = datetime.combine(day, time(), tz).astimezone(UTC)
        samples = [start + timedelta(minutes=15) * i for i in range(-36 * 4, 36 * 4 + 1)]
        points = set(samples) | {start - MICROSECOND}
        for a, b in zip(samples, samples[1:]):
            if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset():  # a change: find it
                lo, hi = 0, (b - a) // MICROSECOND
                while lo < hi:
                    m = (lo + hi) // 2
                    same = (a + m * MICROSECOND).astimezone(tz).utcoffset() == a.astimezone(tz).utcoffset()
                    lo, hi = (m + 1, hi) if same else (lo, m)
                points |= {a + (lo - 1) * MICROSECOND, a + lo * MICROSECOND}
        for point in points:
            if (point.astimezone(tz).date() >= day) != (point >= start):
                raise Unsupported(f"the local date in {tz} does not advance simply around {day}")
    except (ArithmeticError, ValueError):
        raise Unsupported("a date at the end of the calendar") from None
    return start


def _first(test: Callable[[int], bool], lo: int, hi: int) -> int:
    """The least ``i`` in [lo, hi] with ``test(i)``, ``test`` being monotonic (false, then
    true) and ``test(hi)`` true."""
    while lo < hi:
        m = (lo + hi) // 2
        lo, hi = (lo, m) if test(m) else (m + 1, hi)
    return lo


_MIN_DAY, _MAX_DAY = date.min.toordinal(), date.max.toordinal()
# An interval of dates (ordinals) [lo, hi); None for no bound; EMPTY for no date at all.
EMPTY = "empty"


def _split(test: Callable[[date], bool]):
    """The dates where a monotonic predicate of a date holds, as an interval."""
    low, high = test(date.min), test(date.max)
    if low == high:
        return (None, None) if low else EMPTY
    first = _first(lambda o: test(date.fromordinal(o)) == high, _MIN_DAY, _MAX_DAY)
    return (first, None) if high else (None, first)


def _intersect(a, b):
    if a == EMPTY or b == EMPTY:
        return EMPTY
    lo = a[0] if b[0] is None else b[0] if a[0] is None else max(a[0], b[0])
    hi = a[1] if b[1] is None else b[1] if a[1] is None else min(a[1], b[1])
    return EMPTY if lo is not None and hi is not None and lo >= hi else (lo, hi)
